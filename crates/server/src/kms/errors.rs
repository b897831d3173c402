//! KMS errors on the wire: variant → AWS error type → HTTP status → JSON body.
//! Every client-caused KMS error is a 400; only internal failures are 500 (AWS does the same).

use atrest_kms::KmsError;

use crate::auth::AuthError;

#[derive(Debug)]
pub struct WireError {
    pub type_name: &'static str,
    pub status: u16,
    pub message: String,
}

impl WireError {
    fn client(type_name: &'static str, message: String) -> Self {
        Self {
            type_name,
            status: 400,
            message,
        }
    }

    pub fn unsupported_operation(operation: &str) -> Self {
        Self::client(
            "UnsupportedOperationException",
            format!("atrest does not support the KMS operation {operation}"),
        )
    }

    pub fn unknown_target(target: &str) -> Self {
        Self::client(
            "UnknownOperationException",
            format!("No operation is named by X-Amz-Target {target}"),
        )
    }

    pub fn from_json(error: serde_json::Error) -> Self {
        if error.is_data() {
            Self::client(
                "ValidationException",
                format!("1 validation error detected: {error}"),
            )
        } else {
            Self::client(
                "SerializationException",
                format!("The request body is not valid JSON: {error}"),
            )
        }
    }

    pub fn too_large(limit: usize) -> Self {
        Self {
            type_name: "RequestEntityTooLargeException",
            status: 413,
            message: format!("Request bodies are limited to {limit} bytes"),
        }
    }

    pub fn body(&self) -> Vec<u8> {
        serde_json::json!({ "__type": self.type_name, "message": self.message })
            .to_string()
            .into_bytes()
    }
}

impl From<KmsError> for WireError {
    fn from(error: KmsError) -> Self {
        let type_name = error.type_name();
        let status = if type_name == "KMSInternalException" {
            500
        } else {
            400
        };
        if status == 500 {
            tracing::error!(%error, "KMS internal error");
        }
        Self {
            type_name,
            status,
            message: error.to_string(),
        }
    }
}

impl From<AuthError> for WireError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing => Self {
                type_name: "MissingAuthenticationToken",
                status: 403,
                message: "Missing Authentication Token".into(),
            },
            AuthError::Incomplete(message) => Self::client("IncompleteSignatureException", message),
            AuthError::UnknownAccessKey => Self::client(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.".into(),
            ),
            AuthError::InvalidSignature(message) => {
                Self::client("InvalidSignatureException", message)
            }
            AuthError::Internal(message) => {
                tracing::error!(%message, "authentication failed internally");
                Self {
                    type_name: "KMSInternalException",
                    status: 500,
                    message: "internal error".into(),
                }
            }
        }
    }
}
