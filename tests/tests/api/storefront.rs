//! The direct storefront: anyone browses the devices for rent; a renter orders one, pays (confirmed by
//! hand by the owner, or by a provider's signed callback) and logs in with real OpenSSH; orders can be
//! cancelled and expire; the ledger balances per order.

use p2pvps_server::billing::payments::{
    Opened, PaymentError, PaymentProvider, PaymentRequest, Providers, Settled,
};
use p2pvps_shared::{Money, Role};
use p2pvps_tests::openssh::{DeviceSshd, SshKit, Via, output};
use p2pvps_tests::{Client, TestApp, offer_of, status_listener, wait_status, ws};
use serde_json::json;
use sqlx::PgPool;
use std::sync::Arc;

const OFFERS: &str = "{ offers { id name price { minor currency } rentalHours hardware { cpuCores memoryMb } uptime(hours: 168) { onlineFraction } } }";
const ORDER: &str = "mutation($o: ID!) { orderRental(offer: $o) { id state deviceName price { minor currency } \
                     payment { provider state instructions confirmedByHand amount { minor currency } } login { name } } }";
const CONFIRM: &str = "mutation($r: ID!) { confirmPayment(rental: $r) { id state endsAt } }";
const CANCEL: &str = "mutation($r: ID!) { cancelOrder(rental: $r) { id state payment { state } } }";

/// A priced device, offered for rent, as its owner creates it. Returns (id, credential, tunnel port).
async fn offered_device(owner: &Client, name: &str) -> (String, String, u16) {
    let d = p2pvps_tests::create_device(
        owner,
        json!({"name": name, "subdomain": name, "forRent": true, "rentalHours": 24,
               "price": {"minor": 500, "currency": "USD"},
               "hardware": {"cpuCores": 4, "memoryMb": 4096}}),
    )
    .await;
    (d.id, d.credential, d.port)
}

/// Per order and currency, the ledger's entries sum to zero.
async fn assert_ledger_balances(pool: &PgPool, rental: &str) -> i64 {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT currency, sum(amount_minor)::bigint, count(*) FROM ledger_entries WHERE rental_id = $1::uuid GROUP BY currency",
    )
    .bind(rental)
    .fetch_all(pool)
    .await
    .unwrap();
    for (currency, sum, _) in &rows {
        assert_eq!(
            *sum, 0,
            "the ledger of {rental} in {currency} sums to {sum}"
        );
    }
    rows.iter().map(|r| r.2).sum()
}

