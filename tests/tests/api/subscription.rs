//! `deviceStatusChanged` over a real websocket (graphql-transport-ws), fed through Postgres NOTIFY from
//! another server instance on the same database.

use futures::SinkExt;
use p2pvps_server::devices;
use p2pvps_shared::{DeviceStatus, Role};
use p2pvps_tests::{TestApp, add_device};
use serde_json::json;
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::Message;

use p2pvps_tests::ws::{connect, connect_with, next_json, subscribe};

#[sqlx::test(migrations = "../sql")]
async fn status_changes_reach_subscribers_across_instances(pool: PgPool) {
    let a = TestApp::start(pool.clone()).await;
    let b = TestApp::start(pool).await;
    let owner = a.user("o@example.com", Role::Owner).await;
    let other = a.user("x@example.com", Role::Owner).await;
    let (mine, _) = add_device(&owner, "mine").await;
    let (theirs, _) = add_device(&other, "theirs").await;

    let mut ws = connect(&a, owner.token.as_deref().unwrap()).await;
    let query = "subscription { deviceStatusChanged { deviceId status } }";
    // `subscribe` waits for a ping round trip, so the server has taken the subscription before we change
    // anything (graphql-transport-ws acknowledges nothing itself).
    subscribe(&mut ws, "1", query).await;
    // The other owner's subscription on the same instance must not see our device.
    let mut ws_other = connect(&a, other.token.as_deref().unwrap()).await;
    subscribe(&mut ws_other, "1", query).await;

    // Changed through instance B's pool: reaches A only through Postgres.
    devices::status::record_status(&b.pool, theirs.parse().unwrap(), DeviceStatus::Online)
        .await
        .unwrap();
    devices::status::record_status(&b.pool, mine.parse().unwrap(), DeviceStatus::Online)
        .await
        .unwrap();
    let msg = next_json(&mut ws).await;
    assert_eq!(msg["type"], "next", "{msg}");
    assert_eq!(
        msg["payload"]["data"]["deviceStatusChanged"]["deviceId"],
        mine.as_str(),
        "only my device: {msg}"
    );
    assert_eq!(
        msg["payload"]["data"]["deviceStatusChanged"]["status"],
        "ONLINE"
    );

    let msg = next_json(&mut ws_other).await;
    assert_eq!(
        msg["payload"]["data"]["deviceStatusChanged"]["deviceId"],
        theirs.as_str(),
        "{msg}"
    );

    // Unauthenticated subscriptions are refused with a code.
    let mut anon = connect(&a, "not-a-token").await;
    let sub = json!({"id": "1", "type": "subscribe", "payload": {"query": query}});
    anon.send(Message::Text(sub.to_string().into()))
        .await
        .unwrap();
    let msg = next_json(&mut anon).await;
    assert_eq!(msg["type"], "next", "{msg}");
    assert!(msg["payload"]["data"].is_null(), "{msg}");
    assert_eq!(
        msg["payload"]["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
    assert_eq!(next_json(&mut anon).await["type"], "complete");
    a.stop().await;
    b.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn the_session_cookie_authenticates_same_origin_websockets_only(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let (client, r) = app.sign_up_cookie("c@example.com", "OWNER").await;
    r.ok();
    let cookie = r.set_cookie[0].split(';').next().unwrap().to_owned();
    let (device, _) = add_device(&client, "pi").await;
    let host = app.base.trim_start_matches("http://").to_owned();
    let sub = json!({"id": "1", "type": "subscribe", "payload": {"query": "subscription { deviceStatusChanged { deviceId } }"}});

    let evil = connect_with(
        &app,
        &[
            ("cookie", cookie.as_str()),
            ("origin", "https://evil.example"),
        ],
        json!({}),
    )
    .await;
    let mut evil = evil;
    evil.send(Message::Text(sub.to_string().into()))
        .await
        .unwrap();
    let msg = next_json(&mut evil).await;
    assert_eq!(
        msg["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{msg}"
    );

    let origin = format!("http://{host}");
    let mut ws = connect_with(
        &app,
        &[("cookie", cookie.as_str()), ("origin", origin.as_str())],
        json!({}),
    )
    .await;
    subscribe(
        &mut ws,
        "1",
        "subscription { deviceStatusChanged { deviceId } }",
    )
    .await;
    devices::status::record_status(&app.pool, device.parse().unwrap(), DeviceStatus::Offline)
        .await
        .unwrap();
    let msg = next_json(&mut ws).await;
    assert_eq!(
        msg["payload"]["data"]["deviceStatusChanged"]["deviceId"],
        device.as_str(),
        "{msg}"
    );
    app.stop().await;
}

/// Waits until the server closes the websocket (a close frame, an error or the end of the stream).
async fn closed_by_the_server(ws: &mut p2pvps_tests::ws::Ws) {
    use futures::StreamExt;
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the websocket stayed open");
}

#[sqlx::test(migrations = "../sql")]
async fn subscriptions_end_when_the_user_is_disabled_demoted_or_logged_out(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let admin = app.user("root@example.com", Role::Admin).await;
    let id_of = |email: &'static str| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, uuid::Uuid>("SELECT id FROM users WHERE email = $1")
                .bind(email)
                .fetch_one(&pool)
                .await
                .unwrap()
                .to_string()
        }
    };
    let query = "subscription { deviceStatusChanged { deviceId status } }";

    // Disabled.
    let owner = app.user("own@example.com", Role::Owner).await;
    let mut ws = connect(&app, owner.token.as_deref().unwrap()).await;
    subscribe(&mut ws, "s", query).await;
    admin.disable_user(id_of("own@example.com").await).await;
    closed_by_the_server(&mut ws).await;

    // An admin demoted.
    let other = app.user("other-admin@example.com", Role::Admin).await;
    let mut ws = connect(&app, other.token.as_deref().unwrap()).await;
    subscribe(&mut ws, "s", query).await;
    admin
        .gql(
            "mutation($u: ID!) { setUserRole(userId: $u, role: OWNER) { role } }",
            json!({"u": id_of("other-admin@example.com").await}),
        )
        .await
        .ok();
    closed_by_the_server(&mut ws).await;

    // The session logged out elsewhere; another user's subscription is untouched.
    let renter = app.user("rent@example.com", Role::Renter).await;
    let mut ws = connect(&app, renter.token.as_deref().unwrap()).await;
    subscribe(&mut ws, "s", query).await;
    let mut bystander = connect(&app, admin.token.as_deref().unwrap()).await;
    subscribe(&mut bystander, "s", query).await;
    renter.gql("mutation { logOut }", json!({})).await.ok();
    closed_by_the_server(&mut ws).await;
    bystander
        .send(Message::Text(json!({"type": "ping"}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut bystander).await["type"], "pong");
    app.stop().await;
}
