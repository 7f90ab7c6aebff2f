//! Managed identity token endpoints over plain HTTP on loopback (docs/protocol.md §5): App Service /
//! Functions / Container Apps (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`) and the VM's IMDS, both on
//! one listener of [`ManagedIdentity`]. Tokens go into the fake's token table, so its vaults
//! accept them.

use std::collections::{HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::entra::Token;
use crate::{
    Background, Body, DEFAULT_TENANT, Fault, Recorded, Reply, Shared, json_response, next_counter,
    play_fault, random_hex, transport_fault, unix_now,
};

/// The client id of the system-assigned identity that every [`ManagedIdentity`] has.
pub const SYSTEM_ASSIGNED_CLIENT_ID: &str = "00000000-0000-0000-0000-0000000005a1";

/// The App Service / Functions / Container Apps endpoint's path (`IDENTITY_ENDPOINT` is
/// [`ManagedIdentity::url`] + this).
const APP_SERVICE_PATH: &str = "/msi/token";
/// IMDS's token path.
const IMDS_PATH: &str = "/metadata/identity/oauth2/token";
/// The App Service API version this endpoint speaks (the one with `X-IDENTITY-HEADER`).
const APP_SERVICE_API_VERSION: &str = "2019-08-01";
/// The first IMDS API version with identity tokens; later dated versions are accepted too.
const IMDS_FIRST_API_VERSION: &str = "2018-02-01";
/// Token lifetime, seconds (IMDS and App Service hand out tokens good for about a day).
const LIFETIME: u64 = 86_399;

/// A running managed identity endpoint, from [`crate::FakeAzure::start_managed_identity`]:
/// plain HTTP on an ephemeral port of 127.0.0.1, serving both
/// - App Service style: `GET /msi/token?api-version=2019-08-01&resource=R[&client_id=C]` with
///   `X-IDENTITY-HEADER: {identity_header}` (else 401); and
/// - IMDS style: `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=R[&client_id=C]`
///   with `Metadata: true` (else 400 "Required metadata header not specified").
///
/// The token is for [`DEFAULT_TENANT`] and scope `R/.default` (R without a trailing `/`), for
/// the system-assigned identity ([`SYSTEM_ASSIGNED_CLIENT_ID`]) unless `client_id` names a
/// user-assigned one ([`ManagedIdentity::add_user_assigned`]); any other `client_id`, and the
/// selectors `object_id`, `principal_id`, `msi_res_id` and `mi_res_id`, which this fake does not
/// resolve, get 400 `{"error":"invalid_request","error_description":"Identity not found"}`.
///
/// Its requests are recorded here, not in [`crate::FakeAzure::requests`]. Dropping it stops its
/// listener and connections (the [`crate::FakeAzure`] and the tokens already issued live on).
pub struct ManagedIdentity {
    port: u16,
    inner: Arc<Inner>,
    _server: Background,
}

struct Inner {
    azure: Arc<Shared>,
    identity_header: String,
    state: Mutex<MiState>,
}

#[derive(Default)]
struct MiState {
    user_assigned: HashSet<String>,
    hang: bool,
    requests: Vec<Recorded>,
    faults: VecDeque<Fault>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, MiState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ManagedIdentity {
    pub(crate) fn start(azure: Arc<Shared>) -> ManagedIdentity {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("kvrun-fake: cannot listen on 127.0.0.1: {e}"));
        let port = listener.local_addr().expect("listener address").port();
        let inner = Arc::new(Inner {
            azure,
            identity_header: random_hex(),
            state: Mutex::new(MiState::default()),
        });
        let for_server = Arc::clone(&inner);
        let server = Background::spawn("kvrun-fake-msi", listener, move |listener| {
            serve(for_server, listener)
        });
        ManagedIdentity {
            port,
            inner,
            _server: server,
        }
    }

    /// The listening port on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`. `IDENTITY_ENDPOINT` is this + `/msi/token`; IMDS's token URL is
    /// this + `/metadata/identity/oauth2/token`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The secret App Service puts in `IDENTITY_HEADER` (32 hex digits, fixed per instance).
    #[must_use]
    pub fn identity_header(&self) -> String {
        self.inner.identity_header.clone()
    }

    /// Adds a user-assigned identity, selected by `client_id=` (case-insensitive, as GUIDs are).
    pub fn add_user_assigned(&self, client_id: &str) {
        self.inner
            .lock()
            .user_assigned
            .insert(client_id.to_ascii_lowercase());
    }

    /// Every request to this endpoint so far, in arrival order (`form` is always `None`; the
    /// `X-IDENTITY-HEADER` and `Metadata` headers are in `headers`).
    #[must_use]
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().requests.clone()
    }

    /// `true`: requests are read and recorded but never answered (their connections stay
    /// open), like an IMDS address that swallows packets. `false` answers again (requests that
    /// already hang stay hung).
    pub fn set_hang(&self, on: bool) {
        self.inner.lock().hang = on;
    }

    /// The next `count` requests get `fault` instead of an answer. A [`Fault::Status`] answers
    /// with that status and an `{"error":…,"error_description":…}` body (429 adds
    /// `Retry-After: 1`).
    ///
    /// # Panics
    /// If `fault` is a [`Fault::RetryAfter`] with an invalid header name or value.
    pub fn fail_next(&self, fault: Fault, count: usize) {
        fault.check();
        self.inner
            .lock()
            .faults
            .extend(std::iter::repeat_n(fault, count));
    }
}

