//! IAM operations over the Query protocol.

use atrest_kms::iam::{IamAccessKey, IamUser};
use atrest_kms::model::AccessKeyStatus;
use atrest_kms::{Kms, RequestContext};
use atrest_sigv4::format_iso8601;

use super::Params;
use super::xml::{IAM_NAMESPACE, QueryError, element, response};

/// Runs `Action` and returns the XML response body.
pub fn dispatch(
    kms: &Kms,
    ctx: &RequestContext,
    params: &Params,
    request_id: &str,
) -> Result<String, QueryError> {
    let action = params.required("Action")?;
    let result = match action {
        "CreateUser" => Some(user_xml(
            &kms.iam_create_user(ctx, params.required("UserName")?)?,
        )),
        "GetUser" => Some(user_xml(&kms.iam_get_user(ctx, params.get("UserName"))?)),
        "ListUsers" => {
            let users: String = kms
                .iam_list_users(ctx)?
                .iter()
                .map(|user| format!("<member>{}</member>", user_fields(user)))
                .collect();
            Some(format!(
                "<Users>{users}</Users><IsTruncated>false</IsTruncated>"
            ))
        }
        "DeleteUser" => {
            kms.iam_delete_user(ctx, params.required("UserName")?)?;
            None
        }
        "CreateAccessKey" => {
            let (credentials, created) = kms.iam_create_access_key(ctx, params.get("UserName"))?;
            Some(format!(
                "<AccessKey>{}{}<Status>Active</Status>{}{}</AccessKey>",
                element("UserName", &credentials.user_name),
                element("AccessKeyId", &credentials.access_key_id),
                element("SecretAccessKey", &credentials.secret_access_key),
                element("CreateDate", &format_iso8601(created)),
            ))
        }
        "ListAccessKeys" => {
            let keys = kms.iam_list_access_keys(ctx, params.get("UserName"))?;
            let members: String = keys.iter().map(access_key_xml).collect();
            let user = params
                .get("UserName")
                .map(|name| element("UserName", name))
                .unwrap_or_default();
            Some(format!(
                "{user}<AccessKeyMetadata>{members}</AccessKeyMetadata><IsTruncated>false</IsTruncated>"
            ))
        }
        "UpdateAccessKey" => {
            let status = match params.required("Status")? {
                "Active" => AccessKeyStatus::Active,
                "Inactive" => AccessKeyStatus::Inactive,
                other => {
                    return Err(QueryError::validation(format!(
                        "1 validation error detected: Value '{other}' at 'status' failed to satisfy constraint: \
                         Member must satisfy enum value set: [Active, Inactive]"
                    )));
                }
            };
            kms.iam_update_access_key(
                ctx,
                params.get("UserName"),
                params.required("AccessKeyId")?,
                status,
            )?;
            None
        }
        "DeleteAccessKey" => {
            kms.iam_delete_access_key(
                ctx,
                params.get("UserName"),
                params.required("AccessKeyId")?,
            )?;
            None
        }
        "PutUserPolicy" => {
            let (user, policy) = (params.required("UserName")?, params.required("PolicyName")?);
            kms.iam_put_user_policy(ctx, user, policy, params.required("PolicyDocument")?)?;
            None
        }
        "GetUserPolicy" => {
            let (user, policy) = (params.required("UserName")?, params.required("PolicyName")?);
            let document = kms.iam_get_user_policy(ctx, user, policy)?;
            // IAM returns policy documents URL-encoded (RFC 3986); SDKs decode them.
            Some(format!(
                "{}{}{}",
                element("UserName", user),
                element("PolicyName", policy),
                element("PolicyDocument", &url_encode(&document))
            ))
        }
        "ListUserPolicies" => {
            let names = kms.iam_list_user_policies(ctx, params.required("UserName")?)?;
            let members: String = names.iter().map(|name| element("member", name)).collect();
            Some(format!(
                "<PolicyNames>{members}</PolicyNames><IsTruncated>false</IsTruncated>"
            ))
        }
        "DeleteUserPolicy" => {
            kms.iam_delete_user_policy(
                ctx,
                params.required("UserName")?,
                params.required("PolicyName")?,
            )?;
            None
        }
        other => return Err(QueryError::invalid_action(other)),
    };
    Ok(response(
        IAM_NAMESPACE,
        action,
        result.as_deref(),
        request_id,
    ))
}

fn user_xml(user: &IamUser) -> String {
    format!("<User>{}</User>", user_fields(user))
}

fn user_fields(user: &IamUser) -> String {
    let name = user
        .user_name
        .as_deref()
        .map(|name| element("UserName", name))
        .unwrap_or_default();
    format!(
        "<Path>/</Path>{name}{}{}{}",
        element("UserId", &user.user_id),
        element("Arn", &user.arn),
        element("CreateDate", &format_iso8601(user.created))
    )
}

fn access_key_xml(key: &IamAccessKey) -> String {
    let status = match key.status {
        AccessKeyStatus::Active => "Active",
        AccessKeyStatus::Inactive => "Inactive",
    };
    format!(
        "<member>{}{}{}{}</member>",
        element("UserName", &key.user_name),
        element("AccessKeyId", &key.access_key_id),
        element("Status", status),
        element("CreateDate", &format_iso8601(key.created))
    )
}

fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
