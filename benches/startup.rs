//! Start-up benchmark: how long it takes to start a command with N Key Vault secrets in its
//! environment, with kvrun and with the launchers a team would otherwise use, all in the same run,
//! against the fake vault with injected latency on every new connection and every response
//! (20 ms, as within an Azure region, then 5 ms and 1 ms). `scripts/bench` installs the peers and
//! runs this.
//!
//! Launchers, each starting the same command (`sh -c` checking every value, then `exit 7`):
//!
//! - the command run directly with the values already in its environment (the floor);
//! - kvrun (`--concurrency 32`, its default, pinned), and kvrun `--sequential` (one request at a
//!   time);
//! - kvrun with the same N values as one JSON bundle (`--no-dotenv --env-from`, one GET however
//!   large N is): what a team that keeps an app's settings in one secret pays;
//! - `akv run` (crate `akv-cli` 1.0.0, installed by `scripts/bench` into `target/bench-tools/`);
//! - the Node launcher of `benches/node-launcher/` (dotenv + `@azure/keyvault-secrets`, as the
//!   Key Vault quickstart writes it), awaiting each `getSecret` in turn, and with `Promise.all`.
//!
//! The cases: every size of [`CASES`] at the first latency; N = 50 over two vaults at that latency
//! against the fake offering only http/1.1 (kvrun only; otherwise the fake offers `h2` and
//! `http/1.1` by ALPN, as Key Vault does); and some sizes (`KVRUN_BENCH_OTHER_SIZES`) at each
//! further latency. The fake's latency and protocols are changed between cases, at run time.
//!
//! Every launcher reaches the fake the same way: as `https://benchN.vault.azure.net` and
//! `login.microsoftonline.com`, through a loopback CONNECT proxy (`HTTPS_PROXY`; `NO_PROXY` empty)
//! that tunnels exactly those names to the fake and refuses everything else; the fake's test CA is
//! trusted through `SSL_CERT_FILE` (kvrun, akv) and `NODE_EXTRA_CA_CERTS` (Node). Every launcher
//! gets its token from the same stand-in `az` first on `PATH` (akv supports only `az`/`azd`; the
//! Node launcher uses `AzureCliCredential`; kvrun is pinned to `--credential azure-cli`), so no
//! managed identity endpoint is ever probed.
//!
//! Every run is checked: the command exits 7 only if every variable holds its value, and a
//! launcher must pass that exit code on. A wrong value, a failed launcher or a missing peer fails
//! the benchmark (exit 1) with the reason; nothing is skipped. Wall time is measured from spawn to
//! exit; peak RSS is the child's `ru_maxrss` from `wait4` (the launcher, or anything it waited
//! for: the stand-in `az`, the command; kvrun's includes the command it execs into). Connections
//! are what the fake saw during the run (so through the proxy, every launcher alike): TLS sessions
//! by negotiated protocol, and TCP connections. kvrun's own CPU time is the figure of its timing
//! line (`src/timing.rs`: CPU before the resolution — process start, sources, plan — and
//! during it), which every kvrun run prints: kvrun runs with `KVRUN_LOG` enabling that one line
//! ([`TIMING_LOG`]), not with `-v`, whose line per GET would cost CPU itself.
//!
//! Settings (environment): `KVRUN_BENCH_RUNS` (runs per case, default 21),
//! `KVRUN_BENCH_BUDGET_S` (fewer runs for a case whose first run shows it would take longer than
//! this, default 10, at least `KVRUN_BENCH_MIN_RUNS`, default 3), `KVRUN_BENCH_LATENCIES_MS`
//! (default `20,5,1`), `KVRUN_BENCH_SIZES` (at the first latency, e.g. `0,50`; default
//! `0,1,10,50,200,1000`), `KVRUN_BENCH_OTHER_SIZES` (at each further latency, default `50,1000`),
//! `KVRUN_BENCH_AKV` (default `target/bench-tools/bin/akv`), `KVRUN_BENCH_NODE` (default `node`),
//! `KVRUN_BENCH_KVRUN` (another kvrun binary, e.g. one built with other settings; default the
//! release build's; `scripts/bench` sets it to the static build), `KVRUN_BENCH_KVRUN_B` (a second
//! kvrun binary, measured as kvrun is, each of its runs right after one of kvrun's, so that the
//! machine's drift falls on both: the report gets its column and its ratio to kvrun; `scripts/bench`
//! sets it to the release build linked against the system's glibc) and `KVRUN_BENCH_KVRUN_B_LABEL`
//! (its name in the report, default "kvrun B"),
//! `KVRUN_BENCH_LAUNCHERS` (some of `direct,kvrun,sequential,bundle,akv,node-each,node-all`; default all),
//! `KVRUN_BENCH_TIMING=0` (kvrun without its timing line: no CPU figures; to check that printing
//! it costs nothing measurable), `KVRUN_BENCH_VERBOSE=1` (shows kvrun's timing line of the last run
//! of each case), `KVRUN_BENCH_CERT_DIR` (also trust this directory, e.g. `/etc/ssl/certs`, through
//! `SSL_CERT_DIR`: every launcher built on rustls then loads a trust store the size of a real
//! container's, as it does when neither `SSL_CERT_FILE` nor `SSL_CERT_DIR` is set).
//! Prints progress on stderr and a markdown report on stdout.

#![expect(
    clippy::disallowed_methods,
    reason = "benchmark settings come from the environment"
)]

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use kvrun_fake::{ConnectProxy, DEFAULT_TENANT, FakeAzure, Options, TlsSessions};

/// The resource the vaults' challenges name (the public cloud's), so that the peers' challenge
/// checks (host must end with `.vault.azure.net`) pass.
const VAULT_RESOURCE: &str = "https://vault.azure.net";
/// The names the proxy tunnels to the fake.
const PUBLIC_NAMES: [&str; 3] = [
    "*.vault.azure.net",
    "login.microsoftonline.com",
    "*.azconfig.io",
];
/// The App Configuration case: a store of this many key-values under `app:`, every
/// [`APP_CONFIG_REF_EVERY`]th a Key Vault reference, over [`APP_CONFIG_VAULTS`] vaults.
const APP_CONFIG_KEYS: usize = 200;
const APP_CONFIG_REF_EVERY: usize = 10;
const APP_CONFIG_VAULTS: usize = 2;
/// The store of the App Configuration case, as every launcher names it.
const APP_CONFIG_ENDPOINT: &str = "https://benchcfg.azconfig.io";
/// The audience the store's tokens are for (the public cloud's).
const APP_CONFIG_AUDIENCE: &str = "https://appconfig.azure.com";
/// (N references, over this many vaults).
const CASES: [(usize, usize); 6] = [(0, 1), (1, 1), (10, 1), (50, 2), (200, 2), (1000, 3)];
/// What the command exits with when every value is right.
const CHECKED: i32 = 7;
/// A run that has not finished after this long is killed and fails the benchmark.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// The case measured against the fake offering only http/1.1 (at the first latency).
const HTTP1_CASE: (usize, usize) = (50, 2);
/// kvrun's `--concurrency` (its default, pinned so that the N = 1000 target means the same).
const CONCURRENCY: &str = "32";
/// The `KVRUN_LOG` filter every kvrun run gets (unless `KVRUN_BENCH_TIMING=0`): kvrun's default
/// (`warn`), and `info` for the one module whose only `info` event is the timing line. A
/// directive for a module that no longer exists enables nothing: the benchmark then fails, as it
/// finds no timing line.
const TIMING_LOG: &str = "kvrun=warn,kvrun::timing=info";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Launcher {
    Direct,
    Kvrun,
    /// Another kvrun binary (`KVRUN_BENCH_KVRUN_B`) run as [`Launcher::Kvrun`] is, each of its
    /// runs right after one of kvrun's (interleaved), so that the machine's drift falls on both.
    KvrunB,
    KvrunSequential,
    /// kvrun with the same values as one JSON bundle (`--env-from`) instead of N references.
    KvrunBundle,
    Akv,
    NodeEach,
    NodeAll,
    /// kvrun reading the App Configuration case's store (`--app-config`).
    KvrunAppConfig,
    /// `benches/node-launcher/appconfig.js`: the JS provider, Key Vault references one after
    /// another (its default), and with `parallelSecretResolutionEnabled`.
    NodeProvider,
    NodeProviderParallel,
}

