//! Listing a store: `GET /kv?key=…&label=…` (or `snapshot=…`), every page followed to the end,
//! over the run's one HTTP client, authenticated by Entra ID or an access key.
//!
//! A next page (`@nextLink` in the body, else `Link: <…>; rel="next"`) is a relative URI on the
//! store's own origin; anything that leaves it is refused, so that a store cannot send kvrun's
//! token elsewhere. Every attempt is bounded by the attempt timeout and retried as every request
//! of kvrun ([`crate::vault::retry`]): 429 and 503 after the `retry-after-ms` the store asks for,
//! until the run's deadline.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{API_VERSION, Auth, Label, Selection, Selector, SettingRef, Store};
use crate::error::{FailureClass, Problem};
use crate::http::{self, untrusted};
use crate::vault::VaultClient;
use crate::vault::retry::{self, Next, Retry, Schedule};

/// A list page holds at most 100 key-values of at most 10 KB each; more is not a page.
const MAX_PAGE: usize = 4 * 1024 * 1024;
/// More pages than this (100,000 key-values) is a store that never ends its list.
const MAX_PAGES: usize = 1000;

/// One key-value as listed. `Debug` hides the value (a store holds connection strings too).
#[derive(Clone, Deserialize)]
pub struct Item {
    pub key: String,
    pub label: Option<String>,
    #[serde(default, deserialize_with = "zeroizing")]
    pub value: Option<Zeroizing<String>>,
    pub content_type: Option<String>,
}

fn zeroizing<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Zeroizing<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(|value| value.map(Zeroizing::new))
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("key", &self.key)
            .field("label", &self.label)
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

/// What a store's list gave: each selector's pages, in order (a later selector wins for a key).
/// A `--watch` check sends each page's `ETag` back (`If-None-Match`) and keeps a page the store
/// answers 304 for.
#[derive(Debug, Clone, Default)]
pub struct Listed {
    pub selections: Vec<Vec<PageOf>>,
}

/// One page of a list, as answered (or kept, after a 304).
#[derive(Debug, Clone, Default)]
pub struct PageOf {
    pub etag: Option<String>,
    pub items: Vec<Item>,
    /// The store answered 304 for it: the items are the last list's.
    pub unchanged: bool,
}

impl Listed {
    /// Every key-value, selector by selector, page by page.
    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.selections
            .iter()
            .flatten()
            .flat_map(|page| &page.items)
    }

    /// The pages read (or kept).
    #[must_use]
    pub fn pages(&self) -> usize {
        self.selections.iter().map(Vec::len).sum()
    }

    /// Of those, the pages the store answered 304 for.
    #[must_use]
    pub fn unchanged(&self) -> usize {
        self.selections
            .iter()
            .flatten()
            .filter(|p| p.unchanged)
            .count()
    }
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    items: Vec<Item>,
    #[serde(rename = "@nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize, Default)]
struct ProblemBody {
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: String,
}

/// List `store` whole: every selector (or its snapshot), every page, the selectors at once.
///
/// # Errors
/// Every selector that could not be listed (as `key=… label=…`, or `snapshot NAME`), with why
/// and what to do.
pub async fn list(
    client: Arc<VaultClient>,
    store: Arc<Store>,
    previous: Option<Arc<Listed>>,
) -> Result<Listed, Vec<(String, Problem)>> {
    let queries: Vec<(String, String)> = match &store.selection {
        Selection::Snapshot(name) => vec![(
            format!("snapshot {name}"),
            format!("snapshot={}", encode(name)),
        )],
        Selection::Select(selectors) => selectors
            .iter()
            .map(|s| (s.to_string(), query(s)))
            .collect(),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (_, query)) in queries.iter().enumerate() {
        let (client, store, query) = (client.clone(), store.clone(), query.clone());
        let previous = previous.clone();
        tasks.spawn(async move {
            let before = previous
                .as_deref()
                .and_then(|p| p.selections.get(i))
                .map(Vec::as_slice);
            (i, list_one(&client, &store, &query, before).await)
        });
    }
    let mut lists: Vec<Option<Result<Vec<PageOf>, Problem>>> = vec![None; queries.len()];
    while let Some(done) = tasks.join_next().await {
        if let Ok((i, listed)) = done {
            lists[i] = Some(listed);
        }
    }
    let mut all = Listed::default();
    let mut failed = Vec::new();
    for ((shown, _), listed) in queries.into_iter().zip(lists) {
        match listed {
            Some(Ok(pages)) => all.selections.push(pages),
            Some(Err(problem)) => failed.push((shown, problem)),
            None => failed.push((
                shown,
                Problem::new(FailureClass::Protocol, "the list task failed"),
            )),
        }
    }
    if failed.is_empty() {
        Ok(all)
    } else {
        Err(failed)
    }
}

