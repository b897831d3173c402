//! `atrest hsm`: the security officer's commands on the software HSM's keystore.

use std::fs;
use std::path::{Path, PathBuf};

use atrest_crypto::SecretBytes;
use atrest_hsm::software::backup::{self, BackupEntry};
use atrest_hsm::software::officer;
use atrest_hsm::{Role, SoftwareHsm, fsio};

use crate::cli::{HsmCommand, OfficerArgs, RoleArg};
use crate::datadir::{self, SERVER_PID_FILE};
use crate::error::CliError;

/// What a backup holds, relative to the data dir: the keystore (root key sealed per role), the
/// metadata store (every wrapped key, alias, policy and user) and the account settings.
const BACKED_UP: [&str; 4] = [
    "hsm/keystore.json",
    "metadata.redb",
    "atrest.json",
    crate::datadir::RECORD_KEY_FILE,
];
const OFFICER_ENV: &str = "ATREST_HSM_OFFICER_PASSPHRASE";

pub fn run(command: HsmCommand) -> Result<(), CliError> {
    match command {
        HsmCommand::Status { data_dir } => status(&data_dir),
        HsmCommand::Init {
            data_dir,
            officer,
            user_passphrase_file,
            max_failed_unseals,
        } => {
            let user = datadir::read_passphrase_file(&user_passphrase_file)?;
            officer::init(
                &hsm_dir(&data_dir),
                &officer_passphrase(&officer)?,
                &user,
                max_failed_unseals,
            )?;
            eprintln!(
                "atrest: keystore created in {} with separate officer and user passphrases",
                hsm_dir(&data_dir).display()
            );
            Ok(())
        }
        HsmCommand::ChangePassphrase {
            data_dir,
            officer,
            role,
            new_passphrase_file,
        } => {
            let new = datadir::read_passphrase_file(&new_passphrase_file)?;
            let role = match role {
                RoleArg::Officer => Role::Officer,
                RoleArg::User => Role::User,
            };
            officer::change_passphrase(
                &hsm_dir(&data_dir),
                &officer_passphrase(&officer)?,
                role,
                &new,
            )?;
            eprintln!("atrest: the {role:?} passphrase is changed");
            Ok(())
        }
        HsmCommand::Backup {
            data_dir,
            officer,
            out,
        } => write_backup(&data_dir, &officer_passphrase(&officer)?, &out),
        HsmCommand::Restore {
            data_dir,
            officer,
            backup,
        } => restore(&data_dir, &officer_passphrase(&officer)?, &backup),
        HsmCommand::Zeroize {
            data_dir,
            officer_passphrase_file,
            yes,
        } => {
            let args = OfficerArgs {
                officer_passphrase_file,
            };
            // The server's lock: it holds the metadata store open (redb's exclusive lock).
            let _in_use_guard = exclusive_use(&data_dir, "zeroize the HSM")?;
            let keystore = SoftwareHsm::status(&hsm_dir(&data_dir))?;
            let officer = match keystore.mode {
                // A passphrase keystore always asks its officer, whatever its state.
                "passphrase" => Some(officer_passphrase(&args)?),
                _ => None,
            };
            if keystore.mode == "passphrase"
                && let Some(officer) = &officer
            {
                officer::authenticate(&hsm_dir(&data_dir), officer)?;
            }
            confirm_zeroize(&data_dir, yes)?;
            officer::zeroize(&hsm_dir(&data_dir), officer.as_ref())?;
            eprintln!(
                "atrest: the HSM root key in {} is destroyed; every key in this data dir is now unrecoverable",
                data_dir.display()
            );
            Ok(())
        }
    }
}

/// Refuses while a server (or another command) uses `data_dir`: the pid file names a live
/// server, or the metadata store's exclusive lock is held. The returned handle keeps that
/// lock for the caller's work.
fn exclusive_use(data_dir: &Path, what: &str) -> Result<Option<redb::Database>, CliError> {
    if let Some(pid) = running_server(data_dir) {
        return Err(CliError::Config(format!(
            "cannot {what}: atrest serve (pid {pid}) is using {}; stop it first",
            data_dir.display()
        )));
    }
    let store = data_dir.join("metadata.redb");
    if !store.exists() {
        return Ok(None);
    }
    redb::Database::open(&store).map(Some).map_err(|error| {
        CliError::Config(format!(
            "cannot {what}: the metadata store in {} is in use ({error}); stop the server first",
            data_dir.display()
        ))
    })
}

