//! The Key Vault side: secrets and their versions, challenge authentication and the service's
//! error bodies (docs/protocol.md §1–2).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use hyper::header::{HeaderName, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Method, Response, StatusCode};
use serde_json::json;

use crate::entra::Token;
use crate::{
    Body, DEFAULT_RESOURCE, DEFAULT_TENANT, DenyCode, Fault, SecretAttrs, State, json_error,
    json_response, play_fault, random_hex, unix_now,
};

/// Key Vault's own retry hint, in milliseconds.
const X_MS_RETRY_AFTER_MS: HeaderName = HeaderName::from_static("x-ms-retry-after-ms");

const MISSING_TOKEN: &str = "AKV10000: Request is missing a Bearer or PoP token.";
const THROTTLED: &str = "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached";
const API_VERSIONS: [&str; 8] = [
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6",
    "2025-07-01",
];

pub(crate) struct Vault {
    /// Lower-cased, as in the host name.
    name: String,
    pub tenant: String,
    pub resource: String,
    pub new_style: bool,
    pub deny: Option<DenyCode>,
    pub faults: VecDeque<Fault>,
    /// Faults for one secret, by lower-cased name (`VaultHandle::fail_secret`).
    pub secret_faults: HashMap<String, VecDeque<Fault>>,
    pub rate_limit: Option<RateLimit>,
    /// By lower-cased name.
    secrets: HashMap<String, Secret>,
}

struct Secret {
    /// As first set.
    name: String,
    /// Oldest first; the last one is the latest.
    versions: Vec<Version>,
}

struct Version {
    id: String,
    value: String,
    attrs: SecretAttrs,
    created: u64,
}

impl Vault {
    pub fn new(name: &str) -> Vault {
        Vault {
            name: name.to_owned(),
            tenant: DEFAULT_TENANT.to_owned(),
            resource: DEFAULT_RESOURCE.to_owned(),
            new_style: false,
            deny: None,
            faults: VecDeque::new(),
            secret_faults: HashMap::new(),
            rate_limit: None,
            secrets: HashMap::new(),
        }
    }

    pub fn set(&mut self, name: &str, value: &str, attrs: SecretAttrs, id: String, created: u64) {
        let secret = self
            .secrets
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| Secret {
                name: name.to_owned(),
                versions: Vec::new(),
            });
        secret.versions.push(Version {
            id,
            value: value.to_owned(),
            attrs,
            created,
        });
    }

    /// The secret and version `GET /secrets/{name}[/{version}]` asks for (latest without a
    /// version), if they exist.
    fn find(&self, name: &str, version: Option<&str>) -> Option<(&Secret, &Version)> {
        let secret = self.secrets.get(&name.to_ascii_lowercase())?;
        let found = match version {
            None => secret.versions.last(),
            Some(v) => secret
                .versions
                .iter()
                .find(|x| x.id.eq_ignore_ascii_case(v)),
        };
        Some((secret, found?))
    }

    /// The answer of [`Fault::NoValue`] to `GET {path}`: a bundle without `value`.
    fn no_value(&self, port: u16, path: &str) -> Response<Body> {
        let target = secret_path(path).filter(|(name, _)| !name.is_empty());
        let found = target.and_then(|(name, version)| self.find(name, version));
        let mut bundle = if let Some((secret, version)) = found {
            bundle(&self.name, port, &secret.name, version)
        } else {
            let made_up = Version {
                id: random_hex(),
                value: String::new(),
                attrs: SecretAttrs::default(),
                created: unix_now(),
            };
            let name = target.map_or("secret", |(name, _)| name);
            bundle(&self.name, port, name, &made_up)
        };
        bundle.as_object_mut().expect("an object").remove("value");
        json_response(StatusCode::OK, &bundle)
    }

    fn challenge(&self) -> String {
        let authority = format!("https://login.windows.net/{}", self.tenant);
        if self.new_style {
            format!(
                "Bearer authorization_uri=\"{authority}\", scope=\"{}/.default\"",
                self.resource
            )
        } else {
            format!(
                "Bearer authorization=\"{authority}\", resource=\"{}\"",
                self.resource
            )
        }
    }

    fn unauthorized(&self, message: &str) -> Response<Body> {
        let mut response = json_error(StatusCode::UNAUTHORIZED, "Unauthorized", None, message);
        let challenge = self.challenge().parse().expect("challenge header value");
        response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
        response
    }

    fn forbidden(&self, code: DenyCode, client_id: &str, secret: &str) -> Response<Body> {
        let (vault, tenant) = (&self.name, &self.tenant);
        let caller = format!(
            "appid={client_id};oid={};iss=https://sts.windows.net/{tenant}/",
            object_id(client_id)
        );
        let (inner, message) = match code {
            DenyCode::AccessDenied => (
                "AccessDenied",
                format!(
                    "The user, group or application '{caller}' does not have secrets get permission on key vault \
                 '{vault};location=eastus'. For help resolving this issue, please see \
                 https://go.microsoft.com/fwlink/?linkid=2125287"
                ),
            ),
            DenyCode::ForbiddenByRbac => (
                "ForbiddenByRbac",
                format!(
                    "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments \
                 or role definitions were changed recently, please observe propagation time.\r\nCaller: {caller}\r\n\
                 Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'\r\nResource: \
                 '/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/kvrun-fake/providers/\
                 microsoft.keyvault/vaults/{vault}/secrets/{secret}'\r\nAssignment: (not found)\r\n\
                 DenyAssignmentId: null\r\nDecisionReason: null \r\nVault: {vault};location=eastus\r\n"
                ),
            ),
            DenyCode::ForbiddenByFirewall => (
                "ForbiddenByFirewall",
                format!(
                    "Client address is not authorized and caller is not a trusted service.\r\nClient address: \
                 127.0.0.1\r\nCaller: {caller}\r\nVault: {vault};location=eastus"
                ),
            ),
        };
        json_error(StatusCode::FORBIDDEN, "Forbidden", Some(inner), &message)
    }

    /// The service's answer for an injected status.
    fn status(&self, status: StatusCode) -> Response<Body> {
        match status {
            StatusCode::UNAUTHORIZED => self.unauthorized(MISSING_TOKEN),
            StatusCode::TOO_MANY_REQUESTS => json_error(status, "Throttled", None, THROTTLED),
            _ => {
                let reason = status.canonical_reason().unwrap_or("Error");
                let message = format!("{reason} (injected by kvrun-fake)");
                json_error(status, &reason.replace(' ', ""), None, &message)
            }
        }
    }
}

