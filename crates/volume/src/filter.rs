//! EC2 `Filter.N` matching: a resource matches when, for every filter, one of its values
//! matches one of the resource's values for that name. Values may use EC2's wildcards, `*`
//! (any run) and `?` (one character), matched as IAM matches them.

use atrest_policy::wildcard;

use crate::error::Ec2Error;

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

/// Whether `fields` (name → the resource's values for it, `None` for an unknown name)
/// satisfies every filter.
pub fn matches(
    filters: &[Filter],
    fields: impl Fn(&str) -> Option<Vec<String>>,
) -> Result<bool, Ec2Error> {
    for filter in filters {
        let Some(actual) = fields(&filter.name) else {
            return Err(Ec2Error::invalid_parameter(format!(
                "The filter '{}' is invalid",
                filter.name
            )));
        };
        let hit = filter
            .values
            .iter()
            .any(|pattern| actual.iter().any(|value| wildcard(pattern, value)));
        if !hit {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Tag fields shared by volumes and snapshots: `tag:<key>`, `tag-key`, `tag-value`.
pub fn tag_field(name: &str, tags: &[(String, String)]) -> Option<Vec<String>> {
    if let Some(key) = name.strip_prefix("tag:") {
        return Some(
            tags.iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .collect(),
        );
    }
    match name {
        "tag-key" => Some(tags.iter().map(|(k, _)| k.clone()).collect()),
        "tag-value" => Some(tags.iter().map(|(_, v)| v.clone()).collect()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_ec2_documents() {
        assert!(wildcard("vol-*", "vol-0123"));
        assert!(wildcard("a?c", "abc"));
        assert!(!wildcard("a?c", "abbc"));
        assert!(wildcard("*", ""));
        assert!(wildcard("*b*d", "abcd"));
        assert!(!wildcard("available", "in-use"));
    }

    #[test]
    fn every_filter_must_match_and_unknown_names_are_refused() {
        let tags = vec![("team".to_owned(), "db".to_owned())];
        let fields = |name: &str| match name {
            "status" => Some(vec!["available".to_owned()]),
            other => tag_field(other, &tags),
        };
        let filter = |name: &str, value: &str| Filter {
            name: name.into(),
            values: vec![value.into()],
        };
        assert!(
            matches(
                &[filter("status", "available"), filter("tag:team", "d*")],
                fields
            )
            .expect("valid")
        );
        assert!(!matches(&[filter("status", "in-use")], fields).expect("valid"));
        assert!(matches(&[filter("bogus", "x")], fields).is_err());
    }
}