/// Read one key-value (`@Microsoft.AppConfiguration(…)`): `None` when the store has no such key
/// with that label.
///
/// # Errors
/// Why it could not be read (as [`list`]'s, a 404 aside).
pub async fn get_one(
    client: Arc<VaultClient>,
    setting: SettingRef,
) -> Result<Option<Item>, Problem> {
    let store = setting.store();
    let label = match &setting.label {
        Some(label) => format!("label={}&", encode_path(label)),
        None => String::new(),
    };
    let url = url::Url::parse(&store.endpoint.origin())
        .and_then(|origin| {
            origin.join(&format!(
                "/kv/{}?{label}api-version={API_VERSION}",
                encode_path(&setting.key)
            ))
        })
        .map_err(|e| Problem::new(FailureClass::Protocol, format!("the key's URL: {e}")))?;
    match get(&client, &store, &url, None).await {
        Ok(response) => serde_json::from_slice(&response.body)
            .map(Some)
            .map_err(|_| {
                Problem::new(
                    FailureClass::Protocol,
                    "200 OK, but the body is not a key-value",
                )
            }),
        Err(problem) if problem.class == FailureClass::NotFound => Ok(None),
        Err(problem) => Err(problem),
    }
}

/// Percent-encode a path segment or a label: everything but the unreserved characters.
fn encode_path(text: &str) -> String {
    percent_encode(text, b"-._~")
}

/// The query of a selector's first page (`label=%00`: no label).
fn query(selector: &Selector) -> String {
    let label = match &selector.label {
        Label::None => "&label=%00".to_owned(),
        Label::Filter(filter) if filter == "*" => String::new(),
        Label::Filter(filter) => format!("&label={}", encode(filter)),
    };
    format!("key={}{label}", encode(&selector.key))
}

/// Percent-encode a query value; the filter syntax (`*`, `,`, `\`) and `:` stay readable.
fn encode(text: &str) -> String {
    percent_encode(text, b"-._~*,:")
}

/// `text` with every byte but ASCII letters, digits and `keep` as `%XX`.
fn percent_encode(text: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || keep.contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// One selector's pages. With the pages of the last list (`previous`), each page's `ETag` goes
/// back as `If-None-Match`: a 304 keeps that page, and its `Link` header leads to the next. A 304
/// without a `Link` while more pages followed last time cannot say where the next page is: the
/// selection is listed again from its first page, without `ETag`s.
async fn list_one(
    client: &VaultClient,
    store: &Store,
    query: &str,
    previous: Option<&[PageOf]>,
) -> Result<Vec<PageOf>, Problem> {
    let origin = url::Url::parse(&store.endpoint.origin())
        .map_err(|e| Problem::new(FailureClass::Protocol, format!("the endpoint: {e}")))?;
    let first = origin
        .join(&format!(
            "/kv?{query}&api-version={API_VERSION}&$select=key,label,value,content_type"
        ))
        .map_err(|e| Problem::new(FailureClass::Protocol, format!("the list URL: {e}")))?;
    let mut previous = previous;
    'list: loop {
        let mut url = first.clone();
        let mut pages: Vec<PageOf> = Vec::new();
        loop {
            let kept = previous.and_then(|p| p.get(pages.len()));
            let etag = kept.and_then(|p| p.etag.as_deref());
            let response = get(client, store, &url, etag).await?;
            let next = if response.status == 304 {
                let kept = kept.cloned().unwrap_or_default();
                let next = link_next(&response);
                let more_before = previous.is_some_and(|p| p.len() > pages.len() + 1);
                pages.push(PageOf {
                    etag: kept.etag,
                    items: kept.items,
                    unchanged: true,
                });
                if next.is_none() && more_before {
                    previous = None;
                    continue 'list;
                }
                next
            } else {
                let page: Page = serde_json::from_slice(&response.body).map_err(|_| {
                    Problem::new(
                        FailureClass::Protocol,
                        "200 OK, but the body is not a list of key-values",
                    )
                })?;
                pages.push(PageOf {
                    etag: response.header(&hyper::header::ETAG).map(str::to_owned),
                    items: page.items,
                    unchanged: false,
                });
                page.next_link.or_else(|| link_next(&response))
            };
            let Some(next) = next else {
                return Ok(pages);
            };
            if pages.len() >= MAX_PAGES {
                return Err(Problem::new(
                    FailureClass::Protocol,
                    format!("the list did not end after {MAX_PAGES} pages"),
                ));
            }
            url = same_origin(&origin, &next)?;
        }
    }
}

