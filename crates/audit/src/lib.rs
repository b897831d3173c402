//! The audit log: one record per request, allowed or denied, successful or failed (what
//! CloudTrail gives AWS KMS users), in a form nobody can quietly edit.
//!
//! Format (`DIR/audit/audit.log`, version 1, FROZEN): JSON lines. Every line is one
//! [`Record`]; its `prev` is the hex SHA-256 of the previous line's bytes (all zeros for the
//! first), and `seq` counts from 1. Changing, removing or reordering a line breaks the chain
//! at that point. Every [`DIGEST_EVERY`] records (and when the log closes) a digest record
//! carries an HMAC-SHA256, made in the HSM, over its own `seq` and `prev`: the chain cannot be
//! rebuilt by someone without the HSM. `head.json` names the newest digest, so cutting records
//! off the end is detected too. The log spans finished segment files and the active
//! `audit.log` (see [`segments`]); finished files are plain JSON lines.

pub mod anchor;
mod bound;
mod chain;
mod record;
mod segments;
mod signer;
mod writer;

pub use anchor::{Anchored, HeadAnchor};
pub use bound::MAX_EVENT_BYTES;
pub use chain::{VerifyReport, verify, verify_anchored};
pub use record::{Event, Record, SearchFilter, search};
pub use segments::{ROTATE_BYTES, finished_segments, read_all};
pub use signer::DigestSigner;
pub use writer::AuditLog;

