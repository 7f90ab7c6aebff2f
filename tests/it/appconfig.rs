//! Azure App Configuration: a store's key-values as variables, its Key Vault references resolved
//! with every other secret, against the fake store over real TLS (Entra ID and access keys).

use kvrun_fake::{Fault, KeyValueAttrs, StoreHandle};

use crate::common::*;

const KV_REF: &str = "application/vnd.microsoft.appconfig.keyvaultref+json;charset=utf-8";

/// A Key Vault reference's value for `url`.
fn reference(url: &str) -> String {
    format!(r#"{{"uri":"{url}"}}"#)
}

/// kvrun told where the store is: `*.azconfig.localhost` are store hosts in these tests.
fn with_store(test: Test, store: &StoreHandle) -> Test {
    let url = store.url();
    test.env("KVRUN_APP_CONFIG_SUFFIX", "azconfig.localhost")
        .env("KVRUN_APP_CONFIG", &url)
}

fn set_reference(store: &StoreHandle, key: &str, label: Option<&str>, url: &str) {
    store.set_with(
        key,
        label,
        &reference(url),
        KeyValueAttrs {
            content_type: Some(KV_REF.to_owned()),
            ..KeyValueAttrs::default()
        },
    );
}

/// Whether every one of `requests` carries an `Authorization` starting with `scheme`.
fn all_authorized_as(requests: &[kvrun_fake::Recorded], scheme: &str) -> bool {
    requests.iter().all(|r| {
        r.authorization
            .as_deref()
            .is_some_and(|a| a.starts_with(scheme))
    })
}

/// The requests the store was sent.
fn store_requests(world: &World) -> Vec<kvrun_fake::Recorded> {
    world
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.host.ends_with(".azconfig.localhost"))
        .collect()
}

#[test]
fn settings_and_secrets_from_a_store_with_two_selectors_the_later_winning() {
    let test = Test::new().secret("kv2", "db-password", "pw-SECRET-2");
    let world = test.world();
    let store = world.fake.app_config("cfg");
    store.set("myapp:Db:Host", Some("prod"), "prod-db");
    store.set("myapp:Db:Host", None, "unlabelled-db");
    store.set("shared:Db:Host", None, "shared-db");
    store.set("myapp:Logging:LogLevel:Default", Some("prod"), "Warning");
    store.set("shared:Region", None, "westeurope");
    store.set("other:Ignored", None, "x");
    let secret = world.url("kv2", "db-password");
    set_reference(&store, "myapp:Db:Password", Some("prod"), &secret);
    let manifest = format!(
        "[app_configuration]\nendpoint = \"{}\"\n\
         select = [ {{ key = \"myapp:*\", label = \"prod\" }}, {{ key = \"shared:*\" }} ]\n\
         trim_prefix = [\"myapp:\", \"shared:\"]\n",
        store.url()
    );
    let ran = test
        .env("KVRUN_APP_CONFIG_SUFFIX", "azconfig.localhost")
        .manifest(&manifest)
        .args(["-vv", "--", "env", "-0"])
        .run();
    let env = ran.success().env();
    // The later selector (shared:*, no label) wins for the trimmed key Db:Host.
    assert_eq!(env["Db__Host"], "shared-db");
    assert_eq!(env["Db__Password"], "pw-SECRET-2", "from a second vault");
    assert_eq!(env["Logging__LogLevel__Default"], "Warning");
    assert_eq!(env["Region"], "westeurope");
    assert!(!env.contains_key("other__Ignored") && !env.contains_key("Ignored"));
    let lists = store_requests(ran.world());
    assert_eq!(lists.len(), 2, "one list per selector: {lists:?}");
    assert!(
        lists
            .iter()
            .any(|r| r.path_and_query.contains("key=shared:*&label=%00&")),
        "no label is label=%00: {lists:?}"
    );
    assert!(all_authorized_as(&lists, "Bearer "), "Entra tokens");
    // The token for the store was asked for with the public cloud's App Configuration scope.
    let scopes: Vec<String> = ran
        .world()
        .fake
        .requests()
        .into_iter()
        .filter_map(|r| r.form)
        .filter_map(|form| form.into_iter().find(|(k, _)| k == "scope").map(|(_, v)| v))
        .collect();
    assert!(
        scopes
            .iter()
            .any(|s| s == "https://appconfig.azure.com/.default"),
        "{scopes:?}"
    );
    // The most verbose log names keys and secrets, never a value (stdout is the child's env).
    for value in ["pw-SECRET-2", "prod-db", "shared-db", "fake-at-"] {
        assert!(!ran.stderr().contains(value), "stderr leaks {value}");
    }

    // `check` shows where each variable came from, never a value.
    let check = run(ran
        .world()
        .kvrun()
        .env("KVRUN_APP_CONFIG_SUFFIX", "azconfig.localhost")
        .args(["check", "--json"]));
    assert!(check.status.success(), "{}", stderr(&check));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&check.stdout).unwrap();
    let row = |variable: &str| rows.iter().find(|r| r["variable"] == variable).unwrap();
    assert_eq!(row("Db__Host")["origin"], "appconfig:cfg/shared:Db:Host");
    assert_eq!(
        row("Db__Password")["origin"],
        "appconfig:cfg/myapp:Db:Password@prod"
    );
    assert_eq!(row("Db__Password")["secret"], "db-password");
    assert_eq!(row("Db__Password")["vault"], "kv2.vault.localhost");
    assert_no_leak(
        &check,
        &["pw-SECRET-2", "prod-db", "shared-db", "westeurope"],
    );
}

