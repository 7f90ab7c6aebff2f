//! Regression tests for what a vault, a token endpoint or a fleet can do to kvrun (issue 12:
//! token cache, throttling, absurd waits, unbounded answers, hostile error text, challenges
//! under `--watch`). Each is named after the bug it pins down, and failed before its fix.

#![cfg(target_os = "linux")]

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::common::lines::Lines;
use crate::common::{World, assert_no_leak, child_env, exit_status, run, stderr};
use kvrun_fake::{FakeAzure, Fault, Options, SecretAttrs, VaultHandle};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// stderr with the fake's port replaced by `PORT`, for exact comparisons.
fn stderr_text(world: &World, output: &Output) -> String {
    stderr(output).replace(&world.fake.port().to_string(), "PORT")
}

/// The one-failure report kvrun prints for `X` (from the environment) and `secret` in `kv1`.
fn one_failure(secret: &str, reason: &str, hint: Option<&str>) -> String {
    let mut text = format!(
        "kvrun: error: 1 reference could not be resolved; the command was not started\n  X (environment): https://kv1.vault.localhost:PORT/secrets/{secret}: {reason}\n"
    );
    if let Some(hint) = hint {
        text = format!("{text}    hint: {hint}\n");
    }
    text
}

fn pid(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).unwrap())
}

/// A command that prints `start $SECRET`, and `stopping` on SIGTERM (then exits 0).
const WATCHED: &str = "trap 'echo stopping; exit 0' TERM; echo \"start $SECRET\"; while :; do sleep 1 & wait $!; done";

/// A check comes 9–11 s after the last (after a failure, two intervals later); this bounds a
/// failed check, the backoff and the next check.
const WATCH_LIMIT: Duration = Duration::from_secs(45);

/// kvrun `--watch 10s` over `bash -c WATCHED`, with `SECRET` referencing `rotating` in a new
/// vault `kv1` (`first-VALUE`), once the command has started with it.
fn watching(world: &World) -> (VaultHandle, Child, Lines, Lines) {
    let kv = world.fake.vault("kv1");
    kv.set_secret("rotating", "first-VALUE");
    let mut kvrun = world
        .kvrun()
        .env("SECRET", world.url("kv1", "rotating"))
        .args(["-v", "--watch", "10s", "--timeout", "5s"])
        .args(["--", "bash", "-c", WATCHED])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Lines::of(kvrun.stdout.take().unwrap());
    let err = Lines::of(kvrun.stderr.take().unwrap());
    out.expect("start first", WATCH_LIMIT, |l| l == "start first-VALUE");
    (kv, kvrun, out, err)
}

/// SIGTERM to kvrun; the command stops and kvrun exits 0.
fn stop(mut kvrun: Child, out: &Lines) {
    kill(pid(&kvrun), Signal::SIGTERM).unwrap();
    out.expect("stopping", WATCH_LIMIT, |l| l == "stopping");
    assert_eq!(exit_status(&mut kvrun, WATCH_LIMIT).code(), Some(0));
}

#[test]
fn watch_recovers_after_one_failed_token_request() {
    let world = World::new();
    let (kv, kvrun, out, err) = watching(&world);
    // The token is revoked (the vault answers the next GET with its 401 challenge), and Entra
    // refuses the one token request that follows with an answer no client retries.
    kv.fail_next(Fault::Status(401), 1);
    world.fake.fail_next_token(Fault::Status(400), 1);
    kv.set_secret("rotating", "second-VALUE");
    err.expect("a failed check", WATCH_LIMIT, |l| {
        l.contains("the check failed")
    });
    // Entra is healthy again: the next check gets a token and delivers the rotated value.
    out.expect("stopping", WATCH_LIMIT, |l| l == "stopping");
    out.expect("start second", WATCH_LIMIT, |l| l == "start second-VALUE");
    stop(kvrun, &out);
}

