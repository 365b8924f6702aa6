//! "Did you mean" suggestions for near-miss names.

/// Levenshtein distance, case-insensitive (class names are often mistyped
/// only in case: `counter` for `Counter`).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `name`, if it is close enough to be a likely typo.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = name.chars().count();
    let limit = (len / 3).max(2).min(len.saturating_sub(1));
    candidates
        .into_iter()
        .map(|c| (distance(name, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, c)| (d, c))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_and_case_slips() {
        let names = ["Counter", "Classifier", "Queue", "Tee"];
        assert_eq!(nearest("Countr", names), Some("Counter"));
        assert_eq!(nearest("counter", names), Some("Counter"));
        assert_eq!(nearest("Quueue", names), Some("Queue"));
        assert_eq!(nearest("FromDevice", names), None);
        assert_eq!(
            nearest("x", ["a", "b"]),
            None,
            "a one-letter name is no typo of another"
        );
    }
}