/// The `Link: <…>; rel="next"` header's URI.
fn link_next(response: &http::Response) -> Option<String> {
    response
        .headers
        .get_all(hyper::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(next_in_link)
}

/// The `rel="next"` URI of one `Link` value (RFC 8288: `<uri>; param, <uri>; param`). The URI
/// is taken whole between `<` and `>`: it may hold commas (a `$select` list does), so the value
/// is not split on commas first.
fn next_in_link(value: &str) -> Option<String> {
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let end = after.find('>')?;
        let tail = &after[end + 1..];
        let params_end = tail.find('<').unwrap_or(tail.len());
        let is_next = tail[..params_end]
            .split([';', ','])
            .map(str::trim)
            .any(|p| p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next"));
        if is_next {
            return Some(after[..end].to_owned());
        }
        rest = &tail[params_end..];
    }
    None
}

/// A next link resolved against the store's origin, if it stays there.
///
/// # Errors
/// A link to any other origin (another host, scheme or port).
pub fn same_origin(origin: &url::Url, link: &str) -> Result<url::Url, Problem> {
    let refused = || {
        Problem::new(
            FailureClass::Protocol,
            format!(
                "the store's next page is '{}', off its own origin; kvrun sends its credentials nowhere else",
                untrusted(&link.chars().take(200).collect::<String>())
            ),
        )
        .hint("a store answers relative next links; a proxy may be rewriting its answers")
    };
    if !link.starts_with('/') || link.starts_with("//") || link.contains('\\') {
        return Err(refused());
    }
    let url = origin.join(link).map_err(|_| refused())?;
    if url.origin() != origin.origin() {
        return Err(refused());
    }
    Ok(url)
}

/// GET `url` with retries; a 401 with Entra gets one fresh token, as the SDKs do.
async fn get(
    client: &VaultClient,
    store: &Store,
    url: &url::Url,
    if_none_match: Option<&str>,
) -> Result<http::Response, Problem> {
    let mut schedule = Schedule::default();
    let mut fresh_token = false;
    loop {
        let (outcome, retry) = tokio::time::timeout(
            retry::ATTEMPT_TIMEOUT,
            attempt(client, store, url, if_none_match),
        )
        .await
        .unwrap_or_else(|_| {
            let problem = Problem::new(
                FailureClass::Unavailable,
                format!("no answer within {}s", retry::ATTEMPT_TIMEOUT.as_secs()),
            )
            .hint("check the network, DNS, HTTPS_PROXY and NO_PROXY");
            (Err(Refusal::Failed(problem)), Retry::Backoff)
        });
        let problem = match outcome {
            Ok(response) => return Ok(response),
            Err(Refusal::Unauthorized { token, problem }) => {
                if fresh_token {
                    problem
                } else {
                    // The token was revoked or expired: ask for a new one once.
                    client.credentials().invalidate(
                        &tenant(client),
                        &store.endpoint.scope(),
                        &token,
                    );
                    fresh_token = true;
                    continue;
                }
            }
            Err(Refusal::Failed(problem)) => problem,
        };
        match schedule.next(
            retry,
            Instant::now(),
            client.deadline(),
            crate::jitter::random(),
        ) {
            Next::Wait(wait) => {
                tracing::info!(
                    store = store.endpoint.host,
                    wait_ms = wait.as_millis(),
                    reason = %problem,
                    "retrying"
                );
                tokio::time::sleep(wait).await;
            }
            Next::GiveUp(why) => {
                let mut problem = problem;
                if let Some(why) = why {
                    problem.retried(why.describe("the store"));
                }
                return Err(problem);
            }
        }
    }
}

/// Why an attempt gave no page: a 401 to a token (worth one fresh token), or a failure.
enum Refusal {
    Unauthorized {
        token: crate::vault::credential::Token,
        problem: Problem,
    },
    Failed(Problem),
}

/// The tenant of a store's tokens: the credential's own (empty when the chain only knows it at
/// request time: a managed identity, `az` without `AZURE_TENANT_ID`). App Configuration sends
/// no challenge to name one.
fn tenant(client: &VaultClient) -> String {
    client
        .credentials()
        .expected_tenant()
        .unwrap_or_default()
        .to_owned()
}

/// One attempt: the 200, or why not and whether another try could change it.
async fn attempt(
    client: &VaultClient,
    store: &Store,
    url: &url::Url,
    if_none_match: Option<&str>,
) -> (Result<http::Response, Refusal>, Retry) {
    let mut request = http::Request::get(url.clone()).max_body(MAX_PAGE);
    if let Some(value) = if_none_match.and_then(|etag| HeaderValue::try_from(etag).ok()) {
        request = request.header(hyper::header::IF_NONE_MATCH, value, false);
    }
    let mut token = None;
    match &store.auth {
        Auth::Entra => match client.token(&tenant(client), &store.endpoint.scope()).await {
            Ok(t) => {
                let Some(value) = t.authorization().cloned() else {
                    let problem = Problem::new(
                        FailureClass::Protocol,
                        "the token is not a valid header value",
                    );
                    return (Err(Refusal::Failed(problem)), Retry::Never);
                };
                request = request.header(AUTHORIZATION, value, true);
                token = Some(t);
            }
            Err(problem) => return (Err(Refusal::Failed(problem)), Retry::Never),
        },
        Auth::AccessKey(key) => {
            let host = match url.port() {
                Some(port) => format!("{}:{port}", store.endpoint.host),
                None => store.endpoint.host.clone(),
            };
            let path_and_query = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_owned(),
            };
            let signed = key.sign("GET", &path_and_query, &host, SystemTime::now());
            let header = |text: &str| HeaderValue::try_from(text).ok();
            let (Some(date), Some(hash), Some(authorization)) = (
                header(&signed.date),
                header(signed.content_hash),
                header(&signed.authorization),
            ) else {
                let problem = Problem::new(
                    FailureClass::Protocol,
                    "the access key's Id is not a valid header value",
                );
                return (Err(Refusal::Failed(problem)), Retry::Never);
            };
            request = request
                .header(HeaderName::from_static("x-ms-date"), date, false)
                .header(HeaderName::from_static("x-ms-content-sha256"), hash, false)
                .header(AUTHORIZATION, authorization, true);
        }
    }
    let started = Instant::now();
    let response = match client.http().send(&request).await {
        Ok(response) => response,
        Err(e) => {
            let retry = match e {
                http::Error::Unreachable(_) => Retry::Backoff,
                _ => Retry::Never,
            };
            let problem = match &e {
                http::Error::Unreachable(_) => Problem::new(FailureClass::Unavailable, "could not reach the store")
                    .hint("check the network, DNS, HTTPS_PROXY and NO_PROXY"),
                http::Error::Untrusted(_) => Problem::new(FailureClass::Protocol, "").hint(
                    "the server's certificate is not trusted; if a proxy inspects TLS, point SSL_CERT_FILE or SSL_CERT_DIR at its CA",
                ),
                _ => Problem::new(FailureClass::Protocol, ""),
            };
            return (Err(Refusal::Failed(problem.caused_by(e))), retry);
        }
    };
    let status = response.status;
    tracing::info!(
        store = store.endpoint.host,
        path = url.path(),
        status,
        elapsed_ms = started.elapsed().as_millis(),
        "GET key-values"
    );
    if status == 200 || (status == 304 && if_none_match.is_some()) {
        return (Ok(response), Retry::Never);
    }
    if status == 401
        && let Some(token) = token
    {
        let problem = status_problem(store, &response);
        return (Err(Refusal::Unauthorized { token, problem }), Retry::Never);
    }
    let retry = Retry::for_response(status, &response.headers);
    (
        Err(Refusal::Failed(status_problem(store, &response))),
        retry,
    )
}