#[test]
fn watch_checks_send_no_new_challenge() {
    let world = World::new();
    let (_kv, kvrun, out, err) = watching(&world);
    err.expect("the first resolution", WATCH_LIMIT, |l| {
        l.contains(" resolved ")
    });
    err.expect("a check", WATCH_LIMIT, |l| l.contains(" resolved "));
    stop(kvrun, &out);
    let gets = world.vault_gets();
    let unauthenticated = gets.iter().filter(|r| r.authorization.is_none()).count();
    assert_eq!(
        (unauthenticated, gets.len()),
        (1, 3),
        "one challenge for the process, then the GETs of the start and of one check"
    );
}

#[test]
fn a_dead_h2_connection_while_watching_costs_one_check_and_is_replaced() {
    // The vault's connection stops answering between checks (the request is read, never
    // answered): the check fails at its --timeout instead of hanging, that connection takes no
    // further request, and the next check opens a new one and delivers the rotated value.
    let world = World::with(FakeAzure::start_with(Options {
        http1_only: false,
        ..Options::default()
    }));
    let (kv, kvrun, out, err) = watching(&world);
    let before = world.fake.connections();
    kv.fail_next(Fault::Hang, 1);
    kv.set_secret("rotating", "second-VALUE");
    err.expect("a failed check", WATCH_LIMIT, |l| {
        l.contains("the check failed")
    });
    err.expect("its reason", WATCH_LIMIT, |l| {
        l.contains("timed out after 5s")
    });
    out.expect("stopping", WATCH_LIMIT, |l| l == "stopping");
    out.expect("start second", WATCH_LIMIT, |l| l == "start second-VALUE");
    stop(kvrun, &out);
    assert_eq!(
        world.fake.connections(),
        before + 1,
        "one new connection to the vault; the token was cached"
    );
}

#[test]
fn a_401_while_watching_verifies_the_new_challenge() {
    let world = World::new();
    let (kv, kvrun, out, err) = watching(&world);
    // The vault now challenges for another domain: the check must not send a token there.
    kv.set_challenge_resource("https://evil.localhost");
    kv.fail_next(Fault::Status(401), 1);
    kv.set_secret("rotating", "second-VALUE");
    err.expect("a failed check", WATCH_LIMIT, |l| {
        l.contains("the check failed")
    });
    stop(kvrun, &out);
    let tokens = world
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .filter_map(|r| {
            r.form?
                .into_iter()
                .find(|(k, _)| k == "scope")
                .map(|(_, v)| v)
        })
        .collect::<Vec<_>>();
    assert!(
        tokens
            .iter()
            .all(|scope| scope == "https://vault.localhost/.default"),
        "{tokens:?}"
    );
}

#[test]
fn a_hanging_token_request_is_given_up_on_and_tried_again() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "after-the-hang");
    world.fake.fail_next_token(Fault::Hang, 1);
    let output = run(world
        .kvrun()
        .env("X", world.url("kv1", "db"))
        .args(["--", "env", "-0"]));
    assert_eq!(child_env(&output)["X"], "after-the-hang");
    let posts = world
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 2, "the hung request, then one more");
}

#[test]
fn fifty_gets_share_one_failed_token_request() {
    let world = World::new();
    let kv = world.fake.vault("kv1");
    let mut command = world.kvrun();
    for i in 0..50 {
        kv.set_secret(&format!("s{i}"), "v");
        command.env(format!("S{i}"), world.url("kv1", &format!("s{i}")));
    }
    world.fake.fail_next_token(Fault::Status(400), 1);
    let output = run(command.args(["--", "true"]));
    assert_eq!(output.status.code(), Some(67), "{}", stderr(&output));
    let posts = world
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(
        posts, 1,
        "fifty GETs share one token request, whatever its outcome"
    );
}

