//! The request context: condition keys and their values for one request.
//!
//! Key names are case-insensitive (IAM rule), so they are stored lower-cased. Every key holds a
//! list; single-valued keys hold one element. A request carries a dozen keys at most, so they
//! live in a vector searched in order: no hashing, and one allocation per key rather than a
//! table's worth, on the path every authorized request takes.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct Context {
    values: Vec<(String, Vec<String>)>,
    attributes: BTreeMap<String, String>,
}

impl Context {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.insert(key, vec![value.into()])
    }

    pub fn set_many(&mut self, key: &str, values: impl IntoIterator<Item = String>) -> &mut Self {
        self.insert(key, values.into_iter().collect())
    }

    fn insert(&mut self, key: &str, values: Vec<String>) -> &mut Self {
        match self.position(key) {
            Some(index) => self.values[index].1 = values,
            None => self.values.push((key.to_ascii_lowercase(), values)),
        }
        self
    }

    /// Request values no condition key matches, kept exactly as sent (case included), for
    /// callers' own rules such as KMS grant constraints on the encryption context.
    pub fn set_attribute(&mut self, name: &str, value: &str) -> &mut Self {
        self.attributes.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn attributes(&self) -> &BTreeMap<String, String> {
        &self.attributes
    }

    pub fn remove(&mut self, key: &str) {
        if let Some(index) = self.position(key) {
            self.values.swap_remove(index);
        }
    }

    /// The values of `key`; `None` when the request has no such key.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.position(key)
            .map(|index| self.values[index].1.as_slice())
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.values
            .iter()
            .position(|(name, _)| name.eq_ignore_ascii_case(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_case_insensitive_and_replaced_not_repeated() {
        let mut context = Context::new();
        context.set("aws:SourceIp", "192.0.2.1");
        context.set("AWS:SOURCEIP", "192.0.2.2");
        assert_eq!(
            context.get("aws:sourceip"),
            Some(&["192.0.2.2".to_owned()][..])
        );
        context.set_many(
            "kms:EncryptionContextKeys",
            ["a".to_owned(), "b".to_owned()],
        );
        assert_eq!(
            context.get("kms:encryptioncontextkeys").map(<[_]>::len),
            Some(2)
        );
        context.remove("Aws:SourceIP");
        assert_eq!(context.get("aws:SourceIp"), None);
        assert!(context.get("kms:EncryptionContextKeys").is_some());
    }
}