/// An error answer as a failure with its class and what to do.
fn status_problem(store: &Store, response: &http::Response) -> Problem {
    let status = response.status;
    let body: ProblemBody = serde_json::from_slice(&response.body).unwrap_or_default();
    let said = [body.title.as_str(), body.detail.as_str()]
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    let said = untrusted(&said.chars().take(300).collect::<String>());
    let with = |text: String| {
        if text.is_empty() {
            format!("{status}")
        } else {
            format!("{status} {text}")
        }
    };
    let name = &store.endpoint.name;
    match status {
        401 => {
            let description = response
                .header(&WWW_AUTHENTICATE)
                .and_then(|h| h.split("error_description=\"").nth(1))
                .and_then(|rest| rest.split('"').next())
                .map(|d| untrusted(&d.chars().take(200).collect::<String>()));
            let (how, hint) = match &store.auth {
                Auth::AccessKey(key) => (
                    format!("the access key {}", key.id),
                    "check the connection string: the Id and Secret of one of the store's access keys (az appconfig credential list), and this machine's clock".to_owned(),
                ),
                Auth::Entra => (
                    "the token".to_owned(),
                    format!("the token's tenant or audience does not match the store (audience {}); check AZURE_TENANT_ID and --app-config-audience", store.endpoint.audience),
                ),
            };
            Problem::new(
                FailureClass::Authentication,
                format!("401: the store refused {how}: {}", description.unwrap_or(said)),
            )
            .hint(hint)
        }
        403 => Problem::new(FailureClass::Authorization, with(said)).hint(format!(
            "grant this identity the \"App Configuration Data Reader\" role on store {name}"
        )),
        404 => Problem::new(FailureClass::NotFound, with(said)).hint(match &store.selection {
            Selection::Snapshot(snapshot) => format!("check the snapshot's name: az appconfig snapshot show -n {name} --snapshot-name {snapshot}"),
            Selection::Select(_) => format!("check the store's endpoint: az appconfig show -n {name}"),
        }),
        s if (300..400).contains(&s) => Problem::new(
            FailureClass::Protocol,
            format!("{s}: the store answered with a redirect, which kvrun never follows"),
        ),
        s if retry::transient_status(s) => Problem::new(FailureClass::Unavailable, with(said))
            .hint("the store is throttling or unavailable; try again later"),
        _ => Problem::new(FailureClass::Protocol, with(said))
            .hint("an unexpected answer from the store"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_ask_for_no_label_by_default_and_escape_what_must_be() {
        assert_eq!(query(&Selector::new("*", None)), "key=*&label=%00");
        assert_eq!(
            query(&Selector::new("myapp:*", Some("prod"))),
            "key=myapp:*&label=prod"
        );
        assert_eq!(query(&Selector::new("a,b", Some("*"))), "key=a,b");
        assert_eq!(
            query(&Selector::new("a b&c=/d", Some("x y"))),
            "key=a%20b%26c%3D%2Fd&label=x%20y"
        );
    }

    #[test]
    fn a_link_header_whose_uri_holds_commas_still_leads_on() {
        // A 304 carries no body: its Link is the only way on, and kvrun's own `$select` puts
        // commas in every page's URI.
        let next = "/kv?key=*&$select=key,label,value,content_type&after=Mg";
        assert_eq!(
            next_in_link(&format!("<{next}>; rel=\"next\"")).as_deref(),
            Some(next)
        );
        assert_eq!(
            next_in_link(&format!("</kv?a=1,2>; rel=\"prev\", <{next}>; rel=next")).as_deref(),
            Some(next)
        );
        assert_eq!(next_in_link("</kv?a=1,2>; rel=\"prev\""), None);
        assert_eq!(next_in_link("</kv?a=1"), None);
    }

    #[test]
    fn next_links_stay_on_the_store() {
        let origin = url::Url::parse("https://cfg.azconfig.io").unwrap();
        assert_eq!(
            same_origin(&origin, "/kv?key=*&after=abc")
                .unwrap()
                .as_str(),
            "https://cfg.azconfig.io/kv?key=*&after=abc"
        );
        for hostile in [
            "https://evil.example/kv",
            "//evil.example/kv",
            "kv?after=x",
            "/\\evil.example/kv",
            "http://cfg.azconfig.io/kv",
            "https://cfg.azconfig.io:8443/kv",
        ] {
            let err = same_origin(&origin, hostile).unwrap_err();
            assert_eq!(err.class, FailureClass::Protocol, "{hostile}");
        }
    }

    #[test]
    fn item_debug_hides_the_value() {
        let item: Item = serde_json::from_str(
            r#"{"key":"db","label":null,"value":"hunter2","content_type":null}"#,
        )
        .unwrap();
        assert!(!format!("{item:?}").contains("hunter2"));
    }
}
