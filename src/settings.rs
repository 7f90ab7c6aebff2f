//! The one typed, validated value a run, `check` or `export` works from, built once from the
//! command line and kvrun's environment snapshot (ripgrep's `LowArgs` → `HiArgs`): this is the
//! one place below clap that reads variables by name (the command line's `KVRUN_*` fallbacks are
//! clap's). Each stage gets only its part: reading and planning [`Sources`], the resolution
//! [`Fetch`], the credential chain its [`credential::Config`], the HTTP client its proxy and trust
//! store, the supervisor [`Supervise`], logging its [`Log`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::cli::RunArgs;
use crate::error::Error;
use crate::reference::{VaultHosts, VaultOrigin};
use crate::source::files::WhichManifest;
use crate::source::{Env, FileSpec};
use crate::vault::credential::{self, Config};
use crate::{http, resolve};

/// Everything `run`, `check` and `export` need, validated. `Debug` shows neither a secret nor a
/// proxy URL (which may carry a password).
pub(crate) struct Settings {
    pub(crate) sources: Sources,
    pub(crate) fetch: Fetch,
    pub(crate) supervise: Supervise,
    /// What `--hide-credentials` leaves out of the child's environment: kvrun's own credential
    /// secrets (none without it).
    pub(crate) hidden: &'static [&'static str],
    pub(crate) credentials: Config,
    pub(crate) proxy: http::Proxy,
    pub(crate) trust_store: http::tls::Store,
}

/// Where the variables come from and how they are planned.
#[derive(Debug)]
pub(crate) struct Sources {
    /// `./.env` is read when it exists (not with `--no-dotenv`), then each of `env_files`.
    pub(crate) default_dotenv: bool,
    pub(crate) env_files: Vec<PathBuf>,
    pub(crate) manifest: WhichManifest,
    pub(crate) hosts: VaultHosts,
    /// `--allow-vault`: the vaults a reference may name (empty: any the suffixes allow).
    pub(crate) allowed_vaults: Vec<VaultOrigin>,
    pub(crate) no_resolve_env: bool,
    pub(crate) literal: Vec<String>,
    pub(crate) file_vars: Vec<String>,
    pub(crate) file_spec: FileSpec,
    /// `--env-from` (and `KVRUN_ENV_FROM`) as given; read with the manifest's default vault.
    pub(crate) env_from: Vec<String>,
    /// `--clear-env`: the inherited plain variables kept besides the built-in few (`--keep-env`).
    pub(crate) clear_env: Option<Vec<String>>,
    /// `--app-config*` and the connection string (over the manifest's `[app_configuration]`).
    pub(crate) app_config: crate::appconfig::Options,
}

/// How the secrets are fetched.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fetch {
    pub(crate) resolve: resolve::Options,
    /// `--credential`: one credential instead of the chain.
    pub(crate) only: Option<credential::Kind>,
}

/// Supervisor mode and what it does.
#[derive(Debug, Clone)]
pub(crate) struct Supervise {
    /// `--init`, `--watch`, or being PID 1 (where an exec'd app would get no default signal
    /// actions and nobody would reap zombies), unless `--no-init`.
    pub(crate) enabled: bool,
    pub(crate) watch: Option<Duration>,
    pub(crate) reload_signal: Option<nix::sys::signal::Signal>,
    pub(crate) stop_timeout: Option<Duration>,
    /// `--secrets-dir`.
    pub(crate) secrets_dir: Option<PathBuf>,
    /// `XDG_RUNTIME_DIR`: where secret files go when no memory file can be used.
    pub(crate) runtime_dir: Option<PathBuf>,
}

/// Logging, as the command line and the environment ask for it (for every subcommand).
#[derive(Debug)]
pub(crate) struct Log {
    /// `-v`: 0 warnings, 1 info, 2 and more debug.
    pub(crate) verbose: u8,
    /// `KVRUN_LOG`: a full tracing filter, for debugging below kvrun.
    pub(crate) filter: Option<String>,
    /// `NO_COLOR` (no-color.org) is set.
    pub(crate) no_color: bool,
}

