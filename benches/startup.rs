//! Start-up benchmark: how long `kvrun -- true` takes to resolve N references, against the fake
//! vault with injected latency on every new connection and every response (default 20 ms, as
//! within an Azure region), beside baselines measured in the same run:
//!
//! - `true` run directly (what kvrun adds when there is nothing to fetch);
//! - kvrun with `--sequential` (one request at a time, as a sequential launcher pays).
//!
//! Run: `cargo bench --bench startup` (release build). Settings: `KVRUN_BENCH_RUNS` (default 21),
//! `KVRUN_BENCH_LATENCY_MS` (default 20). Prints medians, minimum and maximum, and ratios.

#![expect(
    clippy::disallowed_methods,
    reason = "benchmark settings come from the environment"
)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kvrun_fake::{DEFAULT_TENANT, FakeAzure, Options};

const CLIENT_ID: &str = "bench-client";
const CLIENT_SECRET: &str = "bench-secret";

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Stats {
    median: Duration,
    min: Duration,
    max: Duration,
}

fn measure(runs: u64, mut command: impl FnMut() -> Command) -> Stats {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let mut c = command();
            let started = Instant::now();
            let output = c.stdout(Stdio::null()).output().expect("runs");
            let elapsed = started.elapsed();
            assert!(
                output.status.success(),
                "benchmark run failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            elapsed
        })
        .collect();
    times.sort();
    Stats {
        median: times[times.len() / 2],
        min: times[0],
        max: times[times.len() - 1],
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn kvrun(fake: &FakeAzure, dir: &Path, ca: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kvrun"));
    command
        .env_clear()
        .current_dir(dir)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SSL_CERT_FILE", ca)
        .env("AZURE_TENANT_ID", DEFAULT_TENANT)
        .env("AZURE_CLIENT_ID", CLIENT_ID)
        .env("AZURE_CLIENT_SECRET", CLIENT_SECRET)
        .env("AZURE_AUTHORITY_HOST", fake.authority_host())
        .env("KVRUN_VAULT_SUFFIX", "vault.localhost");
    command
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter here.
    let runs = setting("KVRUN_BENCH_RUNS", 21);
    let latency = Duration::from_millis(setting("KVRUN_BENCH_LATENCY_MS", 20));
    let fake = FakeAzure::start_with(Options {
        connect_delay: latency,
        response_delay: latency,
        ..Options::default()
    });
    fake.add_client(CLIENT_ID, CLIENT_SECRET);
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, fake.ca_pem()).expect("write CA");

    println!(
        "kvrun start-up: {runs} runs each, {} ms per new connection and per response, {} cores",
        latency.as_millis(),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "case", "median ms", "min ms", "max ms"
    );
    let report = |name: &str, s: &Stats| {
        println!(
            "{name:<44} {:>10.1} {:>10.1} {:>10.1}",
            ms(s.median),
            ms(s.min),
            ms(s.max)
        );
    };

    let direct = measure(runs, || Command::new("true"));
    report("true (no kvrun)", &direct);
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("dir");
    let n0 = measure(runs, || {
        let mut c = kvrun(&fake, &empty, &ca);
        c.args(["--", "true"]);
        c
    });
    report("kvrun -- true, N=0", &n0);

    for (n, vaults) in [(1, 1), (10, 1), (50, 2), (200, 2)] {
        let case = dir.path().join(format!("n{n}"));
        std::fs::create_dir(&case).expect("dir");
        let mut dotenv = String::new();
        for i in 0..n {
            let vault = format!("bench{}", i % vaults);
            fake.vault(&vault)
                .set_secret(&format!("s{i}"), &format!("value-{i}"));
            writeln!(dotenv, "S{i}={}/secrets/s{i}", fake.vault_url(&vault))
                .expect("write to String");
        }
        std::fs::write(case.join(".env"), dotenv).expect("write .env");
        let concurrent = measure(runs, || {
            let mut c = kvrun(&fake, &case, &ca);
            c.args(["--", "true"]);
            c
        });
        report(&format!("kvrun, N={n} over {vaults} vault(s)"), &concurrent);
        let sequential = measure(runs.min(7), || {
            let mut c = kvrun(&fake, &case, &ca);
            c.args(["--sequential", "--", "true"]);
            c
        });
        report(
            &format!("kvrun --sequential, N={n} over {vaults} vault(s)"),
            &sequential,
        );
        println!(
            "{:<44} {:>10.2}",
            format!("  ratio concurrent/sequential, N={n}"),
            ms(concurrent.median) / ms(sequential.median)
        );
    }
    println!(
        "{:<44} {:>10.1}",
        "N=0 overhead over running directly (ms)",
        ms(n0.median) - ms(direct.median)
    );
}
