//! The Microsoft Entra side: the client-credentials token endpoint (PROTOCOL.md §5). Tokens are
//! opaque strings; the fake remembers whom and what each was issued for.

use hyper::{Method, Response, StatusCode};
use serde_json::json;

use crate::{Body, Fault, State, json_response, next_counter, random_hex, unix_now};

/// The authority's host name.
pub(crate) const HOST: &str = "login.localhost";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// What an issued token is good for.
pub(crate) struct Token {
    pub tenant: String,
    pub scope: String,
    pub client_id: String,
}

/// Answers one request to the authority; `Err` is a transport-level fault to play instead.
pub(crate) fn handle(
    state: &mut State,
    method: &Method,
    path: &str,
    form: &[(String, String)],
) -> Result<Response<Body>, Fault> {
    if let Some(fault) = state.token_faults.pop_front() {
        let Fault::Status(code) = fault else {
            return Err(fault);
        };
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let error = match code {
            429 | 503 => "temporarily_unavailable",
            500.. => "server_error",
            _ => "invalid_request",
        };
        let reason = status.canonical_reason().unwrap_or("Error");
        return Ok(aad_error(
            status,
            error,
            0,
            &format!("{reason} (injected by kvrun-fake)."),
        ));
    }
    let tenant = path
        .strip_prefix('/')
        .and_then(|p| p.strip_suffix("/oauth2/v2.0/token"));
    let Some(tenant) = tenant.filter(|t| !t.is_empty() && !t.contains('/')) else {
        let mut response = Response::new(crate::full(hyper::body::Bytes::new()));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return Ok(response);
    };
    if method != Method::POST {
        let message = format!(
            "AADSTS900561: The endpoint only accepts POST, OPTIONS requests. Received a {method} request."
        );
        return Ok(aad_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            900_561,
            &message,
        ));
    }
    Ok(issue(state, tenant, form))
}

/// The credentials of a client-credentials request.
struct Grant<'f> {
    client_id: &'f str,
    scope: &'f str,
    /// The client secret or assertion.
    presented: &'f str,
    is_assertion: bool,
}

fn parse_grant(form: &[(String, String)]) -> Result<Grant<'_>, Box<Response<Body>>> {
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let missing = |name: &str| {
        let message = format!(
            "AADSTS900144: The request body must contain the following parameter: '{name}'."
        );
        Box::new(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900_144,
            &message,
        ))
    };
    let grant_type = field("grant_type").ok_or_else(|| missing("grant_type"))?;
    if grant_type != "client_credentials" {
        let message =
            format!("AADSTS70003: The app requested an unsupported grant type '{grant_type}'.");
        return Err(Box::new(aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            &message,
        )));
    }
    let client_id = field("client_id").ok_or_else(|| missing("client_id"))?;
    let scope = field("scope").ok_or_else(|| missing("scope"))?;
    let assertion = field("client_assertion");
    if assertion.is_some() && field("client_assertion_type") != Some(JWT_BEARER) {
        return Err(missing("client_assertion_type"));
    }
    let presented = assertion.or_else(|| field("client_secret"));
    let presented = presented.ok_or_else(|| missing("client_assertion' or 'client_secret"))?;
    Ok(Grant {
        client_id,
        scope,
        presented,
        is_assertion: assertion.is_some(),
    })
}

/// Checks the client and issues a token for `(tenant, scope)`.
fn issue(state: &mut State, tenant: &str, form: &[(String, String)]) -> Response<Body> {
    let grant = match parse_grant(form) {
        Ok(grant) => grant,
        Err(response) => return *response,
    };
    let client_id = grant.client_id;
    let Some(expected) = state.clients.get(client_id) else {
        let message = format!(
            "AADSTS700016: Application with identifier '{client_id}' was not found in the directory '{tenant}'. This \
             can happen if the application has not been installed by the administrator of the tenant or consented to \
             by any user in the tenant. You may have sent your authentication request to the wrong tenant."
        );
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700_016,
            &message,
        );
    };
    if grant.presented != expected {
        let (code, message) = if grant.is_assertion {
            (
                70021,
                "AADSTS70021: No matching federated identity record found for presented assertion."
                    .to_owned(),
            )
        } else {
            let message = format!(
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the \
                 client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            );
            (7_000_215, message)
        };
        return aad_error(StatusCode::UNAUTHORIZED, "invalid_client", code, &message);
    }
    let access_token = format!("fake-at-{}-{}", next_counter(), std::process::id());
    let token = Token {
        tenant: tenant.to_owned(),
        scope: grant.scope.to_owned(),
        client_id: client_id.to_owned(),
    };
    state.tokens.insert(access_token.clone(), token);
    let body = json!({ "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": access_token });
    json_response(StatusCode::OK, &body)
}

/// Entra's error body; `description` gets the trace, correlation and time suffix.
fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response<Body> {
    let (trace_id, correlation_id, timestamp) = (guid(), guid(), utc_timestamp(unix_now()));
    let mut body = json!({
        "error": error,
        "error_description": format!(
            "{description} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}"
        ),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    if code == 0 {
        for key in ["error_codes", "error_uri"] {
            body.as_object_mut().expect("object").remove(key);
        }
    }
    json_response(status, &body)
}

fn guid() -> String {
    let h = random_hex();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// `YYYY-MM-DD hh:mm:ssZ` (UTC), as Entra writes it.
fn utc_timestamp(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil-from-days, for days since 1970-01-01 (non-negative here).
    let z = days + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps() {
        assert_eq!(super::utc_timestamp(0), "1970-01-01 00:00:00Z");
        assert_eq!(super::utc_timestamp(1_700_005_846), "2023-11-14 23:50:46Z");
        assert_eq!(super::utc_timestamp(951_782_400), "2000-02-29 00:00:00Z");
    }
}
