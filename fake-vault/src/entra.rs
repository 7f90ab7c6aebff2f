//! The Microsoft Entra side: the client-credentials token endpoint (docs/protocol.md §5). Tokens are
//! opaque strings; the fake remembers whom and what each was issued for.

use aws_lc_rs::signature::{
    RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256, UnparsedPublicKey, VerificationAlgorithm,
};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::cert::CertKey;
use crate::{
    Body, Fault, State, json_response, new_access_token, play_fault, random_hex, unix_now,
};

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
    port: u16,
    method: &Method,
    path: &str,
    form: &[(String, String)],
) -> Result<Response<Body>, Fault> {
    if let Some(fault) = state.token_faults.pop_front() {
        let injected = |status: StatusCode, text: Option<(&str, &str)>| {
            if let Some((error, description)) = text {
                return aad_error(status, error, 0, description);
            }
            let error = match status.as_u16() {
                429 | 503 => "temporarily_unavailable",
                500.. => "server_error",
                _ => "invalid_request",
            };
            let reason = status.canonical_reason().unwrap_or("Error");
            aad_error(
                status,
                error,
                0,
                &format!("{reason} (injected by kvrun-fake)."),
            )
        };
        let no_token = || {
            let body =
                json!({ "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599 });
            json_response(StatusCode::OK, &body)
        };
        return play_fault(fault, injected, no_token);
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
    let audience = format!("https://{HOST}:{port}/{tenant}/oauth2/v2.0/token");
    Ok(issue(state, tenant, &audience, form))
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

/// Checks the client and issues a token for `(tenant, scope)`; `audience` is the URL of this
/// token endpoint, which a certificate's client assertion must name.
fn issue(
    state: &mut State,
    tenant: &str,
    audience: &str,
    form: &[(String, String)],
) -> Response<Body> {
    let grant = match parse_grant(form) {
        Ok(grant) => grant,
        Err(response) => return *response,
    };
    let client_id = grant.client_id;
    let secret = state.clients.get(client_id);
    let certificates = state.certificates.get(client_id);
    if secret.is_none() && certificates.is_none() {
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
    }
    let secret_matches = secret.is_some_and(|secret| grant.presented == secret);
    if !secret_matches
        && grant.is_assertion
        && let Some(keys) = certificates
    {
        if let Err(response) = check_assertion(keys, grant.presented, client_id, audience) {
            return *response;
        }
        return grant_token(state, tenant, &grant);
    }
    if !secret_matches {
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
    grant_token(state, tenant, &grant)
}

/// Issues a token for an authenticated client.
fn grant_token(state: &mut State, tenant: &str, grant: &Grant<'_>) -> Response<Body> {
    let client_id = grant.client_id;
    let access_token = new_access_token(state.token_length);
    let token = Token {
        tenant: tenant.to_owned(),
        scope: grant.scope.to_owned(),
        client_id: client_id.to_owned(),
    };
    state.tokens.insert(access_token.clone(), token);
    let body = json!({ "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": access_token });
    json_response(StatusCode::OK, &body)
}

/// base64 or base64url, padded or not: what Entra takes in a JWT and its `x5t` (`azure_identity`
/// 1.0 sends the thumbprint as padded standard base64).
fn base64_any(text: &str) -> Option<Vec<u8>> {
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(
        &alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    URL_SAFE
        .decode(text.replace('+', "-").replace('/', "_"))
        .ok()
}

fn hex_upper(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02X}");
        out
    })
}

/// Checks a certificate client's assertion the way Entra does: a JWT signed (RS256 or PS256)
/// by the key of one of the client's certificates, named by its `x5t` (SHA-1) or `x5t#S256`
/// thumbprint, with `iss` = `sub` = the client, `aud` = this token endpoint, `exp` in the future,
/// `nbf` (if any) not, and a `jti`.
fn check_assertion(
    keys: &[CertKey],
    assertion: &str,
    client_id: &str,
    audience: &str,
) -> Result<(), Box<Response<Body>>> {
    let jwt = Jwt::parse(assertion).ok_or_else(|| Box::new(malformed()))?;
    check_signature(keys, &jwt, client_id)?;
    check_claims(&jwt.claims, client_id, audience)
}

/// A JWT in its parts.
struct Jwt<'a> {
    header: Value,
    claims: Value,
    signature: Vec<u8>,
    /// `{header}.{payload}`, as sent.
    signed: &'a str,
}

impl Jwt<'_> {
    fn parse(jwt: &str) -> Option<Jwt<'_>> {
        let json = |part: &str| {
            base64_any(part)
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                .filter(Value::is_object)
        };
        let (signed, signature) = jwt.rsplit_once('.')?;
        let (header, payload) = signed.split_once('.')?;
        (!payload.contains('.')).then_some(())?;
        Some(Jwt {
            header: json(header)?,
            claims: json(payload)?,
            signature: base64_any(signature)?,
            signed,
        })
    }
}

