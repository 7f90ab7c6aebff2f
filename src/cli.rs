//! The command line, as clap sees it. Doc comments here are the `--help` text.
//!
//! Every option has a `KVRUN_*` environment fallback (names in [`env`]) because containers and
//! systemd units configure through the environment. This module only describes the command line;
//! turning it into a validated plan is [`crate::plan`]'s job.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Parser, Subcommand};

/// Environment variables that set kvrun's options, in one place.
pub mod env {
    pub const ENV_FILE: &str = "KVRUN_ENV_FILE";
    pub const ENV_FROM: &str = "KVRUN_ENV_FROM";
    pub const NO_DOTENV: &str = "KVRUN_NO_DOTENV";
    pub const MANIFEST: &str = "KVRUN_MANIFEST";
    pub const NO_MANIFEST: &str = "KVRUN_NO_MANIFEST";
    pub const VAULT_SUFFIX: &str = "KVRUN_VAULT_SUFFIX";
    pub const TIMEOUT: &str = "KVRUN_TIMEOUT";
    pub const CONCURRENCY: &str = "KVRUN_CONCURRENCY";
    pub const SEQUENTIAL: &str = "KVRUN_SEQUENTIAL";
    pub const NO_RESOLVE_ENV: &str = "KVRUN_NO_RESOLVE_ENV";
    pub const LITERAL: &str = "KVRUN_LITERAL";
    pub const VERBOSE: &str = "KVRUN_VERBOSE";
    pub const CREDENTIAL: &str = "KVRUN_CREDENTIAL";
    pub const ALLOW_VAULT: &str = "KVRUN_ALLOW_VAULT";
    pub const HIDE_CREDENTIALS: &str = "KVRUN_HIDE_CREDENTIALS";
    pub const INIT: &str = "KVRUN_INIT";
    pub const NO_INIT: &str = "KVRUN_NO_INIT";
    pub const WATCH: &str = "KVRUN_WATCH";
    pub const RELOAD_SIGNAL: &str = "KVRUN_RELOAD_SIGNAL";
    pub const STOP_TIMEOUT: &str = "KVRUN_STOP_TIMEOUT";
    pub const CLEAR_ENV: &str = "KVRUN_CLEAR_ENV";
    pub const KEEP_ENV: &str = "KVRUN_KEEP_ENV";
    pub const FILE_VAR: &str = "KVRUN_FILE_VAR";
    pub const FILE_MODE: &str = "KVRUN_FILE_MODE";
    pub const FILE_OWNER: &str = "KVRUN_FILE_OWNER";
    pub const SECRETS_DIR: &str = "KVRUN_SECRETS_DIR";
    pub const APP_CONFIG: &str = "KVRUN_APP_CONFIG";
    pub const APP_CONFIG_SELECT: &str = "KVRUN_APP_CONFIG_SELECT";
    pub const APP_CONFIG_SNAPSHOT: &str = "KVRUN_APP_CONFIG_SNAPSHOT";
    pub const APP_CONFIG_TRIM: &str = "KVRUN_APP_CONFIG_TRIM";
    pub const APP_CONFIG_UPPER_SNAKE: &str = "KVRUN_APP_CONFIG_UPPER_SNAKE";
    pub const APP_CONFIG_FLATTEN_JSON: &str = "KVRUN_APP_CONFIG_FLATTEN_JSON";
    pub const APP_CONFIG_FEATURE_FLAGS: &str = "KVRUN_APP_CONFIG_FEATURE_FLAGS";
    pub const APP_CONFIG_SUFFIX: &str = "KVRUN_APP_CONFIG_SUFFIX";
    pub const APP_CONFIG_AUDIENCE: &str = "KVRUN_APP_CONFIG_AUDIENCE";
    pub const APP_CONFIG_CONNECTION_STRING_FILE: &str = "KVRUN_APP_CONFIG_CONNECTION_STRING_FILE";
}

pub(crate) const AFTER_HELP: &str = "\
Examples:
  kvrun -- node index.js
      .env and kvrun.toml in the working directory are read; every Key Vault reference among
      the variables is replaced by its secret, then node runs with kvrun's PID.
  DB_PASS=https://myvault.vault.azure.net/secrets/db-pass kvrun -- ./server
  kvrun --env-file config/prod.env --timeout 10s -- python app.py
  kvrun parse https://myvault.vault.azure.net/secrets/db-pass/4387e9f3d6e14c459867679a90fd0f79

