//! The software HSM's hardening, through the binary: officer and user roles, the failed-unseal
//! limit that zeroizes, tamper reporting in `atrest hsm status`, and backup/restore.

use std::path::Path;

use aws_sdk_kms::primitives::Blob;
use serde_json::Value;

use crate::harness::{Server, new_key, run_cli_in};

const USER: &str = "user passphrase for the service";

fn write_secret(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}\n")).unwrap();
    path.to_str().unwrap().to_owned()
}

fn ok(output: std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn failed(output: std::process::Output) -> String {
    assert!(!output.status.success(), "expected a failure");
    String::from_utf8(output.stderr).unwrap()
}

/// `atrest hsm COMMAND --officer-passphrase-file OFFICER FLAG PATH` on `data_dir`.
fn officer_command(
    data_dir: &Path,
    command: &str,
    officer: &str,
    flag: &str,
    path: &str,
) -> std::process::Output {
    let args = [
        "hsm",
        command,
        "--officer-passphrase-file",
        officer,
        flag,
        path,
    ];
    run_cli_in(data_dir, &args, &[])
}

fn status(data_dir: &Path) -> Value {
    serde_json::from_str(&ok(run_cli_in(data_dir, &["hsm", "status"], &[]))).unwrap()
}

#[tokio::test]
async fn the_officer_backs_up_and_a_new_data_dir_restores_every_key() {
    let secrets = tempfile::tempdir().unwrap();
    let mut server = Server::start_with_env(&[("ATREST_HSM_PASSPHRASE", USER)]);
    let kms = server.client();
    let key = new_key(&kms).await;
    let sealed = kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"kept across disks"))
        .send()
        .await
        .unwrap();
    let sealed = sealed.ciphertext_blob().unwrap().clone();
    let dir = server.data_dir().to_owned();

    let shown = status(&dir);
    // One truthful state: the running server holds the root key unsealed.
    assert_eq!(shown["state"], "unsealed", "{shown}");
    assert!(shown.get("unsealed").is_none(), "{shown}");
    assert_eq!(shown["mode"], "passphrase");
    assert_eq!(
        shown["officer"], "shared",
        "serve made one passphrase for both roles"
    );

    // Separate the roles: the officer gets a passphrase the service never sees.
    let shared = write_secret(secrets.path(), "shared", USER);
    let officer = write_secret(secrets.path(), "officer", "officer's own passphrase");
    ok(run_cli_in(
        &dir,
        &[
            "hsm",
            "change-passphrase",
            "--role",
            "officer",
            "--officer-passphrase-file",
            &shared,
            "--new-passphrase-file",
            &officer,
        ],
        &[],
    ));
    assert_eq!(status(&dir)["officer"], "separate");

    let out = secrets.path().join("atrest.backup");
    let out = out.to_str().unwrap();
    let backup = |officer: &str| officer_command(&dir, "backup", officer, "--out", out);
    let running = failed(backup(&officer));
    assert!(running.contains("stop the server first"), "{running}");
    server.terminate();
    assert_eq!(status(&dir)["state"], "sealed");
    // The service's passphrase is not the officer's: refused, and counted.
    let wrong = failed(backup(&shared));
    assert!(wrong.contains("passphrase is wrong"), "{wrong}");
    assert_eq!(status(&dir)["failed_unseal_attempts"], 1);
    ok(backup(&officer));
    let backup_bytes = std::fs::read(out).unwrap();
    assert!(
        !backup_bytes
            .windows(b"kept across disks".len())
            .any(|window| window == b"kept across disks")
    );

    // A new machine: restore, then the service starts with its own passphrase.
    let restored = tempfile::tempdir().unwrap();
    let guess = write_secret(secrets.path(), "guess", "not the officer");
    let restore =
        |officer: &str| officer_command(restored.path(), "restore", officer, "--backup", out);
    let refused = failed(restore(&guess));
    assert!(refused.contains("integrity check failed"), "{refused}");
    ok(restore(&officer));
    let again = failed(restore(&officer));
    assert!(again.contains("only into a new data dir"), "{again}");
    let server = Server::start_in(restored, &[("ATREST_HSM_PASSPHRASE", USER)], &[]).unwrap();
    let decrypted = server
        .client()
        .decrypt()
        .ciphertext_blob(sealed)
        .send()
        .await
        .unwrap();
    assert_eq!(
        decrypted.plaintext().unwrap().as_ref(),
        b"kept across disks"
    );
    assert_eq!(decrypted.key_id().unwrap(), key_arn_of(&server, &key).await);
}

async fn key_arn_of(server: &Server, key: &str) -> String {
    let described = server
        .client()
        .describe_key()
        .key_id(key)
        .send()
        .await
        .unwrap();
    described.key_metadata().unwrap().arn().unwrap().to_owned()
}

#[tokio::test]
async fn too_many_wrong_passphrases_zeroize_the_keystore() {
    let secrets = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let officer = write_secret(secrets.path(), "officer", "the officer");
    let user = write_secret(secrets.path(), "user", USER);
    let same = failed(run_cli_in(
        data.path(),
        &[
            "hsm",
            "init",
            "--officer-passphrase-file",
            &officer,
            "--user-passphrase-file",
            &officer,
        ],
        &[],
    ));
    assert!(same.contains("must differ"), "{same}");
    ok(run_cli_in(
        data.path(),
        &[
            "hsm",
            "init",
            "--officer-passphrase-file",
            &officer,
            "--user-passphrase-file",
            &user,
            "--max-failed-unseals",
            "3",
        ],
        &[],
    ));
    assert_eq!(status(data.path())["officer"], "separate");
    let mut server = Server::start_in(data, &[("ATREST_HSM_PASSPHRASE", USER)], &[]).unwrap();
    new_key(&server.client()).await;
    let dir = server.data_dir().to_owned();

    let first = server
        .restart_with_env(&[("ATREST_HSM_PASSPHRASE", "guess 1")])
        .unwrap_err();
    assert!(first.contains("2 more failed attempts"), "{first}");
    // The officer is not the service: its passphrase does not start the server either.
    let second = server
        .restart_with_env(&[("ATREST_HSM_PASSPHRASE", "the officer")])
        .unwrap_err();
    assert!(second.contains("1 more failed attempts"), "{second}");
    assert_eq!(status(&dir)["failed_unseal_attempts"], 2);
    let third = server
        .restart_with_env(&[("ATREST_HSM_PASSPHRASE", "guess 3")])
        .unwrap_err();
    assert!(third.contains("zeroized"), "{third}");

    let shown = status(&dir);
    assert_eq!(shown["state"], "zeroized", "{shown}");
    assert!(
        shown["zeroized"]["reason"]
            .as_str()
            .unwrap()
            .contains("3 failed unseal attempts")
    );
    let keystore = std::fs::read_to_string(dir.join("hsm/keystore.json")).unwrap();
    assert!(!keystore.contains("sealed_root_key"), "{keystore}");
    let right = server
        .restart_with_env(&[("ATREST_HSM_PASSPHRASE", USER)])
        .unwrap_err();
    assert!(right.contains("zeroized"), "{right}");
}
