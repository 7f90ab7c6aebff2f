//! A fake Azure App Configuration store (docs/protocol.md §8): `{store}.azconfig.localhost`.
//!
//! - `GET /kv?key=…&label=…&api-version=…[&after=…]`: the key filter (omitted or `*` any, `abc`
//!   exact, `abc*` prefix, `a,b` up to 5; `\` escapes `*`, `,` and `\`) and the label filter
//!   (omitted or `*` any, `%00` no label, the same patterns); pages of [`StoreHandle::set_page_size`]
//!   key-values (100 by default) with `@nextLink` and the same link in `Link: <…>; rel="next"`,
//!   each page with an `ETag`, `If-None-Match` → 304 (no body, the `Link` kept);
//! - `GET /kv/{key}?label=…&api-version=…` (no label = no label), `ETag`, 404, 304;
//! - `api-version` mandatory; errors as `application/problem+json`;
//! - Entra tokens of the fake's token endpoint for the store's audience
//!   ([`StoreHandle::set_audience`], `https://appconfig.azure.com` by default), any tenant; or
//!   an access key (`HMAC-SHA256`, verified by [`verify`] with the real string-to-sign and the
//!   ±15 minute clock rule), 401 with the service's `WWW-Authenticate` otherwise;
//! - [`StoreHandle::deny_access`]: 403 for Entra callers (an access key is full access);
//!   [`StoreHandle::fail_next`]: faults, a 429 with `retry-after-ms`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hyper::header::{
    CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, IF_NONE_MATCH, LINK, WWW_AUTHENTICATE,
};
use hyper::{Method, Response, StatusCode};
use serde_json::json;

use crate::{Body, Fault, Shared, State, full, play_fault};

/// The API versions the store accepts: PROTOCOL.md §8's, and `2026-04-01`, the default of the
/// JS client (`@azure/app-configuration` 1.13.0) that the differential test runs against the fake.
const API_VERSIONS: [&str; 5] = [
    "1.0",
    "2023-10-01",
    "2023-11-01",
    "2024-09-01",
    "2026-04-01",
];
/// The SHA-256 of the empty body, base64.
pub const EMPTY_BODY_HASH: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
/// The public cloud's App Configuration audience.
pub const DEFAULT_AUDIENCE: &str = "https://appconfig.azure.com";

/// Attributes of a key-value (`Default`: no content type, no tags, not locked).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValueAttrs {
    pub content_type: Option<String>,
    pub tags: Vec<(String, String)>,
    pub locked: bool,
}

#[derive(Clone, Debug)]
struct KeyValue {
    value: String,
    attrs: KeyValueAttrs,
    etag: String,
    last_modified: u64,
}

/// A key-value's identity: its key and label (`None`: no label).
type Id = (String, Option<String>);

/// One store's state.
pub(crate) struct Store {
    /// By (key, label): listed in this order, no label first, as the service lists them.
    items: BTreeMap<Id, KeyValue>,
    /// Snapshots by name: the key-values as they were when it was made, by key.
    snapshots: HashMap<String, Vec<(Id, KeyValue)>>,
    page_size: usize,
    audience: String,
    denied: bool,
    key_id: String,
    key_secret: Vec<u8>,
    faults: VecDeque<Fault>,
    requests: usize,
    not_modified: usize,
}

impl Store {
    /// See [`StoreHandle::create_snapshot`].
    fn snapshot(&mut self, name: &str, filters: &[(&str, Option<&str>)]) {
        let mut by_key: BTreeMap<String, (Id, KeyValue)> = BTreeMap::new();
        for (key_filter, label) in filters {
            let keys = Filter::parse(Some(key_filter)).expect("a valid key filter");
            let labels = label.map(|l| Filter::parse(Some(l)).expect("a valid label filter"));
            for (id, kv) in &self.items {
                if keys.admits(&id.0) && admits_label(labels.as_ref(), id.1.as_ref()) {
                    by_key.insert(id.0.clone(), (id.clone(), kv.clone()));
                }
            }
        }
        self.snapshots
            .insert(name.to_owned(), by_key.into_values().collect());
    }