Reference forms (a whole value, or inside {{ … }} in a larger value):
  https://VAULT.vault.azure.net/secrets/NAME[/VERSION]
  https://VAULT.vault.azure.net/secrets/NAME?field=KEY          one field of a JSON secret
  https://VAULT.vault.azure.net/secrets/NAME?part=key|cert|chain|pkcs12   a certificate's part
  @Microsoft.KeyVault(SecretUri=https://VAULT.vault.azure.net/secrets/NAME[/VERSION])
  @Microsoft.KeyVault(VaultName=VAULT;SecretName=NAME[;SecretVersion=VERSION])

Bundles (every setting of one JSON or .env secret as a variable, below explicit ones):
  --env-from [PREFIX=][json:|dotenv:]REFERENCE, KVRUN_ENV_FROM, manifest [[env_from]]

App Configuration (a store's key-values as variables, its Key Vault references resolved):
  --app-config https://STORE.azconfig.io [--app-config-select 'myapp:*@prod'] [--app-config-trim myapp:]
  manifest [app_configuration]; Entra ID, or AZURE_APPCONFIG_CONNECTION_STRING (an access key)

Credentials, tried in this order (--credential picks one):
  env                AZURE_TENANT_ID, AZURE_CLIENT_ID, and AZURE_CLIENT_SECRET or
                     AZURE_CLIENT_CERTIFICATE_PATH (+ AZURE_CLIENT_CERTIFICATE_PASSWORD)
  workload-identity  AZURE_FEDERATED_TOKEN_FILE, AZURE_TENANT_ID, AZURE_CLIENT_ID (AKS)
  managed-identity   IDENTITY_ENDPOINT + IDENTITY_HEADER, else IMDS; AZURE_CLIENT_ID: user-assigned
  azure-cli, azd     az login, azd auth login

Exit codes: the command's own once it runs; before that 64 usage, 65 bad input, 66 not found,
  67 authentication, 70 internal (a bug), 71 OS error, 74 cannot write, 75 unavailable (may
  pass later), 76 protocol or TLS, 77 authorization, 126/127 the command cannot run / does not
  exist, 141 stdout closed, 128+N a signal while resolving.";

/// Start a program with its Azure Key Vault secrets in its environment.
#[derive(Debug, Parser)]
#[command(
    name = "kvrun",
    version = VERSION,
    after_long_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    override_usage = "kvrun [OPTIONS] -- COMMAND [ARGS]...\n       kvrun check [--json] [OPTIONS]\n       kvrun export [OPTIONS]\n       kvrun parse ID...\n       kvrun completions SHELL | kvrun man"
)]
pub struct Cli {
    #[command(subcommand)]
    pub subcommand: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,

    /// The command to run, and its arguments (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse secret identifiers as the Azure SDK's parseKeyVaultSecretIdentifier does; print JSON.
    #[command(
        after_long_help = "Example:\n  kvrun parse https://myvault.vault.azure.net/secrets/db-pass/4387e9f3d6e14c459867679a90fd0f79\n  \
        {\"sourceId\":\"https://myvault.vault.azure.net/secrets/db-pass/4387e9f3d6e14c459867679a90fd0f79\",\"vaultUrl\":\"https://myvault.vault.azure.net\",\"name\":\"db-pass\",\"version\":\"4387e9f3d6e14c459867679a90fd0f79\"}"
    )]
    ///
    /// One object per line: {"sourceId","vaultUrl","name","version"}, version null when absent.
    /// Any https host is accepted (it is a parser); key and certificate identifiers and other
    /// schemes are errors.
    Parse {
        /// Secret identifiers, e.g. `https://myvault.vault.azure.net/secrets/db/VERSION`.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },

    /// Resolve and print the variables kvrun manages, quoted for a consumer; runs nothing.
    ///
    /// Exported: everything from .env files and the manifest, and every inherited variable that
    /// held a reference. A value the format cannot hold exactly, and a secret a run delivers as a
    /// file, are refused, by name.
    #[command(
        after_long_help = "Examples:\n  kvrun export --format dotenv > .env.resolved\n  \
        eval \"$(kvrun export --format shell)\"\n  kvrun export --format docker > env.list && docker run --env-file env.list app"
    ,
        mut_args = hide_launch_option
    )]
    Export {
        /// dotenv (npm dotenv quoting), shell (POSIX `export`), json (one object), docker (`--env-file`).
        #[arg(long, value_enum, default_value = "dotenv")]
        format: Format,
        #[command(flatten)]
        run: Box<RunArgs>,
    },

    /// Resolve every reference without running anything; print a table (or JSON) of variable,
    /// origin, vault, secret, version, status and latency — never values. Exits as a run would,
    /// except that finding no reference at all fails (66).
    #[command(
        after_long_help = "Examples:\n  kvrun check\n  kvrun check --json --env-file prod.env | jq '.[] | select(.status != \"ok\")'"
    ,
        mut_args = hide_launch_option
    )]
    Check {
        /// One JSON array of rows instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        run: Box<RunArgs>,
    },

    /// Print a shell completion script: bash, zsh, fish, powershell, elvish.
    #[command(
        after_long_help = "Example:\n  kvrun completions bash > /etc/bash_completion.d/kvrun"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print kvrun's man page (roff), generated from this command line.
    #[command(after_long_help = "Example:\n  kvrun man > /usr/local/share/man/man1/kvrun.1")]
    Man,
}

