//! The `p2pvps` binary as an operator uses it: help, user and device creation, config errors.

use sqlx::PgPool;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn p2pvps() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_p2pvps"));
    c.env_remove("P2PVPS_CONFIG");
    c
}

/// The URL of the test's own database (sqlx::test made it from DATABASE_URL).
fn url_of(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for database tests");
    let mut url = url::Url::parse(&base).expect("DATABASE_URL is a URL");
    url.set_path(
        pool.connect_options()
            .get_database()
            .expect("test database has a name"),
    );
    url.to_string()
}

fn run(cmd: &mut Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn help_lists_every_command_and_explains_every_flag() {
    let out = p2pvps().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for cmd in ["serve", "migrate", "export-schema", "user", "device"] {
        assert!(help.contains(cmd), "{cmd} missing from:\n{help}");
    }
    let out = p2pvps().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--http",
        "--database-url",
        "--config",
        "--data-dir",
        "--secret-key",
        "--web-dir",
        "--log-format",
        "--tunnel-ports",
    ] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(flag) || l.contains(&format!(" {flag}")))
            .unwrap_or_else(|| panic!("{flag} missing:\n{help}"));
        assert!(!line.trim().is_empty());
    }
    assert!(help.contains("P2PVPS_HTTP"), "env names shown:\n{help}");
}

#[sqlx::test(migrations = "../sql")]
async fn user_and_device_create_print_json(pool: PgPool) {
    let url = url_of(&pool);
    let out = run(
        p2pvps()
            .args(["user", "create", "--email", "Op@Example.com"])
            .env("DATABASE_URL", &url),
        "a long password\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(user["email"], "op@example.com");
    assert_eq!(user["role"], "owner");

    let out = run(
        p2pvps()
            .args(["user", "create", "--email", "bad@example.com"])
            .env("DATABASE_URL", &url),
        "short\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 10"));

    let out = run(
        p2pvps()
            .args([
                "device",
                "create",
                "--owner",
                "op@example.com",
                "--name",
                "pi one",
            ])
            .env("DATABASE_URL", &url),
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let device: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(device["port"], 6000);
    assert_eq!(device["credential"].as_str().unwrap().len(), 43);
    assert!(device["id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
    assert!(device["subdomain"].as_str().unwrap().len() >= 3);

    let out = run(
        p2pvps()
            .args([
                "device",
                "create",
                "--owner",
                "op@example.com",
                "--name",
                "pi one",
            ])
            .env("DATABASE_URL", &url),
        "",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already have a device named"));
    let out = run(
        p2pvps()
            .args([
                "device",
                "create",
                "--owner",
                "nobody@example.com",
                "--name",
                "x",
            ])
            .env("DATABASE_URL", &url),
        "",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user with e-mail"));
}

#[test]
fn export_schema_prints_sdl() {
    let out = p2pvps().arg("export-schema").output().unwrap();
    assert!(out.status.success());
    let sdl = String::from_utf8(out.stdout).unwrap();
    assert!(
        sdl.contains("type Query")
            && sdl.contains("type Mutation")
            && sdl.contains("type Subscription")
    );
}

#[test]
fn a_bad_config_file_is_named_in_the_error() {
    let dir = std::env::temp_dir().join(format!("p2pvps-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "http = [1, 2]\n").unwrap();
    let out = p2pvps()
        .arg("--config")
        .arg(&file)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be a string, number or boolean"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn serve_refuses_to_start_without_a_built_dashboard() {
    let out = p2pvps()
        .args([
            "serve",
            "--web-dir",
            "/nonexistent",
            "--database-url",
            "postgres://nobody@127.0.0.1:1/x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no built dashboard"));
}

#[sqlx::test(migrations = "../sql")]
async fn rental_grant_and_end_print_json(pool: PgPool) {
    let url = url_of(&pool);
    let data = std::env::temp_dir().join(format!("p2pvps-cli-data-{}", uuid::Uuid::new_v4()));
    let env = |c: &mut Command| {
        c.env("DATABASE_URL", &url).env("P2PVPS_DATA_DIR", &data);
    };
    for (email, flag) in [
        ("own@example.com", None),
        ("rent@example.com", Some("--renter")),
    ] {
        let mut c = p2pvps();
        c.args(["user", "create", "--email", email]).args(flag);
        env(&mut c);
        assert!(run(&mut c, "a long password\n").status.success());
    }
    let mut c = p2pvps();
    c.args([
        "device",
        "create",
        "--owner",
        "own@example.com",
        "--name",
        "pi",
        "--subdomain",
        "cli-pi",
    ]);
    env(&mut c);
    let device: serde_json::Value = serde_json::from_slice(&run(&mut c, "").stdout).unwrap();
    assert!(
        device["ssh_host_key_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );

    let mut c = p2pvps();
    c.args([
        "rental",
        "grant",
        "--device",
        device["id"].as_str().unwrap(),
        "--renter",
        "rent@example.com",
    ])
    .args([
        "--hours",
        "3",
        "--ssh",
        "0.0.0.0:2222",
        "--public-url",
        "https://p2pvps.example",
    ]);
    env(&mut c);
    let out = run(&mut c, "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rental: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let login = rental["login"].as_str().unwrap();
    assert_eq!(rental["state"], "active");
    assert_eq!(rental["secret"].as_str().unwrap().len(), 43);
    assert_eq!(
        rental["connection"]["jump_command"],
        format!("ssh -J {login}@p2pvps.example:2222 {login}@cli-pi")
    );

    let mut c = p2pvps();
    c.args(["rental", "end", rental["id"].as_str().unwrap()]);
    env(&mut c);
    let out = run(&mut c, "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ended: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ended["state"], "ended");
    let _ = std::fs::remove_dir_all(data);
}