    fn new(name: &str) -> Store {
        let n = crate::next_counter();
        let secret: Vec<u8> = (0..32u8)
            .map(|i| {
                i.wrapping_mul(37)
                    .wrapping_add(u8::try_from(n % 251).unwrap_or(0))
            })
            .collect();
        Store {
            items: BTreeMap::new(),
            snapshots: HashMap::new(),
            page_size: 100,
            audience: DEFAULT_AUDIENCE.to_owned(),
            denied: false,
            key_id: format!("fake-{name}-l0-s0:AccessKey"),
            key_secret: secret,
            faults: VecDeque::new(),
            requests: 0,
            not_modified: 0,
        }
    }
}

/// Controls for one store, from [`crate::FakeAzure::app_config`].
#[derive(Clone)]
pub struct StoreHandle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) name: String,
}

impl StoreHandle {
    fn with<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut state = self.shared.lock();
        f(state.stores.get_mut(&self.name).expect("the store exists"))
    }

    /// `https://{name}.azconfig.localhost:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!(
            "https://{}.azconfig.localhost:{}",
            self.name, self.shared.port
        )
    }

    /// Sets `key` (with `label`, or none) to `value`; returns its new etag.
    pub fn set(&self, key: &str, label: Option<&str>, value: &str) -> String {
        self.set_with(key, label, value, KeyValueAttrs::default())
    }

    /// Sets `key` (with `label`) to `value` with `attrs`; returns its new etag.
    pub fn set_with(
        &self,
        key: &str,
        label: Option<&str>,
        value: &str,
        attrs: KeyValueAttrs,
    ) -> String {
        let etag = format!("etag-{}", crate::next_counter());
        let last_modified = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let kv = KeyValue {
            value: value.to_owned(),
            attrs,
            etag: etag.clone(),
            last_modified,
        };
        self.with(|s| {
            s.items
                .insert((key.to_owned(), label.map(str::to_owned)), kv)
        });
        etag
    }

    /// Removes `key` with `label`.
    pub fn remove(&self, key: &str, label: Option<&str>) {
        self.with(|s| s.items.remove(&(key.to_owned(), label.map(str::to_owned))));
    }

    /// Makes snapshot `name` of the key-values each `(key filter, label)` selects now (`None`:
    /// no label; filters as in a list), composed by key as the service's default composition
    /// does: where two filters select one key, the later filter's key-value is kept.
    pub fn create_snapshot(&self, name: &str, filters: &[(&str, Option<&str>)]) {
        self.with(|s| s.snapshot(name, filters));
    }

    /// Key-values per list page (100 by default).
    pub fn set_page_size(&self, size: usize) {
        self.with(|s| s.page_size = size.max(1));
    }

    /// The audience a bearer token must be for (`{audience}/.default`).
    pub fn set_audience(&self, audience: &str) {
        self.with(|s| audience.clone_into(&mut s.audience));
    }

    /// Entra callers get 403 (no "App Configuration Data Reader" role).
    pub fn deny_access(&self) {
        self.with(|s| s.denied = true);
    }

    pub fn allow_access(&self) {
        self.with(|s| s.denied = false);
    }

    /// The next `count` requests get `fault` (`Fault::Status(429)` and `Fault::Status(503)` as
    /// problem+json with `retry-after-ms: 50`, as the service throttles).
    pub fn fail_next(&self, fault: Fault, count: usize) {
        fault.check();
        self.with(|s| s.faults.extend(std::iter::repeat_n(fault, count)));
    }

    /// A connection string for the store's access key.
    #[must_use]
    pub fn connection_string(&self) -> String {
        let (id, secret) = self.with(|s| (s.key_id.clone(), s.key_secret.clone()));
        format!(
            "Endpoint={};Id={id};Secret={}",
            self.url(),
            base64::engine::general_purpose::STANDARD.encode(secret)
        )
    }

    /// Requests answered by this store so far.
    #[must_use]
    pub fn requests(&self) -> usize {
        self.with(|s| s.requests)
    }

    /// 304s answered so far.
    #[must_use]
    pub fn not_modified(&self) -> usize {
        self.with(|s| s.not_modified)
    }
}

/// The store `name` (created if new).
pub(crate) fn store_handle(shared: &Arc<Shared>, name: &str) -> StoreHandle {
    let name = name.to_ascii_lowercase();
    shared
        .lock()
        .stores
        .entry(name.clone())
        .or_insert_with(|| Store::new(&name));
    StoreHandle {
        shared: Arc::clone(shared),
        name,
    }
}

