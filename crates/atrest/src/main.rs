//! `atrest`: parses the command line and wires the crates together; nothing else.

mod audit_anchor;
mod cli;
mod datadir;
mod envelope;
mod error;
mod fields;
mod hsm;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use atrest_crypto::SecretBytes;
use atrest_server::AppState;
use clap::Parser;

use crate::cli::{AuditCommand, Cli, Command, ServeArgs, UserCommand};
use crate::error::CliError;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A log that cannot be written (stderr on a full disk) must not stop the server:
        // tracing-subscriber would report that with `eprintln!`, which panics the thread.
        .log_internal_errors(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ATREST_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Encrypt(args) => return envelope_exit(envelope::encrypt(&args)),
        Command::Decrypt(args) => return envelope_exit(envelope::decrypt(&args)),
        Command::Fields(command) => fields::run(command),
        Command::Serve(args) => serve(args),
        Command::User(UserCommand::Add {
            name,
            data,
            access_key_id,
            secret_access_key,
        }) => add_user(&name, &data, access_key_id, secret_access_key),
        Command::Hsm(command) => hsm::run(command),
        Command::Audit(AuditCommand::Verify { data }) => verify_audit(&data),
        Command::Audit(AuditCommand::Reset {
            data,
            officer_passphrase_file,
            reason,
            yes,
        }) => hsm::reset_audit(&data, officer_passphrase_file, &reason, yes),
        Command::Audit(AuditCommand::Search {
            data,
            key,
            principal,
            since,
            until,
        }) => {
            let filter = atrest_audit::SearchFilter {
                key,
                principal,
                since,
                until,
            };
            search_audit(&data, &filter)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("atrest: error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `atrest encrypt`/`decrypt` exit with codes that say what failed (see `envelope::exit`).
fn envelope_exit(result: Result<(), envelope::Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("atrest: error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), CliError> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(atrest_server::TlsConfig::from_pem_files(cert, key).map_err(CliError::Config)?)
        }
        _ => None,
    };
    let opened = datadir::open(&args.data)?;
    if let Some(root) = &opened.new_root {
        println!(
            "Root credentials for this data dir (also saved in root-credentials.json, mode 0600):"
        );
        println!("{}", serde_json::to_string_pretty(root).unwrap_or_default());
    }
    match opened.kms.reconnect_custom_key_stores() {
        Ok(0) => {}
        Ok(connected) => tracing::info!(connected, "custom key stores connected again"),
        Err(error) => tracing::error!(%error, "custom key stores could not be reconnected"),
    }
    let pid_file = args.data.data_dir.join(datadir::SERVER_PID_FILE);
    atrest_hsm::fsio::write_atomically(&pid_file, std::process::id().to_string().as_bytes(), 0o600)
        .map_err(|error| CliError::io(&pid_file, error))?;
    let served = serve_opened(args, opened, tls);
    let _ = std::fs::remove_file(&pid_file);
    served
}

fn serve_opened(
    args: ServeArgs,
    opened: datadir::Opened,
    tls: Option<atrest_server::TlsConfig>,
) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::Config(format!("starting the async runtime: {error}")))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|error| CliError::Config(format!("cannot listen on {}: {error}", args.listen)))?;
        let kms = Arc::clone(&opened.kms);
        atrest_server::spawn_maintenance(Arc::clone(&kms), Duration::from_secs(args.maintenance_interval_secs.max(1)));
        let audit = match args.audit_log {
            cli::AuditLogSetting::On => {
                let signer = atrest_audit::DigestSigner::open(&datadir::audit_dir(&args.data), Arc::clone(&opened.hsm))?;
                let rotate_bytes = args.audit_file_mib.max(1) << 20;
                let anchor: Arc<dyn atrest_audit::HeadAnchor> =
                    Arc::new(audit_anchor::FileAnchor::new(&args.data.data_dir, opened.kms.record_seal()));
                Some(atrest_audit::AuditLog::open_anchored(&datadir::audit_dir(&args.data), signer, rotate_bytes, Some(anchor))?)
            }
            cli::AuditLogSetting::Off => {
                tracing::warn!("THE AUDIT LOG IS OFF (--audit-log off): no request is recorded, allowed or denied");
                None
            }
        };
        let settings = atrest_s3::Settings {
            allow_sse_c_over_http: args.allow_sse_c_over_http,
            allow_sigv2_headers: args.allow_sigv2,
        };
        let s3 = atrest_s3::embedded_service(Arc::clone(&kms), Arc::clone(&opened.database), &args.data.data_dir, settings, args.s3_domains.clone())
            .map_err(CliError::Config)?;
        let volumes = Arc::new(
            atrest_volume::Volumes::open(Arc::clone(&kms), Arc::clone(&opened.database), &args.data.data_dir)
                .map_err(|error| CliError::Config(format!("opening the volume store: {error}")))?,
        );
        let nbd_listener = tokio::net::TcpListener::bind(args.nbd_listen)
            .await
            .map_err(|error| CliError::Config(format!("cannot listen for NBD on {}: {error}", args.nbd_listen)))?;
        let exports: Arc<dyn atrest_volume::nbd::Exports> = volumes.clone();
        let nbd_limits = atrest_volume::nbd::NbdLimits {
            handshake_timeout: Duration::from_secs(args.nbd_handshake_timeout_secs.max(1)),
            idle_timeout: (args.nbd_idle_timeout_secs > 0).then(|| Duration::from_secs(args.nbd_idle_timeout_secs)),
            ..atrest_volume::nbd::NbdLimits::default()
        };
        let nbd_cap = args.nbd_max_connections.unwrap_or_else(|| atrest_server::limits::default_connection_cap(1, 8));
        tokio::spawn(atrest_server::serve_nbd(nbd_listener, exports, nbd_cap, nbd_limits, std::future::pending()));
        let defaults = atrest_server::HttpLimits::default();
        let http_limits = atrest_server::HttpLimits {
            max_connections: args.max_connections.unwrap_or(defaults.max_connections),
            header_timeout: Duration::from_secs(args.header_timeout_secs.max(1)),
            shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
            pace_window: Duration::from_secs(args.pace_window_secs.max(1)),
            min_bytes_per_window: args.min_bytes_per_window,
        };
        let state = Arc::new(AppState::new(kms, opened.hsm_backend, audit).with_s3(s3).with_volumes(volumes));
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(listen = %args.listen, nbd = %args.nbd_listen, scheme, data_dir = %args.data.data_dir.display(), "atrest is serving");
        atrest_server::serve(listener, state, tls, http_limits, shutdown_signal())
            .await
            .map_err(|error| CliError::Config(format!("server failed: {error}")))?;
        tracing::info!("atrest stopped");
        Ok(())
    })
}

