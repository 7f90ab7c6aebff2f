//! `kvrun-fake`: the fake Key Vault + Entra endpoint in the foreground, for an offline demo. See
//! [`HELP`] (`kvrun-fake --help`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use kvrun_fake::secrets_file::{self, Secrets};
use kvrun_fake::{DEFAULT_TENANT, FakeAzure, Options};
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: kvrun-fake --ca-out PATH [--port P] [--secrets FILE.json] [--client ID:SECRET]... [--latency-ms N] [--http1-only]";

const HELP: &str = "\
kvrun-fake: a fake Azure Key Vault and Microsoft Entra ID token endpoint over real TLS, on
127.0.0.1, for kvrun's offline demo (examples/demo.sh) and for trying kvrun without Azure.

usage: kvrun-fake --ca-out PATH [--port P] [--secrets FILE.json] [--client ID:SECRET]...
                  [--latency-ms N] [--http1-only] [--token-bytes N]

  --ca-out PATH        write the CA certificate, made on the spot, to PATH (required); give it to
                       kvrun as SSL_CERT_FILE
  --port P             listen on 127.0.0.1:P (default: a free port). As root, --port 443 lets
                       @Microsoft.KeyVault(VaultName=...) references, which always mean port 443,
                       reach the fake
  --secrets FILE.json  {\"vault\": {\"name\": \"value\", ...}, ...}: vault kv1 is served as
                       https://kv1.vault.localhost:P. The file is watched while the fake runs:
                       a changed or new value becomes the secret's new latest version (the old
                       versions stay), as `az keyvault secret set` would make it; SIGHUP re-reads
                       it at once
  --client ID:SECRET   a service principal Entra accepts (repeatable); tenant
                       00000000-0000-0000-0000-000000000001
  --latency-ms N       wait N ms on every new connection and before every response
  --http1-only         offer only http/1.1 in ALPN (the default is h2, then http/1.1)
  --token-bytes N      issue access tokens N bytes long, as long as Entra's (1.5-2.5 KB); the
                       default is ~16 bytes
  -h, --help           this text

Prints `ready https://login.localhost:P` on stdout once it listens (AZURE_AUTHORITY_HOST for
kvrun), one line per vault and per rotation on stderr (never a value), and serves until SIGTERM
or SIGINT. *.localhost names resolve to this machine in kvrun; use --vault-suffix
vault.localhost (KVRUN_VAULT_SUFFIX) so that they count as vault hosts.";

/// How often the secrets file is looked at for changes.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("kvrun-fake: {message}\n{USAGE}\n(kvrun-fake --help says more)");
            ExitCode::from(2)
        }
    }
}

fn read_secrets(path: &PathBuf) -> Result<Secrets, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    secrets_file::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn modified(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn run() -> Result<(), String> {
    let (mut ca_out, mut secrets_path, mut clients) = (None, None, Vec::new());
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--ca-out" => ca_out = Some(value()?),
            "--port" => options.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--secrets" => secrets_path = Some(PathBuf::from(value()?)),
            "--client" => clients.push(value()?),
            "--latency-ms" => {
                let ms = value()?.parse().map_err(|e| format!("--latency-ms: {e}"))?;
                // Like a vault in the same region: every new connection and every response.
                options.connect_delay = Duration::from_millis(ms);
                options.response_delay = Duration::from_millis(ms);
            }
            "--http1-only" => options.http1_only = true,
            "--token-bytes" => {
                options.token_length = value()?
                    .parse()
                    .map_err(|e| format!("--token-bytes: {e}"))?;
            }
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(());
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    let ca_out = ca_out.ok_or("--ca-out PATH is required")?;
    let mut secrets = match &secrets_path {
        None => BTreeMap::new(),
        Some(path) => read_secrets(path)?,
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
    let _ = secrets_file::apply(&fake, &Secrets::new(), &secrets);
    for (vault, entries) in &secrets {
        eprintln!(
            "kvrun-fake: vault {} ({} secrets)",
            fake.vault(vault).url(),
            entries.len()
        );
    }
    eprintln!("kvrun-fake: tenant {DEFAULT_TENANT}, CA in {ca_out}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (mut term, mut int, mut hup) = {
        let _context = runtime.enter();
        let listen = |kind| signal(kind).map_err(|e| format!("cannot handle signals: {e}"));
        (
            listen(SignalKind::terminate())?,
            listen(SignalKind::interrupt())?,
            listen(SignalKind::hangup())?,
        )
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready {}", fake.authority_host())
        .and_then(|()| stdout.flush())
        .map_err(|e| e.to_string())?;
    drop(stdout);
    let mut seen = secrets_path.as_ref().and_then(modified);
    runtime.block_on(async {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        loop {
            let forced = tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => true,
                _ = tick.tick() => false,
            };
            let Some(path) = &secrets_path else { continue };
            let now = modified(path);
            if !forced && now == seen {
                continue;
            }
            seen = now;
            // A file caught half-written does not parse: keep serving what was there, say so,
            // and take it at the next change.
            match read_secrets(path) {
                Ok(new) => {
                    for change in secrets_file::apply(&fake, &secrets, &new) {
                        eprintln!("kvrun-fake: {change}");
                    }
                    secrets = new;
                }
                Err(e) => eprintln!("kvrun-fake: not reloaded: {e}"),
            }
        }
    });
    drop(fake);
    Ok(())
}
