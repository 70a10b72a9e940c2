//! Measurements shared by the tests and the benchmarks: character error rate (CER) from a
//! Levenshtein distance over characters, its case-folded form and bag-of-words F1 for
//! receipts, and a process's peak memory.

/// Peak resident memory (`VmHWM`) of process `pid` (`"self"` for this one), in MiB; `None`
/// when the process is gone or the kernel does not say.
pub fn peak_rss_mib(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
}

/// Runs of whitespace become one space; the ends are trimmed.
pub fn normalize_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Edit distance (insertions, deletions, substitutions) between two character sequences.
pub fn levenshtein(a: &[char], b: &[char]) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// CER of `hypothesis` against `reference` after whitespace normalisation: the edit distance
/// divided by the reference length.
pub fn cer(hypothesis: &str, reference: &str) -> f64 {
    let h: Vec<char> = normalize_whitespace(hypothesis).chars().collect();
    let r: Vec<char> = normalize_whitespace(reference).chars().collect();
    error_rate(&h, &r)
}

/// Edits per reference character; an empty reference scores 0 against nothing, else 1.
fn error_rate(hypothesis: &[char], reference: &[char]) -> f64 {
    if reference.is_empty() {
        return if hypothesis.is_empty() { 0.0 } else { 1.0 };
    }
    levenshtein(hypothesis, reference) as f64 / reference.len() as f64
}

/// Case-folded CER with all whitespace removed (CER_ci): for ground truth whose case and
/// spacing follow annotators rather than the page, as on the SROIE receipts.
pub fn cer_ci(hypothesis: &str, reference: &str) -> f64 {
    let fold = |s: &str| -> Vec<char> {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .flat_map(char::to_lowercase)
            .collect()
    };
    error_rate(&fold(hypothesis), &fold(reference))
}

/// Bag-of-words F1: the multiset overlap of case-folded whitespace-separated tokens, blind to
/// reading order (a receipt's labels against its right-aligned amounts).
pub fn bag_of_words_f1(hypothesis: &str, reference: &str) -> f64 {
    use std::collections::HashMap;
    let bag = |s: &str| -> HashMap<String, usize> {
        let mut bag = HashMap::new();
        for token in s.split_whitespace() {
            *bag.entry(token.to_lowercase()).or_default() += 1;
        }
        bag
    };
    let (h, r) = (bag(hypothesis), bag(reference));
    let (nh, nr) = (h.values().sum::<usize>(), r.values().sum::<usize>());
    if nh == 0 || nr == 0 {
        return if nh == nr { 1.0 } else { 0.0 };
    }
    let common: usize = h
        .iter()
        .map(|(token, n)| (*n).min(r.get(token).copied().unwrap_or(0)))
        .sum();
    2.0 * common as f64 / (nh + nr) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein_counts_edits() {
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        assert_eq!(levenshtein(&chars("kitten"), &chars("sitting")), 3);
        assert_eq!(levenshtein(&chars(""), &chars("abc")), 3);
        assert_eq!(levenshtein(&chars("abc"), &chars("abc")), 0);
    }

    #[test]
    fn cer_normalises_whitespace() {
        assert_eq!(cer("a  b\n c ", "a b c"), 0.0);
        assert!((cer("theFuture", "the Future") - 0.1).abs() < 1e-9);
        assert_eq!(cer("", ""), 0.0);
    }

    #[test]
    fn receipt_metrics_ignore_case_spacing_and_order() {
        assert_eq!(cer_ci("Total : 12.50", "TOTAL: 12.50"), 0.0);
        assert!((cer_ci("TOTAL 12.5", "TOTAL 12.50") - 1.0 / 10.0).abs() < 1e-9);
        assert_eq!(bag_of_words_f1("12.50 total", "TOTAL 12.50"), 1.0);
        // Two of three tokens each way: F1 = 2/3.
        assert!((bag_of_words_f1("a b x", "a b c") - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(bag_of_words_f1("", "a"), 0.0);
    }
}