#[test]
fn a_retry_after_beyond_any_deadline_fails_at_once_instead_of_panicking() {
    for header in ["Retry-After", "retry-after-ms", "x-ms-retry-after-ms"] {
        let world = World::new();
        let kv = world.fake.vault("kv1");
        kv.set_secret("db", "v");
        kv.fail_next(
            Fault::RetryAfter {
                status: 429,
                header,
                value: "9223372036854775807".into(),
            },
            1,
        );
        let output = run(world
            .kvrun()
            .env("X", world.url("kv1", "db"))
            .args(["--", "true"]));
        let asked = if header == "Retry-After" {
            "9223372036854775807s"
        } else {
            "9223372036854775s 807ms"
        };
        assert_eq!(
            (output.status.code(), stderr_text(&world, &output)),
            (
                Some(75),
                one_failure(
                    "db",
                    &format!(
                        "429 Throttled: Request was not processed because too many requests were received. (the vault asked to wait {asked}, past the --timeout deadline)"
                    ),
                    Some("the vault is throttling or unavailable; try again later"),
                )
            ),
            "{header}"
        );
    }
}

#[test]
fn a_huge_retry_after_while_watching_does_not_kill_the_supervisor() {
    let world = World::new();
    let (kv, kvrun, out, err) = watching(&world);
    kv.fail_next(
        Fault::RetryAfter {
            status: 503,
            header: "Retry-After",
            value: "18446744073709551615".into(),
        },
        1,
    );
    err.expect("a failed check", WATCH_LIMIT, |l| {
        l.contains("the check failed")
    });
    let line = err.expect("its reason", WATCH_LIMIT, |l| l.contains("rotating"));
    assert!(
        line.ends_with(
            "(the vault asked to wait 18446744073709551615s, past the --timeout deadline)"
        ),
        "{line}"
    );
    assert!(kill(pid(&kvrun), None).is_ok(), "the supervisor lives");
    stop(kvrun, &out);
}

#[test]
fn a_secret_valid_from_the_end_of_time_does_not_panic() {
    let world = World::new();
    let kv = world.fake.vault("kv1");
    for (name, nbf, exp) in [("late", Some(u64::MAX), None), ("old", None, Some(0))] {
        kv.set_secret_with(
            name,
            "v",
            SecretAttrs {
                nbf,
                exp,
                ..SecretAttrs::default()
            },
        );
    }
    let output = run(world
        .kvrun()
        .env("LATE", world.url("kv1", "late"))
        .env("OLD", world.url("kv1", "old"))
        .args(["--", "env", "-0"]));
    assert_eq!(child_env(&output)["LATE"], "v", "{}", stderr(&output));
    let text = stderr_text(&world, &output);
    // The two secrets are fetched concurrently: their warnings come in either order.
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            " WARN https://kv1.vault.localhost:PORT/secrets/late is not valid before 18446744073709551615 (Unix time); Key Vault still returned it",
            " WARN https://kv1.vault.localhost:PORT/secrets/old expired at 1970-01-01T00:00:00Z; Key Vault still returned it",
        ]
    );
}

#[test]
fn an_endless_token_answer_is_cut_off_at_64_kib() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "v");
    world.fake.fail_next_token(Fault::Huge(1 << 31), 1);
    let output = run(world.kvrun().env("X", world.url("kv1", "db")).args([
        "--timeout",
        "20s",
        "--",
        "true",
    ]));
    assert_eq!(
        (output.status.code(), stderr_text(&world, &output)),
        (
            Some(76),
            one_failure(
                "db",
                "token request failed: the answer is larger than 64 KiB",
                Some("a proxy or gateway may be in the way; check AZURE_AUTHORITY_HOST"),
            )
        )
    );
}

