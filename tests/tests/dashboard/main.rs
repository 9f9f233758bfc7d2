//! The dashboard in real headless Chromium: an owner signs up, adds a device and connects it with the
//! command the page shows, and watches its badge go online and offline without a reload; an admin sees the
//! device and the audit entry; a renter given a rental sees connection commands that work. Screenshots of
//! each page go to `target/screenshots/`.

use p2pvps_shared::Role;
use p2pvps_tests::browser::Browser;
use p2pvps_tests::openssh::{DeviceSshd, SshKit, Via, output};
use p2pvps_tests::{PASSWORD, TestApp};
use serde_json::json;
use sqlx::PgPool;

async fn start(pool: PgPool) -> (TestApp, tempfile::TempDir) {
    let data = p2pvps_tests::temp_dir("p2pvps-data-");
    let web = p2pvps_tests::web_dir();
    let app =
        TestApp::start_with_ssh_and(pool, data.path(), 0, move |s| s.web_dir = Some(web)).await;
    (app, data)
}

async fn log_in(b: &Browser, email: &str, landing: &str) {
    b.goto("/login").await;
    b.fill("#email", email).await;
    b.fill("#password", PASSWORD).await;
    b.click("#log-in").await;
    b.wait_path(landing).await;
}

async fn log_out(b: &Browser) {
    b.click("#log-out").await;
    b.wait_path("/login").await;
}

