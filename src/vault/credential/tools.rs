//! Developer tools: a token from the Azure CLI (`az`) or the Azure Developer CLI (`azd`), for
//! laptops and CI runners that are already logged in.
//!
//! kvrun runs the tool itself (`az account get-access-token`, `azd auth token`) with its own
//! environment snapshot, and reads the token from its JSON. A tool that is not installed or not
//! logged in makes the link unavailable, with the command that fixes it as the hint. The tool's
//! stdout (which holds the token) is never shown; of its stderr only the first line is kept.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;

use super::{LinkError, Token, sdk_client::MAX_BODY};

/// A tool that has not answered after this long is given up on (`az` can be slow to start).
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    AzureCli,
    Azd,
}

#[derive(Deserialize)]
struct CliToken {
    #[serde(rename = "accessToken")]
    access_token: Option<String>,
    token: Option<String>,
    /// `az` (2.54 and later): Unix seconds.
    expires_on: Option<u64>,
    /// `azd`: RFC 3339 in UTC. (`az` writes local time here, which is not read.)
    #[serde(rename = "expiresOn")]
    expires_on_text: Option<String>,
}

impl CliToken {
    fn expires_on(&self) -> Option<std::time::SystemTime> {
        self.expires_on
            .and_then(|s| std::time::UNIX_EPOCH.checked_add(Duration::from_secs(s)))
            .or_else(|| humantime::parse_rfc3339(self.expires_on_text.as_deref()?).ok())
    }
}

/// Read at most `max` bytes of a tool's output; `None` if it wrote more.
async fn read_capped(
    pipe: Option<impl tokio::io::AsyncRead + Unpin>,
    max: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    use tokio::io::AsyncReadExt as _;
    let Some(pipe) = pipe else {
        return Ok(Some(Vec::new()));
    };
    let mut out = Vec::new();
    pipe.take(max as u64 + 1).read_to_end(&mut out).await?;
    Ok((out.len() <= max).then_some(out))
}