#[sqlx::test(migrations = "../sql")]
async fn a_renter_buys_from_the_storefront_and_logs_in_once_the_owner_confirms_payment(
    pool: PgPool,
) {
    let dir = p2pvps_tests::temp_dir("p2pvps-data-");
    let app = TestApp::start_with_ssh(pool, dir.path(), 0).await;
    let owner = app.user("owner@example.com", Role::Owner).await;
    let other_owner = app.user("other@example.com", Role::Owner).await;
    let renter = app.user("renter@example.com", Role::Renter).await;
    let second = app.user("second@example.com", Role::Renter).await;
    let admin = app.user("admin@example.com", Role::Admin).await;
    let (id, credential, port) = offered_device(&owner, "shop-pi").await;

    // Offline devices are not offered.
    let none = app.anonymous().gql(OFFERS, json!({})).await;
    assert_eq!(none.ok().data("offers"), &json!([]));
    renter
        .gql(ORDER, json!({"o": offer_of(&app.pool, &id).await}))
        .await
        .assert_code("CONFLICT");

    let sshd = DeviceSshd::start().await;
    let kit = SshKit::new(dir.path(), app.ssh_addr());
    let mut status = status_listener(&app.pool).await;
    let _device = kit.device(&id, &credential, port, sshd.port);
    wait_status(&mut status, &id, "online").await;

    // Anyone sees the offer: price, period, hardware and record; not who owns it or how to reach it.
    let offers = app.anonymous().gql(OFFERS, json!({})).await;
    let offer = offers.ok().data("offers.0");
    assert_eq!(offer["id"], offer_of(&app.pool, &id).await.as_str());
    assert_eq!(offer["price"], json!({"minor": 500, "currency": "USD"}));
    assert_eq!(offer["rentalHours"], 24);
    assert_eq!(offer["hardware"], json!({"cpuCores": 4, "memoryMb": 4096}));
    assert!(offer["uptime"]["onlineFraction"].as_f64().unwrap() > 0.0);
    app.anonymous()
        .gql("{ offers { tunnelPort } }", json!({}))
        .await
        .assert_code("BAD_USER_INPUT");

    // Ordering needs an account, and not the device's owner.
    app.anonymous()
        .gql(ORDER, json!({"o": offer_of(&app.pool, &id).await}))
        .await
        .assert_code("UNAUTHENTICATED");
    owner
        .gql(ORDER, json!({"o": offer_of(&app.pool, &id).await}))
        .await
        .assert_code("FORBIDDEN");

    // The renter subscribes to their rentals' changes before ordering.
    let mut live = ws::connect(&app, renter.token.as_deref().unwrap()).await;
    ws::subscribe(
        &mut live,
        "r",
        "subscription { rentalChanged { rentalId state } }",
    )
    .await;

    let order = renter
        .gql(ORDER, json!({"o": offer_of(&app.pool, &id).await}))
        .await;
    let o = order.ok().data("orderRental");
    let rental = o["id"].as_str().unwrap().to_owned();
    assert_eq!(o["state"], "ORDERED");
    assert_eq!(o["deviceName"], "shop-pi");
    assert_eq!(o["payment"]["provider"], "manual");
    assert_eq!(o["payment"]["state"], "pending");
    assert_eq!(o["payment"]["confirmedByHand"], true);
    assert_eq!(
        o["payment"]["amount"],
        json!({"minor": 500, "currency": "USD"})
    );
    let instructions = o["payment"]["instructions"].as_str().unwrap();
    assert!(
        instructions.contains("5.00 USD") && instructions.contains(&rental),
        "{instructions}"
    );
    assert!(o["login"].is_null(), "no login before payment");
    let event = ws::next_json(&mut live).await;
    assert_eq!(
        event["payload"]["data"]["rentalChanged"],
        json!({"rentalId": rental, "state": "ORDERED"})
    );

    // The order reserves the device: it leaves the storefront and nobody else can order it.
    let offers = app.anonymous().gql(OFFERS, json!({})).await;
    assert_eq!(offers.ok().data("offers"), &json!([]));
    second
        .gql(ORDER, json!({"o": offer_of(&app.pool, &id).await}))
        .await
        .assert_code("CONFLICT");

    // The owner sees the order waiting; the renter cannot confirm their own payment, nor can a stranger.
    let waiting = owner
        .gql(
            "{ orders { id state deviceName payment { state } } }",
            json!({}),
        )
        .await;
    assert_eq!(waiting.ok().data("orders.0.id"), rental.as_str());
    let theirs = other_owner.gql("{ orders { id } }", json!({})).await;
    assert_eq!(theirs.ok().data("orders"), &json!([]));
    renter
        .gql(CONFIRM, json!({"r": rental}))
        .await
        .assert_code("FORBIDDEN");
    other_owner
        .gql(CONFIRM, json!({"r": rental}))
        .await
        .assert_code("NOT_FOUND");

    // The owner confirms; a second click changes nothing.
    let confirmed = owner.gql(CONFIRM, json!({"r": rental})).await;
    assert_eq!(confirmed.ok().data("confirmPayment.state"), "ACTIVE");
    let ends_at = confirmed.data("confirmPayment.endsAt").clone();
    let again = owner.gql(CONFIRM, json!({"r": rental})).await;
    assert_eq!(again.ok().data("confirmPayment.state"), "ACTIVE");
    assert_eq!(again.data("confirmPayment.endsAt"), &ends_at);
    owner
        .gql(CANCEL, json!({"r": rental}))
        .await
        .assert_code("CONFLICT");
    let mut states = Vec::new();
    while states.last().map(String::as_str) != Some("ACTIVE") {
        let event = ws::next_json(&mut live).await;
        states.push(
            event["payload"]["data"]["rentalChanged"]["state"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(states, ["PAID", "ACTIVE"]);

    // The renter now has a login, and it works through real OpenSSH both ways.
    let mine = renter
        .gql(
            "{ rentals { id state payment { state } login { name secret } connection { subdomain devicePort } } }",
            json!({}),
        )
        .await;
    mine.ok();
    assert_eq!(mine.data("rentals.0.payment.state"), "confirmed");
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
    assert_eq!(mine.data("rentals.0.connection.devicePort"), port);
    let by_port = output(kit.renter(&sshd, Via::Port(port), &["echo", "bought-by-port"])).await;
    assert_eq!(by_port.trim(), "bought-by-port");
    let jump = Via::Jump {
        login: &login,
        secret: &secret,
        subdomain: "shop-pi",
    };
    let by_jump = output(kit.renter(&sshd, jump, &["echo", "bought-by-jump"])).await;
    assert_eq!(by_jump.trim(), "bought-by-jump");

    // One payment in the ledger (renter → platform 10 % + owner 90 %), balanced.
    assert_eq!(assert_ledger_balances(&app.pool, &rental).await, 3);
    let earned = owner
        .gql("{ me { earnings { minor currency } } }", json!({}))
        .await;
    assert_eq!(
        earned.ok().data("me.earnings"),
        &json!([{"minor": 450, "currency": "USD"}])
    );
    let platform = admin
        .gql("{ platformEarnings { minor currency } }", json!({}))
        .await;
    assert_eq!(
        platform.ok().data("platformEarnings"),
        &json!([{"minor": 50, "currency": "USD"}])
    );
    let audit = admin.gql("{ auditLog { action } }", json!({})).await;
    let actions: Vec<&str> = audit
        .ok()
        .data("auditLog")
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"rental.order") && actions.contains(&"rental.pay"),
        "{actions:?}"
    );
    app.stop().await;
    drop(dir);
}

/// Marks a device online without a tunnel (for tests of ordering rules only).
async fn set_online(pool: &PgPool, device: &str) {
    sqlx::query("UPDATE devices SET status = 'online', last_seen = now() WHERE id = $1::uuid")
        .bind(device)
        .execute(pool)
        .await
        .unwrap();
}

#[sqlx::test(migrations = "../sql")]
async fn orders_are_cancelled_by_hand_or_by_expiry_and_then_cannot_be_paid(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let owner = app.user("owner@example.com", Role::Owner).await;
    let renter = app.user("renter@example.com", Role::Renter).await;
    let stranger = app.user("stranger@example.com", Role::Renter).await;
    let admin = app.user("admin@example.com", Role::Admin).await;
    let (id, _, _) = offered_device(&owner, "cancel-pi").await;
    set_online(&app.pool, &id).await;

    // The renter cancels; a stranger cannot; the device is offered again; the payment cannot follow.
    let first = renter
        .gql(ORDER, json!({"o": offer_of(&app.pool, &id).await}))
        .await;
    let first = first
        .ok()
        .data("orderRental.id")
        .as_str()
        .unwrap()
        .to_owned();
    stranger
        .gql(CANCEL, json!({"r": first}))
        .await
        .assert_code("NOT_FOUND");
    let cancelled = renter.gql(CANCEL, json!({"r": first})).await;
    assert_eq!(cancelled.ok().data("cancelOrder.state"), "CANCELLED");
    assert_eq!(cancelled.data("cancelOrder.payment.state"), "failed");
    let offers = app.anonymous().gql("{ offers { id } }", json!({})).await;
    assert_eq!(
        offers.ok().data("offers.0.id"),
        offer_of(&app.pool, &id).await.as_str()
    );
    owner
        .gql(CONFIRM, json!({"r": first}))
        .await
        .assert_code("CONFLICT");

    // An admin may cancel too.
    let second = renter
        .gql(ORDER, json!({"o": offer_of(&app.pool, &id).await}))
        .await;
    let second = second
        .ok()
        .data("orderRental.id")
        .as_str()
        .unwrap()
        .to_owned();
    let by_admin = admin.gql(CANCEL, json!({"r": second})).await;
    assert_eq!(by_admin.ok().data("cancelOrder.state"), "CANCELLED");

    // An order left unpaid past the hold is cancelled by the housekeeping pass.
    let third = renter
        .gql(ORDER, json!({"o": offer_of(&app.pool, &id).await}))
        .await;
    let third = third
        .ok()
        .data("orderRental.id")
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        p2pvps_server::billing::storefront::expire(
            &app.pool,
            p2pvps_server::billing::storefront::DEFAULT_ORDER_HOLD
        )
        .await
        .unwrap(),
        0,
        "a fresh order is kept"
    );
    sqlx::query(
        "UPDATE rentals SET created_at = now() - interval '31 minutes' WHERE id = $1::uuid",
    )
    .bind(&third)
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        p2pvps_server::billing::storefront::expire(
            &app.pool,
            p2pvps_server::billing::storefront::DEFAULT_ORDER_HOLD
        )
        .await
        .unwrap(),
        1
    );
    let gone = renter
        .gql("{ rentals(view: RENTER) { id state } }", json!({}))
        .await;
    let states: Vec<(&str, &str)> = gone
        .ok()
        .data("rentals")
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["state"].as_str().unwrap()))
        .collect();
    assert!(
        states.contains(&(third.as_str(), "CANCELLED")),
        "{states:?}"
    );
    owner
        .gql(CONFIRM, json!({"r": third}))
        .await
        .assert_code("CONFLICT");
    // Nothing was ever paid: no ledger entries for any of them.
    for r in [&first, &second, &third] {
        assert_eq!(assert_ledger_balances(&app.pool, r).await, 0);
    }

    // An owner may rent someone else's device, and sees it among their own rentals as renter.
    let (theirs, _, _) = offered_device(&admin, "admin-pi").await;
    set_online(&app.pool, &theirs).await;
    let bought = owner
        .gql(ORDER, json!({"o": offer_of(&app.pool, &theirs).await}))
        .await;
    let bought = bought
        .ok()
        .data("orderRental.id")
        .as_str()
        .unwrap()
        .to_owned();
    let as_renter = owner
        .gql("{ rentals(view: RENTER) { id } }", json!({}))
        .await;
    assert_eq!(as_renter.ok().data("rentals"), &json!([{"id": bought}]));
    let as_owner = owner.gql("{ rentals { id } }", json!({})).await;
    assert!(
        as_owner
            .ok()
            .data("rentals")
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"] != bought.as_str()),
        "by default an owner sees their devices' rentals"
    );

    // A device withdrawn from rent cannot be ordered.
    owner
        .gql(
            "mutation($d: ID!) { updateDevice(id: $d, input: {forRent: false}) { id } }",
            json!({"d": id}),
        )
        .await
        .ok();
    renter
        .gql(ORDER, json!({"o": offer_of(&app.pool, &id).await}))
        .await
        .assert_code("CONFLICT");
    app.stop().await;
}