/// The options that shape how the command is started (supervision, files, the child's
/// environment): `check` and `export` start nothing, so their help leaves these out. They are
/// still accepted there, and ignored, so that one set of `KVRUN_*` variables (a container's) serves
/// a run, a `check` and an `export` alike.
const LAUNCH_OPTIONS: [&str; 12] = [
    "hide_credentials",
    "init",
    "no_init",
    "watch",
    "reload_signal",
    "stop_timeout",
    "clear_env",
    "keep_env",
    "file_var",
    "file_mode",
    "file_owner",
    "secrets_dir",
];

fn hide_launch_option(arg: clap::Arg) -> clap::Arg {
    if LAUNCH_OPTIONS.contains(&arg.get_id().as_str()) {
        arg.hide(true)
    } else {
        arg
    }
}

/// `kvrun export --format`: who reads the output (`crate::commands::export` writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Dotenv,
    Shell,
    Json,
    Docker,
}

/// `--credential`: one link of the chain, by the name the command line gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Credential {
    Env,
    WorkloadIdentity,
    ManagedIdentity,
    AzureCli,
    Azd,
}

impl From<Credential> for crate::vault::credential::Kind {
    fn from(credential: Credential) -> Self {
        match credential {
            Credential::Env => Self::Env,
            Credential::WorkloadIdentity => Self::WorkloadIdentity,
            Credential::ManagedIdentity => Self::ManagedIdentity,
            Credential::AzureCli => Self::AzureCli,
            Credential::Azd => Self::Azd,
        }
    }
}

/// Parse kvrun's command line (`args` with the program name first). Two things beyond clap:
///
/// - The resolution options may stand before `check` or `export` as well as after it: `kvrun
///   --no-dotenv check` means `kvrun check --no-dotenv`. When clap finds `check` or `export` where
///   only options may be (its "unexpected argument"), the word is moved to the front and the line
///   parsed again; if that fails too, the first error is the one reported.
/// - A command written without `--` (`kvrun printenv X`) gets a tip that shows it with `--`.
///
/// # Errors
/// clap's error, to be printed as it is (usage errors exit 64).
pub fn parse(args: &[OsString]) -> Result<Cli, clap::Error> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let error = match Cli::try_parse_from(args) {
        Ok(cli) => return Ok(cli),
        Err(error) if error.kind() == ErrorKind::UnknownArgument => error,
        Err(error) => return Err(error),
    };
    let Some(ContextValue::String(unexpected)) = error.get(ContextKind::InvalidArg) else {
        return Err(error);
    };
    let unexpected = unexpected.clone();
    // Only words before `--`: what follows it is the command's.
    let options_end = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let Some(at) = args[..options_end].iter().rposition(|a| *a == *unexpected) else {
        return Err(error);
    };
    if unexpected == "check" || unexpected == "export" {
        let mut moved = args.to_vec();
        let word = moved.remove(at);
        moved.insert(1, word);
        return Cli::try_parse_from(moved).map_err(|_| error);
    }
    if unexpected.starts_with('-') || options_end < args.len() {
        return Err(error);
    }
    let mut error = error;
    let shown: Vec<String> = args[1..]
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (options, command) = shown.split_at(at - 1);
    let mut line = vec!["kvrun".to_owned()];
    line.extend(options.iter().cloned());
    line.push("--".to_owned());
    line.extend(command.iter().cloned());
    error.insert(
        ContextKind::Suggested,
        ContextValue::StyledStrs(vec![
            format!(
                "to run a command, write it after `--`: `{}`",
                line.join(" ")
            )
            .into(),
        ]),
    );
    Err(error)
}