impl Launcher {
    const ALL: [Launcher; 7] = [
        Launcher::Direct,
        Launcher::Kvrun,
        Launcher::KvrunSequential,
        Launcher::KvrunBundle,
        Launcher::Akv,
        Launcher::NodeEach,
        Launcher::NodeAll,
    ];

    /// The launchers of the App Configuration case (not in [`Launcher::ALL`], whose cases are
    /// Key Vault references only).
    const APP_CONFIG: [Launcher; 3] = [
        Launcher::KvrunAppConfig,
        Launcher::NodeProvider,
        Launcher::NodeProviderParallel,
    ];

    fn is_kvrun(self) -> bool {
        matches!(
            self,
            Launcher::Kvrun
                | Launcher::KvrunB
                | Launcher::KvrunSequential
                | Launcher::KvrunBundle
                | Launcher::KvrunAppConfig
        )
    }

    /// The name `KVRUN_BENCH_LAUNCHERS` uses.
    fn key(self) -> &'static str {
        match self {
            Launcher::Direct => "direct",
            Launcher::Kvrun => "kvrun",
            Launcher::KvrunB => "kvrun-b",
            Launcher::KvrunSequential => "sequential",
            Launcher::KvrunBundle => "bundle",
            Launcher::Akv => "akv",
            Launcher::NodeEach => "node-each",
            Launcher::NodeAll => "node-all",
            Launcher::KvrunAppConfig => "kvrun-appconfig",
            Launcher::NodeProvider => "node-provider",
            Launcher::NodeProviderParallel => "node-provider-parallel",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Launcher::Direct => "command directly",
            Launcher::Kvrun => "kvrun",
            Launcher::KvrunB => B_LABEL.get().map_or("kvrun B", String::as_str),
            Launcher::KvrunSequential => "kvrun --sequential",
            Launcher::KvrunBundle => "kvrun, one bundle",
            Launcher::Akv => "akv run",
            Launcher::NodeEach => "Node, await each",
            Launcher::NodeAll => "Node, Promise.all",
            Launcher::KvrunAppConfig => "kvrun --app-config",
            Launcher::NodeProvider => "JS provider",
            Launcher::NodeProviderParallel => "JS provider, parallel secrets",
        }
    }
}

/// `KVRUN_BENCH_KVRUN_B_LABEL`: the name of [`Launcher::KvrunB`] in the report (default
/// "kvrun B").
static B_LABEL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// One row of the report: a size of [`CASES`], and how the fake behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    /// Injected per new connection and per response.
    latency: Duration,
    /// The fake offers only `http/1.1` (otherwise `h2` and `http/1.1`).
    http1_only: bool,
    n: usize,
    vaults: usize,
}

impl Row {
    /// The row of size `n` of [`CASES`].
    fn of(latency_ms: u64, http1_only: bool, n: usize) -> Row {
        let vaults = CASES
            .iter()
            .find_map(|&(size, vaults)| (size == n).then_some(vaults))
            .expect("a size of CASES");
        Row {
            latency: Duration::from_millis(latency_ms),
            http1_only,
            n,
            vaults,
        }
    }

    /// `20 ms` or `20 ms, http/1.1-only fake`.
    fn network(self) -> String {
        let ms = self.latency.as_millis();
        if self.http1_only {
            format!("{ms} ms, http/1.1-only fake")
        } else {
            format!("{ms} ms")
        }
    }
}

struct Settings {
    runs: usize,
    min_runs: usize,
    budget: Duration,
    /// The first measures `sizes` (and [`HTTP1_CASE`]), each further one `other_sizes`.
    latencies: Vec<Duration>,
    sizes: Vec<usize>,
    other_sizes: Vec<usize>,
    launchers: Vec<Launcher>,
    kvrun: PathBuf,
    /// `KVRUN_BENCH_KVRUN_B`: the binary of [`Launcher::KvrunB`].
    kvrun_b: Option<PathBuf>,
    akv: PathBuf,
    node: OsString,
    node_launcher: PathBuf,
    /// `benches/node-launcher/appconfig.js`.
    node_provider: PathBuf,
    /// Measure the App Configuration case (`KVRUN_BENCH_APPCONFIG`, default on).
    app_config: bool,
    /// kvrun prints its timing line ([`TIMING_LOG`]), for its CPU time (`KVRUN_BENCH_TIMING`,
    /// default on).
    timing: bool,
    /// `KVRUN_BENCH_VERBOSE=1`: the timing line of kvrun's last run in each case is shown.
    verbose: bool,
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The sizes listed in the setting `name` (each one of [`CASES`]), or `default`.
fn sizes(name: &str, default: &[usize]) -> Result<Vec<usize>, String> {
    let Ok(list) = std::env::var(name) else {
        return Ok(default.to_vec());
    };
    list.split(',')
        .map(|n| {
            let n = n
                .trim()
                .parse::<usize>()
                .map_err(|e| format!("{name}: {e}"))?;
            if CASES.iter().any(|&(size, _)| size == n) {
                Ok(n)
            } else {
                Err(format!("{name}: {n} is not one of {CASES:?}"))
            }
        })
        .collect()
}

/// `KVRUN_BENCH_LATENCIES_MS`: distinct latencies, the first measured most.
fn latencies() -> Result<Vec<Duration>, String> {
    if std::env::var_os("KVRUN_BENCH_LATENCY_MS").is_some() {
        return Err(
            "KVRUN_BENCH_LATENCY_MS is now KVRUN_BENCH_LATENCIES_MS (a list, e.g. 20 or 20,5,1)"
                .into(),
        );
    }
    let list = std::env::var("KVRUN_BENCH_LATENCIES_MS").unwrap_or_else(|_| "20,5,1".into());
    let mut latencies: Vec<Duration> = Vec::new();
    for ms in list.split(',') {
        let ms = ms
            .trim()
            .parse::<u64>()
            .map_err(|e| format!("KVRUN_BENCH_LATENCIES_MS: '{ms}': {e}"))?;
        let latency = Duration::from_millis(ms);
        if latencies.contains(&latency) {
            return Err(format!("KVRUN_BENCH_LATENCIES_MS: {ms} is listed twice"));
        }
        latencies.push(latency);
    }
    Ok(latencies)
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let all: Vec<usize> = CASES.iter().map(|&(n, _)| n).collect();
        let launchers = match std::env::var("KVRUN_BENCH_LAUNCHERS") {
            Ok(list) => list
                .split(',')
                .map(|key| {
                    Launcher::ALL
                        .into_iter()
                        .find(|l| l.key() == key.trim())
                        .ok_or_else(|| {
                            let keys: Vec<&str> = Launcher::ALL.iter().map(|l| l.key()).collect();
                            format!("KVRUN_BENCH_LAUNCHERS: '{key}' is not one of {keys:?}")
                        })
                })
                .collect::<Result<_, _>>()?,
            Err(_) => Launcher::ALL.to_vec(),
        };
        let runs = usize::try_from(setting("KVRUN_BENCH_RUNS", 21))
            .unwrap_or(21)
            .max(1);
        let settings = Settings {
            runs,
            min_runs: usize::try_from(setting("KVRUN_BENCH_MIN_RUNS", 3))
                .unwrap_or(3)
                .clamp(1, runs),
            budget: Duration::from_secs(setting("KVRUN_BENCH_BUDGET_S", 10)),
            latencies: latencies()?,
            sizes: sizes("KVRUN_BENCH_SIZES", &all)?,
            other_sizes: sizes("KVRUN_BENCH_OTHER_SIZES", &[50, 1000])?,
            launchers,
            kvrun: std::env::var_os("KVRUN_BENCH_KVRUN")
                .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kvrun")), PathBuf::from),
            kvrun_b: std::env::var_os("KVRUN_BENCH_KVRUN_B").map(PathBuf::from),
            akv: std::env::var_os("KVRUN_BENCH_AKV")
                .map_or_else(|| root.join("target/bench-tools/bin/akv"), PathBuf::from),
            node: std::env::var_os("KVRUN_BENCH_NODE").unwrap_or_else(|| "node".into()),
            node_launcher: root.join("benches/node-launcher/launch.js"),
            node_provider: root.join("benches/node-launcher/appconfig.js"),
            app_config: setting("KVRUN_BENCH_APPCONFIG", 1) != 0,
            timing: setting("KVRUN_BENCH_TIMING", 1) != 0,
            verbose: setting("KVRUN_BENCH_VERBOSE", 0) == 1,
        };
        let mut settings = settings;
        if let Some(label) = std::env::var("KVRUN_BENCH_KVRUN_B_LABEL")
            .ok()
            .filter(|l| !l.is_empty())
        {
            let _ = B_LABEL.set(label);
        }
        if settings.kvrun_b.is_some() {
            if !settings.launchers.contains(&Launcher::Kvrun) {
                return Err("KVRUN_BENCH_KVRUN_B is compared with kvrun: KVRUN_BENCH_LAUNCHERS must list kvrun".into());
            }
            let at = settings
                .launchers
                .iter()
                .position(|&l| l == Launcher::Kvrun)
                .unwrap_or(0);
            settings.launchers.insert(at + 1, Launcher::KvrunB);
        }
        if settings.launchers.contains(&Launcher::Akv) && !settings.akv.is_file() {
            return Err(format!(
                "akv not found at {} (KVRUN_BENCH_AKV)\nhint: run scripts/bench, which installs it",
                settings.akv.display()
            ));
        }
        let modules = root.join("benches/node-launcher/node_modules/@azure/keyvault-secrets");
        let node = [Launcher::NodeEach, Launcher::NodeAll];
        if node.iter().any(|l| settings.launchers.contains(l)) && !modules.is_dir() {
            return Err(format!(
                "the Node launcher's packages are not installed ({} is missing)\nhint: run scripts/bench, which runs npm ci --prefix benches/node-launcher",
                modules.display()
            ));
        }
        let provider =
            root.join("benches/node-launcher/node_modules/@azure/app-configuration-provider");
        if settings.app_config && !provider.is_dir() {
            return Err(format!(
                "the JS App Configuration provider is not installed ({} is missing)\nhint: run scripts/bench, which runs npm ci --prefix benches/node-launcher",
                provider.display()
            ));
        }
        Ok(settings)
    }