async fn serve(inner: Arc<Inner>, listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let inner = Arc::clone(&inner);
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(Arc::clone(&inner), request));
            let connection = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(tcp), service);
            let _ = connection.await;
        });
    }
}

async fn handle(inner: Arc<Inner>, request: Request<Incoming>) -> Reply {
    let (parts, body) = request.into_parts();
    body.collect().await.map_err(std::io::Error::other)?;
    let (hang, fault) = {
        let mut state = inner.lock();
        state.requests.push(Recorded::new(&parts, None));
        let fault = if state.hang {
            None
        } else {
            state.faults.pop_front()
        };
        (state.hang, fault)
    };
    if hang {
        return std::future::pending().await;
    }
    if let Some(fault) = fault {
        let injected = |status: StatusCode, text: Option<(&str, &str)>| {
            if let Some((kind, description)) = text {
                return error(status, kind, description);
            }
            let reason = status.canonical_reason().unwrap_or("Error");
            let description = format!("{reason} (injected by kvrun-fake)");
            let kind = match status.as_u16() {
                429 | 503 => "temporarily_unavailable",
                500.. => "server_error",
                _ => "invalid_request",
            };
            error(status, kind, &description)
        };
        let no_token = || {
            let expires_on = (unix_now() + LIFETIME).to_string();
            let body = json!({ "expires_on": expires_on, "token_type": "Bearer" });
            json_response(StatusCode::OK, &body)
        };
        return match play_fault(fault, injected, no_token) {
            Ok(response) => Ok(response),
            Err(fault) => transport_fault(fault).await,
        };
    }

    Ok(answer(&inner, &parts))
}

/// The query and headers of a token request.
struct Asked<'a> {
    query: Vec<(String, String)>,
    parts: &'a hyper::http::request::Parts,
}

impl Asked<'_> {
    /// A non-empty query parameter.
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A token, or the endpoint's refusal.
fn answer(inner: &Inner, parts: &hyper::http::request::Parts) -> Response<Body> {
    let asked = Asked {
        query: url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect(),
        parts,
    };
    let app_service = match parts.uri.path() {
        APP_SERVICE_PATH => true,
        IMDS_PATH => false,
        path => {
            let description = format!("kvrun-fake serves no path '{path}'");
            return error(StatusCode::NOT_FOUND, "not_found", &description);
        }
    };
    if parts.method != Method::GET {
        let description = format!("The request method {} is not supported.", parts.method);
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            &description,
        );
    }
    let checked = if app_service {
        check_app_service(&asked, &inner.identity_header)
    } else {
        check_imds(&asked)
    };
    if let Err(refusal) = checked {
        return *refusal;
    }
    let resource = asked.param("resource").unwrap_or_default();
    let Some(client_id) = identity(inner, &asked) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Identity not found",
        );
    };
    issue(inner, app_service, resource, &client_id)
}