/// `kvrun --version`: the version and the commit it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("KVRUN_COMMIT"), ")");

#[derive(Debug, clap::Args)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is an independent command-line flag"
)]
pub struct RunArgs {
    /// Read variables from this .env file (repeatable; later files win). [default: ./.env]
    #[arg(long, value_name = "PATH", env = env::ENV_FILE, value_delimiter = ',')]
    pub env_file: Vec<PathBuf>,

    /// Set a variable from each setting of this secret, a JSON object or a .env file
    /// (repeatable; of two bundles the later wins): [PREFIX=][json:|dotenv:]REFERENCE.
    ///
    /// E.g. `--env-from APP_=https://myvault.vault.azure.net/secrets/app-settings` makes
    /// `{"db":{"host":"h"}}` `APP_db__host=h`; `dotenv:` reads the value as a .env file. Any
    /// variable set explicitly (manifest, .env, environment) wins over a bundle's. A bare secret
    /// name is looked for in the manifest's vault. Comma-separated in `KVRUN_ENV_FROM`.
    #[arg(long, value_name = "BUNDLE", env = env::ENV_FROM, value_delimiter = ',')]
    pub env_from: Vec<String>,

    /// Read the key-values of this App Configuration store, e.g.
    /// `https://myconfig.azconfig.io` (overrides the manifest's `[app_configuration]` endpoint).
    ///
    /// Its settings sit between the manifest's [env] and the .env files; its Key Vault
    /// references are resolved with every other secret. Tokens from the credential chain (scope
    /// from the host), or the access key of `AZURE_APPCONFIG_CONNECTION_STRING`.
    #[arg(long, value_name = "ENDPOINT", env = env::APP_CONFIG)]
    pub app_config: Option<String>,

    /// Which key-values to read (repeatable; a later selector wins for a key):
    /// KEYFILTER[@LABEL], e.g. 'myapp:*@prod'.
    ///
    /// Without @LABEL only key-values with no label; @* any label. Default: every key with no
    /// label. In `KVRUN_APP_CONFIG_SELECT`, separate selectors with spaces (filters take commas).
    #[arg(long, value_name = "SELECTOR", env = env::APP_CONFIG_SELECT, value_delimiter = ' ', conflicts_with = "app_config_snapshot")]
    pub app_config_select: Vec<String>,

    /// Read this snapshot of the store instead of selectors.
    #[arg(long, value_name = "NAME", env = env::APP_CONFIG_SNAPSHOT)]
    pub app_config_snapshot: Option<String>,

    /// Remove this prefix from keys before they become names (repeatable; the longest that
    /// matches), e.g. myapp:
    #[arg(long, value_name = "PREFIX", env = env::APP_CONFIG_TRIM, value_delimiter = ' ')]
    pub app_config_trim: Vec<String>,

    /// Upper-case the names made from keys (`Db:Host` becomes `DB__HOST`, not `Db__Host`).
    #[arg(long, env = env::APP_CONFIG_UPPER_SNAKE, value_parser = BoolishValueParser::new())]
    pub app_config_upper_snake: bool,

    /// Flatten JSON values into one variable per leaf (`key__prop__0`), as .NET reads them;
    /// default: the JSON as one value.
    #[arg(long, env = env::APP_CONFIG_FLATTEN_JSON, value_parser = BoolishValueParser::new())]
    pub app_config_flatten_json: bool,

    /// Also read feature flags, as `FeatureManagement__NAME=true|false`.
    #[arg(long, env = env::APP_CONFIG_FEATURE_FLAGS, value_parser = BoolishValueParser::new())]
    pub app_config_feature_flags: bool,

    /// Also treat hosts under this domain as App Configuration stores (repeatable).
    #[arg(long, value_name = "SUFFIX", env = env::APP_CONFIG_SUFFIX, value_delimiter = ',', value_parser = parse_vault_suffix)]
    pub app_config_suffix: Vec<String>,

    /// The Entra audience of tokens for stores under an added --app-config-suffix (default:
    /// the public cloud's, `https://appconfig.azure.com`).
    #[arg(long, value_name = "URL", env = env::APP_CONFIG_AUDIENCE)]
    pub app_config_audience: Option<String>,

    /// Read the store's connection string (an access key) from this file instead of
    /// `AZURE_APPCONFIG_CONNECTION_STRING`.
    #[arg(long, value_name = "PATH", env = env::APP_CONFIG_CONNECTION_STRING_FILE)]
    pub app_config_connection_string_file: Option<PathBuf>,

