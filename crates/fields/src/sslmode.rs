//! libpq's TLS settings in a PostgreSQL connection string (`sslmode`, `sslrootcert`, `sslcert`,
//! `sslkey`, and their `PGSSL*` environment variables), so that a `DATABASE_URL` psql accepts
//! means the same thing here. tokio-postgres knows only `disable|prefer|require` and leaves
//! certificates to its TLS connector; [`split`] takes these settings out of the string before
//! tokio-postgres reads the rest, and [`resolve`] turns them into what the connector must check
//! and send.
//!
//! The meanings follow libpq's (<https://www.postgresql.org/docs/current/libpq-ssl.html>,
//! "SSL Mode Descriptions", and `sslrootcert` in "Parameter Key Words"):
//! - `disable`: no TLS. `allow` and `prefer` (the default): TLS when the server offers it.
//!   `require`, `verify-ca`, `verify-full`: TLS or no connection.
//! - `verify-ca` checks the server's certificate chain against the root certificates;
//!   `verify-full` also checks that the certificate names the host connected to.
//! - Weaker modes check nothing, unless a root certificate is given (or `~/.postgresql/root.crt`
//!   exists): then they check the chain, as `verify-ca` does.
//! - `sslrootcert=system` trusts the operating system's roots and, as in libpq 16, makes
//!   `verify-full` the default and refuses weaker modes.
//! - `sslcert`/`sslkey` (default `~/.postgresql/postgresql.crt` and `.key`) are the client
//!   certificate and key sent when the server asks (`cert` authentication). Unlike libpq, a
//!   certificate named but missing is an error rather than silently not sent.
//!
//! Pure string handling (no I/O), so it is fuzzed: `fuzz/fuzz_targets/database_url.rs`.

use std::path::PathBuf;

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// The name libpq gives the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    fn parse(value: &str) -> Result<Self, String> {
        Ok(match value {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                    "invalid sslmode {other:?}: expected disable, allow, prefer, require, \
                     verify-ca or verify-full"
                ));
            }
        })
    }
}

/// Where the trusted root certificates come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of one or more certificates.
    File(PathBuf),
    /// The operating system's trust store (`sslrootcert=system`).
    System,
}

impl RootCert {
    fn parse(value: &str) -> Self {
        if value == "system" {
            Self::System
        } else {
            Self::File(PathBuf::from(value))
        }
    }
}

/// The TLS settings a connection string (or the environment) gave; `None` means unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: Option<SslMode>,
    pub root_cert: Option<RootCert>,
    /// `sslcert`: the client's certificate chain (PEM), for `cert` authentication.
    pub client_cert: Option<PathBuf>,
    /// `sslkey`: the client certificate's private key (PEM).
    pub client_key: Option<PathBuf>,
}

impl TlsSettings {
    /// Fills what the connection string left unset from libpq's environment variables
    /// (`PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`), read through `var` so that tests
    /// need no process state.
    pub fn or_env(mut self, var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        if self.mode.is_none()
            && let Some(value) = var("PGSSLMODE")
        {
            self.mode =
                Some(SslMode::parse(&value).map_err(|error| format!("PGSSLMODE: {error}"))?);
        }
        if self.root_cert.is_none()
            && let Some(value) = var("PGSSLROOTCERT")
        {
            self.root_cert = Some(RootCert::parse(&value));
        }
        if self.client_cert.is_none() {
            self.client_cert = var("PGSSLCERT").map(PathBuf::from);
        }
        if self.client_key.is_none() {
            self.client_key = var("PGSSLKEY").map(PathBuf::from);
        }
        Ok(self)
    }

    /// Records the pair if `key` is one of the TLS settings (`value` is read only then, so a
    /// URI's other parameters are not decoded here); `false` leaves it to tokio-postgres.
    fn take(
        &mut self,
        key: &str,
        value: impl FnOnce() -> Result<String, String>,
    ) -> Result<bool, String> {
        match key {
            "sslmode" => self.mode = Some(SslMode::parse(&value()?)?),
            "sslrootcert" => self.root_cert = Some(RootCert::parse(&value()?)),
            "sslcert" => self.client_cert = Some(value()?.into()),
            "sslkey" => self.client_key = Some(value()?.into()),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Whether TLS is negotiated: the three choices tokio-postgres has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiation {
    Disable,
    Prefer,
    Require,
}

/// What the TLS connector checks of the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Nothing: the connection is encrypted against eavesdroppers, not against a server in the
    /// middle (libpq's `prefer` and `require` without a root certificate).
    Nothing,
    /// The chain up to one of these roots, whatever host it names (`verify-ca`).
    Chain(RootCert),
    /// The chain, and that the certificate names the host (`verify-full`).
    ChainAndName(RootCert),
}

/// A client certificate chain and its key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The effective TLS policy of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPolicy {
    pub negotiation: Negotiation,
    pub verify: Verify,
    /// Sent when the server asks for a client certificate.
    pub identity: Option<ClientIdentity>,
}

/// libpq's files in `~/.postgresql`, each given only when it exists (the caller looks; this
/// module does no I/O).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DefaultFiles {
    /// `root.crt`.
    pub root: Option<PathBuf>,
    /// `postgresql.crt`.
    pub client_cert: Option<PathBuf>,
    /// `postgresql.key`.
    pub client_key: Option<PathBuf>,
}

