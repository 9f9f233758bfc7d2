//! The agent's command line, run as a user would (also makes cargo build the binary that the end-to-end
//! tests in `tests/` drive).

use std::process::Command;

fn agent(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_p2pvps-agent"))
        .args(args)
        .output()
        .expect("the agent runs")
}

#[test]
fn help_names_every_command() {
    let out = agent(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["enroll", "run", "facts", "--config"] {
        assert!(text.contains(command), "{text}");
    }
}

#[test]
fn facts_are_the_machines() {
    let out = agent(&["facts"]);
    assert!(out.status.success());
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(facts["agent_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(facts["arch"], std::env::consts::ARCH);
    assert!(
        facts["cpu_cores"].as_i64().is_some_and(|n| n > 0),
        "{facts}"
    );
}

#[test]
fn run_without_enrolment_says_which_file_is_missing() {
    let missing =
        std::env::temp_dir().join(format!("p2pvps-agent-missing-{}.toml", std::process::id()));
    let out = agent(&["--config", missing.to_str().unwrap(), "run"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains(&missing.display().to_string()), "{text}");
}

#[test]
fn enroll_refuses_plain_http_unless_insecure() {
    let dir = std::env::temp_dir().join(format!("p2pvps-agent-http-{}", std::process::id()));
    let config = dir.join("agent.toml");
    let missing = dir.join("no-credential");
    let enroll = |extra: &[&str]| {
        let mut args = vec![
            "--config",
            config.to_str().unwrap(),
            "enroll",
            "--server",
            "http://127.0.0.1:9",
            "--device",
            "00000000-0000-0000-0000-000000000000",
            "--credential-file",
            missing.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        agent(&args)
    };
    let refused = enroll(&[]);
    assert!(!refused.status.success());
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(
        text.contains("plain http") && text.contains("--insecure"),
        "{text}"
    );
    // With --insecure the URL passes; enrolment goes on (and stops at the missing credential file).
    let allowed = enroll(&["--insecure"]);
    assert!(!allowed.status.success());
    let text = String::from_utf8_lossy(&allowed.stderr);
    assert!(
        !text.contains("--insecure") && text.contains(&missing.display().to_string()),
        "{text}"
    );
    assert!(!config.exists());
}
