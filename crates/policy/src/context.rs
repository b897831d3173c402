//! The request context: condition keys and their values for one request.
//!
//! Key names are case-insensitive (IAM rule), so they are stored lower-cased. Every key holds a
//! list; single-valued keys hold one element.

use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Default)]
pub struct Context {
    values: HashMap<String, Vec<String>>,
    attributes: BTreeMap<String, String>,
}

impl Context {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.values
            .insert(key.to_ascii_lowercase(), vec![value.into()]);
        self
    }

    pub fn set_many(&mut self, key: &str, values: impl IntoIterator<Item = String>) -> &mut Self {
        self.values
            .insert(key.to_ascii_lowercase(), values.into_iter().collect());
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
        self.values.remove(&key.to_ascii_lowercase());
    }

    /// The values of `key`; `None` when the request has no such key.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        // Policies store their condition keys lower-cased, so lookups rarely allocate.
        let values = if key.bytes().any(|b| b.is_ascii_uppercase()) {
            self.values.get(&key.to_ascii_lowercase())
        } else {
            self.values.get(key)
        };
        values.map(Vec::as_slice)
    }
}