/// Resolves settings into a policy as libpq does, with `defaults` standing in for what the
/// settings leave unset.
pub fn resolve(settings: TlsSettings, defaults: DefaultFiles) -> Result<TlsPolicy, String> {
    let system = settings.root_cert == Some(RootCert::System);
    let mode = match settings.mode {
        Some(mode) if system && mode < SslMode::VerifyFull => {
            return Err(format!(
                "sslmode={} is too weak for sslrootcert=system: use sslmode=verify-full",
                mode.as_str()
            ));
        }
        Some(mode) => mode,
        None if system => SslMode::VerifyFull,
        None => SslMode::Prefer,
    };
    let root = settings.root_cert.or(defaults.root.map(RootCert::File));
    let negotiation = match mode {
        SslMode::Disable => Negotiation::Disable,
        SslMode::Allow | SslMode::Prefer => Negotiation::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Negotiation::Require,
    };
    let verify = match (mode, root) {
        (SslMode::Disable, _) => Verify::Nothing,
        (SslMode::VerifyFull, Some(root)) => Verify::ChainAndName(root),
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(format!(
                "sslmode={} needs root certificates to check the server against: set \
                 sslrootcert=FILE (PEM), sslrootcert=system, or create ~/.postgresql/root.crt",
                mode.as_str()
            ));
        }
        (_, Some(root)) => Verify::Chain(root),
        (_, None) => Verify::Nothing,
    };
    // A client certificate is sent with its key: the key defaults to ~/.postgresql's only
    // when the certificate is given, and both default only together.
    let identity = match (settings.client_cert, settings.client_key) {
        _ if mode == SslMode::Disable => None,
        (Some(cert), Some(key)) => Some(ClientIdentity { cert, key }),
        (Some(cert), None) => match defaults.client_key {
            Some(key) => Some(ClientIdentity { cert, key }),
            None => {
                return Err(format!(
                    "sslcert {} is given without its private key: set sslkey=FILE",
                    cert.display()
                ));
            }
        },
        (None, Some(key)) => {
            return Err(format!(
                "sslkey {} is given without its certificate: set sslcert=FILE",
                key.display()
            ));
        }
        (None, None) => match (defaults.client_cert, defaults.client_key) {
            (Some(cert), Some(key)) => Some(ClientIdentity { cert, key }),
            _ => None,
        },
    };
    Ok(TlsPolicy {
        negotiation,
        verify,
        identity,
    })
}

/// Takes `sslmode`, `sslrootcert`, `sslcert` and `sslkey` out of a connection string, in either
/// of libpq's forms: a URI (`postgres://` or `postgresql://`, settings in its query,
/// percent-encoded) or `key=value` pairs (values optionally single-quoted, with `\` escapes).
/// Returns the rest, for tokio-postgres, and the settings.
pub fn split(connection_string: &str) -> Result<(String, TlsSettings), String> {
    let is_uri = ["postgres://", "postgresql://"]
        .iter()
        .any(|scheme| connection_string.starts_with(scheme));
    if is_uri {
        split_uri(connection_string)
    } else {
        split_key_values(connection_string)
    }
}

fn split_uri(uri: &str) -> Result<(String, TlsSettings), String> {
    let Some((base, query)) = uri.split_once('?') else {
        return Ok((uri.to_string(), TlsSettings::default()));
    };
    let mut settings = TlsSettings::default();
    let mut kept = Vec::new();
    for parameter in query.split('&') {
        let taken = match parameter.split_once('=') {
            Some((key, value)) => settings.take(key, || percent_decode(value))?,
            None => false,
        };
        if !taken {
            kept.push(parameter);
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, settings))
}

/// Decodes `%XX` escapes (RFC 3986, section 2.1); the result must be UTF-8.
fn percent_decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let escape = bytes
                .get(index + 1..index + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("invalid percent-encoding in {value:?}"))?;
            out.push(escape);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{value:?} does not decode to UTF-8"))
}

fn split_key_values(text: &str) -> Result<(String, TlsSettings), String> {
    let mut settings = TlsSettings::default();
    let mut kept = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let (key, value, raw, after) = next_pair(rest)?;
        if !settings.take(key, || Ok(value))? {
            kept.push(raw);
        }
        rest = after.trim_start();
    }
    if settings == TlsSettings::default() {
        return Ok((text.to_string(), settings));
    }
    // A leading space keeps the rest in key=value form even if its first pair now starts like a
    // URI (tokio-postgres, as libpq, decides the form by the first characters).
    Ok((format!(" {}", kept.join(" ")), settings))
}

