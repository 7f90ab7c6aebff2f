//! The HTTP client `azure_identity` sends token requests through: reqwest with the run's TLS,
//! proxy and `*.localhost` rules ([`super::super::http_client`]), reading at most [`MAX_BODY`] of
//! any answer. `azure_core`'s own reqwest adapter reads a body whole, however long a server makes
//! it (a `Content-Length: 2147483648` that streams took kvrun to 5 GB); a real token answer is a
//! few KiB.
//!
//! One more difference: an error status comes back as the `ErrorKind::HttpResponse` error that
//! `azure_identity` would make of it, but read here. `azure_identity` reads Entra's error body
//! into borrowed strings, so a description with any JSON escape in it (`\"`, `\n`, `\u001b`)
//! fails to parse and the status is lost; and a body that is not JSON (a gateway's HTML page)
//! loses it too. Here the status, the headers (`Retry-After`) and Entra's description survive,
//! so kvrun's retry rule sees a 503 as a 503.

use azure_core::error::ErrorKind;
use azure_core::http::headers::{HeaderName, HeaderValue, Headers};
use azure_core::http::request::Body;
use azure_core::http::{AsyncRawResponse, HttpClient, RawResponse, Request};

/// The most kvrun reads of a token endpoint's (or managed identity's, or a tool's) answer.
pub const MAX_BODY: usize = 64 * 1024;

/// An answer longer than [`MAX_BODY`].
#[derive(Debug, thiserror::Error)]
#[error("the answer is larger than {} KiB", MAX_BODY / 1024)]
pub struct TooLarge;

/// reqwest with a cap on what it reads (see the module docs).
#[derive(Debug)]
pub struct Capped(pub reqwest::Client);

/// Read a response's body, refusing one over `max` bytes without reading further.
///
/// # Errors
/// The body is larger than `max` (declared or sent), or broke off.
pub async fn read_body(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Broken)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("{TooLarge}")]
    TooLarge,
    #[error("the answer broke off: {0}")]
    Broken(reqwest::Error),
}

#[async_trait::async_trait]
impl HttpClient for Capped {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes())
            .map_err(|e| azure_core::Error::with_error(ErrorKind::Other, e, "an HTTP method"))?;
        let mut builder = self.0.request(method, request.url().clone());
        for (name, value) in request.headers().iter() {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder = match request.body() {
            Body::Bytes(bytes) => builder.body(bytes.clone()),
            Body::SeekableStream(_) => {
                return Err(azure_core::Error::with_message(
                    ErrorKind::Other,
                    "kvrun sends token requests with a body in memory only",
                ));
            }
        };
        let response = builder.send().await.map_err(|e| {
            let kind = if e.is_connect() {
                ErrorKind::Connection
            } else {
                ErrorKind::Io
            };
            azure_core::Error::with_error(kind, e, "the token request failed")
        })?;
        let status = response.status().as_u16();
        let headers: Headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                let value = value.to_str().ok()?;
                Some((
                    HeaderName::from(name.as_str().to_owned()),
                    HeaderValue::from(value.to_owned()),
                ))
            })
            .collect::<std::collections::HashMap<_, _>>()
            .into();
        let body = read_body(response, MAX_BODY).await.map_err(|e| match e {
            BodyError::TooLarge => azure_core::Error::new(ErrorKind::Io, TooLarge),
            BodyError::Broken(e) => {
                azure_core::Error::with_error(ErrorKind::Io, e, "the answer broke off")
            }
        })?;
        if !(200..300).contains(&status) {
            return Err(error_answer(status, headers, body));
        }
        Ok(AsyncRawResponse::from_bytes(status.into(), headers, body))
    }
}

/// Entra's error body (RFC 6749 §5.2, plus Entra's `error_codes`).
#[derive(serde::Deserialize, Default)]
struct EntraError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
    #[serde(default)]
    error_codes: Vec<i64>,
}

/// The error for an answer with an error status: its status and headers, and Entra's words.
fn error_answer(status: u16, headers: Headers, body: Vec<u8>) -> azure_core::Error {
    let parsed = serde_json::from_slice::<EntraError>(&body);
    let is_json = parsed.is_ok();
    let detail = parsed.unwrap_or_default();
    let error_code = if detail.error_codes.is_empty() {
        Some(detail.error).filter(|e| !e.is_empty())
    } else {
        Some(
            detail
                .error_codes
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(","),
        )
    };
    let message = match (is_json, detail.error_description) {
        (false, _) => "the answer is not JSON".to_owned(),
        (true, description) if description.is_empty() => error_code
            .clone()
            .unwrap_or_else(|| "no error description".into()),
        (true, description) => description,
    };
    let raw = RawResponse::from_bytes(status.into(), headers, body);
    azure_core::Error::with_message(
        ErrorKind::HttpResponse {
            status: status.into(),
            error_code,
            raw_response: Some(Box::new(raw)),
        },
        message,
    )
}