    /// Every row this run measures, in order, with its launchers: every size at the first
    /// latency, then [`HTTP1_CASE`] against the http/1.1-only fake (kvrun only), then the other
    /// sizes at each further latency.
    fn rows(&self) -> Vec<(Row, Vec<Launcher>)> {
        let mut rows = Vec::new();
        for (i, &latency) in self.latencies.iter().enumerate() {
            let sizes = if i == 0 {
                &self.sizes
            } else {
                &self.other_sizes
            };
            for &(n, vaults) in CASES.iter().filter(|(n, _)| sizes.contains(n)) {
                let row = Row {
                    latency,
                    http1_only: false,
                    n,
                    vaults,
                };
                rows.push((row, self.launchers.clone()));
            }
            if i == 0 && self.launchers.contains(&Launcher::Kvrun) {
                let (n, vaults) = HTTP1_CASE;
                let row = Row {
                    latency,
                    http1_only: true,
                    n,
                    vaults,
                };
                let kvruns = [Launcher::Kvrun, Launcher::KvrunB];
                rows.push((
                    row,
                    kvruns
                        .into_iter()
                        .filter(|l| self.launchers.contains(l))
                        .collect(),
                ));
            }
        }
        rows
    }
}

/// One case: N references over some vaults, and what the command must find.
struct Case {
    n: usize,
    vaults: usize,
    dir: PathBuf,
    /// (variable, value) for every reference.
    expected: Vec<(String, String)>,
    /// The identifier of one JSON secret holding every (variable, value), for
    /// [`Launcher::KvrunBundle`].
    bundle: String,
}

impl Case {
    /// The command every launcher starts: `sh -c` that exits [`CHECKED`] only if every variable
    /// holds its value.
    fn child(&self) -> [String; 3] {
        let mut script = String::new();
        for (name, value) in &self.expected {
            write!(script, "[ \"${name}\" = '{value}' ] || exit 1; ").expect("write to String");
        }
        write!(script, "exit {CHECKED}").expect("write to String");
        ["sh".into(), "-c".into(), script]
    }
}

/// The fake, the proxy, and what every launcher's environment holds.
struct World {
    fake: FakeAzure,
    proxy: ConnectProxy,
    dir: tempfile::TempDir,
    base_env: Vec<(OsString, OsString)>,
}

