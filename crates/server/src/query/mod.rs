//! The AWS Query protocol (IAM and STS): parameters form-encoded in the body (or the query
//! string), `Action=<Operation>`, XML responses, and XML errors in an `ErrorResponse`.

pub mod ec2;
pub mod iam;
pub mod sts;
pub mod xml;

use std::collections::HashMap;

/// A request's parameters, from the query string and the form body.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(query: Option<&str>, body: &[u8]) -> Self {
        let mut params = HashMap::new();
        for source in [query.unwrap_or(""), &String::from_utf8_lossy(body)] {
            for pair in source.split('&').filter(|pair| !pair.is_empty()) {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                params.insert(form_decode(name), form_decode(value));
            }
        }
        Self(params)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A Query-protocol list: `NAME.1`, `NAME.2`, ... up to the first missing index.
    pub fn list(&self, name: &str) -> Vec<String> {
        (1..)
            .map_while(|n| self.get(&format!("{name}.{n}")).map(str::to_owned))
            .collect()
    }

    /// The parameters as a JSON object, for the audit record.
    pub fn to_json_without(&self, skip: &[&str]) -> serde_json::Value {
        let members = self
            .0
            .iter()
            .filter(|(name, _)| !skip.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), serde_json::Value::String(value.clone())))
            .collect();
        serde_json::Value::Object(members)
    }

    /// A parameter the operation cannot do without.
    pub fn required(&self, name: &str) -> Result<&str, xml::QueryError> {
        self.get(name).filter(|value| !value.is_empty()).ok_or_else(|| {
            xml::QueryError::validation(format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                lower_first(name)
            ))
        })
    }
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' => {
                if let Some(byte) = text
                    .get(index + 1..index + 3)
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    out.push(byte);
                    index += 3;
                    continue;
                }
                out.push(b'%');
            }
            other => out.push(other),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|first| first.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode_like_browsers_encode_them() {
        let params = Params::parse(
            Some("Version=2010-05-08"),
            b"Action=PutUserPolicy&PolicyDocument=%7B%22a%22%3A+1%7D&UserName=al%2Bice",
        );
        assert_eq!(params.get("Action"), Some("PutUserPolicy"));
        assert_eq!(params.get("PolicyDocument"), Some("{\"a\": 1}"));
        assert_eq!(params.get("UserName"), Some("al+ice"));
        assert_eq!(params.get("Version"), Some("2010-05-08"));
        assert!(params.required("Missing").is_err());
    }
}
