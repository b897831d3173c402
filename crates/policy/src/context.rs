//! The request context: condition keys and their values for one request.
//!
//! Key names are case-insensitive (IAM rule), so they are stored lower-cased. Every key holds a
//! list; single-valued keys hold one element.

use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
pub struct Context {
    values: HashMap<String, Vec<String>>,
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

    pub fn remove(&mut self, key: &str) {
        self.values.remove(&key.to_ascii_lowercase());
    }

    /// The values of `key`; `None` when the request has no such key.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.values
            .get(&key.to_ascii_lowercase())
            .map(Vec::as_slice)
    }
}
