//! Renters reach a rented device's real sshd two ways, by its public port and with `ssh -J` through our
//! server, and both paths close when the rental ends.

use p2pvps_shared::Role;
use p2pvps_tests::openssh::{DeviceSshd, SshKit, Via, output, refused};
use p2pvps_tests::{TestApp, status_listener, wait_status};
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

#[sqlx::test(migrations = "../sql")]
async fn a_renter_reaches_the_device_by_port_and_by_jump_until_the_rental_ends(pool: PgPool) {
    let dir = p2pvps_tests::temp_dir("p2pvps-data-");
    let app = TestApp::start_with_ssh(pool, dir.path(), 0).await;
    let owner = app.user("owner@example.com", Role::Owner).await;
    let renter = app.user("renter@example.com", Role::Renter).await;
    let admin = app.user("admin@example.com", Role::Admin).await;
    let r = owner
        .gql("mutation { createDevice(input: {name: \"pi\", subdomain: \"kitchen-pi\"}) { credential device { id tunnelPort } } }", json!({}))
        .await;
    let id = r
        .ok()
        .data("createDevice.device.id")
        .as_str()
        .unwrap()
        .to_owned();
    let credential = r
        .data("createDevice.credential")
        .as_str()
        .unwrap()
        .to_owned();
    let port = r.data("createDevice.device.tunnelPort").as_u64().unwrap() as u16;

    // The device publishes its real sshd through its tunnel.
    let sshd = DeviceSshd::start().await;
    let kit = SshKit::new(dir.path(), app.ssh_addr());
    let mut status = status_listener(&app.pool).await;
    let _device = kit.device(&id, &credential, port, sshd.port);
    wait_status(&mut status, &id, "online").await;

    // An admin rents it to the renter by hand.
    let grant = "mutation($d: ID!, $e: String!) { grantRental(device: $d, renterEmail: $e, hours: 2) { id state login { name } } }";
    let g = admin
        .gql(grant, json!({"d": id, "e": "renter@example.com"}))
        .await;
    g.assert_code("FORBIDDEN");
    assert_eq!(
        g.body["errors"][0]["path"][1], "login",
        "the admin does not see the renter's secret"
    );
    let rental = g.data("grantRental.id").as_str().unwrap().to_owned();
    assert_eq!(g.data("grantRental.state"), "ACTIVE");
    admin
        .gql(grant, json!({"d": id, "e": "renter@example.com"}))
        .await
        .assert_code("CONFLICT");
    owner
        .gql(grant, json!({"d": id, "e": "renter@example.com"}))
        .await
        .assert_code("FORBIDDEN");

    let mine = renter
        .gql("{ rentals { id login { name secret } connection { host sshPort devicePort subdomain login portCommand jumpCommand } } }", json!({}))
        .await;
    mine.ok();
    let login = mine
        .data("rentals.0.login.name")
        .as_str()
        .unwrap()
        .to_owned();
    let secret = mine
        .data("rentals.0.login.secret")
        .as_str()
        .unwrap()
        .to_owned();
    let conn = mine.data("rentals.0.connection");
    assert_eq!(conn["devicePort"], port);
    assert_eq!(conn["sshPort"], app.ssh_addr().port());
    assert_eq!(conn["subdomain"], "kitchen-pi");
    assert_eq!(
        conn["portCommand"],
        format!("ssh -p {port} {login}@127.0.0.1")
    );
    assert_eq!(
        conn["jumpCommand"],
        format!(
            "ssh -J {login}@127.0.0.1:{} {login}@kitchen-pi",
            app.ssh_addr().port()
        )
    );

    // Both paths reach the real sshd on the device.
    let by_port = output(kit.renter(&sshd, Via::Port(port), &["echo", "hello-by-port"])).await;
    assert_eq!(by_port.trim(), "hello-by-port");
    let jump = Via::Jump {
        login: &login,
        secret: &secret,
        subdomain: "kitchen-pi",
    };
    let by_jump = output(kit.renter(&sshd, jump, &["echo", "hello-by-jump"])).await;
    assert_eq!(by_jump.trim(), "hello-by-jump");

    // The jump login reaches only the rented device, and nothing else on our server.
    let elsewhere = Via::Jump {
        login: &login,
        secret: &secret,
        subdomain: "other-pi",
    };
    refused(kit.renter(&sshd, elsewhere, &["true"])).await;
    refused(kit.ssh(&login, &secret, &["--", "true"])).await;
    refused(kit.ssh(
        &login,
        &secret,
        &["-N", "-R", &format!("{port}:127.0.0.1:22")],
    ))
    .await;
    let wrong = Via::Jump {
        login: &login,
        secret: "not the secret",
        subdomain: "kitchen-pi",
    };
    refused(kit.renter(&sshd, wrong, &["true"])).await;

    // Live sessions on both paths are cut when the rental ends, and the jump login stops working.
    let mut live = kit
        .renter(&sshd, jump, &["echo ready; sleep 60"])
        .spawn()
        .unwrap();
    let mut by_port = kit
        .renter(&sshd, Via::Port(port), &["echo ready; sleep 60"])
        .spawn()
        .unwrap();
    for child in [&mut live, &mut by_port] {
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.as_deref(), Some("ready"));
    }
    let ended = admin
        .gql(
            "mutation($r: ID!) { endRental(id: $r) { state endsAt } }",
            json!({"r": rental}),
        )
        .await;
    assert_eq!(ended.ok().data("endRental.state"), "ENDED");
    let exit = tokio::time::timeout(Duration::from_secs(15), live.wait()).await;
    assert!(
        exit.is_ok(),
        "the live jump session was not cut at the rental's end"
    );
    let exit = tokio::time::timeout(Duration::from_secs(15), by_port.wait()).await;
    assert!(
        exit.is_ok(),
        "the live port session was not cut at the rental's end"
    );
    let err = refused(kit.renter(&sshd, jump, &["true"])).await;
    assert!(err.contains("Permission denied"), "{err}");
    // The public port no longer carries anything to the device (even with a key the device still accepts).
    let err = refused(kit.renter(&sshd, Via::Port(port), &["true"])).await;
    assert!(
        err.contains("closed") || err.contains("reset") || err.contains("banner"),
        "{err}"
    );
    let after = renter
        .gql(
            "{ rentals { state login { name } connection { login } } }",
            json!({}),
        )
        .await;
    assert_eq!(after.ok().data("rentals.0.state"), "ENDED");
    assert!(
        after.data("rentals.0.login").is_null() && after.data("rentals.0.connection").is_null()
    );
    admin
        .gql(
            "mutation($r: ID!) { endRental(id: $r) { state } }",
            json!({"r": rental}),
        )
        .await
        .assert_code("CONFLICT");
    app.stop().await;
    drop(dir);
}