#[sqlx::test(migrations = "../sql")]
async fn owner_admin_and_renter_use_the_dashboard(pool: PgPool) {
    let (app, data) = start(pool).await;
    let b = Browser::start(&app.base, 1280).await;

    // Signed out, a deep link leads to the log-in page; a wrong password says so.
    b.goto("/devices/0b7e5a52-0000-4000-8000-000000000000")
        .await;
    b.wait_path("/login").await;
    b.fill("#email", "nobody@example.com").await;
    b.fill("#password", "not the password").await;
    b.click("#log-in").await;
    let error = b.wait_text(".error-box", "").await;
    assert!(error.len() > 20, "an error that says something: {error:?}");
    b.screenshot("01-login-error").await;

    // Sign up as an owner: the empty device list says what to do next.
    b.goto("/signup").await;
    b.fill("#email", "not-an-email").await;
    b.fill("#password", "short").await;
    b.click("#sign-up").await;
    b.wait_text("#email-error", "").await;
    b.wait_text("#password-error", "10").await;
    b.screenshot("02-signup-errors").await;
    b.fill("#email", "owner@example.com").await;
    b.fill("#password", PASSWORD).await;
    b.click("#sign-up").await;
    b.wait_path("/devices").await;
    b.wait_text(".empty", "Add your first device").await;
    b.screenshot("03-devices-empty").await;

    // The add-device wizard: the name is required; then the credential and the command.
    b.click(".empty a.button").await;
    b.wait_path("/devices/new").await;
    b.fill("#price", "3.505").await;
    b.click("#create-device").await;
    b.wait_text("#name-error", "").await;
    b.wait_text("#price-error", "decimal").await;
    b.fill("#name", "Kitchen Pi").await;
    b.fill("#subdomain", "kitchen-pi").await;
    b.fill("#cpu-cores", "4").await;
    b.fill("#memory", "4096").await;
    b.fill("#price", "3.50").await;
    b.click("#create-device").await;
    let credential = b.text("#credential").await;
    let id = b.text("#device-id").await;
    let port: u16 = b.text("#device-port").await.trim().parse().unwrap();
    let command = b.text("#ssh-command").await;
    assert!(credential.len() >= 20, "{credential}");
    let ssh_port = app.ssh_addr().port();
    assert!(
        command.contains(&format!("-p {ssh_port} "))
            && command.contains(&format!("-R {port}:127.0.0.1:22 "))
            && command.ends_with(&format!("{id}@127.0.0.1")),
        "{command}"
    );
    b.screenshot("04-device-added").await;

    // On the list, the new device has never connected...
    b.goto("/devices").await;
    let badge = format!("tr[data-device='{id}'] .badge");
    b.wait_text(&badge, "never connected").await;
    // ...then the device runs the command the page showed (its sshd here is a real one) and the badge turns
    // online without a reload; when it disconnects, offline.
    let kit = SshKit::new(data.path(), app.ssh_addr());
    let sshd = DeviceSshd::start().await;
    let pasted = command.replace("127.0.0.1:22 ", &format!("127.0.0.1:{} ", sshd.port));
    let mut device = kit.pasted(&pasted, &credential).spawn().unwrap();
    b.wait_text(&badge, "online").await;
    b.screenshot("05-devices-online").await;
    device.kill().await.unwrap();
    b.wait_text(&badge, "offline").await;
    b.screenshot("06-devices-offline").await;

    // The device page, loaded by its address (a deep link on reload).
    let _device = kit.pasted(&pasted, &credential).spawn().unwrap();
    b.goto(&format!("/devices/{id}")).await;
    b.wait_text("h1", "Kitchen Pi").await;
    b.wait_text(".heading .badge", "online").await;
    b.wait_text("#uptime-day figcaption", "online").await;
    b.wait_text("#ssh-command", &format!("{id}@127.0.0.1"))
        .await;
    // The device's key for unattended use: a bad one is refused next to the field, a good one listed.
    b.fill("#new-key", "ssh-ed25519 not-a-key").await;
    b.click("#add-key").await;
    b.wait_text("#new-key-error", "").await;
    let (_, public) = p2pvps_tests::openssh::keypair(&kit.dir);
    b.fill("#new-key", &public).await;
    b.click("#add-key").await;
    b.wait_text("#ssh-keys ul", "SHA256:").await;
    b.screenshot("07-device-detail").await;
    // The owner switches the device's website off; the page shows it once the server has it.
    b.click("#web-publishing").await;
    b.wait_text("#web-state", "Not published").await;
    let published: bool =
        sqlx::query_scalar("SELECT web_publishing FROM devices WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(!published);
    log_out(&b).await;

    // An admin with a generated password is sent to choose one first; then sees the device, its owner,
    // and the audit entry.
    let mut tx = app.pool.begin().await.unwrap();
    p2pvps_server::accounts::users::create(
        &mut tx,
        Some(&p2pvps_server::infra::audit::Actor::system()),
        &p2pvps_shared::Email::parse("admin@example.com").unwrap(),
        &p2pvps_shared::Password::parse(PASSWORD).unwrap(),
        Role::Admin,
        true,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    log_in(&b, "admin@example.com", "/account").await;
    b.wait_text(".notice", "generated").await;
    b.fill("#current-password", PASSWORD).await;
    b.fill("#new-password", "a brand new admin password").await;
    b.click("#change-password").await;
    b.wait_text(".notice", "Password changed").await;
    // (Changing the password ended the admin's other sessions: the API client logs in with the new one.)
    let admin = app
        .log_in_bearer_with("admin@example.com", "a brand new admin password")
        .await;
    b.goto("/admin/users").await;
    b.wait_text("#users", "owner@example.com").await;
    b.screenshot("08-admin-users").await;
    b.goto("/admin/devices").await;
    b.wait_text("#devices", "Kitchen Pi").await;
    b.wait_text("#devices", "owner@example.com").await;
    b.screenshot("09-admin-devices").await;
    b.goto("/admin/audit").await;
    b.wait_text("#audit", "device.create").await;
    b.screenshot("10-admin-audit").await;
    log_out(&b).await;

    // A renter given a rental sees the login and the two commands, and both work.
    app.user("renter@example.com", Role::Renter).await;
    admin
        .gql(
            "mutation($d: ID!) { grantRental(device: $d, renterEmail: \"renter@example.com\", hours: 2) { id } }",
            json!({"d": id}),
        )
        .await
        .ok();
    log_in(&b, "renter@example.com", "/rentals").await;
    let login = b.text("#rental-login").await;
    let secret = b.text("#rental-secret").await;
    let by_port = b.text("#port-command").await;
    let by_jump = b.text("#jump-command").await;
    b.wait_text(".countdown", "left").await;
    assert_eq!(by_port, format!("ssh -p {port} {login}@127.0.0.1"));
    assert_eq!(
        by_jump,
        format!("ssh -J {login}@127.0.0.1:{ssh_port} {login}@kitchen-pi")
    );
    b.screenshot("11-renter-rentals").await;
    // (The device's test sshd knows only its own user; the login on a real device is the provisioner's.)
    let jump = Via::Jump {
        login: &login,
        secret: &secret,
        subdomain: "kitchen-pi",
    };
    assert_eq!(
        output(kit.renter(&sshd, jump, &["echo", "via-jump"]))
            .await
            .trim(),
        "via-jump"
    );
    assert_eq!(
        output(kit.renter(&sshd, Via::Port(port), &["echo", "via-port"]))
            .await
            .trim(),
        "via-port"
    );

    // The same page at a phone's width.
    b.client.set_window_size(390, 844).await.unwrap();
    b.wait_text("#jump-command", "ssh -J").await;
    b.screenshot("12-renter-rentals-phone").await;

    b.close().await;
    app.stop().await;
    drop(data);
}

/// An owner's priced device, offered for rent and online (its status set directly: this test is about
/// the pages). Returns its id.
async fn offered_online(app: &TestApp, owner: &p2pvps_tests::Client, name: &str) -> String {
    let id = p2pvps_tests::create_device(
        owner,
        json!({"name": name, "forRent": true, "price": {"minor": 500, "currency": "USD"},
               "hardware": {"cpuCores": 4, "memoryMb": 2048}}),
    )
    .await
    .id;
    p2pvps_server::devices::status::record_status(
        &app.pool,
        id.parse().unwrap(),
        p2pvps_shared::DeviceStatus::Online,
    )
    .await
    .unwrap();
    id
}

#[sqlx::test(migrations = "../sql")]
async fn a_renter_rents_from_the_storefront_and_a_marketplace_buyer_claims_a_rental(pool: PgPool) {
    let (app, data) = start(pool).await;
    let owner = app.user("owner@example.com", Role::Owner).await;
    app.user("renter@example.com", Role::Renter).await;
    offered_online(&app, &owner, "store-pi").await;
    let b = Browser::start(&app.base, 1280).await;

    // Signed out, the start page is the storefront; renting asks to log in first, then comes back.
    b.goto("/").await;
    b.wait_path("/store").await;
    let card = b.wait_text("li.offer", "store-pi").await;
    assert!(
        card.contains("5.00 USD") && card.contains("4 cores") && card.contains("2.0 GB RAM"),
        "{card}"
    );
    b.screenshot("13-storefront").await;
    b.click("li.offer button.rent").await;
    b.wait_path("/login").await;
    b.fill("#email", "renter@example.com").await;
    b.fill("#password", PASSWORD).await;
    b.click("#log-in").await;
    b.wait_path("/store").await;
    b.click("li.offer button.rent").await;
    b.wait_path("/rentals").await;
    let order = b.wait_text("article.order", "waiting for payment").await;
    assert!(
        order.contains("5.00 USD") && order.contains("store-pi"),
        "{order}"
    );
    b.screenshot("14-renter-order-waiting").await;
    log_out(&b).await;

    // The owner sees the order and confirms the payment; earnings follow (after the 10 % fee).
    log_in(&b, "owner@example.com", "/devices").await;
    b.goto("/rentals").await;
    b.wait_text("#orders", "store-pi").await;
    b.screenshot("15-owner-orders").await;
    b.click("#orders button.confirm-payment").await;
    b.wait_text("#earnings", "4.50 USD").await;
    b.wait_text("#rentals", "active").await;
    log_out(&b).await;

    // The renter now has the login and the commands, and may renew.
    log_in(&b, "renter@example.com", "/rentals").await;
    b.wait_text("#jump-command", "ssh -J").await;
    b.click("button.renew").await;
    b.wait_text(".renewal", "Renewal waiting for payment").await;
    b.screenshot("16-renter-active-renewal").await;
    log_out(&b).await;
    // The owner confirms the renewal like an order.
    log_in(&b, "owner@example.com", "/devices").await;
    b.goto("/rentals").await;
    b.wait_text("#orders", "renewal").await;
    b.click("#orders button.confirm-payment").await;
    b.wait_text("#earnings", "9.00 USD").await;
    log_out(&b).await;
    // Admins see the platform's fees.
    app.user("admin@example.com", Role::Admin).await;
    log_in(&b, "admin@example.com", "/admin/users").await;
    b.goto("/admin/rentals").await;
    b.wait_text("#platform-earnings", "1.00 USD").await;
    log_out(&b).await;
    log_in(&b, "renter@example.com", "/rentals").await;
    b.wait_text("button.renew", "Renew").await;

    // A marketplace buyer's claim link makes that rental theirs.
    let device: uuid::Uuid = offered_online(&app, &owner, "market-pi")
        .await
        .parse()
        .unwrap();
    let price = p2pvps_shared::Money::price(500, "USD").unwrap();
    let mut tx = app.pool.begin().await.unwrap();
    p2pvps_server::market::listings::mark_listed(
        &mut tx,
        "openbazaar",
        device,
        "rent-market",
        &price,
    )
    .await
    .unwrap();
    let taken = p2pvps_server::rentals::orders::take_order(
        &mut tx,
        "openbazaar",
        "QmOrderClaim",
        "rent-market",
        Some(&price),
        1000,
    )
    .await
    .unwrap();
    let p2pvps_server::rentals::orders::Taken::New(rental) = taken else {
        panic!("a new rental")
    };
    let activated = p2pvps_server::rentals::lifecycle::activate(&mut tx, &app.secrets, rental.id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let token = activated
        .claim_token
        .expect("an unclaimed rental has a token");
    b.goto(&format!("/claim/{token}")).await;
    b.click("#claim").await;
    b.wait_path("/rentals").await;
    b.wait_text("main", "market-pi").await;
    // The link works once.
    b.goto(&format!("/claim/{token}")).await;
    b.click("#claim").await;
    b.wait_text(".error-box", "").await;
    b.close().await;
    app.stop().await;
    drop(data);
}

/// On a device whose agent runs hooks, the renter sees "setting up" instead of a login, then (live) that
/// provisioning failed; the owner sees the failure with the hook's words on the rentals list.
#[sqlx::test(migrations = "../sql")]
async fn provisioning_shows_to_the_renter_and_the_owner(pool: PgPool) {
    let (app, data) = start(pool).await;
    let owner = app.user("owner@example.com", Role::Owner).await;
    app.user("renter@example.com", Role::Renter).await;
    let admin = app.user("admin@example.com", Role::Admin).await;
    let (id, credential) = p2pvps_tests::add_device(&owner, "hooked-pi").await;
    let http = reqwest::Client::new();
    let r = http
        .post(app.url("/agent/v1/facts"))
        .basic_auth(&id, Some(&credential))
        .json(&json!({"agent_version": "0.1.0", "hooks": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let g = admin
        .gql(
            "mutation($d: ID!) { grantRental(device: $d, renterEmail: \"renter@example.com\", hours: 2) { id } }",
            json!({"d": id}),
        )
        .await;
    let rental = g.ok().data("grantRental.id").as_str().unwrap().to_owned();

    let b = Browser::start(&app.base, 1280).await;
    log_in(&b, "renter@example.com", "/rentals").await;
    b.wait_text("#provisioning", "setting up your login").await;
    b.screenshot("17-renter-provisioning").await;
    let r = http
        .post(app.url(&format!("/agent/v1/jobs/{rental}/start")))
        .basic_auth(&id, Some(&credential))
        .json(&json!({"ok": false, "message": "useradd: cannot lock /etc/passwd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // Live: the page follows the rental's change without a reload.
    b.wait_text("#provisioning", "Provisioning failed").await;
    log_out(&b).await;

    log_in(&b, "owner@example.com", "/devices").await;
    b.goto("/rentals").await;
    b.wait_text("#rentals .badge.failed", "provisioning failed")
        .await;
    b.wait_text("#rentals .hook-message", "useradd: cannot lock /etc/passwd")
        .await;
    b.screenshot("18-owner-provisioning-failed").await;
    // The owner runs it again: the list follows live ("setting up"), and the agent gets the job again.
    b.click("#rentals button.retry-provisioning").await;
    b.wait_text("#rentals .badge", "setting up").await;
    let jobs: serde_json::Value = http
        .get(app.url("/agent/v1/jobs"))
        .basic_auth(&id, Some(&credential))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs[0]["rental"], rental.as_str(), "{jobs}");
    let r = http
        .post(app.url(&format!("/agent/v1/jobs/{rental}/start")))
        .basic_auth(&id, Some(&credential))
        .json(&json!({"ok": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    log_out(&b).await;

    // Once the hook succeeded, the renter has the login: the jump host's password, and the device's own
    // (the one the hook was given), shown apart.
    log_in(&b, "renter@example.com", "/rentals").await;
    b.wait_text("#jump-command", "ssh -J").await;
    b.wait_text("dl.facts", "Device password").await;
    let device_password = b.text("#rental-device-password").await;
    assert_eq!(device_password, jobs[0]["password"].as_str().unwrap());
    assert_ne!(b.text("#rental-secret").await, device_password);
    b.close().await;
    app.stop().await;
    drop(data);
}

/// GraphiQL at the address the README and `cargo xtask demo` print: it reads the schema (the standard
/// introspection query passes the limits), its docs pane shows the types, and it runs a query with the
/// dashboard's session cookie.
#[sqlx::test(migrations = "../sql")]
async fn graphiql_shows_the_schema_and_runs_queries_with_the_session(pool: PgPool) {
    let (app, data) = start(pool).await;
    app.user("owner@example.com", Role::Owner).await;
    let b = Browser::start(&app.base, 1280).await;
    log_in(&b, "owner@example.com", "/devices").await;

    b.goto("/graphiql").await;
    b.click("button[aria-label='Show Documentation Explorer']")
        .await;
    b.wait_text(".graphiql-doc-explorer", "QueryRoot").await;
    b.click(".graphiql-doc-explorer a.graphiql-doc-explorer-type-name")
        .await;
    b.wait_text(".graphiql-doc-explorer", "offers").await;
    b.screenshot("20-graphiql-docs").await;

    b.client
        .execute(
            "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(arguments[0]);",
            vec![json!("{ me { email } }")],
        )
        .await
        .expect("the query editor takes the query");
    b.click(".graphiql-execute-button").await;
    b.wait_text(".graphiql-response", "owner@example.com").await;
    b.screenshot("21-graphiql-query").await;
    b.close().await;
    app.stop().await;
    drop(data);
}
