//! Wildcard matching as IAM uses it: `*` matches any run of characters (including none), `?`
//! exactly one. Actions compare case-insensitively; resources and strings case-sensitively.

pub fn wildcard(pattern: &str, text: &str) -> bool {
    matches(pattern.as_bytes(), text.as_bytes(), |a, b| a == b)
}

pub(crate) fn action(pattern: &str, action: &str) -> bool {
    matches(pattern.as_bytes(), action.as_bytes(), |a, b| {
        a.eq_ignore_ascii_case(&b)
    })
}

/// Greedy matching with backtracking to the last `*`; linear in practice, no allocation.
/// Works on bytes: a `?` in a pattern matches one byte, which is one character for the ASCII
/// names and ARNs policies match against.
fn matches(pattern: &[u8], text: &[u8], equal: impl Fn(u8, u8) -> bool) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || equal(pattern[p], text[t])) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
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
    pattern[p..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