/// A problem+json answer.
fn problem(status: StatusCode, kind: &str, title: &str, detail: &str) -> Response<Body> {
    let body = json!({
        "type": format!("https://azconfig.io/errors/{kind}"),
        "title": title,
        "name": kind,
        "detail": detail,
        "status": status.as_u16(),
    });
    let mut response = Response::new(full(body.to_string().into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json; charset=utf-8"),
    );
    response
}

fn unauthorized(scheme_error: &str) -> Response<Body> {
    let mut response = problem(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Unauthorized",
        scheme_error,
    );
    let header =
        format!("HMAC-SHA256 error=\"invalid_token\" error_description=\"{scheme_error}\", Bearer");
    if let Ok(value) = HeaderValue::try_from(header) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

/// One request to a store.
pub(crate) struct Asked<'r> {
    pub method: &'r Method,
    pub path: &'r str,
    pub query: &'r str,
    pub headers: &'r HeaderMap,
    /// The `Host` (h2: `:authority`) as sent, with its port.
    pub host: &'r str,
}

/// Answers one request to store `name`; `Err` is a transport-level fault to play instead.
pub(crate) fn handle(
    state: &mut State,
    name: &str,
    asked: &Asked<'_>,
) -> Result<Response<Body>, Fault> {
    let tokens = &state.tokens;
    let Some(store) = state.stores.get_mut(name) else {
        let detail = format!("kvrun-fake has no App Configuration store '{name}'");
        return Ok(problem(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not Found",
            &detail,
        ));
    };
    store.requests += 1;
    if let Some(fault) = store.faults.pop_front() {
        let throttled = match fault {
            Fault::Status(429) => Some((StatusCode::TOO_MANY_REQUESTS, "Too Many Requests")),
            Fault::Status(503) => Some((StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")),
            _ => None,
        };
        if let Some((status, title)) = throttled {
            let mut response = problem(status, "throttled", title, "The request was throttled.");
            response
                .headers_mut()
                .insert("retry-after-ms", HeaderValue::from_static("50"));
            return Ok(response);
        }
        return play_fault(
            fault,
            |status, text| {
                problem(
                    status,
                    "fault",
                    text.map_or("Fault", |t| t.0),
                    text.map_or("", |t| t.1),
                )
            },
            || problem(StatusCode::OK, "fault", "No value", ""),
        );
    }
    let query: Vec<(String, String)> = url::form_urlencoded::parse(asked.query.as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match param("api-version") {
        Some(v) if API_VERSIONS.contains(&v) => {}
        _ => {
            return Ok(problem(
                StatusCode::BAD_REQUEST,
                "invalid-api-version",
                "Invalid API version",
                "The api-version is missing or not supported",
            ));
        }
    }
    if let Err(response) = authenticate(store, tokens, asked) {
        return Ok(*response);
    }
    if asked.method != Method::GET {
        return Ok(problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "method",
            "Method Not Allowed",
            "",
        ));
    }
    let answer = if asked.path == "/kv" {
        list(store, asked, &query)
    } else if let Some(key) = asked.path.strip_prefix("/kv/") {
        get_one(
            store,
            asked,
            &percent_encoding::percent_decode_str(key).decode_utf8_lossy(),
            param("label"),
        )
    } else {
        problem(StatusCode::NOT_FOUND, "not-found", "Not Found", "")
    };
    if answer.status() == StatusCode::NOT_MODIFIED {
        store.not_modified += 1;
    }
    Ok(answer)
}

/// Checks the caller: a bearer token of the fake's Entra for the store's audience, or a valid
/// HMAC signature of the store's access key.
fn authenticate(
    store: &Store,
    tokens: &HashMap<String, crate::entra::Token>,
    asked: &Asked<'_>,
) -> Result<(), Box<Response<Body>>> {
    let authorization = asked
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Some(bearer) = authorization.strip_prefix("Bearer ") {
        let Some(token) = tokens.get(bearer.trim()) else {
            return Err(Box::new(unauthorized("Invalid token")));
        };
        if !token
            .scope
            .eq_ignore_ascii_case(&format!("{}/.default", store.audience))
        {
            return Err(Box::new(unauthorized("Invalid audience")));
        }
        if store.denied {
            return Err(Box::new(problem(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Forbidden",
                "The principal does not have the permissions to perform this operation",
            )));
        }
        return Ok(());
    }
    if authorization.starts_with("HMAC-SHA256 ") {
        let header = |name: &str| asked.headers.get(name).and_then(|v| v.to_str().ok());
        return verify(
            &Signed {
                method: asked.method.as_str(),
                path_and_query: &if asked.query.is_empty() {
                    asked.path.to_owned()
                } else {
                    format!("{}?{}", asked.path, asked.query)
                },
                host: asked.host,
                authorization,
                date: header("x-ms-date"),
                content_hash: header("x-ms-content-sha256"),
            },
            &store.key_id,
            &store.key_secret,
            SystemTime::now(),
        )
        .map_err(|description| Box::new(unauthorized(description)));
    }
    Err(Box::new(unauthorized(
        "Authorization header is missing or invalid",
    )))
}

/// What an HMAC-signed request carries.
pub struct Signed<'s> {
    pub method: &'s str,
    pub path_and_query: &'s str,
    pub host: &'s str,
    pub authorization: &'s str,
    pub date: Option<&'s str>,
    pub content_hash: Option<&'s str>,
}

/// Verifies an HMAC-SHA256 request as the service does (empty body): the credential id, the
/// signed headers, the date within ±15 minutes of `now`, the content hash, the signature.
///
/// # Errors
/// The service's `error_description`.
pub fn verify(
    signed: &Signed<'_>,
    id: &str,
    secret: &[u8],
    now: SystemTime,
) -> Result<(), &'static str> {
    let rest = signed
        .authorization
        .strip_prefix("HMAC-SHA256 ")
        .ok_or("Invalid Credential")?;
    let mut parts: HashMap<&str, &str> = HashMap::new();
    for part in rest
        .split(['&', ','])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        if let Some((k, v)) = part.split_once('=') {
            parts.insert(k, v);
        }
    }
    if parts.get("Credential") != Some(&id) {
        return Err("Invalid Credential");
    }
    if parts.get("SignedHeaders") != Some(&"x-ms-date;host;x-ms-content-sha256") {
        return Err("Invalid Signature");
    }
    let date = signed.date.ok_or("Invalid Signature")?;
    let at = httpdate::parse_http_date(date).map_err(|_| "Invalid Signature")?;
    let skew = now.duration_since(at).unwrap_or_else(|e| e.duration());
    if skew > Duration::from_secs(15 * 60) {
        return Err("The access token has expired");
    }
    let hash = signed.content_hash.ok_or("Invalid Signature")?;
    if hash != EMPTY_BODY_HASH {
        return Err("Invalid Signature");
    }
    let to_sign = format!(
        "{}\n{}\n{date};{};{hash}",
        signed.method, signed.path_and_query, signed.host
    );
    let signature = parts
        .get("Signature")
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .ok_or("Invalid Signature")?;
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    aws_lc_rs::hmac::verify(&key, to_sign.as_bytes(), &signature).map_err(|_| "Invalid Signature")
}

