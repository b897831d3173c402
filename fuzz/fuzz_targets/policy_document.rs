//! The policy parser and evaluator: arbitrary documents never panic, and whatever parses can
//! be evaluated (as a key policy and as an identity policy) without panicking.
#![no_main]

use atrest_policy::{Context, Policy, Principal, RequestFacts, decide};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut context = Context::new();
    context
        .set("aws:SourceIp", "127.0.0.1")
        .set("aws:CurrentTime", "2026-11-29T12:00:00Z")
        .set_many("kms:EncryptionContextKeys", ["a".to_owned(), "b".to_owned()]);
    let principal = Principal {
        arn: "arn:aws:iam::000000000000:user/u".into(),
        account: "000000000000".into(),
        unique_id: Some("AIDAAAAAAAAAAAAAAAAA".into()),
    };
    let request = RequestFacts { principal: &principal, action: "kms:Encrypt", resource: "arn:aws:kms:us-east-1:000000000000:key/k", context: &context };
    if let Ok(policy) = Policy::parse_resource_policy(text) {
        let _ = decide::<Policy>(&policy, &[], &request);
    }
    if let Ok(policy) = Policy::parse_identity_policy(text) {
        let _ = policy.evaluate_identity(&request);
    }
});
