//! The NBD server's side of a whole session (handshake, options, transmission requests) on
//! arbitrary client bytes, against a real encrypted disk: it must answer or hang up, never
//! panic, and never touch bytes outside the export.
#![no_main]

use std::sync::{Arc, OnceLock};

use atrest_crypto::secret::SecretBytes;
use atrest_volume::nbd::{Exports, serve_connection};
use atrest_volume::{Disk, SectorCipher, WriteGate};
use libfuzzer_sys::fuzz_target;

const SIZE: u64 = 256 * 1024;

struct OneExport(Arc<Disk>);

impl Exports for OneExport {
    fn export(&self, name: &str) -> Option<Arc<Disk>> {
        (name == "vol").then(|| Arc::clone(&self.0))
    }

    fn export_names(&self) -> Vec<String> {
        vec!["vol".to_owned()]
    }
}

fn exports() -> &'static OneExport {
    static EXPORTS: OnceLock<OneExport> = OnceLock::new();
    EXPORTS.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("atrest-fuzz-nbd-{}.img", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .expect("backing file");
        file.set_len(SIZE).expect("size");
        let key = SecretBytes::new((0..64).collect());
        let cipher = SectorCipher::new(&key).expect("key");
        OneExport(Arc::new(Disk::new(file, SIZE, cipher, Arc::new(WriteGate::default()))))
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = serve_connection(data, std::io::sink(), exports());
});