/// A provider confirmed by its own signed callback, as BTCPay is: the callback carries the invoice id and
/// the amount paid, signed with a shared secret (here simply compared).
struct SignedCallbacks;

#[async_trait::async_trait]
impl PaymentProvider for SignedCallbacks {
    fn name(&self) -> &'static str {
        "signed"
    }

    async fn open(&self, request: &PaymentRequest<'_>) -> Result<Opened, PaymentError> {
        Ok(Opened {
            external_ref: format!("inv-{}", request.rental.simple()),
            instructions: "Pay on the checkout page.".to_owned(),
            checkout_url: Some(format!("https://pay.example/i/{}", request.rental.simple())),
        })
    }

    fn webhook(
        &self,
        headers: &axum::http::HeaderMap,
        body: &[u8],
    ) -> Result<Option<Settled>, PaymentError> {
        if headers.get("x-signature").and_then(|v| v.to_str().ok()) != Some("shared-secret") {
            return Err(PaymentError::BadSignature);
        }
        let event: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| PaymentError::BadCallback(e.to_string()))?;
        if !event.is_object() {
            return Err(PaymentError::BadCallback("not an event object".into()));
        }
        if event["type"] != "InvoiceSettled" {
            return Ok(None);
        }
        let field = |k: &str| {
            event[k]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| PaymentError::BadCallback(format!("no {k}")))
        };
        let paid = Money::price(
            event["minor"]
                .as_i64()
                .ok_or_else(|| PaymentError::BadCallback("no minor".into()))?,
            &field("currency")?,
        )
        .map_err(|e| PaymentError::BadCallback(e.to_string()))?;
        Ok(Some(Settled {
            external_ref: field("invoice")?,
            paid,
        }))
    }
}