/// `X-IDENTITY-HEADER`, `api-version` and `resource`, with App Service's answers.
fn check_app_service(asked: &Asked<'_>, identity_header: &str) -> Result<(), Box<Response<Body>>> {
    let refuse = |status, message: &str| Err(Box::new(app_service_error(status, message)));
    if asked.header("x-identity-header") != Some(identity_header) {
        return refuse(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    match asked.param("api-version") {
        Some(APP_SERVICE_API_VERSION) => {}
        Some(other) => {
            let message = format!(
                "The api-version '{other}' is not supported; use {APP_SERVICE_API_VERSION}."
            );
            return refuse(StatusCode::BAD_REQUEST, &message);
        }
        None => {
            let message = "The api-version query parameter is required.";
            return refuse(StatusCode::BAD_REQUEST, message);
        }
    }
    if asked.param("resource").is_none() {
        let message = "The resource query parameter is required.";
        return refuse(StatusCode::BAD_REQUEST, message);
    }
    Ok(())
}

/// `Metadata: true`, `api-version` and `resource`, with IMDS's answers.
fn check_imds(asked: &Asked<'_>) -> Result<(), Box<Response<Body>>> {
    let refuse = |description: &str| {
        Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            description,
        )))
    };
    if !asked
        .header("metadata")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return refuse("Required metadata header not specified");
    }
    match asked.param("api-version") {
        Some(v) if is_date(v) && v >= IMDS_FIRST_API_VERSION => {}
        Some(_) => return refuse("Invalid version"),
        None => return refuse("Required query variable 'api-version' is missing"),
    }
    if asked.param("resource").is_none() {
        return refuse("Required audience variable not specified");
    }
    Ok(())
}

/// The client id of the identity asked for, if this endpoint has it.
fn identity(inner: &Inner, asked: &Asked<'_>) -> Option<String> {
    let unresolved = ["object_id", "principal_id", "msi_res_id", "mi_res_id"];
    if unresolved.iter().any(|name| asked.param(name).is_some()) {
        return None;
    }
    match asked.param("client_id") {
        None => Some(SYSTEM_ASSIGNED_CLIENT_ID.to_owned()),
        Some(id) => inner
            .lock()
            .user_assigned
            .contains(&id.to_ascii_lowercase())
            .then(|| id.to_owned()),
    }
}

/// Records a token for `{resource}/.default` in [`DEFAULT_TENANT`] and answers it in the
/// style's body (all values strings).
fn issue(inner: &Inner, app_service: bool, resource: &str, client_id: &str) -> Response<Body> {
    let access_token = format!("fake-mi-{}-{}", next_counter(), std::process::id());
    let token = Token {
        tenant: DEFAULT_TENANT.to_owned(),
        scope: format!("{}/.default", resource.trim_end_matches('/')),
        client_id: client_id.to_owned(),
    };
    inner
        .azure
        .lock()
        .tokens
        .insert(access_token.clone(), token);
    let now = unix_now();
    let expires_on = (now + LIFETIME).to_string();
    let body = if app_service {
        json!({
            "access_token": access_token,
            "expires_on": expires_on,
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id,
        })
    } else {
        json!({
            "access_token": access_token,
            "client_id": client_id,
            "expires_in": LIFETIME.to_string(),
            "expires_on": expires_on,
            "ext_expires_in": LIFETIME.to_string(),
            "not_before": now.to_string(),
            "resource": resource,
            "token_type": "Bearer",
        })
    };
    json_response(StatusCode::OK, &body)
}

/// `YYYY-MM-DD`.
fn is_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
}

/// IMDS's (and this fake's identity) error body.
fn error(status: StatusCode, error: &str, description: &str) -> Response<Body> {
    let body: Value = json!({ "error": error, "error_description": description });
    json_response(status, &body)
}

/// App Service's error body for its own checks.
fn app_service_error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(
        status,
        &json!({ "statusCode": status.as_u16(), "message": message }),
    )
}