/// One `key = value` pair at the start of `text` (no leading whitespace): the key, the unquoted
/// value, the pair's original text, and what follows it.
fn next_pair(text: &str) -> Result<(&str, String, &str, &str), String> {
    let key_end = text
        .find(|c: char| c == '=' || c.is_whitespace())
        .unwrap_or(text.len());
    let key = &text[..key_end];
    let after_key = text[key_end..].trim_start();
    let Some(after_equals) = after_key.strip_prefix('=') else {
        return Err(format!(
            "missing \"=\" after {key:?} in the connection string"
        ));
    };
    let value_text = after_equals.trim_start();
    let mut value = String::new();
    let mut chars = value_text.char_indices();
    let quoted = value_text.starts_with('\'');
    if quoted {
        chars.next();
    }
    let mut end = None;
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => value.push(escaped),
                None => break,
            },
            '\'' if quoted => {
                end = Some(at + 1);
                break;
            }
            c if !quoted && c.is_whitespace() => {
                end = Some(at);
                break;
            }
            c => value.push(c),
        }
    }
    let end = match end {
        Some(end) => end,
        None if quoted => {
            return Err(format!(
                "unterminated quoted value for {key:?} in the connection string"
            ));
        }
        None => value_text.len(),
    };
    let consumed = text.len() - value_text.len() + end;
    Ok((key, value, &text[..consumed], &text[consumed..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: Option<SslMode>, root: Option<RootCert>) -> TlsSettings {
        TlsSettings {
            mode,
            root_cert: root,
            ..TlsSettings::default()
        }
    }

    fn home_root() -> DefaultFiles {
        DefaultFiles {
            root: Some("/home/u/.postgresql/root.crt".into()),
            ..DefaultFiles::default()
        }
    }

    #[test]
    fn uri_settings_leave_the_rest_untouched() {
        let (rest, found) = split(
            "postgres://u:p%40ss@db.example:5432/app?application_name=x&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fpg%20ca.pem&connect_timeout=5&sslcert=c.pem&sslkey=%2Fk",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p%40ss@db.example:5432/app?application_name=x&connect_timeout=5"
        );
        assert_eq!(
            found,
            TlsSettings {
                client_cert: Some("c.pem".into()),
                client_key: Some("/k".into()),
                ..settings(
                    Some(SslMode::VerifyFull),
                    Some(RootCert::File("/etc/pg ca.pem".into()))
                )
            }
        );
        let (rest, found) = split("postgresql://db/app?sslmode=require").unwrap();
        assert_eq!(rest, "postgresql://db/app");
        assert_eq!(found, settings(Some(SslMode::Require), None));
        let (rest, found) = split("postgres://db/app").unwrap();
        assert_eq!(
            (rest.as_str(), found),
            ("postgres://db/app", TlsSettings::default())
        );
    }

    #[test]
    fn key_value_settings_honour_quotes_and_escapes() {
        // A quote ends a quoted value; libpq has no doubled-quote escape, so this is an error.
        assert!(split("host=db password='it''s' dbname=app").is_err());
        let (rest, found) = split(
            "host=db  sslmode = verify-ca password='it\\'s x' sslrootcert='/a b/c.pem' dbname=app",
        )
        .unwrap();
        assert_eq!(rest, " host=db password='it\\'s x' dbname=app");
        assert_eq!(
            found,
            settings(
                Some(SslMode::VerifyCa),
                Some(RootCert::File("/a b/c.pem".into()))
            )
        );
    }

    #[test]
    fn malformed_strings_get_clear_errors() {
        for (text, wanted) in [
            ("postgres://db?sslmode=verify", "invalid sslmode"),
            ("postgres://db?sslrootcert=%zz", "percent-encoding"),
            ("postgres://db?sslrootcert=%ff", "UTF-8"),
            ("host=db sslmode", "missing \"=\""),
            ("host=db password='open", "unterminated"),
        ] {
            let error = split(text).unwrap_err();
            assert!(error.contains(wanted), "{text}: {error}");
        }
    }

    #[test]
    fn resolution_follows_libpq() {
        let file = || RootCert::File("/ca.pem".into());
        let home = home_root;
        let none = DefaultFiles::default;
        let policy = |mode, root, default| resolve(settings(mode, root), default).unwrap();
        // Default: prefer, nothing checked; with ~/.postgresql/root.crt, the chain.
        assert_eq!(
            policy(None, None, none()),
            TlsPolicy {
                negotiation: Negotiation::Prefer,
                verify: Verify::Nothing,
                identity: None,
            }
        );
        assert_eq!(
            policy(Some(SslMode::Require), None, home()).verify,
            Verify::Chain(RootCert::File("/home/u/.postgresql/root.crt".into()))
        );
        assert_eq!(
            policy(Some(SslMode::Require), Some(file()), none()),
            TlsPolicy {
                negotiation: Negotiation::Require,
                verify: Verify::Chain(file()),
                identity: None,
            }
        );
        assert_eq!(
            policy(Some(SslMode::VerifyFull), Some(file()), home()).verify,
            Verify::ChainAndName(file())
        );
        assert_eq!(
            policy(Some(SslMode::Disable), Some(file()), none()),
            TlsPolicy {
                negotiation: Negotiation::Disable,
                verify: Verify::Nothing,
                identity: None,
            }
        );
        assert_eq!(
            policy(Some(SslMode::Allow), None, none()).negotiation,
            Negotiation::Prefer
        );
        // sslrootcert=system: verify-full by default, weaker modes refused.
        assert_eq!(
            policy(None, Some(RootCert::System), none()),
            TlsPolicy {
                negotiation: Negotiation::Require,
                verify: Verify::ChainAndName(RootCert::System),
                identity: None,
            }
        );
        let weak = resolve(
            settings(Some(SslMode::Require), Some(RootCert::System)),
            none(),
        );
        assert!(weak.unwrap_err().contains("verify-full"));
        // verify-* without roots is refused before any connection is made.
        let rootless = resolve(settings(Some(SslMode::VerifyCa), None), none());
        assert!(rootless.unwrap_err().contains("sslrootcert"));
    }

    #[test]
    fn client_certificates_come_with_their_keys() {
        let identity = |cert: &str, key: &str| {
            Some(ClientIdentity {
                cert: cert.into(),
                key: key.into(),
            })
        };
        let given = |cert: Option<&str>, key: Option<&str>| TlsSettings {
            client_cert: cert.map(PathBuf::from),
            client_key: key.map(PathBuf::from),
            ..TlsSettings::default()
        };
        let home = DefaultFiles {
            root: None,
            client_cert: Some("/h/postgresql.crt".into()),
            client_key: Some("/h/postgresql.key".into()),
        };
        let resolved = |settings, defaults| resolve(settings, defaults).map(|p| p.identity);
        assert_eq!(
            resolved(given(Some("/c"), Some("/k")), DefaultFiles::default()),
            Ok(identity("/c", "/k"))
        );
        // The home directory's pair, whole; its key serves a certificate named alone.
        assert_eq!(
            resolved(given(None, None), home.clone()),
            Ok(identity("/h/postgresql.crt", "/h/postgresql.key"))
        );
        assert_eq!(
            resolved(given(Some("/c"), None), home.clone()),
            Ok(identity("/c", "/h/postgresql.key"))
        );
        let half = DefaultFiles {
            client_key: None,
            ..home.clone()
        };
        assert_eq!(resolved(given(None, None), half), Ok(None));
        // Halves named alone are refused; disable sends nothing.
        let error = resolved(given(Some("/c"), None), DefaultFiles::default()).unwrap_err();
        assert!(error.contains("sslkey"), "{error}");
        let error = resolved(given(None, Some("/k")), home.clone()).unwrap_err();
        assert!(error.contains("sslcert"), "{error}");
        let disabled = TlsSettings {
            mode: Some(SslMode::Disable),
            ..given(Some("/c"), Some("/k"))
        };
        assert_eq!(resolved(disabled, home), Ok(None));
    }

    #[test]
    fn the_environment_fills_only_what_the_string_left_unset() {
        let env = |name: &str| match name {
            "PGSSLMODE" => Some("verify-full".to_string()),
            "PGSSLROOTCERT" => Some("/env.pem".to_string()),
            "PGSSLCERT" => Some("/env.crt".to_string()),
            "PGSSLKEY" => Some("/env.key".to_string()),
            _ => None,
        };
        let filled = TlsSettings::default().or_env(env).unwrap();
        assert_eq!(
            filled,
            TlsSettings {
                client_cert: Some("/env.crt".into()),
                client_key: Some("/env.key".into()),
                ..settings(
                    Some(SslMode::VerifyFull),
                    Some(RootCert::File("/env.pem".into()))
                )
            }
        );
        let given = TlsSettings {
            client_key: Some("/url.key".into()),
            ..settings(Some(SslMode::Disable), None)
        };
        let kept = given.or_env(env).unwrap();
        assert_eq!(kept.mode, Some(SslMode::Disable));
        assert_eq!(kept.client_key, Some("/url.key".into()));
        let bad = TlsSettings::default().or_env(|_| Some("on".to_string()));
        assert!(bad.unwrap_err().starts_with("PGSSLMODE"));
    }
}
