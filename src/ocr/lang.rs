//! `ocr.lang`: the scripts a page may contain.
//!
//! The PP-OCR dictionaries mix Latin with thousands of CJK characters, and on Latin pages the
//! recogniser now and then prefers one of those (`67月`, a full-width `：`). Limiting decoding
//! to the chosen scripts removes such strays at the source: the other classes are masked before
//! the argmax, so the best *allowed* character wins instead of being filtered out afterwards.

use std::fmt;

/// A writing system, as far as the recognition dictionaries tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Script {
    /// Digits, punctuation and symbols that every script uses.
    Common,
    /// The 52 letters of English.
    Latin,
    /// Latin letters with diacritics, ligatures and the other letters of European languages
    /// (é, ß, ø, œ, ł, …).
    LatinExtended,
    Greek,
    Cyrillic,
    /// Chinese, Japanese and Korean, with their full-width forms and punctuation.
    Cjk,
    /// Anything else (Arabic, Thai, …): only `all` reads it.
    Other,
}

impl Script {
    pub fn of(ch: char) -> Script {
        let c = ch as u32;
        match c {
            0x41..=0x5A | 0x61..=0x7A | 0xAA | 0xBA => Script::Latin,
            0xC0..=0x24F | 0x1E00..=0x1EFF | 0x2C60..=0x2C7F | 0xA720..=0xA7FF => match ch {
                '×' | '÷' => Script::Common,
                _ => Script::LatinExtended,
            },
            0x0..=0xBF => Script::Common,
            0x250..=0x36F => Script::LatinExtended,
            0x370..=0x3FF | 0x1F00..=0x1FFF => Script::Greek,
            0x400..=0x52F => Script::Cyrillic,
            // Punctuation, super- and subscripts, currency, letterlike symbols, number forms,
            // arrows, mathematical operators, technical symbols, enclosed numbers, box drawing.
            0x2000..=0x2BFF => Script::Common,
            0x2E80..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0xFE30..=0xFE4F => Script::Cjk,
            0xFF00..=0xFFEF | 0x20000..=0x3FFFF => Script::Cjk,
            _ => Script::Other,
        }
    }
}

/// The scripts to read: `latin`, `greek`, `cyrillic`, `cjk`, a comma-separated mix of them, or
/// `all` (no limit); `english` is Latin without diacritics. Digits, punctuation and symbols are
/// always read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lang {
    /// Sorted and deduplicated; `None` reads everything.
    scripts: Option<Vec<Script>>,
}

/// The names `Lang` accepts, for error messages and documentation.
pub const LANG_NAMES: &str = "latin, english, greek, cyrillic, cjk (comma-separated), or all";

impl Lang {
    pub fn all() -> Lang {
        Lang { scripts: None }
    }

    pub fn latin() -> Lang {
        Lang {
            scripts: Some(vec![Script::Latin, Script::LatinExtended]),
        }
    }

    /// Whether the page may contain `ch`.
    pub fn allows(&self, ch: char) -> bool {
        let script = Script::of(ch);
        script == Script::Common
            || self
                .scripts
                .as_ref()
                .is_none_or(|s| s.binary_search(&script).is_ok())
    }

    /// The chosen scripts that have no character at all in `classes`: a model that cannot read
    /// them (a Latin-only dictionary asked for Cyrillic).
    pub fn missing_from(&self, classes: &[char]) -> Vec<Script> {
        let Some(scripts) = &self.scripts else {
            return Vec::new();
        };
        // Accented letters come with `latin`: a dictionary with the plain ones reads it.
        scripts
            .iter()
            .copied()
            .filter(|&s| s != Script::LatinExtended)
            .filter(|&s| !classes.iter().any(|&c| Script::of(c) == s))
            .collect()
    }
}

impl Default for Lang {
    fn default() -> Lang {
        Lang::latin()
    }
}

impl std::str::FromStr for Lang {
    type Err = String;

    fn from_str(s: &str) -> Result<Lang, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("all") {
            return Ok(Lang::all());
        }
        let mut scripts = Vec::new();
        for name in s.split(',').map(str::trim) {
            scripts.extend_from_slice(match name.to_ascii_lowercase().as_str() {
                "latin" => &[Script::Latin, Script::LatinExtended],
                "english" => &[Script::Latin],
                "greek" => &[Script::Greek],
                "cyrillic" => &[Script::Cyrillic],
                "cjk" => &[Script::Cjk],
                _ => {
                    let shown = crate::names::clean(name, 40);
                    return Err(format!("lang must be {LANG_NAMES}, not `{shown}`"));
                }
            });
        }
        scripts.sort_unstable();
        scripts.dedup();
        Ok(Lang {
            scripts: Some(scripts),
        })
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(scripts) = &self.scripts else {
            return f.write_str("all");
        };
        let names: Vec<&str> = scripts
            .iter()
            .filter_map(|s| match s {
                Script::Latin if scripts.contains(&Script::LatinExtended) => None,
                Script::Latin => Some("english"),
                Script::LatinExtended => Some("latin"),
                Script::Greek => Some("greek"),
                Script::Cyrillic => Some("cyrillic"),
                Script::Cjk => Some("cjk"),
                Script::Common | Script::Other => None,
            })
            .collect();
        f.write_str(&names.join(","))
    }
}

impl serde::Serialize for Lang {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Lang {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Lang, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin_reads_accents_and_symbols_but_not_cjk_or_full_width_forms() {
        let latin = Lang::latin();
        for ch in "Aaßéñøœ€£°±×“”—…0:.%".chars() {
            assert!(latin.allows(ch), "{ch}");
        }
        for ch in "月：，αж가あ".chars() {
            assert!(!latin.allows(ch), "{ch}");
        }
        assert!(Lang::all().allows('月'));
    }

    #[test]
    fn names_parse_round_trip_and_bad_ones_are_refused() {
        let lang: Lang = " Latin, cjk ,latin".parse().expect("valid");
        assert_eq!(lang.to_string(), "latin,cjk");
        assert!(lang.allows('月') && lang.allows('é') && !lang.allows('ж'));
        assert_eq!("ALL".parse::<Lang>(), Ok(Lang::all()));
        assert!("klingon".parse::<Lang>().is_err());
        assert!("".parse::<Lang>().is_err());
        assert!("latin,".parse::<Lang>().is_err());
        // The refused name is echoed without its control and bidi characters, and short.
        let refused = format!("lat\u{202e}in\u{0}x{}", "y".repeat(100))
            .parse::<Lang>()
            .expect_err("not a script");
        assert!(
            !refused.contains(['\u{202e}', '\u{0}']) && refused.len() < 150,
            "{refused}"
        );
        let english: Lang = "english".parse().expect("valid");
        assert_eq!(english.to_string(), "english");
        assert!(english.allows('e') && english.allows('£') && !english.allows('é'));
        assert_eq!(
            "english,latin".parse::<Lang>().map(|l| l.to_string()),
            Ok("latin".into())
        );
    }

    #[test]
    fn scripts_a_dictionary_lacks_are_named() {
        let classes = ['a', 'b', '1', '月'];
        let lang: Lang = "latin,cyrillic,cjk".parse().expect("valid");
        assert_eq!(lang.missing_from(&classes), vec![Script::Cyrillic]);
        assert!(Lang::all().missing_from(&classes).is_empty());
    }
}
