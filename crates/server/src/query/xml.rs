//! Writing Query-protocol XML: the `<Action>Response` envelope, and `ErrorResponse`s with
//! IAM's error codes and HTTP statuses.

use atrest_kms::iam::IamError;

use crate::auth::AuthError;

pub const IAM_NAMESPACE: &str = "https://iam.amazonaws.com/doc/2010-05-08/";
pub const STS_NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
pub const EC2_NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// `<ActionResponse xmlns=...><ActionResult>inner</ActionResult><ResponseMetadata>...`;
/// operations without a result pass `None`.
pub fn response(namespace: &str, action: &str, result: Option<&str>, request_id: &str) -> String {
    let result = result
        .map(|inner| format!("<{action}Result>{inner}</{action}Result>"))
        .unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{namespace}\">{result}\
         <ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>\n"
    )
}

/// `<name>escaped text</name>`.
pub fn element(name: &str, text: &str) -> String {
    format!("<{name}>{}</{name}>", escape(text))
}

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            other => out.push(other),
        }
    }
    out
}

/// A Query-protocol error: code, HTTP status, message.
#[derive(Debug)]
pub struct QueryError {
    pub code: String,
    pub status: u16,
    pub message: String,
}

impl QueryError {
    pub fn validation(message: String) -> Self {
        Self {
            code: "ValidationError".into(),
            status: 400,
            message,
        }
    }

    pub fn invalid_action(action: &str) -> Self {
        Self {
            code: "InvalidAction".into(),
            status: 400,
            message: format!("Could not find operation {action} for version 2010-05-08"),
        }
    }

    pub fn body(&self, namespace: &str, request_id: &str) -> String {
        if namespace == EC2_NAMESPACE {
            // EC2's own error envelope (EC2 API Reference, "Error codes"): no namespace, the
            // errors in a list, `RequestID` spelled so.
            return format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code>\
                 <Message>{}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>\n",
                escape(&self.code),
                escape(&self.message)
            );
        }
        let kind = if self.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        };
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"{namespace}\"><Error><Type>{kind}</Type>\
             <Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>\n",
            escape(&self.code),
            escape(&self.message)
        )
    }
}

impl From<IamError> for QueryError {
    fn from(error: IamError) -> Self {
        let (code, status) = match &error {
            IamError::NoSuchEntity(_) => ("NoSuchEntity", 404),
            IamError::EntityAlreadyExists(_) => ("EntityAlreadyExists", 409),
            IamError::DeleteConflict(_) => ("DeleteConflict", 409),
            IamError::LimitExceeded(_) => ("LimitExceeded", 409),
            IamError::MalformedPolicyDocument(_) => ("MalformedPolicyDocument", 400),
            IamError::InvalidInput(_) => ("InvalidInput", 400),
            IamError::AccessDenied(_) => ("AccessDenied", 403),
            _ => ("ServiceFailure", 500),
        };
        if status == 500 {
            tracing::error!(%error, "IAM internal error");
        }
        Self {
            code: code.into(),
            status,
            message: error.to_string(),
        }
    }
}

impl From<AuthError> for QueryError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing => Self {
                code: "MissingAuthenticationToken".into(),
                status: 403,
                message: "Request is missing Authentication Token".into(),
            },
            AuthError::Incomplete(message) => Self {
                code: "IncompleteSignature".into(),
                status: 400,
                message,
            },
            AuthError::UnknownAccessKey => Self {
                code: "InvalidClientTokenId".into(),
                status: 403,
                message: "The security token included in the request is invalid.".into(),
            },
            AuthError::InvalidSignature(message) => Self {
                code: "SignatureDoesNotMatch".into(),
                status: 403,
                message,
            },
            AuthError::Internal(message) => {
                tracing::error!(%message, "authentication failed internally");
                Self {
                    code: "ServiceFailure".into(),
                    status: 500,
                    message: "internal error".into(),
                }
            }
        }
    }
}