/// A filter (key or label): any, or a list of exact values and prefixes.
enum Filter {
    Any,
    Of(Vec<(String, bool)>),
}

impl Filter {
    fn parse(text: Option<&str>) -> Result<Filter, &'static str> {
        let Some(text) = text.filter(|t| !t.is_empty() && *t != "*") else {
            return Ok(Filter::Any);
        };
        let mut patterns = Vec::new();
        let (mut current, mut prefix, mut chars) = (String::new(), false, text.chars());
        while let Some(c) = chars.next() {
            match c {
                '\\' => current.extend(chars.next()),
                ',' => patterns.push((std::mem::take(&mut current), std::mem::take(&mut prefix))),
                '*' => prefix = true,
                c => current.push(c),
            }
        }
        patterns.push((current, prefix));
        if patterns.len() > 5 {
            return Err("A filter may name at most 5 values");
        }
        Ok(Filter::Of(patterns))
    }

    fn admits(&self, text: &str) -> bool {
        match self {
            Filter::Any => true,
            Filter::Of(patterns) => patterns.iter().any(|(p, prefix)| {
                if *prefix {
                    text.starts_with(p.as_str())
                } else {
                    text == p
                }
            }),
        }
    }
}

/// Whether a key-value's `label` passes `labels` (`None`: only no label).
fn admits_label(labels: Option<&Filter>, label: Option<&String>) -> bool {
    match (labels, label) {
        (None, label) => label.is_none(),
        (Some(Filter::Any), _) => true,
        (Some(filter), Some(label)) => filter.admits(label),
        (Some(_), None) => false,
    }
}