fn malformed() -> Response<Body> {
    aad_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        50027,
        "AADSTS50027: JWT token is invalid or malformed.",
    )
}

fn invalid_client(code: u32, message: &str) -> Response<Body> {
    aad_error(StatusCode::UNAUTHORIZED, "invalid_client", code, message)
}

/// The algorithm, the key named by the thumbprint and the signature (`AADSTS700027`).
fn check_signature(
    keys: &[CertKey],
    jwt: &Jwt<'_>,
    client_id: &str,
) -> Result<(), Box<Response<Body>>> {
    let invalid_signature = |reason: &str| {
        let message = format!(
            "AADSTS700027: Client assertion contains an invalid signature. [Reason - {reason}, Please visit the \
             Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'.]"
        );
        Box::new(invalid_client(700_027, &message))
    };
    let header = &jwt.header;
    let algorithm: &'static dyn VerificationAlgorithm = match header["alg"].as_str() {
        Some("RS256") => &RSA_PKCS1_2048_8192_SHA256,
        Some("PS256") => &RSA_PSS_2048_8192_SHA256,
        other => {
            let reason = format!(
                "The signing algorithm '{}' is not supported.",
                other.unwrap_or("")
            );
            return Err(invalid_signature(&reason));
        }
    };
    let sha256 = header["x5t#S256"].as_str().and_then(base64_any);
    let sha1 = header["x5t"].as_str().and_then(base64_any);
    let thumbprint = hex_upper(sha1.as_deref().or(sha256.as_deref()).unwrap_or_default());
    let key = keys.iter().find(|key| {
        sha256.as_ref().is_some_and(|t| *t == key.sha256)
            || sha1.as_ref().is_some_and(|t| *t == key.sha1)
    });
    let Some(key) = key else {
        let reason =
            format!("The key was not found., Thumbprint of key used by client: '{thumbprint}'");
        return Err(invalid_signature(&reason));
    };
    if UnparsedPublicKey::new(algorithm, &key.spki)
        .verify(jwt.signed.as_bytes(), &jwt.signature)
        .is_err()
    {
        let reason = format!(
            "The provided signature value did not match the expected signature value., Thumbprint of key used by \
             client: '{thumbprint}'"
        );
        return Err(invalid_signature(&reason));
    }
    Ok(())
}

/// `exp` and `jti` present, `iss` = `sub` = the client, `aud` = this endpoint, the time range.
fn check_claims(
    claims: &Value,
    client_id: &str,
    audience: &str,
) -> Result<(), Box<Response<Body>>> {
    let text = |name: &str| claims[name].as_str().filter(|v| !v.is_empty());
    let (Some(exp), Some(_jti)) = (claims["exp"].as_u64(), text("jti")) else {
        return Err(Box::new(malformed()));
    };
    let nbf = match &claims["nbf"] {
        Value::Null => None,
        nbf => Some(nbf.as_u64().ok_or_else(|| Box::new(malformed()))?),
    };
    if text("iss") != Some(client_id) || text("sub") != Some(client_id) {
        return Err(Box::new(invalid_client(
            700_021,
            "AADSTS700021: Client assertion application identifier doesn't match 'client_id' parameter. Review the \
             documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
        )));
    }
    let aud = match &claims["aud"] {
        Value::Array(values) if values.len() == 1 => values[0].as_str(),
        value => value.as_str(),
    };
    if aud != Some(audience) {
        return Err(Box::new(invalid_client(
            50012,
            "AADSTS50012: Client assertion audience claim does not match Realm issuer.",
        )));
    }
    let now = unix_now();
    if exp <= now || nbf.is_some_and(|nbf| nbf > now) {
        let message = format!(
            "AADSTS700024: Client assertion is not within its valid time range. Current time: {}, assertion valid \
             from {}, expiry time of assertion {}. Review the documentation at \
             https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
            iso_timestamp(now),
            iso_timestamp(nbf.unwrap_or(0)),
            iso_timestamp(exp)
        );
        return Err(Box::new(invalid_client(700_024, &message)));
    }
    Ok(())
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
    let (year, month, day, hour, minute, second) = civil(secs);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}Z")
}

/// `YYYY-MM-DDThh:mm:ss.0000000Z` (UTC), as Entra writes times inside messages.
fn iso_timestamp(secs: u64) -> String {
    let (year, month, day, hour, minute, second) = civil(secs);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.0000000Z")
}

/// Year, month, day, hour, minute and second (UTC) of a Unix time.
fn civil(secs: u64) -> (u64, u64, u64, u64, u64, u64) {
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
    (year, month, day, rem / 3600, rem / 60 % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps() {
        assert_eq!(super::utc_timestamp(0), "1970-01-01 00:00:00Z");
        assert_eq!(super::utc_timestamp(1_700_005_846), "2023-11-14 23:50:46Z");
        assert_eq!(super::utc_timestamp(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(
            super::iso_timestamp(1_700_005_846),
            "2023-11-14T23:50:46.0000000Z"
        );
    }
}
