//! The server's error type: a status and a message the client may see. Failures from the core are
//! sorted by what they are, not by their text: a rule the caller broke ([`crate::release::Refused`]) is
//! 403, something that does not exist ([`crate::app::NotFound`]) is 404, a database or disk failure is
//! 500 with a generic message (the detail goes to the log, never to the client), and anything else the
//! core refused is the caller's input: 400 with the core's one-line reason.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "sign in first")
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        if let Some(r) = e.downcast_ref::<crate::release::Refused>() {
            return ApiError::forbidden(r.0.clone());
        }
        if let Some(n) = e.downcast_ref::<crate::app::NotFound>() {
            return ApiError::not_found(n.0.clone());
        }
        let internal = e.chain().any(|c| {
            c.downcast_ref::<crate::store::StoreError>().is_some_and(|s| {
                !matches!(
                    s,
                    crate::store::StoreError::UserExists(_)
                        | crate::store::StoreError::CorpusExists(_)
                        | crate::store::StoreError::KeyExists(_)
                )
            }) || c.downcast_ref::<std::io::Error>().is_some()
                || c.downcast_ref::<tokio::task::JoinError>().is_some()
        });
        if internal {
            tracing::error!("internal error: {e:#}");
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; the server log has the detail",
            );
        }
        if e.chain().any(|c| {
            matches!(
                c.downcast_ref::<crate::store::StoreError>(),
                Some(
                    crate::store::StoreError::UserExists(_)
                        | crate::store::StoreError::CorpusExists(_)
                        | crate::store::StoreError::KeyExists(_)
                )
            )
        }) {
            return ApiError::new(StatusCode::CONFLICT, format!("{e:#}"));
        }
        ApiError::bad_request(format!("{e:#}"))
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        anyhow::Error::from(e).into()
    }
}

impl From<crate::release::Refused> for ApiError {
    fn from(e: crate::release::Refused) -> ApiError {
        ApiError::forbidden(e.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message, "status": self.status.as_u16() })),
        )
            .into_response()
    }
}