#[sqlx::test(migrations = "../sql")]
async fn a_provider_callback_settles_an_order_once_and_forged_ones_are_refused(pool: PgPool) {
    let app = TestApp::start_with(pool, |s| {
        s.payments = Providers::new(Arc::new(SignedCallbacks));
    })
    .await;
    let owner = app.user("owner@example.com", Role::Owner).await;
    let renter = app.user("renter@example.com", Role::Renter).await;
    let (id, _, _) = offered_device(&owner, "paid-pi").await;
    set_online(&app.pool, &id).await;
    let order = renter
        .gql(ORDER, json!({"o": offer_of(&app.pool, &id).await}))
        .await;
    let o = order.ok().data("orderRental");
    let rental = o["id"].as_str().unwrap().to_owned();
    assert_eq!(o["payment"]["provider"], "signed");
    assert_eq!(o["payment"]["confirmedByHand"], false);
    // Not confirmable by hand.
    owner
        .gql(CONFIRM, json!({"r": rental}))
        .await
        .assert_code("CONFLICT");

    let http = reqwest::Client::new();
    let invoice = format!("inv-{}", uuid::Uuid::parse_str(&rental).unwrap().simple());
    let callback = |signature: &'static str, body: serde_json::Value| {
        http.post(app.url("/payments/signed/callback"))
            .header("x-signature", signature)
            .body(body.to_string())
            .send()
    };
    let settled =
        json!({"type": "InvoiceSettled", "invoice": invoice, "minor": 500, "currency": "USD"});
    assert_eq!(
        callback("forged", settled.clone()).await.unwrap().status(),
        401
    );
    let short =
        json!({"type": "InvoiceSettled", "invoice": invoice, "minor": 100, "currency": "USD"});
    assert_eq!(
        callback("shared-secret", short).await.unwrap().status(),
        409
    );
    let other = json!({"type": "InvoiceCreated"});
    assert_eq!(
        callback("shared-secret", other).await.unwrap().status(),
        200
    );
    let garbage = callback("shared-secret", json!("not an event"))
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    let state = |r: &str| {
        let r = r.to_owned();
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT state FROM rentals WHERE id = $1::uuid")
                .bind(r)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(state(&rental).await, "ordered", "nothing half-applied");

    // Settled, and settled again (providers retry): one rental start, one payment in the ledger.
    for _ in 0..2 {
        let ok = callback("shared-secret", settled.clone()).await.unwrap();
        assert_eq!(ok.status(), 200);
    }
    assert_eq!(state(&rental).await, "active");
    assert_eq!(assert_ledger_balances(&app.pool, &rental).await, 3);
    let mine = renter
        .gql(
            "{ rentals { login { name } payment { checkoutUrl state } } }",
            json!({}),
        )
        .await;
    assert!(mine.ok().data("rentals.0.login.name").is_string());
    assert_eq!(mine.data("rentals.0.payment.state"), "confirmed");

    // Unknown providers and providers without callbacks answer 404.
    let unknown = http
        .post(app.url("/payments/nope/callback"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn the_manual_provider_takes_no_callbacks(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let r = reqwest::Client::new()
        .post(app.url("/payments/manual/callback"))
        .body(r#"{"type":"InvoiceSettled"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("takes no callbacks"),
        "{body}"
    );
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn a_renewal_extends_the_rental_and_offline_time_beyond_the_grace_is_refunded_at_the_end(
    pool: PgPool,
) {
    let app = TestApp::start(pool).await;
    let owner = app.user("owner@example.com", Role::Owner).await;
    let renter = app.user("renter@example.com", Role::Renter).await;
    let stranger = app.user("stranger@example.com", Role::Renter).await;
    let admin = app.user("admin@example.com", Role::Admin).await;
    let (id, _, _) = offered_device(&owner, "renew-pi").await;
    set_online(&app.pool, &id).await;
    let order = renter
        .gql(ORDER, json!({"o": offer_of(&app.pool, &id).await}))
        .await;
    let rental = order
        .ok()
        .data("orderRental.id")
        .as_str()
        .unwrap()
        .to_owned();
    let first = owner.gql(CONFIRM, json!({"r": rental})).await;
    let first_end = first
        .ok()
        .data("confirmPayment.endsAt")
        .as_str()
        .unwrap()
        .to_owned();

    // The renter renews: a payment waits (one at a time); nobody else may renew it.
    let renew = "mutation($r: ID!) { renewRental(rental: $r) { id state payment { state amount { minor } } } }";
    let renewal = renter.gql(renew, json!({"r": rental})).await;
    assert_eq!(renewal.ok().data("renewRental.state"), "ACTIVE");
    assert_eq!(renewal.data("renewRental.payment.state"), "pending");
    assert_eq!(renewal.data("renewRental.payment.amount.minor"), 500);
    renter
        .gql(renew, json!({"r": rental}))
        .await
        .assert_code("CONFLICT");
    stranger
        .gql(renew, json!({"r": rental}))
        .await
        .assert_code("NOT_FOUND");
    // The owner sees it waiting, as an order.
    let waiting = owner.gql("{ orders { id state } }", json!({})).await;
    assert_eq!(
        waiting.ok().data("orders"),
        &json!([{"id": rental, "state": "ACTIVE"}])
    );
    // Confirmed: one more period (24 h), a second payment in the ledger.
    let second = owner.gql(CONFIRM, json!({"r": rental})).await;
    let second_end = second.ok().data("confirmPayment.endsAt").as_str().unwrap();
    let hours = |a: &str, b: &str| {
        let a = chrono::DateTime::parse_from_rfc3339(a).unwrap();
        let b = chrono::DateTime::parse_from_rfc3339(b).unwrap();
        (b - a).num_hours()
    };
    assert_eq!(hours(&first_end, second_end), 24);
    assert_eq!(assert_ledger_balances(&app.pool, &rental).await, 6);
    // A renewal can also be cancelled before it is paid.
    renter.gql(renew, json!({"r": rental})).await.ok();
    let cancelled = renter.gql(CANCEL, json!({"r": rental})).await;
    assert_eq!(cancelled.ok().data("cancelOrder.state"), "ACTIVE");
    assert_eq!(cancelled.data("cancelOrder.payment.state"), "failed");

    // The rental ran 48 h, during which the device was offline 4 h: 3.5 h beyond the 30 min grace is
    // refunded pro rata (of 10.00 USD paid: 0.72, 0.07 of it from the platform's fee).
    sqlx::query(
        "UPDATE rentals SET starts_at = now() - interval '48 hours', ends_at = now() + interval '1 hour' WHERE id = $1::uuid",
    )
    .bind(&rental)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO device_status_history (device_id, status, at) VALUES \
         ($1::uuid, 'online', now() - interval '49 hours'), ($1::uuid, 'offline', now() - interval '40 hours'), \
         ($1::uuid, 'online', now() - interval '36 hours')",
    )
    .bind(&id)
    .execute(&app.pool)
    .await
    .unwrap();
    let ended = admin
        .gql(
            "mutation($r: ID!) { endRental(id: $r) { state } }",
            json!({"r": rental}),
        )
        .await;
    assert_eq!(ended.ok().data("endRental.state"), "ENDED");
    assert_eq!(assert_ledger_balances(&app.pool, &rental).await, 9);
    let refund = 1000 * (3 * 3600 + 1800) / (48 * 3600);
    let from_platform = 100 * (3 * 3600 + 1800) / (48 * 3600);
    let earned = owner.gql("{ me { earnings { minor } } }", json!({})).await;
    assert_eq!(
        earned.ok().data("me.earnings.0.minor"),
        900 - (refund - from_platform)
    );
    let platform = admin.gql("{ platformEarnings { minor } }", json!({})).await;
    assert_eq!(
        platform.ok().data("platformEarnings.0.minor"),
        100 - from_platform
    );
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn a_disabled_owners_devices_are_not_offered(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let owner = app.user("owner@example.com", Role::Owner).await;
    let admin = app.user("admin@example.com", Role::Admin).await;
    let (id, _, _) = offered_device(&owner, "idle-pi").await;
    p2pvps_server::devices::status::record_status(
        &app.pool,
        id.parse().unwrap(),
        p2pvps_shared::DeviceStatus::Online,
    )
    .await
    .unwrap();
    let offers = app.anonymous().gql("{ offers { name } }", json!({})).await;
    assert_eq!(offers.ok().data("offers"), &json!([{"name": "idle-pi"}]));
    let owner_id: uuid::Uuid =
        sqlx::query_scalar("SELECT owner_id FROM devices WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    admin.disable_user(owner_id).await;
    let offers = app.anonymous().gql("{ offers { name } }", json!({})).await;
    assert_eq!(offers.ok().data("offers"), &json!([]));
    app.stop().await;
}

/// `n` priced devices of `owner`, online; returns their offer ids.
async fn offers_online(app: &TestApp, owner: &Client, prefix: &str, n: usize) -> Vec<String> {
    let mut offers = Vec::new();
    for i in 0..n {
        let (id, _, _) = offered_device(owner, &format!("{prefix}-{i}")).await;
        set_online(&app.pool, &id).await;
        offers.push(offer_of(&app.pool, &id).await);
    }
    offers
}

/// The storefront orders of `renter` waiting for payment, counted in the database.
async fn unpaid_orders(pool: &PgPool, renter: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM rentals r JOIN users u ON u.id = r.renter_id \
         WHERE u.email = $1 AND r.state = 'ordered'",
    )
    .bind(renter)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = "../sql")]
async fn a_renter_holds_at_most_two_unpaid_orders_until_one_is_paid_or_cancelled(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let owner = app.user("owner@example.com", Role::Owner).await;
    let renter = app.user("renter@example.com", Role::Renter).await;
    let other = app.user("other@example.com", Role::Renter).await;
    let offers = offers_online(&app, &owner, "hoard", 5).await;

    let mut orders = Vec::new();
    for offer in &offers[..2] {
        let placed = renter.gql(ORDER, json!({"o": offer})).await;
        orders.push(
            placed
                .ok()
                .data("orderRental.id")
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let third = renter.gql(ORDER, json!({"o": offers[2]})).await;
    third.assert_code("CONFLICT");
    assert!(
        third.message().contains("2 unpaid orders") && third.message().contains("pay or cancel"),
        "{}",
        third.message()
    );
    assert_eq!(unpaid_orders(&app.pool, "renter@example.com").await, 2);
    // The device stays free for someone else, whose own cap is untouched.
    other.gql(ORDER, json!({"o": offers[2]})).await.ok();

    // Cancelling one lets another through.
    renter.gql(CANCEL, json!({"r": orders[0]})).await.ok();
    renter.gql(ORDER, json!({"o": offers[3]})).await.ok();
    renter
        .gql(ORDER, json!({"o": offers[4]}))
        .await
        .assert_code("CONFLICT");

    // A paid order no longer counts.
    owner.gql(CONFIRM, json!({"r": orders[1]})).await.ok();
    renter.gql(ORDER, json!({"o": offers[4]})).await.ok();
    assert_eq!(unpaid_orders(&app.pool, "renter@example.com").await, 2);
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn concurrent_orders_of_one_renter_do_not_pass_the_cap(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let owner = app.user("owner@example.com", Role::Owner).await;
    let renter = app.user("renter@example.com", Role::Renter).await;
    let offers = offers_online(&app, &owner, "race", 8).await;

    let answers = futures::future::join_all(
        offers
            .iter()
            .map(|offer| renter.gql(ORDER, json!({"o": offer}))),
    )
    .await;
    let placed = answers.iter().filter(|a| a.code().is_none()).count();
    for refused in answers.iter().filter(|a| a.code().is_some()) {
        refused.assert_code("CONFLICT");
    }
    let said: Vec<&str> = answers.iter().map(|a| a.message()).collect();
    assert_eq!(placed, 2, "{said:?}");
    assert_eq!(unpaid_orders(&app.pool, "renter@example.com").await, 2);
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn an_unpaid_order_is_cancelled_once_the_configured_hold_has_passed(pool: PgPool) {
    let hold = std::time::Duration::from_secs(10 * 60);
    let app = TestApp::start_with(pool, |s| s.orders.hold = hold).await;
    let owner = app.user("owner@example.com", Role::Owner).await;
    let renter = app.user("renter@example.com", Role::Renter).await;
    let offers = offers_online(&app, &owner, "hold", 2).await;
    let mut orders = Vec::new();
    for offer in &offers {
        let placed = renter.gql(ORDER, json!({"o": offer})).await;
        orders.push(
            placed
                .ok()
                .data("orderRental.id")
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // One order placed 11 minutes ago, one 9 minutes ago (no waiting in real time).
    for (order, minutes) in orders.iter().zip([11, 9]) {
        sqlx::query(
            "UPDATE rentals SET created_at = now() - make_interval(mins => $2) WHERE id = $1::uuid",
        )
        .bind(order)
        .bind(minutes)
        .execute(&app.pool)
        .await
        .unwrap();
    }
    // The renter is told when to pay by: the order's time plus the hold.
    let mine = renter
        .gql(
            "{ rentals(view: RENTER) { id createdAt payBy } }",
            json!({}),
        )
        .await;
    for r in mine.ok().data("rentals").as_array().unwrap() {
        let created =
            chrono::DateTime::parse_from_rfc3339(r["createdAt"].as_str().unwrap()).unwrap();
        let pay_by = chrono::DateTime::parse_from_rfc3339(r["payBy"].as_str().unwrap()).unwrap();
        assert_eq!((pay_by - created).num_seconds(), 600, "{r}");
    }

    app.housekeep().await;
    let states: Vec<(String, String)> = sqlx::query_as(
        "SELECT id::text, state FROM rentals WHERE id = ANY($1::uuid[]) ORDER BY created_at",
    )
    .bind(
        orders
            .iter()
            .map(|o| o.parse::<uuid::Uuid>().unwrap())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        states,
        vec![
            (orders[0].clone(), "cancelled".to_owned()),
            (orders[1].clone(), "ordered".to_owned()),
        ]
    );
    // Paid or not, a cancelled order has no payBy; the open one still has.
    let mine = renter
        .gql("{ rentals(view: RENTER) { id payBy } }", json!({}))
        .await;
    for r in mine.ok().data("rentals").as_array().unwrap() {
        assert_eq!(r["payBy"].is_null(), r["id"] == orders[0].as_str(), "{r}");
    }
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn orders_are_rate_limited_per_account(pool: PgPool) {
    let app = TestApp::start_with(pool, |s| s.order_rate_per_account = 2).await;
    let renter = app.user("renter@example.com", Role::Renter).await;
    let other = app.user("other@example.com", Role::Renter).await;
    let nowhere = json!({"o": uuid::Uuid::new_v4().to_string()});
    for _ in 0..2 {
        renter
            .gql(ORDER, nowhere.clone())
            .await
            .assert_code("NOT_FOUND");
    }
    let limited = renter.gql(ORDER, nowhere.clone()).await;
    limited.assert_code("RATE_LIMITED");
    assert!(
        limited
            .message()
            .contains("too many orders from this account"),
        "{}",
        limited.message()
    );
    assert!(
        limited.body["errors"][0]["extensions"]["retryAfterSeconds"]
            .as_u64()
            .is_some_and(|s| s >= 1),
        "{}",
        limited.body
    );
    // Another account is not affected.
    other.gql(ORDER, nowhere).await.assert_code("NOT_FOUND");
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn a_start_hook_left_failed_refunds_the_renter_and_frees_the_device(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let owner = app.user("owner@example.com", Role::Owner).await;
    let renter = app.user("renter@example.com", Role::Renter).await;
    let mut rentals = Vec::new();
    for name in ["hook-pi", "patient-pi"] {
        let (id, _, _) = offered_device(&owner, name).await;
        sqlx::query("UPDATE devices SET provisioner = true WHERE id = $1::uuid")
            .bind(&id)
            .execute(&app.pool)
            .await
            .unwrap();
        set_online(&app.pool, &id).await;
        let order = renter
            .gql(ORDER, json!({"o": offer_of(&app.pool, &id).await}))
            .await;
        let rental = order
            .ok()
            .data("orderRental.id")
            .as_str()
            .unwrap()
            .to_owned();
        owner.gql(CONFIRM, json!({"r": rental})).await.ok();
        rentals.push(rental);
    }
    // Both start hooks failed on the devices; one of them 31 minutes ago with no retry since.
    for (rental, ago) in rentals.iter().zip([31, 5]) {
        sqlx::query(
            "UPDATE rentals SET start_hook = 'failed', hook_message = 'useradd: failure', \
             updated_at = now() - make_interval(mins => $2) WHERE id = $1::uuid",
        )
        .bind(rental)
        .bind(ago)
        .execute(&app.pool)
        .await
        .unwrap();
    }
    app.housekeep().await;
    let state = |rental: String| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_as::<_, (String, Option<String>)>(
                "SELECT state, end_hook FROM rentals WHERE id = $1::uuid",
            )
            .bind(rental)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    // The stale one is ended (its end hook will clean the device up) and the renter gets everything back.
    assert_eq!(
        state(rentals[0].clone()).await,
        ("ended".to_owned(), Some("pending".to_owned()))
    );
    let renter_net: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(amount_minor), 0)::bigint FROM ledger_entries \
         WHERE rental_id = $1::uuid AND account LIKE 'renter:%'",
    )
    .bind(&rentals[0])
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(renter_net, 0, "the renter paid nothing in the end");
    assert_ledger_balances(&app.pool, &rentals[0]).await;
    // The recent failure still waits for the owner's retry.
    assert_eq!(state(rentals[1].clone()).await.0, "active");
    app.stop().await;
}