impl World {
    fn start(latency: Duration) -> Result<World, String> {
        let fake = FakeAzure::start_with(Options {
            connect_delay: latency,
            response_delay: latency,
            public_cloud_names: true,
            ..Options::default()
        });
        let proxy = ConnectProxy::forwarding(&PUBLIC_NAMES, fake.port());
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let ca = dir.path().join("ca.pem");
        let bin = dir.path().join("bin");
        let home = dir.path().join("home");
        std::fs::write(&ca, fake.ca_pem()).map_err(|e| format!("write CA: {e}"))?;
        std::fs::create_dir_all(&home).map_err(|e| format!("home: {e}"))?;
        std::fs::create_dir_all(&bin).map_err(|e| format!("bin: {e}"))?;
        // The stand-in `az`: the token the fake's vaults accept for the public scope (or, when
        // its arguments name App Configuration's resource, the one its stores accept), in the
        // shape `az account get-access-token -o json` prints (both expiry fields, as the SDKs
        // read either).
        let token = fake.issue_token(DEFAULT_TENANT, &format!("{VAULT_RESOURCE}/.default"));
        let store_token =
            fake.issue_token(DEFAULT_TENANT, &format!("{APP_CONFIG_AUDIENCE}/.default"));
        let json = |token: &str| {
            format!(
                "{{\"accessToken\":\"{token}\",\"expiresOn\":\"2099-12-31 00:00:00.000000\",\"expires_on\":4102358400,\"subscription\":\"00000000-0000-0000-0000-000000000000\",\"tenant\":\"{DEFAULT_TENANT}\",\"tokenType\":\"Bearer\"}}"
            )
        };
        let az = format!(
            "#!/bin/sh\ncase \"$*\" in\n*appconfig.azure.com*) cat <<'EOF'\n{}\nEOF\n;;\n*) cat <<'EOF'\n{}\nEOF\n;;\nesac\n",
            json(&store_token),
            json(&token)
        );
        write_executable(&bin.join("az"), &az)?;
        let mut path = OsString::from(&bin);
        path.push(":");
        path.push(std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()));
        let proxy_url = OsString::from(proxy.url());
        let mut base_env: Vec<(OsString, OsString)> = vec![
            ("PATH".into(), path),
            ("HOME".into(), home.into()),
            ("SSL_CERT_FILE".into(), ca.clone().into()),
            ("NODE_EXTRA_CA_CERTS".into(), ca.into()),
            ("AZURE_TENANT_ID".into(), DEFAULT_TENANT.into()),
            ("KVRUN_CREDENTIAL".into(), "azure-cli".into()),
            // Nothing bypasses the proxy, and the proxy tunnels only to the fake.
            ("NO_PROXY".into(), "".into()),
            ("no_proxy".into(), "".into()),
        ];
        for name in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
        ] {
            base_env.push((name.into(), proxy_url.clone()));
        }
        if let Some(dir) = std::env::var_os("KVRUN_BENCH_CERT_DIR") {
            base_env.push(("SSL_CERT_DIR".into(), dir));
        }
        for vault in 0..3 {
            fake.vault(&format!("bench{vault}"))
                .set_challenge_resource(VAULT_RESOURCE);
        }
        Ok(World {
            fake,
            proxy,
            dir,
            base_env,
        })
    }

    /// The case's directory with its `.env` (`S{i}=https://bench{i % vaults}.vault.azure.net/secrets/s{i}`),
    /// and the secrets in the fake, each with a value unique to this benchmark run.
    fn case(&self, n: usize, vaults: usize, tag: &str) -> Result<Case, String> {
        let dir = self.dir.path().join(format!("n{n}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("case dir: {e}"))?;
        let mut dotenv = String::new();
        let mut expected = Vec::with_capacity(n);
        for i in 0..n {
            let vault = format!("bench{}", i % vaults);
            let value = format!("{tag}-{vault}-s{i}");
            self.fake.vault(&vault).set_secret(&format!("s{i}"), &value);
            writeln!(dotenv, "S{i}=https://{vault}.vault.azure.net/secrets/s{i}")
                .expect("write to String");
            expected.push((format!("S{i}"), value));
        }
        // Always a .env, even empty: akv looks for one in the parent directories otherwise.
        std::fs::write(dir.join(".env"), dotenv).map_err(|e| format!("write .env: {e}"))?;
        let settings: serde_json::Map<String, serde_json::Value> = expected
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let name = format!("bundle-n{n}");
        self.fake
            .vault("bench0")
            .set_secret(&name, &serde_json::Value::Object(settings).to_string());
        Ok(Case {
            n,
            vaults,
            dir,
            expected,
            bundle: format!("https://bench0.vault.azure.net/secrets/{name}"),
        })
    }

    /// The App Configuration case: the store `benchcfg` with [`APP_CONFIG_KEYS`] key-values
    /// `app:k000`…, no label, every [`APP_CONFIG_REF_EVERY`]th a Key Vault reference to a secret
    /// of `bench0` or `bench1`, the rest plain values; the command checks `k000`… (the prefix
    /// trimmed). Its directory has an empty `.env`.
    fn app_config_case(&self, tag: &str) -> Result<Case, String> {
        let dir = self.dir.path().join("appconfig");
        std::fs::create_dir_all(&dir).map_err(|e| format!("case dir: {e}"))?;
        std::fs::write(dir.join(".env"), "").map_err(|e| format!("write .env: {e}"))?;
        let store = self.fake.app_config("benchcfg");
        let mut expected = Vec::with_capacity(APP_CONFIG_KEYS);
        for i in 0..APP_CONFIG_KEYS {
            let key = format!("app:k{i:03}");
            let value = if i % APP_CONFIG_REF_EVERY == 0 {
                let vault = format!("bench{}", (i / APP_CONFIG_REF_EVERY) % APP_CONFIG_VAULTS);
                let value = format!("{tag}-{vault}-ac{i}");
                self.fake
                    .vault(&vault)
                    .set_secret(&format!("ac{i}"), &value);
                let reference = serde_json::json!({
                    "uri": format!("https://{vault}.vault.azure.net/secrets/ac{i}")
                });
                store.set_with(
                    &key,
                    None,
                    &reference.to_string(),
                    kvrun_fake::KeyValueAttrs {
                        content_type: Some(
                            "application/vnd.microsoft.appconfig.keyvaultref+json;charset=utf-8"
                                .to_owned(),
                        ),
                        ..kvrun_fake::KeyValueAttrs::default()
                    },
                );
                value
            } else {
                let value = format!("{tag}-setting-{i}");
                store.set(&key, None, &value);
                value
            };
            expected.push((format!("k{i:03}"), value));
        }
        Ok(Case {
            n: APP_CONFIG_KEYS,
            vaults: APP_CONFIG_VAULTS,
            dir,
            expected,
            bundle: String::new(),
        })
    }

    fn command(&self, settings: &Settings, launcher: Launcher, case: &Case) -> Command {
        let child = case.child();
        let mut command = match launcher {
            Launcher::Direct => Command::new(&child[0]),
            Launcher::Kvrun
            | Launcher::KvrunB
            | Launcher::KvrunSequential
            | Launcher::KvrunBundle => {
                let binary = match (launcher, &settings.kvrun_b) {
                    (Launcher::KvrunB, Some(b)) => b,
                    _ => &settings.kvrun,
                };
                let mut c = Command::new(binary);
                if launcher == Launcher::KvrunSequential {
                    c.arg("--sequential");
                } else {
                    c.args(["--concurrency", CONCURRENCY]);
                }
                if launcher == Launcher::KvrunBundle {
                    // The same values from one secret; the .env's references left unread.
                    c.args(["--no-dotenv", "--env-from", &case.bundle]);
                }
                c.arg("--");
                c
            }
            Launcher::Akv => {
                let mut c = Command::new(&settings.akv);
                c.args(["run", "--"]);
                c
            }
            Launcher::NodeEach | Launcher::NodeAll => {
                let mut c = Command::new(&settings.node);
                c.arg(&settings.node_launcher);
                if launcher == Launcher::NodeAll {
                    c.arg("--all");
                }
                c.arg("--");
                c
            }
            Launcher::KvrunAppConfig => {
                let mut c = Command::new(&settings.kvrun);
                c.args(["--concurrency", CONCURRENCY])
                    .args(["--app-config", APP_CONFIG_ENDPOINT])
                    .args(["--app-config-select", "app:*"])
                    .args(["--app-config-trim", "app:", "--"]);
                c
            }
            Launcher::NodeProvider | Launcher::NodeProviderParallel => {
                let mut c = Command::new(&settings.node);
                c.arg(&settings.node_provider);
                if launcher == Launcher::NodeProviderParallel {
                    c.arg("--parallel");
                }
                c.args([APP_CONFIG_ENDPOINT, "app:*", "app:", "--"]);
                c
            }
        };
        command
            .env_clear()
            .envs(self.base_env.iter().map(|(k, v)| (k, v)));
        if settings.timing && launcher.is_kvrun() {
            command.env("KVRUN_LOG", TIMING_LOG);
        }
        if launcher == Launcher::Direct {
            // The floor: the command with its values already in its environment.
            command
                .args(&child[1..])
                .envs(case.expected.iter().map(|(k, v)| (k, v)));
        } else {
            command.args(&child);
        }
        command.current_dir(&case.dir);
        command
    }
}

fn write_executable(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

struct Stats {
    runs: usize,
    median: Duration,
    min: Duration,
    max: Duration,
    /// The largest peak RSS of any run, KiB.
    max_rss_kib: u64,
    /// kvrun's timing line of the last run (`KVRUN_BENCH_VERBOSE=1`).
    timing: Option<String>,
    /// Medians per run of what the fake saw: HTTP requests (vaults and token endpoint), TCP
    /// connections (each tunnel through the proxy is one).
    requests: usize,
    tcp: usize,
    /// TLS sessions by protocol, of the run with the median number of them.
    tls: TlsSessions,
    /// kvrun's own CPU time, of the run with the median total (kvrun with its timing line, and
    /// N > 0: without references it resolves nothing and prints no timing line).
    cpu: Option<KvrunCpu>,
}

/// kvrun's CPU time in one run, from its timing line.
#[derive(Clone, Copy, Debug)]
struct KvrunCpu {
    /// Before the resolution: process start, reading the sources, planning.
    before: Duration,
    /// During the resolution (runtime, TLS, requests), up to the timing line.
    during: Duration,
}

impl KvrunCpu {
    fn total(self) -> Duration {
        self.before + self.during
    }

    /// The CPU figures of the timing line in `stderr` (its last one), which reads
    /// `time: total …; CPU 6.2 ms (+2.9 ms before: start, sources, plan)[; peak RSS …]`.
    fn parse(stderr: &str) -> Option<KvrunCpu> {
        let line = stderr.lines().rev().find(|l| l.contains("time: "))?;
        let (_, cpu) = line.rsplit_once("; CPU ")?;
        let (during, rest) = cpu.split_once(" ms")?;
        let (before, _) = rest
            .trim_start()
            .strip_prefix("(+")?
            .split_once(" ms before")?;
        let ms = |text: &str| {
            let ms = text.trim().parse::<f64>().ok()?;
            Duration::try_from_secs_f64(ms / 1000.0).ok()
        };
        Some(KvrunCpu {
            before: ms(before)?,
            during: ms(during)?,
        })
    }
}

/// What the fake has counted so far: (requests, TCP connections, TLS sessions).
type Counts = (usize, usize, TlsSessions);

/// The fake's counts once they have stopped changing (for 2 ms, waiting at most 100 ms): a
/// launcher that has just exited may leave a handshake or a request that the fake has not
/// finished counting, which would otherwise be counted in the next run.
fn settled_counts(fake: &FakeAzure) -> Counts {
    let read = || {
        (
            fake.request_count(),
            fake.connections(),
            fake.tls_sessions(),
        )
    };
    let mut counts = read();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(2));
        let now = read();
        if now == counts {
            break;
        }
        counts = now;
    }
    counts
}

