//! `kvrun completions SHELL` and `kvrun man`: generated from the command line's own definition.

use std::fmt::Write as _;

use clap::CommandFactory as _;

use super::print;
use crate::cli::Cli;
use crate::error::Error;

/// A completion script for `shell`.
pub(crate) fn completions(shell: clap_complete::Shell) -> Result<(), Error> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut completion_command(), "kvrun", &mut script);
    print(&script)
}

/// The command line as completions should offer it: a subcommand's options without those its
/// `--help` hides (`check` and `export` accept the launch options but ignore them). `clap_complete`
/// offers hidden options in some shells (bash), so they are left out of the command it is given.
fn completion_command() -> clap::Command {
    let mut command = Cli::command();
    // The subcommands that hide options (`crate::cli::LAUNCH_OPTIONS`).
    for name in ["check", "export"] {
        command = command.mut_subcommand(name, |sub| {
            let visible: Vec<clap::Arg> = sub
                .get_arguments()
                .filter(|a| !a.is_hide_set())
                .cloned()
                .collect();
            let mut rebuilt = clap::Command::new(name);
            if let Some(about) = sub.get_about() {
                rebuilt = rebuilt.about(about.clone());
            }
            rebuilt.args(visible)
        });
    }
    command
}

/// The man page, in roff: `clap_mangen`'s title, name, synopsis, description and options, then
/// sections of kvrun's own. `clap_mangen`'s SUBCOMMANDS section names a page per subcommand
/// (`kvrun-check(1)`) that does not exist, and it fills its EXTRA section (the examples) as
/// justified text; here the subcommands are described on this page, examples keep their lines, and
/// EXIT STATUS and ENVIRONMENT are added.
pub(crate) fn man() -> Result<(), Error> {
    let command = Cli::command();
    let man = clap_mangen::Man::new(command.clone());
    let mut page = Vec::new();
    let rendered = (|| -> std::io::Result<()> {
        man.render_title(&mut page)?;
        man.render_name_section(&mut page)?;
        man.render_synopsis_section(&mut page)?;
        man.render_description_section(&mut page)?;
        man.render_options_section(&mut page)?;
        page.extend_from_slice(own_sections(&command).as_bytes());
        man.render_version_section(&mut page)
    })();
    rendered.map_err(|e| Error::Internal(format!("cannot render the man page: {e}")))?;
    print(&page)
}

/// What exit statuses mean (docs/failures.md has the full table).
const EXIT_STATUS: [(&str, &str); 15] = [
    (
        "0",
        "a subcommand succeeded; in exec mode the status is the command's own",
    ),
    ("64", "usage: the command line is wrong"),
    (
        "65",
        "bad input: a malformed reference, .env file or manifest, or a value no environment variable can hold",
    ),
    (
        "66",
        "not found: a secret, version or named file does not exist; check found no reference",
    ),
    (
        "67",
        "authentication: no credential got a token, or Entra ID refused it",
    ),
    ("70", "internal: a bug in kvrun"),
    (
        "71",
        "OS error: no runtime, signalfd or thread could be had",
    ),
    ("74", "I/O error: kvrun cannot write its output"),
    (
        "75",
        "unavailable: network errors, throttling, the --timeout deadline; trying again may work",
    ),
    (
        "76",
        "protocol: TLS verification failed, a hostile challenge, an unexpected response",
    ),
    (
        "77",
        "authorization: a token but no access (403), or a vault outside the allow-list",
    ),
    ("126", "the command exists but cannot be run"),
    ("127", "the command does not exist"),
    ("141", "stdout closed: the reader went away"),
    (
        "128+N",
        "signal N (SIGTERM 143, SIGINT 130) arrived while resolving; the command did not start",
    ),
];