#[test]
fn an_endless_managed_identity_answer_is_cut_off_at_64_kib() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "v");
    let identity = world.fake.start_managed_identity();
    identity.fail_next(Fault::Huge(1 << 31), 1);
    let output = run(world
        .kvrun()
        .env_remove("AZURE_CLIENT_SECRET")
        .env_remove("AZURE_CLIENT_ID")
        .env("IDENTITY_ENDPOINT", format!("{}/msi/token", identity.url()))
        .env("IDENTITY_HEADER", identity.identity_header())
        .env("X", world.url("kv1", "db"))
        .args([
            "--credential",
            "managed-identity",
            "--timeout",
            "20s",
            "--",
            "true",
        ]));
    assert_eq!(
        (output.status.code(), stderr_text(&world, &output)),
        (
            Some(76),
            one_failure(
                "db",
                "the managed identity endpoint's answer is larger than 64 KiB",
                None
            )
        )
    );
}

#[test]
fn an_endless_az_output_is_cut_off_at_64_kib() {
    use std::os::unix::fs::PermissionsExt as _;
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "v");
    let az = world.bin.join("az");
    std::fs::write(&az, "#!/bin/sh\nprintf '{\"accessToken\":\"'\nexec yes\n").unwrap();
    std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = run(world.kvrun().env("X", world.url("kv1", "db")).args([
        "--credential",
        "azure-cli",
        "--timeout",
        "20s",
        "--",
        "true",
    ]));
    assert_eq!(
        (output.status.code(), stderr_text(&world, &output)),
        (
            Some(67),
            one_failure(
                "db",
                "no credential could get a token\n      azure-cli: az printed more than 64 KiB",
                Some("configure one credential: see \"Credentials\" in kvrun's README"),
            )
        )
    );
}

#[test]
fn control_characters_in_server_text_are_escaped() {
    let world = World::new();
    let kv = world.fake.vault("kv1");
    kv.set_secret("db", "v");
    kv.fail_secret(
        "db",
        Fault::ErrorText {
            status: 403,
            code: "Forbidden\u{1b}[2J".into(),
            message: "Access denied\r kvrun: all secrets resolved\u{7}\u{202e}".into(),
        },
        1,
    );
    let output = run(world
        .kvrun()
        .env("X", world.url("kv1", "db"))
        .args(["--", "true"]));
    assert_eq!(
        (output.status.code(), stderr_text(&world, &output)),
        (
            Some(77),
            one_failure(
                "db",
                r"403 Forbidden\u{1b}[2J: Access denied\r kvrun: all secrets resolved\u{7}\u{202e}",
                Some(
                    "grant this identity the \"Key Vault Secrets User\" role on vault kv1 (RBAC), or the secret 'get' permission in its access policy"
                ),
            )
        )
    );

    // Entra's words, too.
    world.fake.fail_next_token(
        Fault::ErrorText {
            status: 401,
            code: "invalid_client".into(),
            message: "AADSTS7000215: Invalid client secret.\u{1b}]0;owned\u{7}".into(),
        },
        1,
    );
    let output = run(world
        .kvrun()
        .env("X", world.url("kv1", "db"))
        .args(["--", "true"]));
    let text = stderr_text(&world, &output);
    assert_eq!(output.status.code(), Some(67), "{text}");
    assert!(
        text.contains(r"AADSTS7000215: Invalid client secret.\u{1b}]0;owned\u{7}")
            && !text.contains('\u{1b}'),
        "{text}"
    );
}