/// Zeroizing cannot be undone: `--yes`, or the data dir's path typed back at a terminal.
fn confirm_zeroize(data_dir: &Path, yes: bool) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    let refused = || {
        CliError::Config(
            "zeroize not confirmed: it destroys every key in the data dir for good; pass --yes, \
             or run it at a terminal and type the data dir's path"
                .into(),
        )
    };
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(refused());
    }
    eprint!(
        "This destroys the HSM root key: every key and object in {} becomes unrecoverable.\n\
         Type the data dir's path to confirm: ",
        data_dir.display()
    );
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|error| CliError::Config(format!("reading the confirmation: {error}")))?;
    if answer.trim() == data_dir.display().to_string() {
        Ok(())
    } else {
        Err(refused())
    }
}

fn hsm_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("hsm")
}

fn officer_passphrase(args: &OfficerArgs) -> Result<SecretBytes, CliError> {
    if let Some(file) = &args.officer_passphrase_file {
        return datadir::read_passphrase_file(file);
    }
    match std::env::var(OFFICER_ENV) {
        Ok(passphrase) if !passphrase.is_empty() => Ok(SecretBytes::new(passphrase.into_bytes())),
        _ => Err(CliError::Config(format!(
            "the officer's passphrase is needed: --officer-passphrase-file or {OFFICER_ENV}"
        ))),
    }
}

fn status(data_dir: &Path) -> Result<(), CliError> {
    let keystore = SoftwareHsm::status(&hsm_dir(data_dir))?;
    let server_pid = running_server(data_dir);
    let mut value =
        serde_json::to_value(&keystore).map_err(|error| CliError::Config(error.to_string()))?;
    if let Some(object) = value.as_object_mut() {
        object.insert("backend".into(), "software".into());
        // One state: the keystore file is sealed at rest, but while a server holds the root
        // key in memory the HSM is unsealed (a property of that process).
        if keystore.state == "sealed" && server_pid.is_some() {
            object.insert("state".into(), "unsealed".into());
        }
        object.insert("server_pid".into(), server_pid.into());
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_default()
    );
    Ok(())
}