impl Log {
    pub(crate) fn new(verbose: u8, environment: &[(OsString, OsString)]) -> Log {
        let env = Env(environment);
        Log {
            verbose,
            filter: env.get("KVRUN_LOG").map(str::to_owned),
            no_color: env.get("NO_COLOR").is_some(),
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::vault::credential::set;
        f.debug_struct("Settings")
            .field("sources", &self.sources)
            .field("fetch", &self.fetch)
            .field("supervise", &self.supervise)
            .field("hidden", &self.hidden)
            .field("credentials", &self.credentials)
            .field("all_proxy", &set(self.proxy.all.as_ref()))
            .field("https_proxy", &set(self.proxy.https.as_ref()))
            .field("no_proxy", &self.proxy.no)
            .field("trust_store", &self.trust_store)
            .finish()
    }
}

impl Settings {
    /// Validate the command line's run options and read the environment's settings.
    ///
    /// # Errors
    /// A usage error (64) for an option whose value clap could not check alone.
    pub(crate) fn new(
        args: &RunArgs,
        environment: &[(OsString, OsString)],
    ) -> Result<Settings, Error> {
        let env = Env(environment);
        let hosts = VaultHosts::new(&args.vault_suffix);
        let allowed_vaults = args
            .allow_vault
            .iter()
            .map(|v| {
                crate::source::manifest::allowed_vault(v, &hosts)
                    .map_err(|message| Error::Usage(format!("--allow-vault: {message}")))
            })
            .collect::<Result<_, _>>()?;
        let file_spec = FileSpec::new(args.file_mode, args.file_owner.clone())
            .map_err(|message| Error::Usage(format!("--file-owner/--file-mode: {message}")))?;
        let manifest = match (&args.manifest, args.no_manifest) {
            (Some(path), _) => WhichManifest::Named(path.clone()),
            (None, true) => WhichManifest::Off,
            (None, false) => WhichManifest::Default,
        };
        // Proxies as curl reads them: upper case first.
        let either =
            |upper: &str, lower: &str| env.get(upper).or_else(|| env.get(lower)).map(str::to_owned);
        Ok(Settings {
            sources: Sources {
                default_dotenv: !args.no_dotenv,
                env_files: args.env_file.clone(),
                manifest,
                hosts,
                allowed_vaults,
                no_resolve_env: args.no_resolve_env,
                literal: args.literal.clone(),
                file_vars: args.file_var.clone(),
                file_spec,
                env_from: args.env_from.clone(),
                clear_env: args.clear_env.then(|| args.keep_env.clone()),
                app_config: crate::appconfig::Options {
                    endpoint: args.app_config.clone().filter(|e| !e.is_empty()),
                    select: args.app_config_select.clone(),
                    snapshot: args.app_config_snapshot.clone().filter(|s| !s.is_empty()),
                    trim: args
                        .app_config_trim
                        .iter()
                        .filter(|t| !t.is_empty())
                        .cloned()
                        .collect(),
                    upper_snake: args.app_config_upper_snake,
                    flatten_json: args.app_config_flatten_json,
                    feature_flags: args.app_config_feature_flags,
                    hosts: crate::appconfig::StoreHosts::new(
                        &args.app_config_suffix,
                        args.app_config_audience.clone().filter(|a| !a.is_empty()),
                    ),
                    connection_string: env
                        .get(crate::appconfig::CONNECTION_STRING_VARIABLE)
                        .map(|c| Zeroizing::new(c.to_owned())),
                    connection_string_file: args.app_config_connection_string_file.clone(),
                },
            },
            fetch: Fetch {
                resolve: resolve::Options {
                    concurrency: usize::from(args.concurrency),
                    sequential: args.sequential,
                    timeout: args.timeout,
                },
                only: args.credential.map(Into::into),
            },
            supervise: Supervise {
                enabled: !args.no_init
                    && (args.init
                        || args.watch.is_some()
                        || (cfg!(target_os = "linux") && std::process::id() == 1)),
                watch: args.watch,
                reload_signal: args.reload_signal,
                stop_timeout: args.stop_timeout,
                secrets_dir: args.secrets_dir.clone(),
                runtime_dir: env.get("XDG_RUNTIME_DIR").map(PathBuf::from),
            },
            hidden: if args.hide_credentials {
                &credential::SECRET_VARIABLES
            } else {
                &[]
            },
            credentials: credential_config(&env),
            proxy: http::Proxy {
                all: either("ALL_PROXY", "all_proxy"),
                https: either("HTTPS_PROXY", "https_proxy"),
                no: either("NO_PROXY", "no_proxy"),
            },
            // rustls-native-certs reads these itself; the snapshot says whether they name the store.
            trust_store: if env.get("SSL_CERT_FILE").is_some() || env.get("SSL_CERT_DIR").is_some()
            {
                http::tls::Store::Named
            } else {
                http::tls::Store::System
            },
        })
    }
}

/// The credential chain's variables, by the names the Azure SDKs give them.
pub(crate) fn credential_config(env: &Env<'_>) -> Config {
    let get = |name: &str| env.get(name).map(str::to_owned);
    Config {
        tenant_id: get(credential::AZURE_TENANT_ID),
        client_id: get(credential::AZURE_CLIENT_ID),
        client_secret: get(credential::AZURE_CLIENT_SECRET).map(Zeroizing::new),
        client_certificate_path: get(credential::AZURE_CLIENT_CERTIFICATE_PATH),
        client_certificate_password: get(credential::AZURE_CLIENT_CERTIFICATE_PASSWORD)
            .map(Zeroizing::new),
        federated_token_file: get(credential::AZURE_FEDERATED_TOKEN_FILE),
        authority_host: get(credential::AZURE_AUTHORITY_HOST),
        additionally_allowed_tenants: get(credential::AZURE_ADDITIONALLY_ALLOWED_TENANTS),
        identity_endpoint: get(credential::IDENTITY_ENDPOINT),
        identity_header: get(credential::IDENTITY_HEADER).map(Zeroizing::new),
        pod_identity_authority_host: get(credential::AZURE_POD_IDENTITY_AUTHORITY_HOST),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn with_args(options: &[&str], pairs: &[(&str, &str)]) -> Result<Settings, Error> {
        let mut argv: Vec<OsString> = vec!["kvrun".into()];
        argv.extend(options.iter().map(OsString::from));
        let cli = crate::cli::parse(&argv).expect("the arguments parse");
        Settings::new(&cli.run, &environment(pairs))
    }

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        with_args(&[], pairs).expect("valid settings")
    }

    #[test]
    fn proxies_are_read_upper_case_first() {
        let s = settings(&[
            ("https_proxy", "http://lower:1"),
            ("HTTPS_PROXY", "http://upper:1"),
            ("no_proxy", "localhost"),
        ]);
        assert!(
            !format!("{s:?}").contains("upper"),
            "a proxy URL may carry a password"
        );
        assert_eq!(s.proxy.https.as_deref(), Some("http://upper:1"));
        assert_eq!(s.proxy.no.as_deref(), Some("localhost"));
        assert_eq!(s.proxy.all, None);
    }

    #[test]
    fn a_named_trust_store_is_one_either_variable_names() {
        assert!(matches!(
            settings(&[]).trust_store,
            http::tls::Store::System
        ));
        for name in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
            assert!(matches!(
                settings(&[(name, "/x")]).trust_store,
                http::tls::Store::Named
            ));
        }
    }

