//! Wildcard matching as IAM uses it: `*` matches any run of characters (including none), `?`
//! exactly one. Actions compare case-insensitively; resources and strings case-sensitively.

pub(crate) fn wildcard(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
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
    pattern[p..].iter().all(|c| *c == '*')
}

pub(crate) fn action(pattern: &str, action: &str) -> bool {
    wildcard(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
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