#[test]
fn every_page_is_read_and_names_follow_the_options() {
    let test = Test::new();
    let store = test.world().fake.app_config("cfg");
    store.set_page_size(2);
    for i in 0..5 {
        store.set(&format!("app:Key{i}"), None, &format!("v{i}"));
    }
    store.set("app:json", None, r#"{"a":{"b":[1,"two"]}}"#);
    store.set_with(
        "app:jsonTyped",
        None,
        r#"{"a":{"b":[1,"two"]}}"#,
        KeyValueAttrs {
            content_type: Some("application/json".into()),
            ..KeyValueAttrs::default()
        },
    );
    let ran = with_store(test, &store)
        .args([
            "--app-config-trim",
            "app:",
            "--app-config-upper-snake",
            "--app-config-flatten-json",
            "--",
            "env",
            "-0",
        ])
        .run();
    let env = ran.success().env();
    for i in 0..5 {
        assert_eq!(env[&format!("KEY{i}")], format!("v{i}"));
    }
    assert_eq!(
        env["JSON"], r#"{"a":{"b":[1,"two"]}}"#,
        "no JSON content type: a string"
    );
    assert_eq!(env["JSONTYPED__A__B__0"], "1");
    assert_eq!(env["JSONTYPED__A__B__1"], "two");
    let lists = store_requests(ran.world());
    assert_eq!(lists.len(), 4, "7 key-values, 2 a page: {lists:?}");
    assert!(
        lists[1..]
            .iter()
            .all(|r| r.path_and_query.contains("after="))
    );
}

#[test]
fn two_keys_for_one_name_start_nothing_and_name_both() {
    let test = Test::new();
    let store = test.world().fake.app_config("cfg");
    store.set("Db:Host", None, "a");
    store.set("Db.Host", None, "b");
    store.set("Db__Host", None, "c");
    let ran = with_store(test, &store).args(["--", "env"]).run();
    ran.code(65);
    assert_stderr!("appconfig_colliding_names", ran.world(), ran.output());
}

#[test]
fn a_wrong_access_key_is_refused_with_the_stores_reason() {
    let test = Test::new();
    let store = test.world().fake.app_config("cfg");
    store.set("Greeting", None, "hello");
    let good = store.connection_string();
    // The same key id with another secret.
    let wrong = regex::Regex::new("Secret=[^;]+")
        .unwrap()
        .replace(&good, "Secret=d3JvbmctZmFrZS1zZWNyZXQtMTIzNDU2Nzg5MA==")
        .into_owned();
    let ran = with_store(test, &store)
        .env("AZURE_APPCONFIG_CONNECTION_STRING", &wrong)
        .args(["--", "env"])
        .run();
    ran.code(67);
    assert_stderr!("appconfig_wrong_access_key", ran.world(), ran.output());
    assert!(
        !ran.stderr().contains("d3JvbmctZmFrZS1z"),
        "the secret is never shown"
    );

    // The right key: the requests are signed, no token is asked for.
    let test = Test::new();
    let store = test.world().fake.app_config("cfg");
    store.set("Greeting", None, "hello");
    let connection_string = store.connection_string();
    let ran = with_store(test, &store)
        .env("AZURE_APPCONFIG_CONNECTION_STRING", &connection_string)
        .args(["--hide-credentials", "-vv", "--", "env", "-0"])
        .run();
    let env = ran.success().env();
    assert_eq!(env["Greeting"], "hello");
    assert!(
        !env.contains_key("AZURE_APPCONFIG_CONNECTION_STRING"),
        "--hide-credentials leaves the connection string out"
    );
    let lists = store_requests(ran.world());
    assert!(
        all_authorized_as(&lists, "HMAC-SHA256 Credential="),
        "{lists:?}"
    );
    let secret = connection_string.rsplit("Secret=").next().unwrap();
    assert!(!ran.stderr().contains(secret), "the secret is never logged");
    assert_eq!(
        ran.world()
            .fake
            .requests()
            .iter()
            .filter(|r| r.form.is_some())
            .count(),
        0,
        "no token requested"
    );
}

#[test]
fn a_store_outside_the_app_configuration_hosts_is_never_sent_anything() {
    let test = Test::new();
    let port = test.world().fake.port();
    let ran = test
        .args([
            &format!("--app-config=https://cfg.example.localhost:{port}"),
            "--",
            "env",
        ])
        .run();
    ran.code(65);
    assert_stderr!("appconfig_not_a_store_host", ran.world(), ran.output());
    assert_eq!(ran.world().fake.request_count(), 0, "no request, no token");
}

#[test]
fn forbidden_names_the_role_and_throttling_is_waited_out() {
    let test = Test::new();
    let store = test.world().fake.app_config("cfg");
    store.set("Greeting", None, "hello");
    store.deny_access();
    let ran = with_store(test, &store).args(["--", "env"]).run();
    ran.code(77);
    assert_stderr!("appconfig_forbidden", ran.world(), ran.output());

    let test = Test::new();
    let store = test.world().fake.app_config("cfg");
    store.set("Greeting", None, "hello");
    store.fail_next(Fault::Status(503), 1);
    store.fail_next(Fault::Status(429), 1);
    let ran = with_store(test, &store).args(["--", "env", "-0"]).run();
    assert_eq!(ran.success().env()["Greeting"], "hello");
    let lists = store_requests(ran.world());
    assert_eq!(lists.len(), 3, "a 503 and a 429, then the page");
    for pair in lists.windows(2) {
        let waited = pair[1].received - pair[0].received;
        assert!(
            waited >= std::time::Duration::from_millis(50),
            "retry-after-ms: 50 honoured, waited {waited:?}"
        );
    }
}

/// A bearer token the store refuses (here: for another audience) is asked for again once, then
/// the run fails with the store's reason.
#[test]
fn a_refused_entra_token_is_67_with_the_stores_reason() {
    let test = Test::new();
    let store = test.world().fake.app_config("cfg");
    store.set("Greeting", None, "hello");
    store.set_audience("https://other.example");
    let ran = with_store(test, &store).args(["--", "env"]).run();
    ran.code(67);
    assert_stderr!("appconfig_refused_token", ran.world(), ran.output());
    let lists = store_requests(ran.world());
    assert_eq!(lists.len(), 2, "one fresh token, then no more: {lists:?}");
}

#[test]
fn app_service_syntax_reads_one_key_and_a_missing_key_is_not_found() {
    let test = Test::new().secret("kv1", "api-key", "k-SECRET-1");
    let world = test.world();
    let store = world.fake.app_config("cfg");
    store.set("myapp:Db:Host", Some("prod"), "prod-db");
    let secret = world.url("kv1", "api-key");
    set_reference(&store, "myapp:ApiKey", None, &secret);
    let url = store.url();
    let ran = test
        .env("KVRUN_APP_CONFIG_SUFFIX", "azconfig.localhost")
        .env_file(&format!(
            "DB_HOST=@Microsoft.AppConfiguration(Endpoint={url}; Key=myapp:Db:Host; Label=prod)\n\
             API_KEY=@Microsoft.AppConfiguration(Endpoint={url}; Key=myapp:ApiKey)\n"
        ))
        .args(["--", "env", "-0"])
        .run();
    let env = ran.success().env();
    assert_eq!(env["DB_HOST"], "prod-db");
    assert_eq!(
        env["API_KEY"], "k-SECRET-1",
        "its Key Vault reference resolved"
    );
    let gets = store_requests(ran.world());
    assert_eq!(gets.len(), 2, "one GET per key: {gets:?}");

    let test = Test::new();
    let store = test.world().fake.app_config("cfg");
    let url = store.url();
    let ran = test
        .env("KVRUN_APP_CONFIG_SUFFIX", "azconfig.localhost")
        .env(
            "DB_HOST",
            &format!("@Microsoft.AppConfiguration(Endpoint={url}; Key=myapp:Db:Host; Label=prod)"),
        )
        .args(["--", "env"])
        .run();
    ran.code(66);
    assert_stderr!("appconfig_missing_key", ran.world(), ran.output());
}

#[test]
fn an_empty_selection_warns_in_a_run_and_fails_check() {
    let test = Test::new();
    let store = test.world().fake.app_config("cfg");
    store.set("Greeting", Some("prod"), "hello");
    let ran = with_store(test, &store).args(["--", "true"]).run();
    ran.success();
    assert!(
        ran.stderr()
            .contains("appconfig:cfg (--app-config): the selection matched no key-values"),
        "{}",
        ran.stderr()
    );
    let url = store.url();
    let check = run(ran
        .world()
        .kvrun()
        .env("KVRUN_APP_CONFIG_SUFFIX", "azconfig.localhost")
        .env("KVRUN_APP_CONFIG", &url)
        .arg("check"));
    assert_eq!(check.status.code(), Some(66), "{}", stderr(&check));
    assert_stderr!("appconfig_empty_selection_check", ran.world(), &check);
}

#[test]
fn a_snapshot_is_listed_as_it_was_made_and_a_missing_one_is_not_found() {
    let test = Test::new();
    let store = test.world().fake.app_config("cfg");
    store.set("myapp:Db:Host", Some("prod"), "prod-db");
    store.set("myapp:Db:Host", None, "dev-db");
    store.set("myapp:Port", None, "8080");
    store.create_snapshot(
        "release-42",
        &[("myapp:*", None), ("myapp:*", Some("prod"))],
    );
    store.set("myapp:Port", None, "9090");
    store.set("myapp:Added", None, "after the snapshot");
    let ran = with_store(test, &store)
        .env("KVRUN_APP_CONFIG_SNAPSHOT", "release-42")
        .env("KVRUN_APP_CONFIG_TRIM", "myapp:")
        .args(["--", "env", "-0"])
        .run();
    let env = ran.success().env();
    assert_eq!(env["Db__Host"], "prod-db", "the later filter's key-value");
    assert_eq!(env["Port"], "8080", "as it was when the snapshot was made");
    assert!(!env.contains_key("Added"));
    let lists = store_requests(ran.world());
    assert_eq!(lists.len(), 1, "{lists:?}");
    assert!(
        lists[0]
            .path_and_query
            .starts_with("/kv?snapshot=release-42&"),
        "{lists:?}"
    );

    let test = Test::new();
    let store = test.world().fake.app_config("cfg");
    store.set("myapp:Port", None, "8080");
    let ran = with_store(test, &store)
        .env("KVRUN_APP_CONFIG_SNAPSHOT", "release-43")
        .args(["--", "env"])
        .run();
    ran.code(66);
    assert_stderr!("appconfig_missing_snapshot", ran.world(), ran.output());
}

/// `--watch` sends each page's `ETag` back: an unchanged store costs three 304s (no bodies) per
/// check, and a changed key is a 200 for its page and a restart, like a rotated secret.
#[cfg(target_os = "linux")]
#[test]
fn watch_sees_a_changed_key_through_304s_then_200() {
    use crate::supervise::{WATCH_LIMIT, stop, watching};

    let world = World::new();
    let store = world.fake.app_config("watched");
    store.set_page_size(2);
    // Listed by key: app:SECRET, then app:a … app:d: three pages, the first holding SECRET.
    store.set("app:SECRET", None, "first-VALUE");
    for key in ["a", "b", "c", "d"] {
        store.set(&format!("app:{key}"), None, key);
    }
    let (child, out, err) = watching(
        &world,
        &[
            ("KVRUN_APP_CONFIG_SUFFIX", "azconfig.localhost".to_owned()),
            ("KVRUN_APP_CONFIG", store.url()),
            ("KVRUN_APP_CONFIG_SELECT", "app:*".to_owned()),
            ("KVRUN_APP_CONFIG_TRIM", "app:".to_owned()),
        ],
        &[],
    );
    out.expect("start first", WATCH_LIMIT, |l| l == "start first-VALUE");
    // The `listed` line of each list (-v): the first list's pages, then each check's.
    let listed = |unchanged: usize| {
        move |l: &str| {
            l.contains(" listed store=https://watched.azconfig.localhost:")
                && l.contains(&format!(" pages=3 unchanged={unchanged} "))
        }
    };
    err.expect("the first list", WATCH_LIMIT, listed(0));
    err.expect("an unchanged check", WATCH_LIMIT, listed(3));
    let lists_before = store.requests();
    assert_eq!(store.not_modified(), 3, "one 304 per page");
    store.set("app:SECRET", None, "second-VALUE");
    err.expect("a check that saw the change", WATCH_LIMIT, listed(2));
    out.expect("stopping", WATCH_LIMIT, |l| l == "stopping");
    out.expect("start second", WATCH_LIMIT, |l| l == "start second-VALUE");
    assert_eq!(store.requests() - lists_before, 3, "one request per page");
    let lists = store_requests(&world);
    assert!(
        lists[..3]
            .iter()
            .all(|r| r.header("if-none-match").is_none())
            && lists[3..]
                .iter()
                .all(|r| r.header("if-none-match").is_some()),
        "the first list has no ETags to send, every later one sends them: {lists:?}"
    );
    stop(child, &out);
}

/// What the official JS client (`tests/appconfig-js/list.js`) read from `store` with
/// `connection_string`: the script's JSON line.
#[expect(
    clippy::disallowed_methods,
    reason = "node is found on the PATH the tests run with; nothing else of it is passed on"
)]
fn js_client_reads(
    world: &World,
    connection_string: &str,
    key_filter: &str,
    key: &str,
    label: &str,
) -> serde_json::Value {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/appconfig-js");
    let setup = "run `npm ci --prefix tests/appconfig-js` (Node.js and npm must be installed)";
    assert!(
        dir.join("node_modules/@azure/app-configuration/package.json")
            .is_file(),
        "the JS client is not installed: {setup}"
    );
    let output = std::process::Command::new("node")
        .arg(dir.join("list.js"))
        .args([key_filter, key, label])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NODE_EXTRA_CA_CERTS", world.ca_dir.join("test-ca.pem"))
        .env("APPCONFIG_CONNECTION_STRING", connection_string)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `node` ({e}): {setup}"));
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "list.js printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        )
    })
}

