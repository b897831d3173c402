//! The live side of custom key stores: which stores are connected, with their logged-in
//! tokens. The records (names, token labels, desired states) live in the metadata store; this
//! registry is what the cryptographic path asks, without a store read.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use atrest_hsm::pkcs11::TokenKeys;

#[derive(Default)]
pub(crate) struct KeyStores {
    /// The PKCS#11 module every custom key store's token is reached through: the server's
    /// `--pkcs11-module`. An API caller names a token, never a library to load into the server.
    module: Option<PathBuf>,
    /// The only directory `KeyStorePassword=file:PATH` may name (the server's
    /// `--key-store-pin-dir`); without one, `file:` references are refused. An API caller must
    /// not make the server open paths of its choosing.
    pin_dir: Option<PathBuf>,
    connected: RwLock<HashMap<String, Arc<TokenKeys>>>,
    /// Serialises administrative changes, so name and token uniqueness checks hold.
    admin: Mutex<()>,
}

impl KeyStores {
    pub(crate) fn new(module: Option<PathBuf>) -> Self {
        Self {
            module,
            ..Self::default()
        }
    }

    pub(crate) fn module(&self) -> Option<&PathBuf> {
        self.module.as_ref()
    }

    pub(crate) fn set_pin_dir(&mut self, dir: Option<PathBuf>) {
        self.pin_dir = dir;
    }

    pub(crate) fn pin_dir(&self) -> Option<&PathBuf> {
        self.pin_dir.as_ref()
    }

    pub(crate) fn connection(&self, id: &str) -> Option<Arc<TokenKeys>> {
        self.connected
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(id)
            .cloned()
    }

    pub(crate) fn is_connected(&self, id: &str) -> bool {
        self.connected
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains_key(id)
    }

    pub(crate) fn insert(&self, id: &str, keys: TokenKeys) {
        self.connected
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(id.to_owned(), Arc::new(keys));
    }

    /// Drops the connection; its sessions close once no request still holds it.
    pub(crate) fn remove(&self, id: &str) {
        self.connected
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(id);
    }

    pub(crate) fn admin(&self) -> MutexGuard<'_, ()> {
        self.admin
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