    /// Do not read ./.env automatically.
    #[arg(long, env = env::NO_DOTENV, value_parser = BoolishValueParser::new())]
    pub no_dotenv: bool,

    /// Read secret mappings from this manifest. [default: ./kvrun.toml when it exists]
    #[arg(long, value_name = "PATH", env = env::MANIFEST)]
    pub manifest: Option<PathBuf>,

    /// Do not read ./kvrun.toml automatically.
    #[arg(long, env = env::NO_MANIFEST, value_parser = BoolishValueParser::new(), conflicts_with = "manifest")]
    pub no_manifest: bool,

    /// Also treat hosts under this domain as Key Vaults (repeatable), e.g. vault.azurestack.local.
    ///
    /// The built-in clouds are always known: vault.azure.net, vault.azure.cn,
    /// vault.usgovcloudapi.net, vault.microsoftazure.de. The first suffix given is the domain
    /// @Microsoft.KeyVault(VaultName=…) refers to.
    ///
    /// A DNS suffix only: no scheme, port, path or wildcard.
    #[arg(long, value_name = "SUFFIX", env = env::VAULT_SUFFIX, value_delimiter = ',', value_parser = parse_vault_suffix)]
    pub vault_suffix: Vec<String>,

    /// Give up resolving after this long, e.g. 30s or 500ms (at most 24h); the command is not
    /// started.
    #[arg(long, value_name = "DURATION", env = env::TIMEOUT, default_value = "30s", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// At most this many requests in flight per vault.
    #[arg(long, value_name = "N", env = env::CONCURRENCY, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    /// Contact only this vault (repeatable), e.g. myvault.vault.azure.net; with the manifest's
    /// `allowed_vaults`, a vault must be on both lists.
    #[arg(long, value_name = "VAULT", env = env::ALLOW_VAULT, value_delimiter = ',')]
    pub allow_vault: Vec<String>,

    /// Fetch one secret at a time, across all vaults (for comparison or fragile proxies).
    #[arg(long, env = env::SEQUENTIAL, value_parser = BoolishValueParser::new())]
    pub sequential: bool,

    /// Leave inherited environment variables alone: only .env files and the manifest are resolved.
    #[arg(long, env = env::NO_RESOLVE_ENV, value_parser = BoolishValueParser::new())]
    pub no_resolve_env: bool,

    /// Keep this variable's value literal even if it looks like a reference (repeatable).
    #[arg(long, value_name = "NAME", env = env::LITERAL, value_delimiter = ',')]
    pub literal: Vec<String>,

    /// Use only this credential instead of trying the chain (env, workload identity, managed
    /// identity, Azure CLI, azd) in order.
    #[arg(long, value_name = "KIND", env = env::CREDENTIAL, value_enum)]
    pub credential: Option<Credential>,

    /// Remove kvrun's own secret material from the command's environment (`AZURE_CLIENT_SECRET`,
    /// `AZURE_CLIENT_CERTIFICATE_PATH`/`_PASSWORD`, `AZURE_FEDERATED_TOKEN_FILE`, `IDENTITY_HEADER`).
    #[arg(long, env = env::HIDE_CREDENTIALS, value_parser = BoolishValueParser::new())]
    pub hide_credentials: bool,

    /// Supervisor mode: run the command as a child, forward signals, reap zombies, exit with its
    /// status. On by default when kvrun is PID 1 (a container without an init); Linux only.
    #[arg(long, env = env::INIT, value_parser = BoolishValueParser::new(), conflicts_with = "no_init")]
    pub init: bool,

    /// Exec the command even as PID 1.
    #[arg(long, env = env::NO_INIT, value_parser = BoolishValueParser::new())]
    pub no_init: bool,

    /// Check unpinned secrets again about every INTERVAL (10s to 30d, ±10% jitter) and deliver
    /// changes to the running command (a restart, or --reload-signal). Implies --init.
    #[arg(long, value_name = "INTERVAL", env = env::WATCH, value_parser = parse_watch_interval, conflicts_with = "no_init")]
    pub watch: Option<Duration>,

    /// With --watch: rewrite secret files and send this signal (e.g. HUP) instead of restarting.
    /// A changed environment variable still needs a restart.
    #[arg(long, value_name = "SIGNAL", env = env::RELOAD_SIGNAL, value_parser = parse_signal, requires = "watch")]
    pub reload_signal: Option<nix::sys::signal::Signal>,