/// Answers one request to the vault `name`; `Err` is a transport-level fault to play instead.
pub(crate) fn handle(
    state: &mut State,
    port: u16,
    name: &str,
    method: &Method,
    path: &str,
    query: &str,
    authorization: Option<&str>,
) -> Result<Response<Body>, Fault> {
    let Some(vault) = state.vaults.get_mut(name) else {
        let message = format!("kvrun-fake has no vault '{name}' (create it with FakeAzure::vault)");
        return Ok(not_found("NotFound", &message));
    };
    let mut secret_fault = || {
        let name = path.strip_prefix("/secrets/")?.split('/').next()?;
        vault
            .secret_faults
            .get_mut(&name.to_ascii_lowercase())?
            .pop_front()
    };
    let fault = match vault.faults.pop_front() {
        Some(fault) => Some(fault),
        None => secret_fault(),
    };
    if let Some(fault) = fault {
        let vault = &*vault;
        return play_fault(
            fault,
            |status, text| match text {
                Some((code, message)) => json_error(status, code, None, message),
                None => vault.status(status),
            },
            || vault.no_value(port, path),
        );
    }
    if method == Method::GET
        && let Some(limit) = &mut vault.rate_limit
        && !limit.admit(Instant::now())
    {
        return Ok(limit.throttled());
    }
    let vault = &*vault;
    let answer = check_api_version(query)
        .and_then(|()| authenticate(vault, &state.tokens, authorization))
        .and_then(|token| get_secret(vault, port, method, path, &token.client_id));
    Ok(answer.unwrap_or_else(|error| *error))
}

/// An answer that ends the checks early.
type Early<T> = Result<T, Box<Response<Body>>>;

fn check_api_version(query: &str) -> Early<()> {
    let api_version = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "api-version")
        .map(|(_, v)| v);
    let message = match api_version.as_deref() {
        Some(v) if API_VERSIONS.contains(&v) || v.ends_with("-preview") => return Ok(()),
        Some(v) if !v.is_empty() => format!(
            "The specified version ({v}) is not recognized. Consider using the latest supported version (2025-07-01)."
        ),
        _ => "The request URI contains an invalid API version".to_owned(),
    };
    Err(Box::new(json_error(
        StatusCode::BAD_REQUEST,
        "BadParameter",
        None,
        &message,
    )))
}

/// The caller's token, if it was issued by the fake for this vault's tenant and resource.
fn authenticate<'t>(
    vault: &Vault,
    tokens: &'t HashMap<String, Token>,
    authorization: Option<&str>,
) -> Early<&'t Token> {
    let bearer = authorization
        .and_then(|a| a.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
        .map(|(_, token)| token.trim());
    let Some(bearer) = bearer else {
        return Err(Box::new(vault.unauthorized(MISSING_TOKEN)));
    };
    let Some(token) = tokens.get(bearer) else {
        return Err(Box::new(vault.unauthorized("AKV10022: Invalid audience.")));
    };
    if !token.tenant.eq_ignore_ascii_case(&vault.tenant) {
        let tid = &vault.tenant;
        let message = format!(
            "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{tid}/, \
             https://login.microsoftonline.com/{tid}/v2.0, found https://sts.windows.net/{}/.",
            token.tenant
        );
        return Err(Box::new(vault.unauthorized(&message)));
    }
    if !token
        .scope
        .eq_ignore_ascii_case(&format!("{}/.default", vault.resource))
    {
        let audience = token
            .scope
            .strip_suffix("/.default")
            .unwrap_or(&token.scope);
        let message = format!(
            "AKV10022: Invalid audience. Expected {}, found: {audience}.",
            vault.resource
        );
        return Err(Box::new(vault.unauthorized(&message)));
    }
    Ok(token)
}

