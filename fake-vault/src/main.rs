//! `kvrun-fake`: the fake Key Vault + Entra endpoint in the foreground, for an offline demo.
//!
//! ```text
//! kvrun-fake --ca-out PATH [--port P] [--secrets FILE.json] [--client ID:SECRET]... [--latency-ms N] [--http1-only]
//! ```
//! Writes the test CA to PATH, loads `{"vault": {"name": "value", …}, …}`, prints
//! `ready https://login.localhost:PORT` on stdout and serves until SIGTERM or SIGINT.
//! `--http1-only` offers only `http/1.1` in ALPN (the default is `h2`, then `http/1.1`).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use kvrun_fake::{DEFAULT_TENANT, FakeAzure, Options};
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: kvrun-fake --ca-out PATH [--port P] [--secrets FILE.json] [--client ID:SECRET]... [--latency-ms N] [--http1-only]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("kvrun-fake: {message}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let (mut ca_out, mut secrets_file, mut clients) = (None, None, Vec::new());
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--ca-out" => ca_out = Some(value()?),
            "--port" => options.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--secrets" => secrets_file = Some(value()?),
            "--client" => clients.push(value()?),
            "--latency-ms" => {
                let ms = value()?.parse().map_err(|e| format!("--latency-ms: {e}"))?;
                // Like a vault in the same region: every new connection and every response.
                options.connect_delay = Duration::from_millis(ms);
                options.response_delay = Duration::from_millis(ms);
            }
            "--http1-only" => options.http1_only = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    let ca_out = ca_out.ok_or("--ca-out PATH is required")?;
    let secrets: BTreeMap<String, BTreeMap<String, String>> = match &secrets_file {
        None => BTreeMap::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
            serde_json::from_str(&text).map_err(|e| {
                format!("{path}: expected {{\"vault\": {{\"name\": \"value\"}}}}: {e}")
            })?
        }
    };
    let clients = clients
        .iter()
        .map(|c| {
            c.split_once(':')
                .ok_or_else(|| format!("--client '{c}': expected ID:SECRET"))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let fake = FakeAzure::start_with(options);
    std::fs::write(&ca_out, fake.ca_pem()).map_err(|e| format!("{ca_out}: {e}"))?;
    for (id, secret) in clients {
        fake.add_client(id, secret);
    }
    for (vault, entries) in &secrets {
        let handle = fake.vault(vault);
        for (name, value) in entries {
            handle.set_secret(name, value);
        }
        eprintln!(
            "kvrun-fake: vault {} ({} secrets)",
            handle.url(),
            entries.len()
        );
    }
    eprintln!("kvrun-fake: tenant {DEFAULT_TENANT}, CA in {ca_out}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (mut term, mut int) = {
        let _context = runtime.enter();
        let listen = |kind| signal(kind).map_err(|e| format!("cannot handle signals: {e}"));
        (
            listen(SignalKind::terminate())?,
            listen(SignalKind::interrupt())?,
        )
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready {}", fake.authority_host())
        .and_then(|()| stdout.flush())
        .map_err(|e| e.to_string())?;
    drop(stdout);
    runtime.block_on(async {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    });
    drop(fake);
    Ok(())
}
