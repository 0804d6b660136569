//! Why an [`crate::HttpStore`] could not be built. Errors of the calls themselves are the store
//! API's (`AppendError`, `ReadError`, `SubscribeError`).

/// Why an [`crate::HttpStore`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error(
        "{url:?} is not the base URL of a Factlog server ({reason}); give one such as \
         http://127.0.0.1:4470 or https://factlog.example.com"
    )]
    InvalidUrl { url: String, reason: String },
    /// The token is not shown, so that it does not end up in logs.
    #[error(
        "the token cannot be sent in an HTTP header: it holds a control character or a line \
         break; check how it was read"
    )]
    InvalidToken,
    #[error("the root certificate cannot be used: {0}; give PEM text with CERTIFICATE blocks")]
    InvalidCertificate(String),
    #[error("the HTTP client could not be set up: {0}")]
    Http(String),
}
