//! The owner's provisioning hooks: the agent asks the server for rentals starting or ending on this device
//! (a long poll, so a start arrives at once), runs `hooks.start` / `hooks.end` with the rental in the
//! environment, and reports the outcome. The server hands out the renter's login only after the start
//! hook succeeded, and lets the device again only after the end hook did.
//!
//! A hook gets `P2PVPS_ACTION` (`start` or `end`), `P2PVPS_RENTAL` (its id), `P2PVPS_LOGIN` (the renter's
//! Unix user name), and for `start` `P2PVPS_PASSWORD` (the renter's password) and `P2PVPS_ENDS_AT` (RFC
//! 3339). It must be idempotent: after a crash or a lost answer it may run again for the same rental.

use crate::api::Api;
use crate::config::Hooks;
use p2pvps_shared::HookAction;
use p2pvps_shared::agent::{JobOutcome, ProvisionJob};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// How long one request for jobs waits on the server when there is nothing to do.
const WAIT: u64 = 25;

/// Serves the server's jobs until the process ends.
pub async fn serve(api: &Api, hooks: &Hooks) {
    let schedule = crate::tunnel::backoff;
    let mut delays = schedule();
    loop {
        match api.jobs(WAIT).await {
            Ok(jobs) => {
                let mut unreported = false;
                for job in jobs {
                    let outcome = run(hooks, &job).await;
                    if let Err(e) = api.job_done(&job, &outcome).await {
                        // Asked again on the next round (it is still pending there): the hook runs again.
                        tracing::warn!(rental = %job.rental, action = %job.action, error = %e, "reporting a hook's outcome failed");
                        unreported = true;
                    }
                }
                if unreported {
                    // Not at once: a server that lists jobs but cannot record them would have the hooks
                    // run in a tight loop.
                    let wait = delays.next().unwrap_or(Duration::from_secs(60));
                    tokio::time::sleep(wait).await;
                } else {
                    delays = schedule();
                }
            }
            Err(e) => {
                let wait = delays.next().unwrap_or(Duration::from_secs(60));
                tracing::warn!(error = %e, seconds = wait.as_secs_f32(), "asking for provisioning jobs failed; trying again");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Runs the job's hook and says how it went; its standard error's tail becomes the message.
pub async fn run(hooks: &Hooks, job: &ProvisionJob) -> JobOutcome {
    let failed = |message: String| JobOutcome { ok: false, message };
    let path = match job.action {
        HookAction::Start => hooks.start.as_ref(),
        HookAction::End => hooks.end.as_ref(),
    };
    let Some(path) = path else {
        return failed(format!(
            "no {} hook is configured on the device",
            job.action
        ));
    };
    let mut cmd = tokio::process::Command::new(path);
    cmd.env("P2PVPS_ACTION", job.action.as_str())
        .env("P2PVPS_RENTAL", &job.rental)
        .env("P2PVPS_LOGIN", &job.login)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(password) = &job.password {
        cmd.env("P2PVPS_PASSWORD", password);
    }
    if let Some(ends_at) = &job.ends_at {
        cmd.env("P2PVPS_ENDS_AT", ends_at);
    }
    tracing::info!(rental = %job.rental, action = %job.action, login = %job.login, hook = %path.display(), "running hook");
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot run {}: {e}", path.display())),
    };
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let finished = tokio::time::timeout(Duration::from_secs(hooks.timeout_secs), async {
        // Read at most 64 KiB of its error output; keep only the end.
        let mut said = Vec::new();
        let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut said).await;
        (child.wait().await, said)
    })
    .await;
    let (status, said) = match finished {
        Ok((Ok(status), said)) => (status, said),
        Ok((Err(e), _)) => return failed(format!("waiting for {}: {e}", path.display())),
        Err(_) => {
            let _ = child.kill().await;
            return failed(format!(
                "{} did not finish within {} s and was killed",
                path.display(),
                hooks.timeout_secs
            ));
        }
    };
    let message = tail(&String::from_utf8_lossy(&said));
    if status.success() {
        tracing::info!(rental = %job.rental, action = %job.action, "hook succeeded");
        JobOutcome { ok: true, message }
    } else {
        tracing::warn!(rental = %job.rental, action = %job.action, %status, message, "hook failed");
        failed(if message.is_empty() {
            format!("{} exited with {status}", path.display())
        } else {
            message
        })
    }
}

/// The last characters of a hook's output that the server keeps, without control characters other than
/// newlines and tabs.
fn tail(text: &str) -> String {
    let clean: Vec<char> = text
        .trim()
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '?'
            } else {
                c
            }
        })
        .collect();
    let keep = JobOutcome::MAX_MESSAGE;
    clean[clean.len().saturating_sub(keep)..].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hooks_message_keeps_the_end_and_drops_control_characters() {
        assert_eq!(tail("  useradd: ok\n"), "useradd: ok");
        assert_eq!(tail("a\u{1b}[31mb\tc\nd"), "a?[31mb\tc\nd");
        let long = format!("{}END", "x".repeat(1000));
        let kept = tail(&long);
        assert_eq!(kept.chars().count(), JobOutcome::MAX_MESSAGE);
        assert!(kept.ends_with("END"));
        assert_eq!(
            JobOutcome {
                ok: false,
                message: kept
            }
            .validate(),
            Ok(())
        );
    }
}