    #[test]
    fn the_credential_variables_land_in_their_fields_and_debug_hides_the_secrets() {
        let s = settings(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "hunter2"),
            ("IDENTITY_HEADER", "header-secret"),
            ("AZURE_CLIENT_CERTIFICATE_PASSWORD", "pfx-password"),
        ]);
        let c = &s.credentials;
        assert_eq!(
            (c.tenant_id.as_deref(), c.client_id.as_deref()),
            (Some("t"), Some("c"))
        );
        assert_eq!(
            c.client_secret.as_deref().map(String::as_str),
            Some("hunter2")
        );
        let debug = format!("{s:?}");
        for secret in ["hunter2", "header-secret", "pfx-password"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("client_secret: \"[set]\""), "{debug}");
    }

    #[test]
    fn options_clap_cannot_check_alone_are_usage_errors() {
        let error = with_args(&["--allow-vault", "https://example.com"], &[]).unwrap_err();
        assert_eq!(error.exit_code(), crate::error::ExitCode::USAGE);
        assert!(error.to_string().starts_with("--allow-vault: "), "{error}");
        let error = with_args(&["--file-owner", "app:"], &[]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--file-owner/--file-mode: owner is written user or user:group (names or numbers)"
        );
    }

    #[test]
    fn each_stage_gets_the_options_it_needs() {
        let s = with_args(
            &[
                "--no-dotenv",
                "--env-file",
                "a.env,b.env",
                "--manifest",
                "m.toml",
                "--allow-vault",
                "myvault.vault.azure.net",
                "--clear-env",
                "--keep-env",
                "APP_MODE",
                "--concurrency",
                "4",
                "--timeout",
                "5s",
                "--credential",
                "azure-cli",
                "--hide-credentials",
                "--watch",
                "1m",
            ],
            &[("XDG_RUNTIME_DIR", "/run/user/1")],
        )
        .expect("valid settings");
        let sources = &s.sources;
        assert!(!sources.default_dotenv);
        assert_eq!(
            sources.env_files,
            [PathBuf::from("a.env"), PathBuf::from("b.env")]
        );
        assert_eq!(sources.manifest, WhichManifest::Named("m.toml".into()));
        assert_eq!(sources.allowed_vaults.len(), 1);
        assert_eq!(
            sources.clear_env.as_deref(),
            Some(&["APP_MODE".to_owned()][..])
        );
        assert_eq!(s.fetch.resolve.concurrency, 4);
        assert_eq!(s.fetch.resolve.timeout, Duration::from_secs(5));
        assert!(matches!(s.fetch.only, Some(credential::Kind::AzureCli)));
        assert_eq!(s.hidden, &credential::SECRET_VARIABLES[..]);
        assert!(s.supervise.enabled, "--watch supervises");
        assert_eq!(s.supervise.watch, Some(Duration::from_secs(60)));
        assert_eq!(
            s.supervise.runtime_dir.as_deref(),
            Some(std::path::Path::new("/run/user/1"))
        );
    }

    #[test]
    fn the_defaults_read_what_is_there_and_hide_nothing() {
        let s = settings(&[]);
        assert!(s.sources.default_dotenv);
        assert_eq!(s.sources.manifest, WhichManifest::Default);
        assert!(s.sources.clear_env.is_none());
        assert_eq!(s.fetch.resolve.concurrency, 32);
        assert!(s.hidden.is_empty());
        let off = with_args(&["--no-manifest", "--no-init"], &[]).expect("valid");
        assert_eq!(off.sources.manifest, WhichManifest::Off);
        assert!(!off.supervise.enabled);
    }
}
