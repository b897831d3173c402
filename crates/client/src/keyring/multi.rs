//! The multi-keyring (framework/multi-keyring.md): an optional generator makes the data key and
//! every child wraps it too, so any one of them can decrypt.

use super::{DecryptionMaterials, EncryptionMaterials, Keyring};
use crate::error::{Error, Result};
use crate::header::EncryptedDataKey;

pub struct MultiKeyring {
    generator: Option<Box<dyn Keyring>>,
    children: Vec<Box<dyn Keyring>>,
}

impl std::fmt::Debug for MultiKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiKeyring")
            .field("generator", &self.generator.is_some())
            .field("children", &self.children.len())
            .finish()
    }
}

impl MultiKeyring {
    pub fn new(
        generator: Option<Box<dyn Keyring>>,
        children: Vec<Box<dyn Keyring>>,
    ) -> Result<Self> {
        if generator.is_none() && children.is_empty() {
            return Err(Error::Config(
                "a multi-keyring needs a generator or at least one child".into(),
            ));
        }
        Ok(Self {
            generator,
            children,
        })
    }
}

impl Keyring for MultiKeyring {
    fn on_encrypt(&self, materials: &mut EncryptionMaterials) -> Result<()> {
        match &self.generator {
            Some(generator) => {
                generator.on_encrypt(materials)?;
                if materials.data_key.is_none() {
                    return Err(Error::Keyring("the generator produced no data key".into()));
                }
            }
            None if materials.data_key.is_none() => {
                return Err(Error::Keyring(
                    "a multi-keyring without a generator needs a data key".into(),
                ));
            }
            None => {}
        }
        for child in &self.children {
            child.on_encrypt(materials)?;
        }
        Ok(())
    }

    fn on_decrypt(
        &self,
        materials: &mut DecryptionMaterials,
        keys: &[EncryptedDataKey],
    ) -> Result<()> {
        let mut failures = Vec::new();
        for keyring in self.generator.iter().chain(self.children.iter()) {
            match keyring.on_decrypt(materials, keys) {
                Ok(()) if materials.data_key.is_some() => return Ok(()),
                Ok(()) => {}
                Err(error) => failures.push(error.to_string()),
            }
        }
        Err(Error::NoDecryptableKey(format!(
            ": {}",
            failures.join("; ")
        )))
    }
}