    /// How long a restart waits after SIGTERM before SIGKILL (at most 24h) [default: 10s]. When
    /// given, also at shutdown under --init: after SIGTERM or SIGINT to kvrun, the command is
    /// killed (SIGKILL, exit 137) if it is still running after this long.
    #[arg(long, value_name = "DURATION", env = env::STOP_TIMEOUT, value_parser = parse_timeout)]
    pub stop_timeout: Option<Duration>,

    /// Start the command with only kvrun's variables (.env, manifest, resolved references) and
    /// `PATH`, `HOME`, `USER`, `LOGNAME`, `SHELL`, `TERM`, `LANG`, `LANGUAGE`, `LC_*`, `TZ`, `TMPDIR`, `HOSTNAME` and
    /// `NOTIFY_SOCKET` from kvrun's environment, plus --keep-env names.
    #[arg(long, env = env::CLEAR_ENV, value_parser = BoolishValueParser::new())]
    pub clear_env: bool,

    /// With --clear-env: also pass this inherited variable (repeatable).
    #[arg(long, value_name = "NAME", env = env::KEEP_ENV, value_delimiter = ',', requires = "clear_env")]
    pub keep_env: Vec<String>,

    /// Deliver this variable's secret as a file and put the file's path in the variable
    /// (repeatable); the manifest's `file = true` does the same.
    #[arg(long, value_name = "NAME", env = env::FILE_VAR, value_delimiter = ',')]
    pub file_var: Vec<String>,

    /// Permissions of --file-var files, in octal.
    #[arg(long, value_name = "MODE", env = env::FILE_MODE, default_value = "0400", value_parser = parse_mode)]
    pub file_mode: u32,

    /// Owner of --file-var files, user[:group] (names or numbers), for entrypoints that drop
    /// privileges after kvrun.
    #[arg(long, value_name = "OWNER", env = env::FILE_OWNER)]
    pub file_owner: Option<String>,

    /// Where supervisor mode makes its private directory of secret files; must be a tmpfs.
    /// [default: /dev/shm, else `$XDG_RUNTIME_DIR`]
    #[arg(long, value_name = "DIR", env = env::SECRETS_DIR)]
    pub secrets_dir: Option<PathBuf>,

    /// Log to stderr: -v sources, requests and timings; -vv more detail. Never values or tokens.
    #[arg(short, long, action = clap::ArgAction::Count, env = env::VERBOSE)]
    pub verbose: u8,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 30s, 500ms, 2m)"))
}

/// A `--vault-suffix`: a DNS suffix of at least two labels, normalised (trimmed, lower case, no
/// leading dot). Anything else is refused here, at parse time: a suffix that could never match a
/// host (`vault.localhost:47501`) would silently turn every reference on it into a literal that
/// the app receives as its password. An empty value adds no suffix, so that `KVRUN_VAULT_SUFFIX=`
/// means none, as an empty variable usually does.
fn parse_vault_suffix(text: &str) -> Result<String, String> {
    const EXAMPLE: &str = "(write e.g. vault.azurestack.local)";
    let suffix = text.trim().to_ascii_lowercase();
    if suffix.is_empty() {
        return Ok(suffix);
    }
    let suffix = suffix.strip_prefix('.').unwrap_or(&suffix).to_owned();
    let problem = if suffix.contains("://") {
        Some("a scheme does not belong in it")
    } else if suffix.contains(['/', '\\', '?', '#']) {
        Some("a path does not belong in it")
    } else if suffix.contains(':') {
        Some("a port does not belong in it")
    } else if suffix.contains('*') {
        Some("no wildcard: vault.example.com already matches every *.vault.example.com")
    } else if suffix.split('.').any(str::is_empty) {
        Some("it has an empty label")
    } else if !suffix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        Some("only letters, digits, hyphens and dots (an IDN in its xn-- form)")
    } else if suffix
        .split('.')
        .any(|label| label.len() > 63 || label.starts_with('-') || label.ends_with('-'))
    {
        Some("a label is longer than 63 characters or starts or ends with a hyphen")
    } else if suffix.len() > 253 {
        Some("longer than 253 characters")
    } else if !suffix.contains('.') {
        Some("a single label would make a whole top-level domain a vault")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(format!("not a DNS suffix: {problem} {EXAMPLE}")),
        None => Ok(suffix),
    }
}

/// The longest `--timeout` and `--stop-timeout`: longer waits are typos, and bounded durations
/// keep every deadline far from `Instant`'s range.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest `--watch` interval.
pub const MAX_WATCH_INTERVAL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The default `--stop-timeout` of a restart.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

