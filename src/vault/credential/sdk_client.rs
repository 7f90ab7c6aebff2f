//! The `HttpClient` `azure_identity` sends token requests through: kvrun's one client
//! ([`crate::http`]: its TLS, proxy, `*.localhost` and https-only rules, h2 or HTTP/1.1 by ALPN),
//! reading at most [`MAX_BODY`] of any answer. `azure_core`'s own reqwest adapter read a body
//! whole, however long a server made it; a real token answer is a few KiB.
//!
//! Here, too, kvrun reads what Entra said, so that it never has to take it from the SDK's
//! wording: an error status comes back as the `ErrorKind::HttpResponse` error `azure_identity`
//! expects, whose cause is an [`EntraAnswer`] (status, `error`, `error_codes`,
//! `error_description`, trace id, the wait it asked for), and a failure below HTTP has the
//! client's own [`http::Error`] as its cause. `azure_identity` keeps causes, so
//! [`super::entra`] finds both by type. (`azure_identity` also reads Entra's error body itself,
//! into borrowed strings: a description with any JSON escape, or a body that is not JSON, loses
//! the status there. Nothing is lost here.)

use std::sync::Arc;
use std::time::Duration;

use azure_core::error::ErrorKind;
use azure_core::http::headers::{HeaderName, HeaderValue, Headers};
use azure_core::http::request::Body;
use azure_core::http::{AsyncRawResponse, HttpClient, RawResponse, Request};

use crate::http;

/// The most kvrun reads of a token endpoint's (or managed identity's, or a tool's) answer.
pub const MAX_BODY: usize = 64 * 1024;

/// kvrun's client, as `azure_identity`'s transport.
#[derive(Debug)]
pub struct SdkClient(pub Arc<http::Client>);

/// What Entra answered with an error status (RFC 6749 §5.2, plus Entra's `error_codes` and
/// `trace_id`). Its `Display` is the description (or the code, or "not JSON").
#[derive(Debug, Clone, Default, thiserror::Error)]
#[error("{}", self.summary())]
pub struct EntraAnswer {
    pub status: u16,
    /// The body is JSON (an OAuth error), not a gateway's page.
    pub json: bool,
    pub error: String,
    pub error_codes: Vec<i64>,
    pub description: String,
    pub trace_id: String,
    /// The wait the answer asked for (`Retry-After` and its kin).
    pub asked: Option<Duration>,
}

#[derive(serde::Deserialize, Default)]
struct EntraError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
    #[serde(default)]
    error_codes: Vec<i64>,
    #[serde(default)]
    trace_id: String,
}

impl EntraAnswer {
    fn read(status: u16, headers: &hyper::HeaderMap, body: &[u8]) -> Self {
        let parsed = serde_json::from_slice::<EntraError>(body);
        let json = parsed.is_ok();
        let detail = parsed.unwrap_or_default();
        Self {
            status,
            json,
            error: detail.error,
            error_codes: detail.error_codes,
            description: detail.error_description,
            trace_id: detail.trace_id,
            asked: super::super::retry::retry_after_in(headers),
        }
    }

    /// `error_codes` joined, else `error`.
    fn code(&self) -> Option<String> {
        if self.error_codes.is_empty() {
            Some(self.error.clone()).filter(|e| !e.is_empty())
        } else {
            Some(
                self.error_codes
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            )
        }
    }

    /// One line for the user: Entra's description, else its code.
    #[must_use]
    pub fn summary(&self) -> String {
        if !self.json {
            return "the answer is not JSON".into();
        }
        if self.description.is_empty() {
            return self.code().unwrap_or_else(|| "no error description".into());
        }
        self.description
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}

#[async_trait::async_trait]
impl HttpClient for SdkClient {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let method = http::Method::from_bytes(request.method().as_str().as_bytes())
            .map_err(|e| azure_core::Error::with_error(ErrorKind::Other, e, "an HTTP method"))?;
        let body = match request.body() {
            Body::Bytes(bytes) => bytes.clone(),
            Body::SeekableStream(_) => {
                return Err(azure_core::Error::with_message(
                    ErrorKind::Other,
                    "kvrun sends token requests with a body in memory only",
                ));
            }
        };
        let mut outgoing =
            http::Request::new(method, request.url().clone(), body).max_body(MAX_BODY);
        for (name, value) in request.headers().iter() {
            let name = hyper::header::HeaderName::from_bytes(name.as_str().as_bytes());
            let value = hyper::header::HeaderValue::from_str(value.as_str());
            if let (Ok(name), Ok(value)) = (name, value) {
                outgoing = outgoing.header(name, value, false);
            }
        }
        let response = self.0.send(&outgoing).await.map_err(|e| {
            let kind = match e {
                http::Error::Unreachable(_) => ErrorKind::Connection,
                _ => ErrorKind::Io,
            };
            azure_core::Error::new(kind, e)
        })?;
        let headers: Headers = response
            .headers
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
        let status = response.status;
        if !(200..300).contains(&status) {
            let answer = EntraAnswer::read(status, &response.headers, &response.body);
            let raw = RawResponse::from_bytes(status.into(), headers, response.body);
            return Err(azure_core::Error::new(
                ErrorKind::HttpResponse {
                    status: status.into(),
                    error_code: answer.code(),
                    raw_response: Some(Box::new(raw)),
                },
                answer,
            ));
        }
        Ok(AsyncRawResponse::from_bytes(
            status.into(),
            headers,
            response.body,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_says_what_entra_said_however_it_is_escaped() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid \"secret\" \u001b[2J.\r\nTrace ID: t","error_codes":[7000215],"trace_id":"t-1"}"#;
        let answer = EntraAnswer::read(401, &hyper::HeaderMap::new(), body);
        assert!(answer.json);
        assert_eq!(answer.code().as_deref(), Some("7000215"));
        assert_eq!(answer.trace_id, "t-1");
        assert_eq!(
            answer.summary(),
            "AADSTS7000215: Invalid \"secret\" \u{1b}[2J."
        );
    }

    #[test]
    fn a_page_that_is_not_json_keeps_its_status() {
        let mut headers = hyper::HeaderMap::new();
        headers.insert("retry-after", "3".parse().unwrap());
        let answer = EntraAnswer::read(503, &headers, b"<html>Service Unavailable</html>");
        assert!(!answer.json);
        assert_eq!(answer.status, 503);
        assert_eq!(answer.asked, Some(Duration::from_secs(3)));
        assert_eq!(answer.summary(), "the answer is not JSON");
    }
}
