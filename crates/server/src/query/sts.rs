//! STS over the Query protocol: GetCallerIdentity.

use atrest_kms::{Kms, RequestContext};

use super::Params;
use super::xml::{QueryError, STS_NAMESPACE, element, response};

pub fn dispatch(
    kms: &Kms,
    ctx: &RequestContext,
    params: &Params,
    request_id: &str,
) -> Result<String, QueryError> {
    match params.required("Action")? {
        "GetCallerIdentity" => {
            let identity = kms.caller_identity(ctx)?;
            let result = format!(
                "{}{}{}",
                element("Arn", &identity.arn),
                element("UserId", &identity.user_id),
                element("Account", kms.account())
            );
            Ok(response(
                STS_NAMESPACE,
                "GetCallerIdentity",
                Some(&result),
                request_id,
            ))
        }
        other => Err(QueryError::invalid_action(other)),
    }
}