fn parse_timeout(text: &str) -> Result<Duration, String> {
    at_most(parse_duration(text)?, MAX_TIMEOUT, "24h")
}

/// `duration`, or the error naming the limit (clap names the option).
fn at_most(duration: Duration, limit: Duration, spelled: &str) -> Result<Duration, String> {
    if duration > limit {
        return Err(format!("at most {spelled}"));
    }
    Ok(duration)
}

pub use crate::launch::MIN_WATCH_INTERVAL;

fn parse_watch_interval(text: &str) -> Result<Duration, String> {
    let interval = at_most(parse_duration(text)?, MAX_WATCH_INTERVAL, "30d")?;
    if interval < MIN_WATCH_INTERVAL {
        return Err(format!(
            "at least {}s, so that a fleet of watchers stays far below the vault's limits",
            MIN_WATCH_INTERVAL.as_secs()
        ));
    }
    Ok(interval)
}

fn parse_signal(text: &str) -> Result<nix::sys::signal::Signal, String> {
    let upper = text.trim().to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse()
        .map_err(|_| format!("'{text}' is not a signal name (write e.g. HUP or SIGUSR1)"))
}

fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("'{text}' is not an octal file mode such as 0440"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> Result<Cli, clap::Error> {
        parse(&line.split(' ').map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn resolution_options_may_come_before_check_and_export() {
        let Some(Command::Check { json, run }) = parsed("kvrun --no-dotenv check --json")
            .expect("parses")
            .subcommand
        else {
            panic!("a check");
        };
        assert!(json && run.no_dotenv);
        let Some(Command::Export { run, .. }) = parsed("kvrun --env-file check export")
            .expect("parses")
            .subcommand
        else {
            panic!("an export");
        };
        // `check` there is --env-file's value, not the subcommand.
        assert_eq!(run.env_file, [PathBuf::from("check")]);
    }

    #[test]
    fn a_command_without_dashes_gets_a_tip_that_shows_it_with_them() {
        let error = parsed("kvrun -v printenv X").expect_err("no --");
        let text = error.render().to_string();
        assert!(
            text.contains("tip: to run a command, write it after `--`: `kvrun -v -- printenv X`"),
            "{text}"
        );
    }
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn check_and_export_hide_the_launch_options_but_accept_them() {
        let cli = Cli::command();
        for name in ["check", "export"] {
            let sub = cli.find_subcommand(name).unwrap();
            for id in LAUNCH_OPTIONS {
                let arg = sub.get_arguments().find(|a| a.get_id() == id);
                assert!(arg.is_some_and(clap::Arg::is_hide_set), "{name} --{id}");
            }
            let shown = sub.get_arguments().filter(|a| !a.is_hide_set()).count();
            assert!(shown > 10, "{name}: the resolution options stay visible");
        }
        let run = cli.get_arguments().find(|a| a.get_id() == "watch").unwrap();
        assert!(!run.is_hide_set(), "a run shows them");
        let cli = Cli::try_parse_from(["kvrun", "check", "--watch", "5m", "--init"]).unwrap();
        assert!(matches!(cli.subcommand, Some(Command::Check { .. })));
    }

    #[test]
    fn command_after_double_dash_keeps_its_flags() {
        let cli = Cli::try_parse_from(["kvrun", "-v", "--", "node", "-e", "x", "--flag"]).unwrap();
        assert_eq!(cli.command, ["node", "-e", "x", "--flag"]);
        assert_eq!(cli.run.verbose, 1);
        assert_eq!(cli.run.timeout, Duration::from_secs(30));
    }

    #[test]
    fn durations() {
        let cli = Cli::try_parse_from(["kvrun", "--timeout", "500ms", "--", "x"]).unwrap();
        assert_eq!(cli.run.timeout, Duration::from_millis(500));
        assert!(Cli::try_parse_from(["kvrun", "--timeout", "soon", "--", "x"]).is_err());
        assert_eq!(
            cli.run.stop_timeout, None,
            "not given: restarts use the default"
        );
        for (option, longest, over) in [
            ("--timeout", "24h", "86401s"),
            ("--stop-timeout", "24h", "1day 1ms"),
            ("--watch", "30d", "18446744073709551615s"),
        ] {
            let cli = Cli::try_parse_from(["kvrun", option, longest, "--", "x"]).unwrap();
            let parsed = [
                cli.run.timeout,
                cli.run.stop_timeout.unwrap_or_default(),
                cli.run.watch.unwrap_or_default(),
            ];
            assert!(parsed.contains(
                &(if option == "--watch" {
                    MAX_WATCH_INTERVAL
                } else {
                    MAX_TIMEOUT
                })
            ));
            let err = Cli::try_parse_from(["kvrun", option, over, "--", "x"]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
            assert!(
                err.to_string().contains(&format!("at most {longest}")),
                "{err}"
            );
        }
    }

    #[test]
    fn supervisor_options() {
        let cli = Cli::try_parse_from([
            "kvrun",
            "--watch",
            "1m",
            "--reload-signal",
            "hup",
            "--file-mode",
            "0440",
            "--",
            "x",
        ])
        .unwrap();
        assert_eq!(cli.run.watch, Some(Duration::from_secs(60)));
        assert_eq!(
            cli.run.reload_signal,
            Some(nix::sys::signal::Signal::SIGHUP)
        );
        assert_eq!(cli.run.file_mode, 0o440);
        assert!(Cli::try_parse_from(["kvrun", "--watch", "2s", "--", "x"]).is_err());
        assert!(Cli::try_parse_from(["kvrun", "--reload-signal", "HUP", "--", "x"]).is_err());
        assert!(
            Cli::try_parse_from([
                "kvrun",
                "--watch",
                "1m",
                "--reload-signal",
                "NOPE",
                "--",
                "x"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["kvrun", "--file-mode", "0999", "--", "x"]).is_err());
        assert!(Cli::try_parse_from(["kvrun", "--init", "--no-init", "--", "x"]).is_err());
    }

    #[test]
    fn vault_suffixes_are_dns_suffixes() {
        for (text, want) in [
            ("vault.azurestack.local", "vault.azurestack.local"),
            (" .Vault.Example ", "vault.example"),
            ("vault.xn--bcher-kva.example", "vault.xn--bcher-kva.example"),
            ("vault.localhost", "vault.localhost"),
            // Adds no suffix: `KVRUN_VAULT_SUFFIX=` means none.
            ("", ""),
            ("  ", ""),
        ] {
            assert_eq!(parse_vault_suffix(text).as_deref(), Ok(want), "{text:?}");
        }
        for (text, problem) in [
            ("vault.localhost:47501", "a port does not belong in it"),
            ("https://vault.example", "a scheme does not belong in it"),
            ("vault.example/secrets", "a path does not belong in it"),
            ("vault.example?x", "a path does not belong in it"),
            (
                "*.vault.example",
                "no wildcard: vault.example.com already matches every *.vault.example.com",
            ),
            (
                "vault .example",
                "only letters, digits, hyphens and dots (an IDN in its xn-- form)",
            ),
            (
                "vault_x.example",
                "only letters, digits, hyphens and dots (an IDN in its xn-- form)",
            ),
            (
                "vault.bücher.example",
                "only letters, digits, hyphens and dots (an IDN in its xn-- form)",
            ),
            ("vault..example", "it has an empty label"),
            ("vault.example.", "it has an empty label"),
            (".", "it has an empty label"),
            ("..vault.example", "it has an empty label"),
            (
                "-vault.example",
                "a label is longer than 63 characters or starts or ends with a hyphen",
            ),
            (
                &format!("{}.example", "a".repeat(64)),
                "a label is longer than 63 characters or starts or ends with a hyphen",
            ),
            (
                &format!("{}example", "abc.".repeat(63)),
                "longer than 253 characters",
            ),
            (
                "localhost",
                "a single label would make a whole top-level domain a vault",
            ),
        ] {
            assert_eq!(
                parse_vault_suffix(text),
                Err(format!(
                    "not a DNS suffix: {problem} (write e.g. vault.azurestack.local)"
                )),
                "{text:?}"
            );
        }
        let cli =
            Cli::try_parse_from(["kvrun", "--vault-suffix", "A.Example,b.example", "--", "x"])
                .unwrap();
        assert_eq!(cli.run.vault_suffix, ["a.example", "b.example"]);
        let err = Cli::try_parse_from([
            "kvrun",
            "--vault-suffix",
            "a.example,.,b.example",
            "--",
            "x",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn parse_subcommand() {
        let cli = Cli::try_parse_from(["kvrun", "parse", "a", "b"]).unwrap();
        assert!(matches!(cli.subcommand, Some(Command::Parse { ids }) if ids == ["a", "b"]));
    }
}
