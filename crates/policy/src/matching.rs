//! Wildcard matching as IAM uses it: `*` matches any run of characters (including none), `?`
//! exactly one character. Actions compare case-insensitively; resources and strings
//! case-sensitively.

pub fn wildcard(pattern: &str, text: &str) -> bool {
    if pattern.is_ascii() && text.is_ascii() {
        return matches(pattern.as_bytes(), text.as_bytes(), |a, b| a == b);
    }
    // `?` is one character, not one byte: a Deny on `report-?.pdf` must cover `report-é.pdf`.
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    matches(&pattern, &text, |a, b| a == b)
}

pub(crate) fn action(pattern: &str, action: &str) -> bool {
    if pattern.is_ascii() && action.is_ascii() {
        return matches(pattern.as_bytes(), action.as_bytes(), |a, b| {
            a.eq_ignore_ascii_case(&b)
        });
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let action: Vec<char> = action.chars().collect();
    matches(&pattern, &action, |a, b| a.eq_ignore_ascii_case(&b))
}

/// The two wildcard characters, in either alphabet `matches` runs over.
trait Symbol: Copy {
    fn is_any_one(self) -> bool;
    fn is_any_run(self) -> bool;
}

impl Symbol for u8 {
    fn is_any_one(self) -> bool {
        self == b'?'
    }
    fn is_any_run(self) -> bool {
        self == b'*'
    }
}

impl Symbol for char {
    fn is_any_one(self) -> bool {
        self == '?'
    }
    fn is_any_run(self) -> bool {
        self == '*'
    }
}

/// Greedy matching with backtracking to the last `*`; linear in practice, no allocation.
/// Runs over bytes when both sides are ASCII (the common case: names and ARNs) and over
/// characters otherwise, so a `?` always stands for exactly one character.
fn matches<S: Symbol>(pattern: &[S], text: &[S], equal: impl Fn(S, S) -> bool) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p].is_any_one() || equal(pattern[p], text[t])) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p].is_any_run() {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| c.is_any_run())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wildcards_follow_iam_rules() {
        assert!(wildcard("*", ""));
        assert!(wildcard("kms:Gen*", "kms:GenerateDataKey"));
        assert!(wildcard("kms:*Key", "kms:CreateKey"));
        assert!(wildcard("a?c", "abc"));
        assert!(!wildcard("a?c", "ac"));
        assert!(wildcard(
            "arn:aws:kms:*:111122223333:key/*",
            "arn:aws:kms:us-east-1:111122223333:key/k"
        ));
        assert!(!wildcard(
            "arn:aws:kms:*:111122223333:key/*",
            "arn:aws:kms:us-east-1:999999999999:key/k"
        ));
        assert!(action("KMS:encrypt", "kms:Encrypt"));
        assert!(!wildcard("Prod", "prod"));
    }

    #[test]
    fn a_question_mark_is_one_character_not_one_byte() {
        assert!(wildcard("alpha/report-?.pdf", "alpha/report-é.pdf"));
        assert!(wildcard("arn:aws:s3:::b/?", "arn:aws:s3:::b/😀"));
        assert!(!wildcard("arn:aws:s3:::b/??", "arn:aws:s3:::b/😀"));
        assert!(wildcard("*é?", "aéb"));
        assert!(!wildcard("é", "e"));
        assert!(action("s3:Get?", "s3:Getß"));
    }

    /// The reference: a pattern becomes the regular language it denotes, matched by dynamic
    /// programming over characters (independent of the backtracking loop above).
    fn reference(pattern: &[char], text: &[char]) -> bool {
        let mut table = vec![vec![false; text.len() + 1]; pattern.len() + 1];
        table[0][0] = true;
        for p in 1..=pattern.len() {
            table[p][0] = table[p - 1][0] && pattern[p - 1] == '*';
            for t in 1..=text.len() {
                table[p][t] = match pattern[p - 1] {
                    '*' => table[p - 1][t] || table[p][t - 1],
                    '?' => table[p - 1][t - 1],
                    c => table[p - 1][t - 1] && c == text[t - 1],
                };
            }
        }
        table[pattern.len()][text.len()]
    }

    proptest! {
        #[test]
        fn matches_characters_for_any_unicode(
            text in "[a-c\u{e9}\u{4e2d}\u{1f600}/.-]{0,8}",
            pattern in "[a-c\u{e9}\u{4e2d}\u{1f600}*?/]{0,8}",
        ) {
            let expected = reference(
                &pattern.chars().collect::<Vec<_>>(),
                &text.chars().collect::<Vec<_>>(),
            );
            prop_assert_eq!(wildcard(&pattern, &text), expected);
        }

        #[test]
        fn each_character_matches_exactly_one_question_mark(text in "\\PC{0,12}") {
            let pattern: String = text.chars().map(|_| '?').collect();
            prop_assert!(wildcard(&pattern, &text));
            let one_more = pattern.clone() + "?";
            prop_assert!(!wildcard(&one_more, &text));
        }
    }
}