/// Held by each fleet: two fleets at once would share the machine's two cores and each other's
/// timing, which is what the request counts are compared for.
static ONE_FLEET_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `replicas` kvruns with `secrets` references each, started at once against `vault`; all must
/// start. Returns the GETs the fleet sent.
fn fleet(world: &World, vault: &str, replicas: usize, secrets: usize, timeout: &str) -> usize {
    let _alone = ONE_FLEET_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = world.fake.vault_gets();
    let env: Vec<(String, String)> = (0..secrets)
        .map(|i| (format!("S{i}"), world.url(vault, &format!("s{i}"))))
        .collect();
    let children: Vec<_> = (0..replicas)
        .map(|_| {
            let mut command: Command = world.kvrun();
            command
                .envs(env.iter().map(|(k, v)| (k, v)))
                .args(["--timeout", timeout, "--", "sh", "-c", "printf started"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let failed: Vec<String> = children
        .into_iter()
        .map(|child| child.wait_with_output().unwrap())
        .filter(|output| !output.status.success() || output.stdout != b"started")
        .map(|output| stderr(&output))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {replicas} did not start:\n{}",
        failed.len(),
        failed.join("\n")
    );
    world.fake.vault_gets() - before
}

#[test]
fn throttled_fleet_starts_all_replicas_within_the_default_timeout() {
    // A vault that serves 100 GETs per second and throttles the rest with Retry-After: 1; 60
    // replicas × 10 references: 660 GETs at least (one challenge and ten GETs each), ~6.6 s.
    const REPLICAS: usize = 60;
    const SECRETS: usize = 10;
    let world = World::new();
    let kv = world.fake.vault("fleet");
    for i in 0..SECRETS {
        kv.set_secret(&format!("s{i}"), &format!("v{i}"));
    }
    let minimum = REPLICAS * (SECRETS + 1);
    let mut totals = Vec::new();
    for timeout in ["30s", "120s"] {
        kv.set_rate_limit(100, Duration::from_secs(1), Duration::from_secs(1));
        let throttled = world.fake.throttled();
        let gets = fleet(&world, "fleet", REPLICAS, SECRETS, timeout);
        let throttled = world.fake.throttled() - throttled;
        println!(
            "--timeout {timeout}: {REPLICAS} replicas × {SECRETS} references: {gets} GETs ({throttled} throttled), minimum {minimum} ({}%)",
            gets * 100 / minimum
        );
        assert!(throttled > 0, "the test must actually throttle");
        totals.push(gets);
    }
    // The requests come from the vault's schedule, not from how long kvrun may keep trying: four
    // times the time to give up must not bring more than the spread of two runs (measured: within
    // 35% of each other with other tests running beside them).
    assert!(
        totals[1] <= totals[0] * 2,
        "a longer --timeout must not mean more requests: {totals:?}"
    );
}

#[test]
fn throttled_starts_keep_trying_until_the_deadline() {
    // The bug as reported: 30 replicas × 10 references against a vault that serves 33 GETs per
    // second (~10 s to drain) gave up after six attempts, 5.7–8.1 s in, with --timeout 30s.
    const REPLICAS: usize = 30;
    const SECRETS: usize = 10;
    let world = World::new();
    let kv = world.fake.vault("slow");
    for i in 0..SECRETS {
        kv.set_secret(&format!("s{i}"), &format!("v{i}"));
    }
    kv.set_rate_limit(33, Duration::from_secs(1), Duration::from_secs(1));
    let gets = fleet(&world, "slow", REPLICAS, SECRETS, "30s");
    println!(
        "{REPLICAS} replicas × {SECRETS} references at 33 GETs/s: {gets} GETs, {} throttled",
        world.fake.throttled()
    );
}

#[test]
fn nothing_secret_leaks_from_the_new_failure_paths() {
    let world = World::new();
    let kv = world.fake.vault("kv1");
    kv.set_secret("db", "LEAK-CHECK-VALUE");
    kv.fail_next(Fault::Status(401), 1);
    kv.fail_next(
        Fault::RetryAfter {
            status: 429,
            header: "Retry-After",
            value: "1".into(),
        },
        1,
    );
    world.fake.fail_next_token(Fault::Status(503), 1);
    let output = run(world
        .kvrun()
        .env("KVRUN_LOG", "trace")
        .env("X", world.url("kv1", "db"))
        .args(["--", "env", "-0"]));
    assert_eq!(child_env(&output)["X"], "LEAK-CHECK-VALUE");
    let err = stderr(&output);
    assert!(!err.contains("LEAK-CHECK-VALUE"), "{err}");
    assert_no_leak(
        &Output {
            stdout: Vec::new(),
            ..output
        },
        &[],
    );
}
