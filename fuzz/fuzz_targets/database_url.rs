//! Database connection strings (`atrest fields --database-url`): taking libpq's TLS settings out
//! of arbitrary text, in URI or key=value form, never panics; what is left holds no TLS setting
//! (splitting it again changes nothing), and any settings found resolve or are refused cleanly.
#![no_main]

use atrest_fields::sslmode::{DefaultFiles, TlsSettings, resolve, split};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((rest, settings)) = split(text) {
        let (again, none) = split(&rest).expect("what split left splits again");
        assert_eq!(again, rest);
        assert_eq!(none, TlsSettings::default());
        let _ = resolve(settings.clone(), DefaultFiles::default());
        let home = DefaultFiles {
            root: Some("/home/u/.postgresql/root.crt".into()),
            client_cert: Some("/home/u/.postgresql/postgresql.crt".into()),
            client_key: Some("/home/u/.postgresql/postgresql.key".into()),
        };
        let _ = resolve(settings, home);
    }
});