fn add_user(
    name: &str,
    data: &cli::DataDirArgs,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
) -> Result<(), CliError> {
    let opened = datadir::open(data)?;
    let secret = secret_access_key.map(|secret| SecretBytes::new(secret.into_bytes()));
    let credentials = opened
        .kms
        .create_principal(Some(name), access_key_id, secret)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&credentials).unwrap_or_default()
    );
    Ok(())
}

fn verify_audit(data: &cli::DataDirArgs) -> Result<(), CliError> {
    let hsm = datadir::open_hsm(data)?;
    let signer = atrest_audit::DigestSigner::open(&datadir::audit_dir(data), Arc::clone(&hsm))?;
    let seal = datadir::existing_record_seal(&data.data_dir, &hsm)?;
    let anchored = {
        use atrest_audit::HeadAnchor as _;
        audit_anchor::FileAnchor::new(&data.data_dir, seal)
            .load()
            .map_err(CliError::Config)?
    };
    let report =
        atrest_audit::verify_anchored(&datadir::audit_dir(data), &signer, anchored.as_ref())?;
    let torn = if report.torn_tail {
        " (an unacknowledged record cut by a crash is ignored)"
    } else {
        ""
    };
    match &report.first_problem {
        None => {
            println!(
                "audit log OK: {} records, {} signed digests{torn}",
                report.records, report.digests
            );
            Ok(())
        }
        Some(problem) => {
            println!("audit log TAMPERED: {problem}");
            Err(CliError::Config(format!(
                "audit verification failed: {problem}"
            )))
        }
    }
}

fn search_audit(
    data: &cli::DataDirArgs,
    filter: &atrest_audit::SearchFilter,
) -> Result<(), CliError> {
    for record in atrest_audit::search(&datadir::audit_dir(data), filter)? {
        println!("{}", serde_json::to_string(&record).unwrap_or_default());
    }
    Ok(())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