/// Variables kvrun reads besides its options' `KVRUN_*`.
const ENVIRONMENT: [(&str, &str); 14] = [
    (
        "AZURE_TENANT_ID",
        "the tenant of the credential (service principal, workload identity, az/azd)",
    ),
    (
        "AZURE_CLIENT_ID",
        "the application (client) ID; with managed identity, a user-assigned identity",
    ),
    ("AZURE_CLIENT_SECRET", "a service principal's secret"),
    (
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "a service principal's certificate (PEM or PKCS#12)",
    ),
    (
        "AZURE_CLIENT_CERTIFICATE_PASSWORD",
        "the password of that PKCS#12 file",
    ),
    (
        "AZURE_FEDERATED_TOKEN_FILE",
        "workload identity's token file (set by AKS)",
    ),
    (
        "AZURE_AUTHORITY_HOST",
        "the Entra ID host (sovereign clouds)",
    ),
    (
        "AZURE_ADDITIONALLY_ALLOWED_TENANTS",
        "tenants a challenge may name besides AZURE_TENANT_ID",
    ),
    (
        "IDENTITY_ENDPOINT, IDENTITY_HEADER",
        "App Service and Container Apps managed identity",
    ),
    (
        "SSL_CERT_FILE, SSL_CERT_DIR",
        "the trust store instead of the system's",
    ),
    (
        "HTTPS_PROXY, ALL_PROXY, NO_PROXY",
        "the proxy for https requests (upper case first, as curl)",
    ),
    (
        "KVRUN_LOG",
        "a tracing filter for debugging (kvrun=debug, trace); never shows a value",
    ),
    ("NO_COLOR", "no colours in kvrun's messages"),
    (
        "XDG_RUNTIME_DIR",
        "where --init puts secret files when no memory file can be used",
    ),
];

fn own_sections(command: &clap::Command) -> String {
    let mut roff = String::from(".SH SUBCOMMANDS\n");
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
        let _ = write!(
            roff,
            ".TP\n\\fBkvrun {}\\fR\n{}\n",
            escape(sub.get_name()),
            escape(&about)
        );
    }
    roff.push_str(".SH EXAMPLES\n.nf\n");
    // The examples and reference forms of `--help`; its credentials and exit codes have sections
    // of their own here.
    for line in crate::cli::AFTER_HELP
        .lines()
        .skip_while(|l| l.trim() == "Examples:")
        .take_while(|l| !l.starts_with("Credentials,"))
    {
        roff.push_str(&escape(line));
        roff.push('\n');
    }
    roff.push_str(".fi\n.SH \"EXIT STATUS\"\n");
    for (code, meaning) in EXIT_STATUS {
        let _ = write!(roff, ".TP\n\\fB{}\\fR\n{}\n", escape(code), escape(meaning));
    }
    roff.push_str(".SH ENVIRONMENT\nEvery option has a variable of its own:\n");
    for arg in command.get_arguments() {
        if let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) {
            let _ = write!(
                roff,
                ".TP\n\\fB{}\\fR\n\\-\\-{}\n",
                escape(&env.to_string_lossy()),
                escape(long)
            );
        }
    }
    roff.push_str(".PP\nAnd these, read as the Azure SDKs and curl read them:\n");
    for (name, meaning) in ENVIRONMENT {
        let _ = write!(roff, ".TP\n\\fB{}\\fR\n{}\n", escape(name), escape(meaning));
    }
    roff
}

/// `text` as roff: backslashes and hyphens escaped, a leading `.` or `'` kept literal.
fn escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_names_no_page_that_does_not_exist_and_has_its_sections() {
        let roff = own_sections(&Cli::command());
        assert!(!roff.contains("kvrun\\-check(1)"), "{roff}");
        for section in [
            ".SH SUBCOMMANDS",
            ".SH EXAMPLES\n.nf\n",
            ".SH \"EXIT STATUS\"",
            ".SH ENVIRONMENT",
        ] {
            assert!(roff.contains(section), "{section} missing:\n{roff}");
        }
        assert!(
            roff.contains(".TP\n\\fBKVRUN_TIMEOUT\\fR\n\\-\\-timeout\n"),
            "{roff}"
        );
        assert!(roff.contains(".TP\n\\fB77\\fR\n"), "{roff}");
        assert!(!roff.contains("kvrun help"), "{roff}");
    }

    #[test]
    fn completions_offer_no_option_a_subcommand_hides() {
        let command = completion_command();
        let check = command.find_subcommand("check").expect("check");
        let longs: Vec<&str> = check
            .get_arguments()
            .filter_map(clap::Arg::get_long)
            .collect();
        assert!(
            longs.contains(&"json") && longs.contains(&"env-file"),
            "{longs:?}"
        );
        for hidden in ["watch", "init", "file-var", "hide-credentials"] {
            assert!(!longs.contains(&hidden), "{hidden} in {longs:?}");
        }
        // A run still has them.
        assert!(
            command
                .get_arguments()
                .any(|a| a.get_long() == Some("watch"))
        );
    }

    #[test]
    fn roff_escapes_hyphens_backslashes_and_leading_dots() {
        assert_eq!(escape("--env-file"), "\\-\\-env\\-file");
        assert_eq!(escape(r"a\b"), "a\\eb");
        assert_eq!(escape(".env"), "\\&.env");
    }
}
