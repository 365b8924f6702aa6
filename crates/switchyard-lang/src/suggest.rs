//! "Did you mean" suggestions for near-miss names.

/// Levenshtein distance, case-insensitive (class names are often mistyped
/// only in case: `counter` for `Counter`), or `None` once it must exceed
/// `limit` (a row's minimum never decreases).
fn distance(a: &[char], b: &str, limit: usize) -> Option<usize> {
    let b: Vec<char> = b.to_lowercase().chars().collect();
    if a.len().abs_diff(b.len()) > limit {
        return None;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        if cur.iter().min().is_some_and(|&m| m > limit) {
            return None;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    Some(prev[b.len()]).filter(|&d| d <= limit)
}

/// The candidate closest to `name`, if it is close enough to be a likely
/// typo. Candidates whose length alone rules them out cost nothing.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower: Vec<char> = name.to_lowercase().chars().collect();
    let len = lower.len();
    let limit = (len / 3).max(2).min(len.saturating_sub(1));
    candidates
        .into_iter()
        .filter_map(|c| Some((distance(&lower, c, limit)?, c)))
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