/// Records between signed digests.
pub const DIGEST_EVERY: u64 = 1000;
pub const LOG_FILE: &str = "audit.log";
pub const HEAD_FILE: &str = "head.json";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("audit log I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the audit log writer has stopped")]
    WriterStopped,
    /// A write or sync failed (the disk is full, say); appends are refused until the flusher
    /// has recovered the log from what is on disk, which it retries every second.
    #[error("the audit log cannot be written ({0}); requests are refused until it can")]
    Unavailable(String),
    #[error("audit digest key: {0}")]
    Key(String),
    /// The log does not reach the head the metadata store anchors (see [`anchor`]).
    #[error("{0}")]
    Anchor(String),
    #[error("the audit log is corrupt at line {line}: {detail}")]
    Corrupt { line: u64, detail: String },
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use atrest_hsm::{SoftwareHsm, UnsealWith};

    use super::*;

    fn signer(dir: &Path) -> DigestSigner {
        let (hsm, _) = SoftwareHsm::open(&dir.join("hsm"), &UnsealWith::DevKeyFile).unwrap();
        DigestSigner::open(&dir.join("audit"), Arc::new(hsm)).unwrap()
    }

    async fn write_log(dir: &Path, count: usize) -> DigestSigner {
        let signer = signer(dir);
        let log = AuditLog::open(&dir.join("audit"), signer.clone()).unwrap();
        for index in 0..count {
            let event = Event {
                event_source: "kms".into(),
                event_name: "Encrypt".into(),
                caller_arn: Some(format!("arn:aws:iam::000000000000:user/u{index}")),
                request_id: format!("req-{index}"),
                resources: vec![format!("arn:aws:kms:us-east-1:000000000000:key/k{index}")],
                ..Event::default()
            };
            log.append(event).await.unwrap();
        }
        drop(log);
        signer
    }

    fn lines(dir: &Path) -> Vec<String> {
        let bytes = std::fs::read(dir.join("audit").join(LOG_FILE)).unwrap();
        String::from_utf8(chain::content(&bytes).to_vec())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn rewrite(dir: &Path, lines: &[String]) {
        std::fs::write(dir.join("audit").join(LOG_FILE), lines.join("\n") + "\n").unwrap();
    }

    #[tokio::test]
    async fn an_untouched_log_verifies_and_can_be_searched() {
        let dir = tempfile::tempdir().unwrap();
        let signer = write_log(dir.path(), 5).await;
        let report = verify(&dir.path().join("audit"), &signer).unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.records, 5);
        assert!(report.digests >= 1);
        let filter = SearchFilter {
            key: Some("k3".into()),
            ..SearchFilter::default()
        };
        let found = search(&dir.path().join("audit"), &filter).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].event.request_id, "req-3");
    }

    #[tokio::test]
    async fn each_kind_of_tampering_is_found_and_located() {
        type Tamper = fn(&mut Vec<String>);
        let cases: [(&str, Tamper, &str); 5] = [
            (
                "modified",
                |lines| lines[1] = lines[1].replace("u1", "uX"),
                "record 2 (line 2) was modified",
            ),
            (
                "removed",
                |lines| {
                    lines.remove(2);
                },
                "records 3..3 are missing",
            ),
            ("reordered", |lines| lines.swap(1, 2), "out of order"),
            ("truncated", |lines| lines.truncate(3), "truncated"),
            (
                "last line modified",
                |lines| {
                    let last = lines.len() - 1;
                    lines[last] = lines[last].replace("AuditDigest", "AuditDigesT");
                },
                "modified",
            ),
        ];
        for (name, tamper, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let signer = write_log(dir.path(), 5).await;
            let mut content = lines(dir.path());
            tamper(&mut content);
            rewrite(dir.path(), &content);
            let report = verify(&dir.path().join("audit"), &signer).unwrap();
            let problem = report.first_problem.unwrap_or_default();
            assert!(problem.contains(expected), "{name}: {problem}");
        }
    }

    /// Many requests at once, past the end of the first padding step: every record lands
    /// once, in chain order, and the log verifies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_chained_in_order_past_the_padding() {
        let dir = tempfile::tempdir().unwrap();
        let signer = signer(dir.path());
        let log = Arc::new(AuditLog::open(&dir.path().join("audit"), signer.clone()).unwrap());
        let tasks = (0..32).map(|task| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                for index in 0..200 {
                    let event = Event {
                        event_source: "kms".into(),
                        event_name: "Encrypt".into(),
                        request_id: format!("req-{task}-{index}"),
                        // About 300 bytes a record, so 6,400 records pass a 1 MiB padding step.
                        request_parameters: Some(serde_json::json!({ "pad": "x".repeat(200) })),
                        ..Event::default()
                    };
                    log.append(event).await.unwrap();
                }
            })
        });
        for task in tasks.collect::<Vec<_>>() {
            task.await.unwrap();
        }
        drop(Arc::into_inner(log).expect("every task is done"));
        let report = verify(&dir.path().join("audit"), &signer).unwrap();
        assert!(report.ok() && !report.torn_tail, "{report:?}");
        assert_eq!(report.records, 32 * 200);
        let written: usize = lines(dir.path()).iter().map(String::len).sum();
        assert!(
            written > 1 << 20,
            "only {written} bytes: the padding was never extended"
        );
        let ids: std::collections::HashSet<String> = lines(dir.path())
            .iter()
            .filter(|line| line.contains("req-"))
            .map(|line| {
                serde_json::from_str::<Record>(line)
                    .unwrap()
                    .event
                    .request_id
            })
            .collect();
        assert_eq!(ids.len(), 32 * 200);
    }

    #[tokio::test]
    async fn a_torn_record_from_a_crash_is_cut_and_the_chain_continues() {
        let dir = tempfile::tempdir().unwrap();
        let signer = write_log(dir.path(), 3).await;
        let path = dir.path().join("audit").join(LOG_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let end = chain::content(&bytes).len();
        // A crash leaves the padding that a clean close cuts.
        bytes.resize(end + 8192, 0);
        // A batch torn by a crash: part of a record, then a hole, then a stray later page.
        let torn = b"{\"seq\":99,\"time\":\"2026-";
        bytes[end..end + torn.len()].copy_from_slice(torn);
        bytes[end + 4096..end + 4096 + 5].copy_from_slice(b"stray");
        std::fs::write(&path, &bytes).unwrap();
        let report = verify(&dir.path().join("audit"), &signer).unwrap();
        assert!(report.ok() && report.torn_tail, "{report:?}");
        let log = AuditLog::open(&dir.path().join("audit"), signer.clone()).unwrap();
        log.append(Event {
            event_name: "Decrypt".into(),
            ..Event::default()
        })
        .await
        .unwrap();
        drop(log);
        let report = verify(&dir.path().join("audit"), &signer).unwrap();
        assert!(report.ok() && !report.torn_tail, "{report:?}");
        assert_eq!(report.records, 4);
    }

    fn event(index: usize) -> Event {
        Event {
            event_source: "kms".into(),
            event_name: "CreateKey".into(),
            request_id: format!("req-{index}"),
            resources: vec![format!("arn:aws:kms:us-east-1:000000000000:key/k{index}")],
            ..Event::default()
        }
    }

    #[tokio::test]
    async fn files_are_finished_as_plain_json_lines_and_the_chain_runs_across_them() {
        let dir = tempfile::tempdir().unwrap();
        let signer = signer(dir.path());
        let audit = dir.path().join("audit");
        let log = AuditLog::open_rotating_at(&audit, signer.clone(), 4096).unwrap();
        for index in 0..100 {
            log.append(event(index)).await.unwrap();
        }
        let finished = finished_segments(&audit).unwrap();
        assert!(finished.len() >= 3, "{finished:?}");
        for file in &finished {
            let bytes = std::fs::read(file).unwrap();
            assert!(!bytes.contains(&0), "{} holds padding", file.display());
            assert!(bytes.ends_with(b"\n"));
            for line in String::from_utf8(bytes).unwrap().lines() {
                serde_json::from_str::<Record>(line).unwrap();
            }
        }
        // While running, the active file is padded; once closed, it is plain too.
        assert!(std::fs::read(audit.join(LOG_FILE)).unwrap().contains(&0));
        drop(log);
        assert!(!std::fs::read(audit.join(LOG_FILE)).unwrap().contains(&0));
        let report = verify(&audit, &signer).unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.records, 100);
        let found = search(&audit, &SearchFilter::default()).unwrap();
        assert_eq!(
            found
                .iter()
                .filter(|r| r.event.event_name == "CreateKey")
                .count(),
            100
        );

        // Reopened, the chain goes on from the closed file; a missing active file (lost
        // between the rename of a finished file and its replacement) continues from the
        // newest finished one.
        let log = AuditLog::open_rotating_at(&audit, signer.clone(), 4096).unwrap();
        log.append(event(100)).await.unwrap();
        drop(log);
        std::fs::rename(
            audit.join(LOG_FILE),
            audit.join(segments::segment_name(u64::MAX / 2)),
        )
        .unwrap();
        let log = AuditLog::open_rotating_at(&audit, signer.clone(), 4096).unwrap();
        log.append(event(101)).await.unwrap();
        drop(log);
        let report = verify(&audit, &signer).unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.records, 102);

        // A finished file edited is found like any other edit.
        let first = &finished_segments(&audit).unwrap()[0];
        let text = std::fs::read_to_string(first)
            .unwrap()
            .replace("req-1\"", "req-X\"");
        std::fs::write(first, text).unwrap();
        assert!(!verify(&audit, &signer).unwrap().ok());
    }

    #[derive(Default)]
    struct MemoryAnchor(std::sync::Mutex<Option<Anchored>>);

    impl HeadAnchor for MemoryAnchor {
        fn load(&self) -> Result<Option<Anchored>, String> {
            Ok(self.0.lock().unwrap().clone())
        }
        fn store(&self, head: &Anchored) -> Result<(), String> {
            *self.0.lock().unwrap() = Some(head.clone());
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_log_that_does_not_reach_its_anchor_is_refused_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let signer = signer(dir.path());
        let audit = dir.path().join("audit");
        let anchor = Arc::new(MemoryAnchor::default());
        let open = |anchor: &Arc<MemoryAnchor>| {
            let anchor: Arc<dyn HeadAnchor> = anchor.clone();
            AuditLog::open_anchored(&audit, signer.clone(), ROTATE_BYTES, Some(anchor))
        };
        let log = open(&anchor).unwrap();
        for index in 0..3 {
            log.append(event(index)).await.unwrap();
        }
        drop(log);
        let anchored = anchor.load().unwrap().expect("anchored on close");
        assert!(anchored.seq >= 3);
        let report = verify_anchored(&audit, &signer, Some(&anchored)).unwrap();
        assert!(report.ok(), "{report:?}");

        // Another log, valid on its own, in place of this one.
        let saved = std::fs::read(audit.join(LOG_FILE)).unwrap();
        let head = std::fs::read(audit.join(HEAD_FILE)).unwrap();
        std::fs::remove_file(audit.join(LOG_FILE)).unwrap();
        std::fs::remove_file(audit.join(HEAD_FILE)).unwrap();
        let report = verify_anchored(&audit, &signer, Some(&anchored)).unwrap();
        assert!(report.first_problem.unwrap().contains("missing"));
        let refused = open(&anchor).unwrap_err();
        assert!(
            refused.to_string().contains("atrest audit reset"),
            "{refused}"
        );
        // The log put back without its last record (an older copy): refused too.
        let text = String::from_utf8(saved).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let older = lines[..lines.len() - 1].join("\n") + "\n";
        std::fs::write(audit.join(LOG_FILE), older).unwrap();
        std::fs::write(audit.join(HEAD_FILE), &head).unwrap();
        assert!(open(&anchor).is_err());
        // Put back whole, it opens again.
        std::fs::write(audit.join(LOG_FILE), text).unwrap();
        drop(open(&anchor).unwrap());
    }
}
