//! Sign-up, log-in, log-out, cookie and bearer sessions, the log-in rate limit, disabled accounts.

use p2pvps_shared::Role;
use p2pvps_tests::{PASSWORD, TestApp};
use serde_json::{Value, json};
use sqlx::PgPool;

const ME: &str = "{ me { email role } }";

#[sqlx::test(migrations = "../sql")]
async fn sign_up_sets_an_httponly_strict_cookie_that_signs_in(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let (client, r) = app.sign_up_cookie("Ann@Example.com", "RENTER").await;
    r.ok();
    assert_eq!(r.data("signUp.user.email"), "ann@example.com");
    assert_eq!(r.data("signUp.user.role"), "RENTER");
    assert!(
        r.data("signUp.token").is_null(),
        "cookie sessions never expose the token"
    );
    let cookie = r
        .set_cookie
        .iter()
        .find(|c| c.starts_with("p2pvps_session="))
        .expect("session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");

    let me = client.gql(ME, json!({})).await;
    assert_eq!(me.ok().data("me.email"), "ann@example.com");

    let out = client.gql("mutation { logOut }", json!({})).await;
    assert_eq!(out.ok().data("logOut"), true);
    assert!(
        out.set_cookie
            .iter()
            .any(|c| c.starts_with("p2pvps_session=;") && c.contains("Max-Age=0"))
    );
    assert!(client.gql(ME, json!({})).await.ok().data("me").is_null());
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn bearer_tokens_work_and_log_out_revokes_them(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.sign_up_cookie("bob@example.com", "OWNER").await.1.ok();
    let bob = app.log_in_bearer("bob@example.com").await;
    let token = bob.token.clone().expect("token");
    assert_eq!(token.len(), 43, "32 random bytes in base64url");
    assert_eq!(bob.gql(ME, json!({})).await.ok().data("me.role"), "OWNER");

    // Only a hash of the token is stored.
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions WHERE token_hash = $1")
        .bind(token.as_bytes())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);

    assert_eq!(
        bob.gql("mutation { logOut }", json!({}))
            .await
            .ok()
            .data("logOut"),
        true
    );
    assert!(bob.gql(ME, json!({})).await.ok().data("me").is_null());
    app.anonymous()
        .gql("{ devices { edges { node { id } } } }", json!({}))
        .await
        .assert_code("UNAUTHENTICATED");
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn wrong_password_unknown_user_and_duplicate_email(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.sign_up_cookie("cat@example.com", "OWNER").await.1.ok();
    let login = "mutation($i: LogInInput!) { logIn(input: $i) { user { id } } }";
    let anon = app.anonymous();
    let wrong = anon
        .gql(
            login,
            json!({"i": {"email": "cat@example.com", "password": "nope nope nope"}}),
        )
        .await;
    wrong.assert_code("UNAUTHENTICATED");
    let unknown = anon
        .gql(
            login,
            json!({"i": {"email": "dog@example.com", "password": PASSWORD}}),
        )
        .await;
    unknown.assert_code("UNAUTHENTICATED");
    assert_eq!(
        wrong.message(),
        unknown.message(),
        "no hint whether the account exists"
    );

    let (_, dup) = app.sign_up_cookie("CAT@example.com", "OWNER").await;
    // Sign-up does not say that the e-mail is taken (that would tell who has an account).
    dup.assert_code("BAD_USER_INPUT");
    assert_eq!(dup.field(), None);
    assert!(!dup.message().contains("exists"), "{}", dup.message());
    assert!(dup.message().contains("check them"), "{}", dup.message());
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(users, 1);
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn sign_up_reports_every_bad_field(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let r = app
        .anonymous()
        .gql(
            "mutation($i: SignUpInput!) { signUp(input: $i) { user { id } } }",
            json!({"i": {"email": "not-an-email", "password": "short"}}),
        )
        .await;
    r.assert_code("BAD_USER_INPUT");
    assert_eq!(r.field(), Some("email"));
    let fields = &r.body["errors"][0]["extensions"]["fields"];
    assert!(
        fields["email"].as_str().unwrap().contains("valid e-mail"),
        "{fields}"
    );
    assert!(
        fields["password"].as_str().unwrap().contains("at least 10"),
        "{fields}"
    );
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(users, 0, "nothing written");

    // Admin is not a self sign-up role.
    let r = app
        .anonymous()
        .gql(
            "mutation { signUp(input: {email: \"x@example.com\", password: \"long enough pw\", role: ADMIN}) { user { id } } }",
            json!({}),
        )
        .await;
    r.assert_code("BAD_USER_INPUT");
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn failed_log_ins_block_the_guesser_not_the_owner(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.sign_up_cookie("eve@example.com", "OWNER").await.1.ok();
    let login = "mutation($i: LogInInput!) { logIn(input: $i) { user { id } } }";
    let attacker = app.anonymous();
    let mut codes = Vec::new();
    for _ in 0..11 {
        let r = attacker
            .gql(
                login,
                json!({"i": {"email": "eve@example.com", "password": "wrong password!"}}),
            )
            .await;
        codes.push(r.body["errors"][0]["extensions"]["code"].clone());
    }
    assert_eq!(codes[0], "UNAUTHENTICATED");
    assert_eq!(codes[10], "RATE_LIMITED", "{codes:?}");
    // Even the right password is refused from the guesser's address now ...
    let limited = attacker
        .gql(
            login,
            json!({"i": {"email": "EVE@example.com", "password": PASSWORD}}),
        )
        .await;
    limited.assert_code("RATE_LIMITED");
    assert!(
        limited.body["errors"][0]["extensions"]["retryAfterSeconds"]
            .as_u64()
            .unwrap()
            >= 1
    );
    // ... but the owner, from another address, logs in at once.
    app.anonymous_from(std::net::IpAddr::from([127, 0, 0, 2]))
        .gql(
            login,
            json!({"i": {"email": "eve@example.com", "password": PASSWORD}}),
        )
        .await
        .ok();
    // Right log-ins do not count: other accounts from the guesser's address are not blocked.
    app.sign_up_cookie("fay@example.com", "OWNER").await.1.ok();
    attacker
        .gql(
            login,
            json!({"i": {"email": "fay@example.com", "password": PASSWORD}}),
        )
        .await
        .ok();
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn log_in_guessing_spread_over_addresses_hits_the_accounts_backstop(pool: PgPool) {
    let app = TestApp::start_with(pool, |s| s.login_failures.per_name_per_hour = Some(6)).await;
    app.sign_up_cookie("eve@example.com", "OWNER").await.1.ok();
    let login = "mutation($i: LogInInput!) { logIn(input: $i) { user { id } } }";
    for last in 2..=8u8 {
        let r = app
            .anonymous_from(std::net::IpAddr::from([127, 0, 0, last]))
            .gql(
                login,
                json!({"i": {"email": "eve@example.com", "password": "wrong password!"}}),
            )
            .await;
        r.assert_code("UNAUTHENTICATED");
    }
    let r = app
        .anonymous_from(std::net::IpAddr::from([127, 0, 0, 9]))
        .gql(
            login,
            json!({"i": {"email": "eve@example.com", "password": PASSWORD}}),
        )
        .await;
    r.assert_code("RATE_LIMITED");
    assert!(r.message().contains("from any address"), "{}", r.message());
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn log_in_is_rate_limited_per_address(pool: PgPool) {
    let app = TestApp::start_with(pool, |s| {
        s.login_failures.per_address_per_minute = 4;
    })
    .await;
    let login = "mutation($i: LogInInput!) { logIn(input: $i) { user { id } } }";
    let anon = app.anonymous();
    // Four failures are allowed; the fifth is refused as wrong and blocks the address.
    for i in 0..5 {
        anon.gql(
            login,
            json!({"i": {"email": format!("u{i}@example.com"), "password": PASSWORD}}),
        )
        .await
        .assert_code("UNAUTHENTICATED");
    }
    let r = anon
        .gql(
            login,
            json!({"i": {"email": "new@example.com", "password": PASSWORD}}),
        )
        .await;
    r.assert_code("RATE_LIMITED");
    assert!(r.message().contains("address"), "{}", r.message());
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn sign_ups_and_password_changes_are_limited_per_address(pool: PgPool) {
    let app = TestApp::start_with(pool, |s| s.password_rate_per_address = 2).await;
    app.sign_up_cookie("a@example.com", "OWNER").await.1.ok();
    let (b, r) = app.sign_up_cookie("b@example.com", "OWNER").await;
    r.ok();
    let (_, r) = app.sign_up_cookie("c@example.com", "OWNER").await;
    r.assert_code("RATE_LIMITED");
    assert!(r.message().contains("from this address"), "{}", r.message());
    b.gql(
        "mutation { changePassword(currentPassword: \"x\", newPassword: \"another long pw\") { id } }",
        json!({}),
    )
    .await
    .assert_code("RATE_LIMITED");
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn changing_the_password_ends_the_other_sessions(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let here = app.user("eve@example.com", Role::Owner).await;
    let there = app.anonymous();
    there
        .gql(
            "mutation($i: LogInInput!) { logIn(input: $i) { user { id } } }",
            json!({"i": {"email": "eve@example.com", "password": PASSWORD}}),
        )
        .await
        .ok();
    there.gql("{ me { email } }", json!({})).await.ok();
    here.gql(
        "mutation($c: String!) { changePassword(currentPassword: $c, newPassword: \"a new long password\") { id } }",
        json!({"c": PASSWORD}),
    )
    .await
    .ok();
    assert_eq!(
        here.gql("{ me { email } }", json!({}))
            .await
            .ok()
            .data("me.email"),
        "eve@example.com",
        "the session that changed it stays"
    );
    let r = there.gql("{ me { email } }", json!({})).await;
    assert!(
        r.data("me").is_null(),
        "the other session is over: {}",
        r.body
    );
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn over_https_the_session_cookie_is_host_only_and_a_tossed_one_is_ignored(pool: PgPool) {
    let app = TestApp::start_with(pool, |s| s.cookie_secure = true).await;
    let http = reqwest::Client::new();
    let r = http
        .post(app.url("/graphql"))
        .json(&json!({"query": "mutation { signUp(input: {email: \"c@example.com\", password: \"long enough pw\"}) { user { id } } }"}))
        .send()
        .await
        .unwrap();
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.starts_with("__Host-p2pvps_session="), "{set}");
    for part in ["Secure", "Path=/", "HttpOnly"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.to_lowercase().contains("domain="), "{set}");
    let token = set
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let me = |cookie: String| {
        http.post(app.url("/graphql"))
            .header("cookie", cookie)
            .json(&json!({"query": "{ me { email } }"}))
            .send()
    };
    let body: serde_json::Value = me(format!("__Host-p2pvps_session={token}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"]["me"]["email"], "c@example.com");
    // The same token under the unprefixed name, as a device site under the parent domain could set it.
    let body: serde_json::Value = me(format!("p2pvps_session={token}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body["data"]["me"].is_null(), "{body}");
    app.stop().await;
}

/// Failed log-ins for eve claiming to come from `forwarded_for`; returns the last answer's error code.
async fn log_in_via(app: &TestApp, forwarded_for: &str, password: &str, times: usize) -> Value {
    let mut code = Value::Null;
    for _ in 0..times {
        let body: Value = reqwest::Client::new()
            .post(app.url("/graphql"))
            .header("x-forwarded-for", forwarded_for)
            .json(&json!({
                "query": "mutation($i: LogInInput!) { logIn(input: $i) { user { id } } }",
                "variables": {"i": {"email": "eve@example.com", "password": password}},
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        code = body["errors"][0]["extensions"]["code"].clone();
    }
    code
}

#[sqlx::test(migrations = "../sql")]
async fn behind_a_trusted_proxy_limits_apply_to_the_forwarded_client(pool: PgPool) {
    let app = TestApp::start_with(pool, |s| {
        s.trusted_proxies = p2pvps_server::http::client_address::TrustedProxies(vec![
            "127.0.0.0/8".parse().unwrap(),
        ]);
    })
    .await;
    app.sign_up_cookie("eve@example.com", "OWNER").await.1.ok();
    // One client behind the proxy guesses until blocked; another client behind it logs in at once.
    assert_eq!(
        log_in_via(&app, "203.0.113.1", "wrong password!", 7).await,
        "RATE_LIMITED"
    );
    assert_eq!(
        log_in_via(&app, "203.0.113.2", PASSWORD, 1).await,
        Value::Null
    );
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn without_a_trusted_proxy_forwarded_headers_are_ignored(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.sign_up_cookie("eve@example.com", "OWNER").await.1.ok();
    // A guesser naming a new address each time is still one address.
    for i in 0..7 {
        log_in_via(&app, &format!("203.0.113.{i}"), "wrong password!", 1).await;
    }
    assert_eq!(
        log_in_via(&app, "198.51.100.1", PASSWORD, 1).await,
        "RATE_LIMITED"
    );
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn disabling_a_user_ends_their_sessions_and_blocks_log_in(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let admin = app.user("root@example.com", Role::Admin).await;
    let owner = app.user("own@example.com", Role::Owner).await;
    let id = owner
        .gql("{ me { id } }", json!({}))
        .await
        .data("me.id")
        .as_str()
        .unwrap()
        .to_owned();
    admin.disable_user(id).await;
    assert!(owner.gql(ME, json!({})).await.ok().data("me").is_null());
    app.anonymous()
        .gql(
            "mutation($i: LogInInput!) { logIn(input: $i) { user { id } } }",
            json!({"i": {"email": "own@example.com", "password": PASSWORD}}),
        )
        .await
        .assert_code("UNAUTHENTICATED");
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn change_password_checks_the_current_one(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let owner = app.user("pw@example.com", Role::Owner).await;
    let m = "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) { email } }";
    let r = owner
        .gql(
            m,
            json!({"c": "not it at all", "n": "a brand new password"}),
        )
        .await;
    r.assert_code("BAD_USER_INPUT");
    assert_eq!(r.field(), Some("currentPassword"));
    let r = owner.gql(m, json!({"c": PASSWORD, "n": "tiny"})).await;
    assert_eq!(r.field(), Some("newPassword"));
    owner
        .gql(m, json!({"c": PASSWORD, "n": "a brand new password"}))
        .await
        .ok();
    app.anonymous()
        .gql(
            "mutation($i: LogInInput!) { logIn(input: $i) { user { id } } }",
            json!({"i": {"email": "pw@example.com", "password": "a brand new password"}}),
        )
        .await
        .ok();
    app.stop().await;
}
