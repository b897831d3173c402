//! Policy variables (IAM User Guide, "IAM policy elements: Variables and tags"): `${key}` in a
//! Resource or a Condition value stands for the request's value of the condition key `key`,
//! as in `arn:aws:s3:::bucket/home/${aws:username}/*`.
//!
//! - Only policies with `"Version": "2012-10-17"` have variables; in older ones `${...}` is text.
//! - `${key, 'default'}` gives the value to use when the request has no such key.
//! - A key the request lacks (with no default), or one with several values, cannot be
//!   substituted, and the element holding it matches nothing.
//! - The special forms `${*}`, `${?}` and `${$}` stand for those characters literally. `$` is
//!   substituted; `*` and `?` would turn into wildcards here, so an element using them matches
//!   nothing rather than more than it says.

use crate::Context;

/// Whether `text` holds a variable reference.
pub(crate) fn has_variables(text: &str) -> bool {
    text.contains("${")
}

/// The (lower-cased) condition keys `text` refers to, so a caller knows which facts to build.
pub(crate) fn referenced_keys(text: &str) -> impl Iterator<Item = String> + '_ {
    references(text).filter_map(|reference| match reference {
        Reference::Key { key, .. } => Some(key.to_ascii_lowercase()),
        Reference::Literal(_) | Reference::Malformed => None,
    })
}

/// `text` with every variable replaced by its value in `context`; `None` when one cannot be.
pub(crate) fn substitute(text: &str, context: &Context) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}')?;
        match parse(&after[..end]) {
            Reference::Key { key, default } => {
                let value = match context.get(key) {
                    Some([single]) => single.as_str(),
                    Some(_) => return None, // several values, or none: not substitutable
                    None => default?,
                };
                out.push_str(value);
            }
            Reference::Literal('$') => out.push('$'),
            Reference::Literal(_) | Reference::Malformed => return None,
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

enum Reference<'a> {
    Key {
        key: &'a str,
        default: Option<&'a str>,
    },
    Literal(char),
    Malformed,
}

fn references(text: &str) -> impl Iterator<Item = Reference<'_>> {
    text.split("${").skip(1).map(|part| {
        part.find('}')
            .map_or(Reference::Malformed, |end| parse(&part[..end]))
    })
}

/// The inside of `${...}`: `key`, `key, 'default'`, or one of `*`, `?`, `$`.
fn parse(inner: &str) -> Reference<'_> {
    match inner {
        "*" => return Reference::Literal('*'),
        "?" => return Reference::Literal('?'),
        "$" => return Reference::Literal('$'),
        _ => {}
    }
    let (key, default) = match inner.split_once(',') {
        None => (inner.trim(), None),
        Some((key, default)) => {
            let default = default.trim();
            match default
                .strip_prefix('\'')
                .and_then(|quoted| quoted.strip_suffix('\''))
            {
                Some(value) => (key.trim(), Some(value)),
                None => return Reference::Malformed,
            }
        }
    };
    if key.is_empty() || key.contains(char::is_whitespace) {
        Reference::Malformed
    } else {
        Reference::Key { key, default }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Context {
        let mut context = Context::new();
        context.set("aws:username", "alice");
        context.set_many("aws:CalledVia", ["a".to_owned(), "b".to_owned()]);
        context
    }

    #[test]
    fn variables_take_the_request_values() {
        let context = alice();
        assert_eq!(
            substitute("arn:aws:s3:::b/home/${aws:username}/*", &context).as_deref(),
            Some("arn:aws:s3:::b/home/alice/*")
        );
        // Key names are case-insensitive, as condition keys are.
        assert_eq!(
            substitute("${AWS:UserName}", &context).as_deref(),
            Some("alice")
        );
        assert_eq!(
            substitute("no variables", &context).as_deref(),
            Some("no variables")
        );
    }

    #[test]
    fn a_missing_key_takes_its_default_or_matches_nothing() {
        let context = Context::new();
        assert_eq!(substitute("home/${aws:username}/*", &context), None);
        assert_eq!(
            substitute("home/${aws:username, 'anonymous'}/*", &context).as_deref(),
            Some("home/anonymous/*")
        );
        // A present key wins over the default.
        assert_eq!(
            substitute("${aws:username, 'anonymous'}", &alice()).as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn multivalued_keys_special_forms_and_malformed_references() {
        let context = alice();
        assert_eq!(substitute("${aws:CalledVia}", &context), None);
        assert_eq!(substitute("cost${$}", &context).as_deref(), Some("cost$"));
        assert_eq!(substitute("a${*}b", &context), None);
        assert_eq!(substitute("${aws:username", &context), None);
        assert_eq!(substitute("${aws:username, anonymous}", &context), None);
        let keys: Vec<String> = referenced_keys("${aws:UserName}/${*}/${s3:prefix, 'x'}").collect();
        assert_eq!(keys, ["aws:username", "s3:prefix"]);
    }
}