/// The fake's HMAC verifier judges the JS SDK's own signatures: the official client lists
/// (across pages), lists again with the pages' `ETag`s (two 304s: the first one's `Link` leads it
/// on) and reads with the store's access key and is accepted, with a wrong secret it is
/// refused; kvrun, signing with the same key, reads the same values.
#[test]
fn the_official_js_client_and_kvrun_are_both_accepted_by_the_fakes_hmac_verifier() {
    let test = Test::new();
    let world = test.world();
    let store = world.fake.app_config("cfg");
    store.set_page_size(2);
    store.set("app:a", None, "1");
    store.set("app:b", None, "two words");
    store.set("app:c", None, "3");
    store.set("app:c", Some("prod"), "prod-3");
    store.set("other", None, "x");
    let connection_string = store.connection_string();

    let js = js_client_reads(world, &connection_string, "app:*", "app:c", "prod");
    assert_eq!(
        js,
        serde_json::json!({
            "listed": [
                { "key": "app:a", "label": null, "value": "1", "contentType": null },
                { "key": "app:b", "label": null, "value": "two words", "contentType": null },
                { "key": "app:c", "label": null, "value": "3", "contentType": null },
            ],
            "again": [304, 304],
            "got": { "key": "app:c", "label": "prod", "value": "prod-3" },
        })
    );
    let js_requests = store_requests(world);
    assert_eq!(
        js_requests.len(),
        5,
        "two pages, the same two again (304s), one GET: {js_requests:?}"
    );
    assert!(
        all_authorized_as(&js_requests, "HMAC-SHA256 Credential="),
        "{js_requests:?}"
    );

    let wrong = connection_string.replace("Secret=", "Secret=AAAA");
    let refused = js_client_reads(world, &wrong, "app:*", "app:c", "prod");
    assert_eq!(refused["error"]["statusCode"], 401, "{refused}");

    let ran = with_store(test, &store)
        .env("AZURE_APPCONFIG_CONNECTION_STRING", &connection_string)
        .env("KVRUN_APP_CONFIG_SELECT", "app:*")
        .env("KVRUN_APP_CONFIG_TRIM", "app:")
        .args(["--", "env", "-0"])
        .run();
    let env = ran.success().env();
    assert_eq!(
        (env["a"].as_str(), env["b"].as_str(), env["c"].as_str()),
        ("1", "two words", "3")
    );
}