#[sqlx::test(migrations = "../sql")]
async fn expired_rentals_end_by_themselves(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let owner = app.user("o@example.com", Role::Owner).await;
    app.user("r@example.com", Role::Renter).await;
    let (id, _) = p2pvps_tests::add_device(&owner, "pi").await;
    let rental =
        p2pvps_tests::rent(&app.pool, &app.secrets, &id, "r@example.com", "rexpired1").await;
    sqlx::query("UPDATE rentals SET starts_at = now() - interval '1 hour', ends_at = now() - interval '1 minute' WHERE id = $1")
        .bind(rental)
        .execute(&app.pool)
        .await
        .unwrap();
    // (The server's own 30 s sweep may get there first; either way it ends exactly once.)
    let ended = p2pvps_server::rentals::lifecycle::end_expired(&app.pool)
        .await
        .unwrap();
    assert!(ended <= 1);
    let state: String = sqlx::query_scalar("SELECT state FROM rentals WHERE id = $1")
        .bind(rental)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(state, "ended");
    assert!(
        p2pvps_server::rentals::jump::jump_login(
            &app.pool,
            &app.secrets,
            "rexpired1",
            "renter-secret"
        )
        .await
        .unwrap()
        .is_none()
    );
    assert_eq!(
        p2pvps_server::rentals::lifecycle::end_expired(&app.pool)
            .await
            .unwrap(),
        0,
        "idempotent"
    );
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn grant_rental_reports_each_bad_field(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let admin = app.user("a@example.com", Role::Admin).await;
    let grant = "mutation($d: ID!, $e: String!, $h: Int!) { grantRental(device: $d, renterEmail: $e, hours: $h) { id } }";
    let r = admin
        .gql(grant, json!({"d": "nope", "e": "bad", "h": 0}))
        .await;
    r.assert_code("BAD_USER_INPUT");
    let fields = &r.body["errors"][0]["extensions"]["fields"];
    for f in ["device", "renterEmail", "hours"] {
        assert!(fields[f].is_string(), "{f} in {fields}");
    }
    let r = admin
        .gql(
            grant,
            json!({"d": uuid::Uuid::new_v4().to_string(), "e": "x@example.com", "h": 1}),
        )
        .await;
    r.assert_code("NOT_FOUND");
    let rentals: i64 = sqlx::query_scalar("SELECT count(*) FROM rentals")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rentals, 0);
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn a_jump_session_lasts_while_renewed_and_is_cut_at_the_end_without_events(pool: PgPool) {
    let dir = p2pvps_tests::temp_dir("p2pvps-data-");
    let app = TestApp::start_with_ssh(pool, dir.path(), 0).await;
    let owner = app.user("owner@example.com", Role::Owner).await;
    app.user("renter@example.com", Role::Renter).await;
    let (id, credential) = p2pvps_tests::add_device(&owner, "jump-pi").await;
    let subdomain: String = sqlx::query_scalar("SELECT subdomain FROM devices WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let port: i32 = sqlx::query_scalar("SELECT tunnel_port FROM devices WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let sshd = DeviceSshd::start().await;
    let kit = SshKit::new(dir.path(), app.ssh_addr());
    let mut status = status_listener(&app.pool).await;
    let _device = kit.device(&id, &credential, port as u16, sshd.port);
    wait_status(&mut status, &id, "online").await;
    let rental =
        p2pvps_tests::rent(&app.pool, &app.secrets, &id, "renter@example.com", "jumper").await;
    // The rental ends in 3 s; it is renewed by 5 s before that, with no event either way (the expiry
    // sweep runs every 30 s).
    sqlx::query("UPDATE rentals SET ends_at = now() + interval '3 seconds' WHERE id = $1")
        .bind(rental)
        .execute(&app.pool)
        .await
        .unwrap();
    let jump = Via::Jump {
        login: "jumper",
        secret: "renter-secret",
        subdomain: &subdomain,
    };
    let first_end = std::time::Instant::now() + Duration::from_secs(3);
    let mut session = kit
        .renter(&sshd, jump, &["echo", "up;", "sleep", "60"])
        .spawn()
        .unwrap();
    // Logged in (with the 3 s end) before the renewal.
    let mut lines = BufReader::new(session.stdout.take().unwrap()).lines();
    let up = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await;
    assert_eq!(up.unwrap().unwrap().as_deref(), Some("up"));
    sqlx::query("UPDATE rentals SET ends_at = ends_at + interval '5 seconds' WHERE id = $1")
        .bind(rental)
        .execute(&app.pool)
        .await
        .unwrap();
    // Still connected well past the first end: the renewal was read at the deadline ...
    let early =
        tokio::time::timeout_at((first_end + Duration::from_secs(2)).into(), session.wait()).await;
    assert!(early.is_err(), "cut before the renewed end: {early:?}");
    // ... and cut at the renewed end.
    let status = tokio::time::timeout(Duration::from_secs(15), session.wait())
        .await
        .expect("the jump session was cut at the rental's end")
        .unwrap();
    assert!(!status.success());
    app.stop().await;
    drop(dir);
}

#[sqlx::test(migrations = "../sql")]
async fn a_disabled_renter_loses_jump_and_port_access_at_once(pool: PgPool) {
    let dir = p2pvps_tests::temp_dir("p2pvps-data-");
    let app = TestApp::start_with_ssh(pool, dir.path(), 0).await;
    let owner = app.user("owner@example.com", Role::Owner).await;
    let admin = app.user("admin@example.com", Role::Admin).await;
    app.user("renter@example.com", Role::Renter).await;
    let (id, credential) = p2pvps_tests::add_device(&owner, "pi").await;
    let (subdomain, port): (String, i32) =
        sqlx::query_as("SELECT subdomain, tunnel_port FROM devices WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let port = port as u16;
    let sshd = DeviceSshd::start().await;
    let kit = SshKit::new(dir.path(), app.ssh_addr());
    let mut status = status_listener(&app.pool).await;
    let _device = kit.device(&id, &credential, port, sshd.port);
    wait_status(&mut status, &id, "online").await;
    p2pvps_tests::rent(
        &app.pool,
        &app.secrets,
        &id,
        "renter@example.com",
        "renter1",
    )
    .await;
    let jump = || Via::Jump {
        login: "renter1",
        secret: "renter-secret",
        subdomain: &subdomain,
    };
    let mut by_jump = kit
        .renter(&sshd, jump(), &["echo", "up;", "sleep", "60"])
        .spawn()
        .unwrap();
    let mut by_port = kit
        .renter(&sshd, Via::Port(port), &["echo", "up;", "sleep", "60"])
        .spawn()
        .unwrap();
    for session in [&mut by_jump, &mut by_port] {
        let mut lines = BufReader::new(session.stdout.take().unwrap()).lines();
        let up = tokio::time::timeout(Duration::from_secs(15), lines.next_line()).await;
        assert_eq!(up.unwrap().unwrap().as_deref(), Some("up"));
    }
    let renter_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM users WHERE email = 'renter@example.com'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    admin.disable_user(renter_id).await;
    // Both sessions are cut within seconds, and neither way lets them in again.
    for session in [&mut by_jump, &mut by_port] {
        let status = tokio::time::timeout(Duration::from_secs(10), session.wait())
            .await
            .expect("cut when the renter was disabled")
            .unwrap();
        assert!(!status.success());
    }
    refused(kit.renter(&sshd, jump(), &["true"])).await;
    refused(kit.renter(&sshd, Via::Port(port), &["true"])).await;
    app.stop().await;
    drop(dir);
}