/// One run's figures.
struct RunResult {
    sample: process::Sample,
    requests: usize,
    tcp: usize,
    tls: TlsSessions,
    cpu: Option<KvrunCpu>,
}

/// The element with the median `key` (the upper one of an even count); `items` is not empty.
fn median_by<T, K: Ord>(items: &[T], key: impl Fn(&T) -> K) -> &T {
    let mut sorted: Vec<&T> = items.iter().collect();
    sorted.sort_by_key(|&item| key(item));
    sorted[sorted.len() / 2]
}

/// Runs each of `launchers` on `case` (on the fake as `row` describes it) until it has enough
/// samples: `settings.runs`, or fewer (at least `settings.min_runs`) when its first run shows
/// they would take longer than the budget. Several launchers take turns, one run each, so that
/// what the machine does meanwhile falls on all of them alike ([`Launcher::KvrunB`]).
fn measure(
    world: &World,
    settings: &Settings,
    launchers: &[Launcher],
    row: Row,
    case: &Case,
) -> Result<Vec<Stats>, String> {
    let mut samplers: Vec<Sampler> = launchers
        .iter()
        .map(|&launcher| Sampler {
            launcher,
            runs: Vec::new(),
            wanted: settings.runs,
            stderr: String::new(),
        })
        .collect();
    // The fake's counts after one run are those before the next, whichever launcher it is.
    let mut counts = settled_counts(&world.fake);
    while let Some(sampler) = samplers
        .iter_mut()
        .filter(|s| s.runs.len() < s.wanted)
        .min_by_key(|s| s.runs.len())
    {
        counts = sampler.run(world, settings, row, case, counts)?;
    }
    Ok(samplers.into_iter().map(|s| s.stats(settings)).collect())
}

/// The runs of one launcher on one case so far.
struct Sampler {
    launcher: Launcher,
    runs: Vec<RunResult>,
    wanted: usize,
    /// The last run's.
    stderr: String,
}

impl Sampler {
    /// One more run, from the fake's counts `before` it; the counts after it.
    fn run(
        &mut self,
        world: &World,
        settings: &Settings,
        row: Row,
        case: &Case,
        before: Counts,
    ) -> Result<Counts, String> {
        let launcher = self.launcher;
        let stderr_path = world.dir.path().join("stderr.log");
        let what = || {
            format!(
                "{}, N={} over {} vault(s) at {}",
                launcher.label(),
                case.n,
                case.vaults,
                row.network()
            )
        };
        let wants_cpu = settings.timing && case.n > 0 && launcher.is_kvrun();
        let stderr_file =
            std::fs::File::create(&stderr_path).map_err(|e| format!("stderr file: {e}"))?;
        let command = world.command(settings, launcher, case);
        let sample = process::run_measured(&command, &world.dir.path().join("sample"), stderr_file)
            .map_err(|e| format!("{}: cannot run: {e}", what()))?;
        let after = settled_counts(&world.fake);
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        if sample.exit != CHECKED {
            return Err(format!(
                "{}, run {}: {}",
                what(),
                self.runs.len() + 1,
                failure(sample.exit, &stderr)
            ));
        }
        let cpu = if wants_cpu {
            Some(KvrunCpu::parse(&stderr).ok_or_else(|| {
                format!(
                    "{}, run {}: no CPU figures in kvrun's timing line (KVRUN_LOG={TIMING_LOG}; has src/timing.rs moved or changed its line?)\n--- its stderr ---\n{stderr}",
                    what(),
                    self.runs.len() + 1,
                )
            })?)
        } else {
            None
        };
        if self.runs.is_empty() && !sample.wall.is_zero() {
            let affordable = settings.budget.as_nanos() / sample.wall.as_nanos();
            self.wanted = usize::try_from(affordable)
                .unwrap_or(usize::MAX)
                .clamp(settings.min_runs, settings.runs);
        }
        self.runs.push(RunResult {
            sample,
            requests: after.0 - before.0,
            tcp: after.1 - before.1,
            tls: TlsSessions {
                h2: after.2.h2 - before.2.h2,
                http1: after.2.http1 - before.2.http1,
            },
            cpu,
        });
        self.stderr = stderr;
        Ok(after)
    }

    fn stats(self, settings: &Settings) -> Stats {
        let timing = settings
            .verbose
            .then(|| {
                self.stderr
                    .lines()
                    .find(|l| l.contains("time: "))
                    .map(|l| l.trim().to_owned())
            })
            .flatten();
        Stats::of(&self.runs, timing)
    }
}

