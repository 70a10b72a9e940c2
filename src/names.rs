//! Names that users choose (file names, API token names) as ocrd keeps and shows them.
//!
//! Control characters (C0, DEL, C1) and Unicode bidirectional controls are removed: a NUL
//! cannot be stored in PostgreSQL, and `evil\u{202e}gnp.exe` would be shown as `evilexe.png`.
//! Storage keys go further: see `blobs::sanitize_filename`.

/// Bidirectional formatting characters: embeddings, overrides, isolates and marks.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// `name` without control or bidi characters, trimmed, at most `max_chars` characters.
pub fn clean(name: &str, max_chars: usize) -> String {
    let kept: String = name
        .chars()
        .filter(|&c| !c.is_control() && !is_bidi_control(c))
        .collect();
    kept.trim().chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn controls_and_bidi_overrides_are_removed() {
        assert_eq!(clean("evil\u{202e}gnp.exe", 255), "evilgnp.exe");
        assert_eq!(clean("a\0b\u{7}c\u{85}d\u{9b}e", 255), "abcde");
        assert_eq!(clean("\u{2066}x\u{2069}\u{200f}", 255), "x");
        assert_eq!(clean("  tab\there\n ", 255), "tabhere");
        assert_eq!(
            clean("Überweisung 株式会社 🧾.pdf", 255),
            "Überweisung 株式会社 🧾.pdf"
        );
        assert_eq!(clean("abcdef", 3), "abc");
        assert_eq!(clean("\u{202e}\0", 10), "");
    }
}