/// The issue's "done": a Node app and a .NET-style app start with their App Configuration
/// settings and the secret behind a Key Vault reference, from `kvrun -- …` alone. The .NET-style
/// app reads its configuration as .NET's environment-variable provider does (`__` → `:`, the
/// names case-insensitive), here in Python: no .NET runtime is on the machine.
#[test]
fn a_node_app_and_a_dotnet_style_app_start_with_their_settings_and_secrets() {
    const NODE_APP: &str = "console.log(JSON.stringify({ host: process.env.Db__Host, \
        password: process.env.Db__Password, level: process.env.Logging__LogLevel__Default }))";
    const DOTNET_STYLE_APP: &str = "import json, os\n\
        config = {k.replace('__', ':').lower(): v for k, v in os.environ.items()}\n\
        print(json.dumps({'Db:Host': config['db:host'], 'Db:Password': config['db:password']}))";
    for app in ["node", "dotnet-style"] {
        let test = Test::new().secret("kv1", "db-password", "pw-SECRET-1");
        let world = test.world();
        let store = world.fake.app_config("myconfig");
        store.set("myapp:Db:Host", Some("prod"), "db.internal");
        store.set("myapp:Logging:LogLevel:Default", Some("prod"), "Warning");
        let secret = world.url("kv1", "db-password");
        set_reference(&store, "myapp:Db:Password", Some("prod"), &secret);
        let test = with_store(test, &store)
            .env("KVRUN_APP_CONFIG_SELECT", "myapp:*@prod")
            .env("KVRUN_APP_CONFIG_TRIM", "myapp:");
        let ran = match app {
            "node" => test.args(["--", "node", "-e", NODE_APP]).run(),
            _ => test.args(["--", "python3", "-c", DOTNET_STYLE_APP]).run(),
        };
        ran.success();
        let printed: serde_json::Value = serde_json::from_str(ran.stdout().trim())
            .unwrap_or_else(|e| panic!("{app}: {e}: {}", ran.stdout()));
        let expected = match app {
            "node" => serde_json::json!({
                "host": "db.internal", "password": "pw-SECRET-1", "level": "Warning"
            }),
            _ => serde_json::json!({ "Db:Host": "db.internal", "Db:Password": "pw-SECRET-1" }),
        };
        assert_eq!(printed, expected, "{app}");
        assert!(
            !ran.stderr().contains("pw-SECRET-1"),
            "{app}: {}",
            ran.stderr()
        );
    }
}

/// `export` precedes a store's variables by their origin (a Key Vault reference's also names its
/// secret), in a comment the formats' readers skip; the other variables are as before.
#[test]
fn export_names_each_store_variables_origin() {
    let test = Test::new().secret("kv1", "db-password", "pw-SECRET-1");
    let world = test.world();
    let store = world.fake.app_config("myconfig");
    store.set("myapp:Db:Host", Some("prod"), "db.internal");
    let secret = world.url("kv1", "db-password");
    set_reference(&store, "myapp:Db:Password", Some("prod"), &secret);
    let ran = with_store(test, &store)
        .env("KVRUN_APP_CONFIG_SELECT", "myapp:*@prod")
        .env("KVRUN_APP_CONFIG_TRIM", "myapp:")
        .env_file("PLAIN=from-dotenv\n")
        .args(["export", "--format", "dotenv"])
        .run();
    ran.success();
    let port = ran.world().fake.port().to_string();
    insta::assert_snapshot!(
        "appconfig_export_origins",
        ran.stdout().replace(&port, "[PORT]")
    );
}