/// The pid of a live `atrest serve` on this data dir, from the pid file it keeps.
fn running_server(data_dir: &Path) -> Option<u32> {
    let text = fs::read_to_string(data_dir.join(SERVER_PID_FILE)).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

fn write_backup(data_dir: &Path, officer: &SecretBytes, out: &Path) -> Result<(), CliError> {
    officer::authenticate(&hsm_dir(data_dir), officer)?;
    // Holding the store open takes redb's exclusive lock: no server writes while we copy.
    let store = redb::Database::open(data_dir.join("metadata.redb")).map_err(|error| {
        CliError::Config(format!(
            "cannot open the metadata store for a consistent copy ({error}); stop the server first"
        ))
    })?;
    let mut entries = Vec::new();
    for name in BACKED_UP {
        let path = data_dir.join(name);
        // A data dir an earlier atrest wrote has no record key yet (its records are untagged).
        if name == crate::datadir::RECORD_KEY_FILE && !path.exists() {
            continue;
        }
        let contents = fs::read(&path).map_err(|error| CliError::io(&path, error))?;
        entries.push(BackupEntry {
            name: name.to_owned(),
            contents,
        });
    }
    drop(store);
    let sealed = backup::seal(officer, &entries)?;
    fsio::write_atomically(out, &sealed, 0o600).map_err(|error| CliError::io(out, error))?;
    eprintln!(
        "atrest: backup of {} written to {} (encrypted under the officer's passphrase)",
        data_dir.display(),
        out.display()
    );
    Ok(())
}

fn restore(data_dir: &Path, officer: &SecretBytes, from: &Path) -> Result<(), CliError> {
    for name in BACKED_UP {
        if data_dir.join(name).exists() {
            return Err(CliError::Config(format!(
                "{} already exists: restore only into a new data dir",
                data_dir.join(name).display()
            )));
        }
    }
    let sealed = fs::read(from).map_err(|error| CliError::io(from, error))?;
    let entries = backup::open(officer, &sealed)?;
    for entry in &entries {
        if !BACKED_UP.contains(&entry.name.as_str()) {
            return Err(CliError::Config(format!(
                "the backup holds an unexpected file {:?}",
                entry.name
            )));
        }
    }
    fs::create_dir_all(hsm_dir(data_dir)).map_err(|error| CliError::io(data_dir, error))?;
    for entry in &entries {
        let path = data_dir.join(&entry.name);
        fsio::write_atomically(&path, &entry.contents, 0o600)
            .map_err(|error| CliError::io(&path, error))?;
    }
    // The restored keystore must open for the officer who made the backup.
    officer::authenticate(&hsm_dir(data_dir), officer)?;
    // The audit log (and its anchor) is not in a backup: the restored data dir starts a new
    // chain.
    crate::audit_anchor::clear(data_dir).map_err(CliError::Config)?;
    eprintln!(
        "atrest: restored {} files into {}",
        entries.len(),
        data_dir.display()
    );
    Ok(())
}

/// `atrest audit reset`: the old files go aside, a new chain starts, and its first record
/// names the record the metadata store had anchored and the operator's reason.
pub fn reset_audit(
    data: &crate::cli::DataDirArgs,
    officer_passphrase_file: Option<PathBuf>,
    reason: &str,
    yes: bool,
) -> Result<(), CliError> {
    let data_dir = &data.data_dir;
    let database = exclusive_use(data_dir, "reset the audit log")?.ok_or_else(|| {
        CliError::Config(format!("{} holds no metadata store", data_dir.display()))
    })?;
    let keystore = SoftwareHsm::status(&hsm_dir(data_dir))?;
    if keystore.mode == "passphrase" {
        let officer = officer_passphrase(&OfficerArgs {
            officer_passphrase_file,
        })?;
        officer::authenticate(&hsm_dir(data_dir), &officer)?;
    }
    if !yes {
        return Err(CliError::Config(
            "audit reset not confirmed: it starts a new chain over the old one; pass --yes".into(),
        ));
    }
    let hsm = crate::datadir::open_hsm(data)?;
    let seal = crate::datadir::existing_record_seal(data_dir, &hsm)?;
    let anchor = crate::audit_anchor::FileAnchor::new(data_dir, seal);
    let anchored = {
        use atrest_audit::HeadAnchor as _;
        anchor.load().map_err(CliError::Config)?
    };
    let audit = crate::datadir::audit_dir(data);
    let aside = audit.join(format!("replaced-{}", unix_seconds()));
    if audit.exists() {
        fs::create_dir_all(&aside).map_err(|error| CliError::io(&aside, error))?;
        for entry in fs::read_dir(&audit).map_err(|error| CliError::io(&audit, error))? {
            let entry = entry.map_err(|error| CliError::io(&audit, error))?;
            let name = entry.file_name();
            // Earlier replaced chains stay where they are; the digest key stays for both.
            let keep =
                name.to_string_lossy().starts_with("replaced-") || name == "digest-key.wrapped";
            if !keep {
                fs::rename(entry.path(), aside.join(&name))
                    .map_err(|error| CliError::io(&entry.path(), error))?;
            }
        }
    }
    crate::audit_anchor::clear(data_dir).map_err(CliError::Config)?;
    drop(database);
    let anchor: std::sync::Arc<dyn atrest_audit::HeadAnchor> = std::sync::Arc::new(anchor);
    let signer = atrest_audit::DigestSigner::open(&audit, hsm)?;
    let log = atrest_audit::AuditLog::open_anchored(
        &audit,
        signer,
        atrest_audit::ROTATE_BYTES,
        Some(anchor),
    )?;
    let event = atrest_audit::Event {
        event_source: "atrest".into(),
        event_name: "AuditChainReset".into(),
        request_parameters: Some(serde_json::json!({
            "reason": reason,
            "previousAnchoredSeq": anchored.as_ref().map(|head| head.seq),
            "previousAnchoredHash": anchored.as_ref().map(|head| head.hash.clone()),
            "previousFilesKeptIn": aside.display().to_string(),
        })),
        ..atrest_audit::Event::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|error| CliError::Config(error.to_string()))?;
    runtime.block_on(log.append(event))?;
    drop(log);
    eprintln!(
        "atrest: a new audit chain starts in {}; the old files are in {}",
        audit.display(),
        aside.display()
    );
    Ok(())
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