/// `GET /secrets/{name}[/[{version}]]` for an authenticated caller.
fn get_secret(
    vault: &Vault,
    port: u16,
    method: &Method,
    path: &str,
    client_id: &str,
) -> Early<Response<Body>> {
    let target = secret_path(path);
    let Some((name, version)) = target.filter(|(n, _)| !n.is_empty() && method == Method::GET)
    else {
        return Err(Box::new(not_found(
            "NotFound",
            &format!("kvrun-fake does not implement {method} {path}"),
        )));
    };
    if let Some(code) = vault.deny {
        return Err(Box::new(vault.forbidden(code, client_id, name)));
    }
    let Some((secret, found)) = vault.find(name, version) else {
        let id = version.map_or_else(|| name.to_owned(), |v| format!("{name}/{v}"));
        let message = format!(
            "A secret with (name/id) {id} was not found in this key vault. If you recently deleted this secret you \
             may be able to recover it using the correct recovery command. For help resolving this issue, please \
             see https://go.microsoft.com/fwlink/?linkid=2125182"
        );
        return Err(Box::new(not_found("SecretNotFound", &message)));
    };
    if !found.attrs.enabled {
        let message = "Operation get is not allowed on a disabled secret.";
        return Err(Box::new(json_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            Some("SecretDisabled"),
            message,
        )));
    }
    Ok(json_response(
        StatusCode::OK,
        &bundle(&vault.name, port, &secret.name, found),
    ))
}

/// `(name, version)` of `/secrets/{name}[/[{version}]]` (the name may be empty).
fn secret_path(path: &str) -> Option<(&str, Option<&str>)> {
    path.strip_prefix("/secrets/")
        .and_then(|rest| match rest.split_once('/') {
            None => Some((rest, None)),
            Some((name, "")) => Some((name, None)),
            Some((name, version)) if !version.contains('/') => Some((name, Some(version))),
            Some(_) => None,
        })
}

/// A vault's fixed-window rate limit (docs/protocol.md §4), from `VaultHandle::set_rate_limit`.
pub(crate) struct RateLimit {
    max: u32,
    window: Duration,
    retry_after: Duration,
    /// When the current window started; `None` before the first GET.
    started: Option<Instant>,
    /// GETs counted in the current window.
    counted: u32,
}

impl RateLimit {
    pub fn new(max: u32, window: Duration, retry_after: Duration) -> RateLimit {
        RateLimit {
            max,
            window,
            retry_after,
            started: None,
            counted: 0,
        }
    }

    /// Counts a GET arriving at `now`; `false`: throttle it (it is not counted). A GET after
    /// the current window has ended starts the next one.
    pub fn admit(&mut self, now: Instant) -> bool {
        let ended = self
            .started
            .is_none_or(|started| now.saturating_duration_since(started) >= self.window);
        if ended {
            self.started = Some(now);
            self.counted = 0;
        }
        if self.counted >= self.max {
            return false;
        }
        self.counted += 1;
        true
    }

    /// The 429 of a throttled GET.
    pub fn throttled(&self) -> Response<Body> {
        let millis = u64::try_from(self.retry_after.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
        let mut response = json_error(StatusCode::TOO_MANY_REQUESTS, "Throttled", None, THROTTLED);
        let headers = response.headers_mut();
        headers.insert(RETRY_AFTER, millis.div_ceil(1000).into());
        headers.insert(X_MS_RETRY_AFTER_MS, millis.into());
        response
    }
}

fn not_found(code: &str, message: &str) -> Response<Body> {
    json_error(StatusCode::NOT_FOUND, code, None, message)
}

/// The `SecretBundle` of one version.
fn bundle(vault: &str, port: u16, name: &str, version: &Version) -> serde_json::Value {
    let attrs = &version.attrs;
    let mut attributes = json!({
        "enabled": attrs.enabled,
        "created": version.created,
        "updated": version.created,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90,
    });
    if let Some(nbf) = attrs.nbf {
        attributes["nbf"] = nbf.into();
    }
    if let Some(exp) = attrs.exp {
        attributes["exp"] = exp.into();
    }
    let mut bundle = json!({
        "value": version.value,
        "id": format!("https://{vault}.vault.localhost:{port}/secrets/{name}/{}", version.id),
        "attributes": attributes,
        "tags": {},
    });
    if let Some(content_type) = &attrs.content_type {
        bundle["contentType"] = content_type.as_str().into();
    }
    bundle
}

/// A stable made-up object id for a client id.
fn object_id(client_id: &str) -> String {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(client_id);
    format!(
        "{:08x}-{:04x}-4{:03x}-8000-{:012x}",
        hash >> 32,
        (hash >> 16) & 0xffff,
        hash & 0xfff,
        hash & 0xffff_ffff_ffff
    )
}