impl Tool {
    fn program(self) -> &'static str {
        match self {
            Self::AzureCli => "az",
            Self::Azd => "azd",
        }
    }

    fn login(self) -> &'static str {
        match self {
            Self::AzureCli => "az login",
            Self::Azd => "azd auth login",
        }
    }

    fn args(self, tenant: &str, scope: &str) -> Vec<String> {
        let owned = |s: &[&str]| s.iter().map(|&a| a.to_owned()).collect::<Vec<_>>();
        match self {
            Self::AzureCli => {
                let mut args = owned(&["account", "get-access-token", "-o", "json", "--scope"]);
                args.push(scope.to_owned());
                // No tenant: the one `az` is signed in to (App Configuration has no challenge).
                if !tenant.is_empty() {
                    args.extend(owned(&["--tenant", tenant]));
                }
                args
            }
            Self::Azd => {
                let mut args = owned(&["auth", "token", "-o", "json", "--no-prompt", "--scope"]);
                args.push(scope.to_owned());
                if !tenant.is_empty() {
                    args.extend(owned(&["--tenant-id", tenant]));
                }
                args
            }
        }
    }

    pub(crate) async fn token(
        self,
        environment: &[(OsString, OsString)],
        tenant: &str,
        scope: &str,
    ) -> Result<Token, LinkError> {
        let program = self.program();
        tracing::debug!(program, tenant, scope, "running");
        // Found on the tool's own PATH here, not by the standard library: given a bare name and
        // a PATH of the child's, std forks (posix_spawn would search kvrun's PATH instead), and a
        // fork marks every page of kvrun's copy-on-write, so that the runtime thread then takes
        // a page fault for each page it writes, TLS handshakes included. With the path resolved,
        // std uses posix_spawn (vfork): no copy.
        let path = match crate::launch::find_program(
            std::ffi::OsStr::new(program),
            crate::launch::path_of(environment),
        ) {
            Ok(path) => path,
            Err(e) => return Err(cannot_start(program, &e)),
        };
        let mut command = tokio::process::Command::new(path);
        command
            .arg0(program)
            .args(self.args(tenant, scope))
            .env_clear()
            .envs(environment.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Tracked, so that a supervising kvrun does not reap it as an orphan. Spawned on a
        // blocking-pool thread: posix_spawn (vfork) suspends the thread that calls it until the
        // child has exec'd, and on the runtime thread that held back the first flights of the
        // connections opened meanwhile (the proxy's CONNECT, the ClientHello) by as long.
        let spawned = tokio::task::spawn_blocking(move || {
            crate::children::spawn_tracked(|| command.spawn(), tokio::process::Child::id)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        let (mut child, _tracked) = match spawned {
            Ok(child) => child,
            Err(e) => return Err(cannot_start(program, &e)),
        };
        // Both pipes at once (a tool blocked on a full stderr never closes its stdout), each up to
        // 64 KiB: more is not a token, and the tool is killed (dropping `child`) without reading on.
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let run = async {
            let (stdout, stderr) =
                tokio::try_join!(read_capped(stdout, MAX_BODY), read_capped(stderr, MAX_BODY))?;
            let Some(stdout) = stdout else {
                return Ok(Err(format!(
                    "{program} printed more than {} KiB",
                    MAX_BODY / 1024
                )));
            };
            let status = child.wait().await?;
            Ok::<_, std::io::Error>(Ok(std::process::Output {
                status,
                stdout,
                stderr: stderr.unwrap_or_default(),
            }))
        };
        let output = tokio::time::timeout(TOOL_TIMEOUT, run)
            .await
            .map_err(|_| {
                LinkError::unavailable(
                    format!(
                        "{program} did not answer within {}s",
                        TOOL_TIMEOUT.as_secs()
                    ),
                    None,
                )
            })?
            .map_err(|e| LinkError::unavailable(format!("{program} failed: {e}"), None))?
            .map_err(|too_much| LinkError::unavailable(too_much, None))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let first: String = stderr
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("no message")
                .chars()
                .take(200)
                .collect();
            return Err(LinkError::unavailable(
                format!(
                    "{program} could not get a token: {}",
                    crate::vault::untrusted(&first)
                ),
                Some(format!("run {} (for tenant {tenant})", self.login())),
            ));
        }
        let parsed: CliToken = serde_json::from_slice(&output.stdout).map_err(|_| {
            LinkError::unavailable(
                format!("{program} printed something that is not a token"),
                None,
            )
        })?;
        let expires_on = parsed.expires_on();
        parsed
            .access_token
            .or(parsed.token)
            .filter(|t| !t.is_empty())
            .map(|t| Token::new(t, expires_on))
            .ok_or_else(|| LinkError::unavailable(format!("{program} printed no token"), None))
    }
}

/// Why `program` could not be started, as [`LinkError`]: not installed, or not runnable.
fn cannot_start(program: &str, e: &std::io::Error) -> LinkError {
    if e.kind() == std::io::ErrorKind::NotFound {
        LinkError::unavailable(
            format!("{program} is not installed (not found on PATH)"),
            None,
        )
    } else {
        LinkError::unavailable(format!("cannot run {program}: {e}"), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_follow_each_tool() {
        assert_eq!(
            Tool::AzureCli.args("t1", "https://vault.azure.net/.default"),
            [
                "account",
                "get-access-token",
                "-o",
                "json",
                "--scope",
                "https://vault.azure.net/.default",
                "--tenant",
                "t1"
            ]
        );
        assert_eq!(
            Tool::Azd.args("t1", "https://vault.azure.net/.default"),
            [
                "auth",
                "token",
                "-o",
                "json",
                "--no-prompt",
                "--scope",
                "https://vault.azure.net/.default",
                "--tenant-id",
                "t1"
            ]
        );
    }
}