/// `item` with only the `$select` fields, when there is a `$select`.
fn selected(item: serde_json::Value, fields: Option<&[&str]>) -> serde_json::Value {
    match (fields, item) {
        (Some(fields), serde_json::Value::Object(map)) => serde_json::Value::Object(
            map.into_iter()
                .filter(|(k, _)| fields.contains(&k.as_str()))
                .collect(),
        ),
        (_, item) => item,
    }
}

fn item_json(key: &str, label: Option<&String>, kv: &KeyValue) -> serde_json::Value {
    let tags: serde_json::Map<String, serde_json::Value> = kv
        .attrs
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let modified =
        httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(kv.last_modified));
    json!({
        "etag": kv.etag,
        "key": key,
        "label": label,
        "content_type": kv.attrs.content_type,
        "value": kv.value,
        "tags": tags,
        "locked": kv.attrs.locked,
        "last_modified": modified,
    })
}

/// 400 with the service's `invalid-argument` problem.
fn invalid(detail: &str) -> Response<Body> {
    problem(
        StatusCode::BAD_REQUEST,
        "invalid-argument",
        "Invalid request parameter",
        detail,
    )
}

/// A conditional answer: 304 with no body when the request's `If-None-Match` is `etag`, else
/// `body()` as `content_type`; the `ETag` header on both.
fn conditional(
    asked: &Asked<'_>,
    etag: &str,
    content_type: &'static str,
    body: impl FnOnce() -> String,
) -> Response<Body> {
    let unchanged = asked
        .headers
        .get(IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut response = if unchanged {
        let mut response = Response::new(full(hyper::body::Bytes::new()));
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = Response::new(full(body().into()));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    };
    if let Ok(value) = HeaderValue::try_from(etag) {
        response.headers_mut().insert(ETAG, value);
    }
    response
}

fn list(store: &Store, asked: &Asked<'_>, query: &[(String, String)]) -> Response<Body> {
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let filters = Filter::parse(param("key")).and_then(|keys| match param("label") {
        Some("\0") => Ok((keys, None)),
        label => Filter::parse(label).map(|labels| (keys, Some(labels))),
    });
    let (keys, labels) = match filters {
        Ok(filters) => filters,
        Err(e) => return invalid(e),
    };
    let fields = param("$select").map(|f| f.split(',').collect::<Vec<_>>());
    let matching: Vec<(&Id, &KeyValue)> = match param("snapshot") {
        Some(_) if param("key").is_some() || param("label").is_some() => {
            return invalid("A snapshot cannot be combined with key or label filters");
        }
        Some(name) => match store.snapshots.get(name) {
            Some(items) => items.iter().map(|(id, kv)| (id, kv)).collect(),
            None => {
                return problem(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    "Not Found",
                    &format!("The snapshot '{name}' does not exist"),
                );
            }
        },
        None => store
            .items
            .iter()
            .filter(|((key, label), _)| {
                keys.admits(key) && admits_label(labels.as_ref(), label.as_ref())
            })
            .collect(),
    };
    let after: usize = param("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let page: Vec<_> = matching.iter().skip(after).take(store.page_size).collect();
    let next = (after + page.len() < matching.len()).then(|| {
        let kept: Vec<&str> = asked
            .query
            .split('&')
            .filter(|p| !p.starts_with("after="))
            .collect();
        format!("/kv?{}&after={}", kept.join("&"), after + page.len())
    });
    let etag = {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher =
            std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                .build_hasher();
        for ((key, label), kv) in &page {
            hasher.write(key.as_bytes());
            hasher.write(label.as_deref().unwrap_or("\0").as_bytes());
            hasher.write(kv.etag.as_bytes());
        }
        hasher.write_usize(after);
        format!("\"{:016x}\"", hasher.finish())
    };
    let kvset = "application/vnd.microsoft.appconfig.kvset+json; charset=utf-8";
    let mut response = conditional(asked, &etag, kvset, || {
        let items: Vec<_> = page
            .iter()
            .map(|((k, l), kv)| selected(item_json(k, l.as_ref(), kv), fields.as_deref()))
            .collect();
        let mut body = json!({ "items": items });
        if let Some(next) = &next {
            body["@nextLink"] = json!(next);
        }
        body.to_string()
    });
    // A 304 keeps the Link, as the service's does (the JS client reads it to go on).
    if let Some(value) =
        next.and_then(|n| HeaderValue::try_from(format!("<{n}>; rel=\"next\"")).ok())
    {
        response.headers_mut().insert(LINK, value);
    }
    response
}

fn get_one(store: &Store, asked: &Asked<'_>, key: &str, label: Option<&str>) -> Response<Body> {
    let label = label
        .filter(|l| *l != "\0" && !l.is_empty())
        .map(str::to_owned);
    let Some(kv) = store.items.get(&(key.to_owned(), label.clone())) else {
        return problem(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not Found",
            "The key-value does not exist",
        );
    };
    let etag = format!("\"{}\"", kv.etag);
    let kv_type = "application/vnd.microsoft.appconfig.kv+json; charset=utf-8";
    conditional(asked, &etag, kv_type, || {
        item_json(key, label.as_ref(), kv).to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(value: &str) -> KeyValue {
        KeyValue {
            value: value.to_owned(),
            attrs: KeyValueAttrs::default(),
            etag: format!("etag-{value}"),
            last_modified: 0,
        }
    }

    fn store_of(items: &[(&str, Option<&str>, &str)]) -> Store {
        let mut store = Store::new("cfg");
        for (key, label, value) in items {
            store
                .items
                .insert(((*key).to_owned(), label.map(str::to_owned)), kv(value));
        }
        store
    }

    /// Lists with `query` (no If-None-Match): status and body.
    fn list_with(store: &Store, query: &str) -> (StatusCode, serde_json::Value, HeaderMap) {
        let headers = HeaderMap::new();
        let asked = Asked {
            method: &Method::GET,
            path: "/kv",
            query,
            headers: &headers,
            host: "cfg.azconfig.localhost",
        };
        let parsed: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let response = list(store, &asked, &parsed);
        let status = response.status();
        let headers = response.headers().clone();
        let body = crate::tests::run(async {
            use http_body_util::BodyExt;
            response.into_body().collect().await.unwrap().to_bytes()
        });
        let body = if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        };
        (status, body, headers)
    }

    fn keys(body: &serde_json::Value) -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                format!(
                    "{}@{}",
                    i["key"].as_str().unwrap(),
                    i["label"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    #[test]
    fn filters_are_exact_prefix_or_a_list_with_escapes() {
        let filter = Filter::parse(Some("app:*,exact,a\\*b,c\\,d")).unwrap();
        assert!(filter.admits("app:db"));
        assert!(filter.admits("exact"));
        assert!(!filter.admits("exactly"));
        assert!(filter.admits("a*b"));
        assert!(!filter.admits("axb"));
        assert!(filter.admits("c,d"));
        assert!(Filter::parse(Some("a,b,c,d,e,f")).is_err());
        assert!(Filter::parse(Some("*")).unwrap().admits("anything"));
    }

    #[test]
    fn a_list_without_a_label_filter_lists_no_label_and_percent_00_too() {
        let store = store_of(&[("a", None, "1"), ("a", Some("prod"), "2"), ("b", None, "3")]);
        let (_, body, _) = list_with(&store, "key=*&label=%00");
        assert_eq!(keys(&body), ["a@", "b@"]);
        let (_, body, _) = list_with(&store, "key=a&label=*");
        assert_eq!(keys(&body), ["a@", "a@prod"]);
        let (_, body, _) = list_with(&store, "key=a&label=prod");
        assert_eq!(keys(&body), ["a@prod"]);
    }

    #[test]
    fn pages_link_on_to_the_end_and_a_304_keeps_its_link() {
        let mut store = store_of(&[("a", None, "1"), ("b", None, "2"), ("c", None, "3")]);
        store.page_size = 2;
        let (status, body, headers) = list_with(&store, "key=*");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(keys(&body), ["a@", "b@"]);
        let next = body["@nextLink"].as_str().unwrap().to_owned();
        assert_eq!(headers[LINK], format!("<{next}>; rel=\"next\"").as_str());
        let query = next.strip_prefix("/kv?").unwrap();
        let (_, body, headers) = list_with(&store, query);
        assert_eq!(keys(&body), ["c@"]);
        assert!(body.get("@nextLink").is_none() && headers.get(LINK).is_none());

        let etag = {
            let (_, _, headers) = list_with(&store, "key=*");
            headers[ETAG].clone()
        };
        let mut if_none_match = HeaderMap::new();
        if_none_match.insert(IF_NONE_MATCH, etag);
        let asked = Asked {
            method: &Method::GET,
            path: "/kv",
            query: "key=*",
            headers: &if_none_match,
            host: "cfg.azconfig.localhost",
        };
        let response = list(&store, &asked, &[("key".into(), "*".into())]);
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert!(
            response.headers().contains_key(LINK),
            "a 304 keeps the page's Link"
        );
        store.items.insert(("b".into(), None), kv("changed"));
        let response = list(&store, &asked, &[("key".into(), "*".into())]);
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[test]
    fn a_snapshot_keeps_the_later_filters_key_value_and_does_not_change() {
        let mut store = store_of(&[
            ("app:db", Some("prod"), "prod-db"),
            ("app:db", None, "dev-db"),
            ("app:port", None, "80"),
        ]);
        store.snapshot("release", &[("app:*", None), ("app:*", Some("prod"))]);
        store.items.insert(("app:port".into(), None), kv("81"));
        let (_, body, _) = list_with(&store, "snapshot=release");
        assert_eq!(keys(&body), ["app:db@prod", "app:port@"]);
        assert_eq!(body["items"][1]["value"], "80");
        let (status, body, _) = list_with(&store, "snapshot=nope");
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["type"], "https://azconfig.io/errors/not-found");
        let (status, _, _) = list_with(&store, "snapshot=release&key=*");
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn select_returns_only_the_fields_asked_for() {
        let store = store_of(&[("a", None, "1")]);
        let (_, body, _) = list_with(&store, "key=*&$select=key,value");
        let item = body["items"][0].as_object().unwrap();
        let mut fields: Vec<&str> = item.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["key", "value"]);
    }

    #[test]
    fn verify_accepts_the_known_answer_and_refuses_skew_and_a_wrong_key() {
        // The vector of kvrun's src/appconfig/hmac.rs, computed with openssl.
        let secret: Vec<u8> = (0u8..32).collect();
        let at = httpdate::parse_http_date("Wed, 02 Dec 2026 10:00:00 GMT").unwrap();
        let authorization = "HMAC-SHA256 Credential=abc-l0-s0:xyz&SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=UIBMqome5yxKIsCjcv/sdO4lI7aJq+L3oZFr5bUO7UY=";
        let signed = Signed {
            method: "GET",
            path_and_query: "/kv?key=*&api-version=1.0",
            host: "cfg.azconfig.io",
            authorization,
            date: Some("Wed, 02 Dec 2026 10:00:00 GMT"),
            content_hash: Some(EMPTY_BODY_HASH),
        };
        assert_eq!(verify(&signed, "abc-l0-s0:xyz", &secret, at), Ok(()));
        let later = at + Duration::from_secs(14 * 60);
        assert_eq!(verify(&signed, "abc-l0-s0:xyz", &secret, later), Ok(()));
        let too_late = at + Duration::from_secs(16 * 60);
        assert_eq!(
            verify(&signed, "abc-l0-s0:xyz", &secret, too_late),
            Err("The access token has expired")
        );
        let mut other = secret.clone();
        other[0] ^= 1;
        assert_eq!(
            verify(&signed, "abc-l0-s0:xyz", &other, at),
            Err("Invalid Signature")
        );
        assert_eq!(
            verify(&signed, "abc-l0-s0:other", &secret, at),
            Err("Invalid Credential")
        );
        let moved = Signed {
            path_and_query: "/kv?key=other&api-version=1.0",
            ..signed
        };
        assert_eq!(
            verify(&moved, "abc-l0-s0:xyz", &secret, at),
            Err("Invalid Signature")
        );
    }
}