/// Why a run that did not exit [`CHECKED`] failed, with the end of its stderr.
fn failure(exit: i32, stderr: &str) -> String {
    let tail: String = stderr
        .chars()
        .rev()
        .take(3000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let why = match exit {
        1 => "the command did not get the right values".to_owned(),
        code if code > 128 => {
            format!("killed by signal {} (timeout {RUN_TIMEOUT:?}?)", code - 128)
        }
        code => format!("exit code {code}"),
    };
    format!("expected exit {CHECKED}, got {exit}: {why}\n--- its stderr (end) ---\n{tail}")
}

impl Stats {
    /// The statistics of `runs` (not empty).
    fn of(runs: &[RunResult], timing: Option<String>) -> Stats {
        let mut times: Vec<Duration> = runs.iter().map(|r| r.sample.wall).collect();
        times.sort();
        let cpus: Vec<KvrunCpu> = runs.iter().filter_map(|r| r.cpu).collect();
        Stats {
            runs: times.len(),
            median: times[times.len() / 2],
            min: times[0],
            max: times[times.len() - 1],
            max_rss_kib: runs.iter().map(|r| r.sample.max_rss_kib).max().unwrap_or(0),
            timing,
            requests: median_by(runs, |r| r.requests).requests,
            tcp: median_by(runs, |r| r.tcp).tcp,
            tls: median_by(runs, |r| (r.tls.h2 + r.tls.http1, r.tls.h2)).tls,
            cpu: (!cpus.is_empty()).then(|| *median_by(&cpus, |c| c.total())),
        }
    }
}

/// Spawning a child and reaping it with `wait4`, for its peak RSS.
///
/// Not from this process: a child's `ru_maxrss` starts from the peak RSS of the memory it was
/// forked (or vforked) from, so a launcher spawned from here would report at least this process's
/// own peak, fake vault included. A copy of this binary started with [`MEASURE`] does it instead
/// (before doing anything else, so its own footprint, the floor of what it can report, stays
/// about 2 MB; the "command directly" row shows that floor).
mod process {
    use std::path::Path;
    use std::process::{Command, ExitCode, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    /// `startup --measure RESULT_FILE PROGRAM [ARGS...]`: run `PROGRAM` (environment, directory and
    /// stdio inherited), then write `{wall_ns} {max_rss_kib} {exit}` to `RESULT_FILE`.
    pub(crate) const MEASURE: &str = "--measure";

    /// The helper's side of [`MEASURE`]; `None` when this is not a helper invocation.
    pub(crate) fn helper() -> Option<ExitCode> {
        let mut args = std::env::args_os().skip(1);
        if args.next()? != MEASURE {
            return None;
        }
        let (Some(result), Some(program)) = (args.next(), args.next()) else {
            eprintln!("usage: startup {MEASURE} RESULT_FILE PROGRAM [ARGS...]");
            return Some(ExitCode::from(2));
        };
        let mut command = Command::new(program);
        command.args(args);
        match run(command, super::RUN_TIMEOUT) {
            Ok(s) => {
                let line = format!("{} {} {}", s.wall.as_nanos(), s.max_rss_kib, s.exit);
                match std::fs::write(&result, line) {
                    Ok(()) => Some(ExitCode::SUCCESS),
                    Err(e) => {
                        eprintln!("startup {MEASURE}: cannot write the result: {e}");
                        Some(ExitCode::from(2))
                    }
                }
            }
            Err(e) => {
                eprintln!("startup {MEASURE}: {e}");
                Some(ExitCode::from(2))
            }
        }
    }

    /// Runs `command` (which must have a cleared environment, as every launcher's has; its stdin
    /// and stdout are null, its stderr is `stderr`) through a [`MEASURE`] helper; `scratch` is
    /// where the helper writes its result.
    pub(crate) fn run_measured(
        command: &Command,
        scratch: &Path,
        stderr: std::fs::File,
    ) -> std::io::Result<Sample> {
        let _ = std::fs::remove_file(scratch);
        let mut helper = Command::new(std::env::current_exe()?);
        helper
            .arg(MEASURE)
            .arg(scratch)
            .arg(command.get_program())
            .args(command.get_args())
            .env_clear()
            .envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some(dir) = command.get_current_dir() {
            helper.current_dir(dir);
        }
        helper.stderr(stderr);
        let status = helper.status()?;
        let text = std::fs::read_to_string(scratch).map_err(|e| {
            std::io::Error::other(format!(
                "the measuring helper ({status}) left no result: {e}"
            ))
        })?;
        let fields: Vec<u64> = text
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        let [wall, max_rss_kib, exit] = fields[..] else {
            return Err(std::io::Error::other(format!(
                "the measuring helper wrote '{text}'"
            )));
        };
        Ok(Sample {
            wall: Duration::from_nanos(wall),
            max_rss_kib,
            exit: i32::try_from(exit).unwrap_or(-1),
        })
    }

    pub(crate) struct Sample {
        pub wall: Duration,
        /// `ru_maxrss`: the child's peak resident set (or that of a descendant it waited for), KiB.
        pub max_rss_kib: u64,
        /// The exit code, or 128 + the signal that killed it.
        pub exit: i32,
    }

    /// Runs `command` to its end (killing it after `timeout`): wall time from spawn to exit, and
    /// the child's resource usage from `wait4`.
    #[expect(
        unsafe_code,
        reason = "waitid/wait4/kill on our own child: std has no peak-RSS API"
    )]
    pub(crate) fn run(mut command: Command, timeout: Duration) -> std::io::Result<Sample> {
        let started = Instant::now();
        let child = command.spawn()?;
        let pid = libc::pid_t::try_from(child.id()).map_err(std::io::Error::other)?;
        let (done, finished) = mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if finished.recv_timeout(timeout) == Err(mpsc::RecvTimeoutError::Timeout) {
                // SAFETY: `pid` is our child and has not been reaped (it is reaped only after this
                // thread is joined), so the pid cannot have been reused.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
        // Wait for the exit without reaping, so the pid stays ours until the watchdog is done.
        loop {
            // SAFETY: `info` is a valid, zeroed siginfo_t owned by this frame.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let id = libc::id_t::try_from(pid).map_err(std::io::Error::other)?;
            // SAFETY: waits for our own child; `info` outlives the call.
            let r = unsafe {
                libc::waitid(
                    libc::P_PID,
                    id,
                    &raw mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if r == 0 {
                break;
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
        let wall = started.elapsed();
        let _ = done.send(());
        let _ = watchdog.join();
        let mut status = 0;
        // SAFETY: `usage` is a valid, zeroed rusage owned by this frame.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: reaps our own child, which has exited; both out-pointers outlive the call.
        let r = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
        if r != pid {
            return Err(std::io::Error::last_os_error());
        }
        // The std handle is dropped without waiting: the child is already reaped.
        drop(child);
        let exit = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        };
        Ok(Sample {
            wall,
            max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
            exit,
        })
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `12.3 ms` below 1 s, `2.41 s` above.
fn time(d: Duration) -> String {
    let ms = ms(d);
    if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

#[expect(clippy::cast_precision_loss, reason = "KiB counts far below 2^52")]
fn megabytes(kib: u64) -> f64 {
    (kib * 1024) as f64 / 1e6
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |k| k.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    format!("{cores} cores ({cpu}), Linux {kernel}")
}

fn version(program: &OsString, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown version".into(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

type Results = BTreeMap<(Row, Launcher), Stats>;

fn main() -> ExitCode {
    if let Some(code) = process::helper() {
        return code;
    }
    // `cargo bench` passes `--bench`; there is nothing to filter.
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("benchmark failed: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `20, 5 and 1 ms`.
/// How long the fake's delay of each latency actually lasts (`kvrun_fake::delay`): the median of
/// 21, measured here, before any launcher runs.
fn delay_accuracy(latencies: &[Duration]) -> String {
    let took: Vec<String> = latencies
        .iter()
        .map(|&latency| {
            let mut runs = kvrun_fake::delay::measure(latency, 21);
            runs.sort();
            format!("{} lasts {:.2} ms", time(latency), ms(runs[runs.len() / 2]))
        })
        .collect();
    format!("the fake's delay of {}, median of 21", took.join(", "))
}

fn latency_list(latencies: &[Duration]) -> String {
    let ms: Vec<String> = latencies
        .iter()
        .map(|l| l.as_millis().to_string())
        .collect();
    match ms.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last} ms", rest.join(", ")),
        _ => format!("{} ms", ms.join("")),
    }
}

/// Measures `launchers` on `row`, printing a line for each as it ends; kvrun and kvrun B take
/// turns, every other launcher runs on its own.
fn measure_row(
    world: &World,
    settings: &Settings,
    row: Row,
    launchers: &[Launcher],
    case: &Case,
    results: &mut Results,
) -> Result<(), String> {
    let mut groups: Vec<Vec<Launcher>> = Vec::new();
    for &launcher in launchers {
        match groups.last_mut() {
            Some(group) if launcher == Launcher::KvrunB => group.push(launcher),
            _ => groups.push(vec![launcher]),
        }
    }
    for group in &groups {
        let measured = measure(world, settings, group, row, case)?;
        for (&launcher, stats) in group.iter().zip(measured) {
            let cpu = stats
                .cpu
                .map_or_else(String::new, |c| format!("  kvrun CPU {}", time(c.total())));
            eprintln!(
                "  N={:<4} {:<25} {:<20} {:>3} runs  median {:>9}  min {:>9}  max {:>9}  peak RSS {:.1} MB  {}{cpu}",
                row.n,
                row.network(),
                launcher.label(),
                stats.runs,
                time(stats.median),
                time(stats.min),
                time(stats.max),
                megabytes(stats.max_rss_kib),
                sessions(&stats),
            );
            if let Some(line) = &stats.timing {
                eprintln!("      {line}");
            }
            results.insert((row, launcher), stats);
        }
    }
    Ok(())
}

fn run() -> Result<(), String> {
    let settings = Settings::from_env()?;
    let world = World::start(settings.latencies[0])?;
    let tag = format!("v{:x}", std::process::id() ^ 0x5eed);
    let node_version = version(&settings.node, &["--version"]);
    let akv_version = version(&settings.akv.clone().into_os_string(), &["--version"]);
    let delays = delay_accuracy(&settings.latencies);
    eprintln!(
        "kvrun start-up benchmark: {} per new connection and per response ({delays}); {}; akv: {akv_version}; node: {node_version}",
        latency_list(&settings.latencies),
        machine(),
    );

    let rows = settings.rows();
    let mut cases: BTreeMap<usize, Case> = BTreeMap::new();
    for (row, _) in &rows {
        if let Entry::Vacant(entry) = cases.entry(row.n) {
            entry.insert(world.case(row.n, row.vaults, &tag)?);
        }
    }
    let mut results = Results::new();
    for (row, launchers) in &rows {
        world.fake.set_delays(row.latency, row.latency);
        world.fake.set_http1_only(row.http1_only);
        let case = &cases[&row.n];
        measure_row(&world, &settings, *row, launchers, case, &mut results)?;
    }
    world.fake.set_http1_only(false);
    let mut app_config: Vec<(Launcher, Stats)> = Vec::new();
    if settings.app_config {
        let latency = settings.latencies[0];
        world.fake.set_delays(latency, latency);
        let case = world.app_config_case(&tag)?;
        let row = Row {
            latency,
            http1_only: false,
            n: case.n,
            vaults: case.vaults,
        };
        for launcher in Launcher::APP_CONFIG {
            let stats = measure(&world, &settings, &[launcher], row, &case)?
                .pop()
                .ok_or("no statistics")?;
            eprintln!(
                "  App Configuration, {APP_CONFIG_KEYS} key-values at {}: {:<30} {:>3} runs  median {:>9}  peak RSS {:.1} MB  {}",
                row.network(),
                launcher.label(),
                stats.runs,
                time(stats.median),
                megabytes(stats.max_rss_kib),
                sessions(&stats),
            );
            app_config.push((launcher, stats));
        }
    }
    let refused = world.proxy.refused();
    if !refused.is_empty() {
        return Err(format!(
            "a launcher tried to reach something other than the fake through the proxy: {refused:?}"
        ));
    }
    let binary = std::fs::metadata(&settings.kvrun).map_or(0, |m| m.len());
    let rows: Vec<Row> = rows.iter().map(|&(row, _)| row).collect();
    print!(
        "{}",
        report(
            &settings,
            &rows,
            &results,
            binary,
            &akv_version,
            &node_version,
            &delays,
        )
    );
    if !app_config.is_empty() {
        print!("{}", app_config_report(settings.latencies[0], &app_config));
    }
    Ok(())
}

/// The TLS sessions of a run by protocol (`2 h2`, `50 h1`, `2 h2 + 1 h1`), with the TCP count
/// where it differs (a connection that never completed its handshake).
fn sessions(s: &Stats) -> String {
    let TlsSessions { h2, http1 } = s.tls;
    let mut text = match (h2, http1) {
        (0, 0) => "0".to_owned(),
        (h2, 0) => format!("{h2} h2"),
        (0, h1) => format!("{h1} h1"),
        (h2, h1) => format!("{h2} h2 + {h1} h1"),
    };
    if s.tcp != h2 + http1 {
        let _ = write!(text, " ({} TCP)", s.tcp);
    }
    text
}

/// The table of wall times (medians) and ratios; returns its launchers, kvrun B (after kvrun,
/// with a ratio column) only when it was measured.
fn wall_table(w: &mut String, rows: &[Row], results: &Results) -> Vec<Launcher> {
    let get = |row: Row, l: Launcher| results.get(&(row, l));
    let ratio = |row: Row, peer: Launcher| match (get(row, Launcher::Kvrun), get(row, peer)) {
        (Some(k), Some(p)) => format!("{:.3}", ms(k.median) / ms(p.median)),
        _ => String::new(),
    };
    let b = results.keys().any(|&(_, l)| l == Launcher::KvrunB);
    let mut shown = Launcher::ALL.to_vec();
    if b {
        shown.insert(2, Launcher::KvrunB);
    }
    let _ = write!(w, "| latency | N (vaults) |");
    for l in &shown {
        let _ = write!(w, " {} |", l.label());
    }
    let _ = write!(w, " kvrun/akv | kvrun/Node each | kvrun/Node all |");
    if b {
        let _ = write!(w, " {} / kvrun |", Launcher::KvrunB.label());
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "|---|---|{}---:|---:|---:|{}",
        "---:|".repeat(shown.len()),
        if b { "---:|" } else { "" }
    );
    for &row in rows {
        let _ = write!(w, "| {} | {} ({}) |", row.network(), row.n, row.vaults);
        for &l in &shown {
            match get(row, l) {
                Some(s) => {
                    let _ = write!(w, " {} ({}) |", time(s.median), s.runs);
                }
                None => {
                    let _ = write!(w, " |");
                }
            }
        }
        let _ = write!(
            w,
            " {} | {} | {} |",
            ratio(row, Launcher::Akv),
            ratio(row, Launcher::NodeEach),
            ratio(row, Launcher::NodeAll)
        );
        let b_ratio = match (get(row, Launcher::KvrunB), get(row, Launcher::Kvrun)) {
            (Some(b), Some(k)) => format!(" {:.3} |", ms(b.median) / ms(k.median)),
            _ if b => " |".to_owned(),
            _ => String::new(),
        };
        let _ = writeln!(w, "{b_ratio}");
    }
    shown
}

fn report(
    settings: &Settings,
    rows: &[Row],
    results: &Results,
    binary: u64,
    akv_version: &str,
    node_version: &str,
    delays: &str,
) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "Medians of wall time, spawn to exit; the latency is injected per new connection and per response ({delays}), and the fake offers h2 and http/1.1 unless marked; {}; akv-cli {}, Node {node_version}. Runs per cell in parentheses.\n",
        machine(),
        akv_version.trim_start_matches("akv "),
    );
    let _ = write!(w, "kvrun is `{}`", settings.kvrun.display());
    if let Some(b) = &settings.kvrun_b {
        let _ = write!(
            w,
            "; {} is `{}`, each of its runs right after one of kvrun's",
            Launcher::KvrunB.label(),
            b.display()
        );
    }
    let _ = writeln!(w, ".\n");
    let shown = wall_table(w, rows, results);
    let b = shown.contains(&Launcher::KvrunB);
    let launchers = &shown[1..];
    launcher_table(
        w,
        rows,
        results,
        launchers,
        "Peak RSS (largest `ru_maxrss` of any run, MB = 10^6 bytes)",
        |s| format!("{:.1}", megabytes(s.max_rss_kib)),
    );
    launcher_table(
        w,
        rows,
        results,
        launchers,
        "Requests / connections per run (medians of what the fake saw, through the proxy: HTTP requests to the vaults and the token endpoint / TLS sessions by negotiated protocol, and TCP connections in parentheses where they differ)",
        |s| format!("{} / {}", s.requests, sessions(s)),
    );
    if settings.timing {
        launcher_table(
            w,
            rows,
            results,
            &[
                Launcher::Kvrun,
                Launcher::KvrunB,
                Launcher::KvrunSequential,
                Launcher::KvrunBundle,
            ]
            .into_iter()
            .filter(|&l| b || l != Launcher::KvrunB)
            .collect::<Vec<_>>(),
            "kvrun's own CPU time per run (median; from its timing line: before the resolution — process start, sources, plan — plus during it; not the stand-in `az` nor the command it execs into; none at N = 0, where nothing is resolved)",
            |s| {
                s.cpu.map_or_else(String::new, |c| {
                    format!(
                        "{} ({:.1} + {:.1})",
                        time(c.total()),
                        ms(c.before),
                        ms(c.during)
                    )
                })
            },
        );
    }
    out.push_str(&targets(results, binary));
    out
}

/// A table of one figure per row and launcher (rows with none of `launchers` left out).
fn launcher_table(
    w: &mut String,
    rows: &[Row],
    results: &Results,
    launchers: &[Launcher],
    title: &str,
    cell: impl Fn(&Stats) -> String,
) {
    let _ = writeln!(w, "\n{title}:\n");
    let _ = write!(w, "| latency | N |");
    for l in launchers {
        let _ = write!(w, " {} |", l.label());
    }
    let _ = writeln!(w, "\n|---|---|{}", "---:|".repeat(launchers.len()));
    for &row in rows {
        let cells: Vec<String> = launchers
            .iter()
            .map(|&l| results.get(&(row, l)).map_or_else(String::new, &cell))
            .collect();
        if cells.iter().all(String::is_empty) {
            continue;
        }
        let _ = writeln!(
            w,
            "| {} | {} | {} |",
            row.network(),
            row.n,
            cells.join(" | ")
        );
    }
}

/// What a target's case measured, as shown, and whether that meets the target; `None` when this
/// run did not measure it.
type Measured = Option<(String, bool)>;

/// The issue's targets, each met or missed, from this run's kvrun results.
fn targets(results: &Results, binary: u64) -> String {
    let kvrun = |row: Row| results.get(&(row, Launcher::Kvrun));
    let n50 = Row::of(20, false, 50);
    let wall =
        |row: Row, limit_ms: f64| kvrun(row).map(|s| (time(s.median), ms(s.median) <= limit_ms));
    let targets: [(&str, &str, Measured); 7] = [
        ("N = 50, two vaults, 20 ms", "≤ 68 ms", wall(n50, 68.0)),
        (
            "N = 50, two vaults, 1 ms",
            "≤ 12 ms",
            wall(Row::of(1, false, 50), 12.0),
        ),
        (
            "N = 1000, three vaults, 20 ms, `--concurrency 32`",
            "≤ 300 ms",
            wall(Row::of(20, false, 1000), 300.0),
        ),
        (
            "connections per run, N = 50, two vaults, 20 ms (h2 fake)",
            "one per vault: 2 (the token comes from the stand-in `az`, not from Entra)",
            kvrun(n50).map(|s| {
                let one_each = s.tls.h2 + s.tls.http1 == n50.vaults && s.tcp == n50.vaults;
                (sessions(s), one_each)
            }),
        ),
        (
            "kvrun CPU per run, N = 50, two vaults, 20 ms",
            "≤ 8 ms",
            kvrun(n50)
                .and_then(|s| s.cpu)
                .map(|c| (time(c.total()), ms(c.total()) <= 8.0)),
        ),
        (
            "peak RSS, N = 1000, three vaults, 20 ms (largest of any run)",
            "≤ 11 MB",
            kvrun(Row::of(20, false, 1000)).map(|s| {
                let mb = megabytes(s.max_rss_kib);
                (format!("{mb:.1} MB"), mb <= 11.0)
            }),
        ),
        (
            "N = 50, two vaults, 20 ms, http/1.1-only fake",
            "≤ 100 ms",
            wall(Row::of(20, true, 50), 100.0),
        ),
    ];
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "\nTargets (kvrun, this run's medians):\n");
    let _ = writeln!(w, "| case | target | measured | |");
    let _ = writeln!(w, "|---|---|---:|---|");
    for (case, target, measured) in targets {
        let (value, verdict) = match measured {
            Some((value, true)) => (value, "met"),
            Some((value, false)) => (value, "**missed**"),
            None => ("not measured".to_owned(), ""),
        };
        let _ = writeln!(w, "| {case} | {target} | {value} | {verdict} |");
    }
    #[expect(clippy::cast_precision_loss, reason = "a file size")]
    let size = binary as f64 / 1e6;
    let _ = writeln!(w, "\nkvrun release binary (stripped): {size:.1} MB");
    out
}

/// The App Configuration case's table: every launcher's median, runs, peak RSS, requests and
/// connections, kvrun's CPU, and kvrun's median over each peer's.
fn app_config_report(latency: Duration, results: &[(Launcher, Stats)]) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "\nApp Configuration at {}: one store of {APP_CONFIG_KEYS} key-values (no label, `app:` trimmed), {} of them Key Vault references over {APP_CONFIG_VAULTS} vaults; the command checks all {APP_CONFIG_KEYS} variables. Requests / connections are the fake's (store, vaults, token endpoint) through the proxy.\n",
        time(latency),
        APP_CONFIG_KEYS / APP_CONFIG_REF_EVERY,
    );
    let _ = writeln!(
        w,
        "| launcher | median (runs) | min–max | peak RSS | requests / connections | kvrun CPU | kvrun / this |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|");
    let kvrun = results
        .iter()
        .find(|(l, _)| *l == Launcher::KvrunAppConfig)
        .map(|(_, s)| s.median);
    for (launcher, s) in results {
        let ratio = kvrun.map_or_else(String::new, |k| format!("{:.3}", ms(k) / ms(s.median)));
        let cpu = s.cpu.map_or_else(String::new, |c| time(c.total()));
        let _ = writeln!(
            w,
            "| {} | {} ({}) | {}–{} | {:.1} MB | {} / {} | {cpu} | {ratio} |",
            launcher.label(),
            time(s.median),
            s.runs,
            time(s.min),
            time(s.max),
            megabytes(s.max_rss_kib),
            s.requests,
            sessions(s),
        );
    }
    out
}
