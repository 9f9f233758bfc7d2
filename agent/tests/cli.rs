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
