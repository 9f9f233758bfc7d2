//! The fake OpenBazaar node reproduces the quirks our adapter must handle (see `p2pvps_tests::openbazaar`).

use futures::{SinkExt, StreamExt};
use p2pvps_tests::openbazaar::{Auth, FakeNode, Fault, Schema, slug_from_title};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const PASSWORD: &str = "yourPassword";

fn basic() -> Auth {
    let hex: String = Sha256::digest(PASSWORD.as_bytes())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    Auth::Basic {
        user: "yourUsername".into(),
        password: hex,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn call(
    node: &FakeNode,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let mut req = client()
        .request(method, format!("{}{path}", node.url()))
        .basic_auth("yourUsername", Some(PASSWORD));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// A SERVICE listing in the node's schema, with images uploaded first.
async fn listing(node: &FakeNode, schema: Schema, slug: Option<&str>, title: &str) -> Value {
    let (_, images) = call(
        node,
        reqwest::Method::POST,
        "/ob/images",
        Some(json!([{"filename": "p2pvps.png", "image": "aGVsbG8="}])),
    )
    .await;
    let images: Value = serde_json::from_str(&images).unwrap();
    let h = &images[0]["hashes"];
    let mut item = json!({"title": title, "description": "24h", "processingTime": "minutes",
        "images": [{"filename": "p2pvps.png", "tiny": h["tiny"], "small": h["small"], "medium": h["medium"],
                    "large": h["large"], "original": h["original"]}]});
    let mut metadata = json!({"contractType": "SERVICE", "format": "FIXED_PRICE",
        "expiry": "2099-01-01T00:00:00Z", "acceptedCurrencies": ["BTC"]});
    match schema {
        Schema::V5 => {
            metadata["version"] = json!(5);
            item["bigPrice"] = json!("300");
            item["priceCurrency"] = json!({"code": "USD", "divisibility": 2});
        }
        Schema::V4 => {
            metadata["version"] = json!(4);
            metadata["pricingCurrency"] = json!("USD");
            item["price"] = json!(300);
        }
    }
    let mut body =
        json!({"metadata": metadata, "item": item, "shippingOptions": [], "moderators": []});
    if let Some(s) = slug {
        body["slug"] = json!(s);
    }
    body
}

#[tokio::test]
async fn auth_is_the_sha256_of_the_password_or_the_cookie_and_failures_are_plain_text() {
    let node = FakeNode::start(Schema::V5, basic()).await;
    let anonymous = client()
        .get(format!("{}/ob/profile", node.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 403);
    assert_eq!(anonymous.text().await.unwrap(), "403 - Forbidden");
    let wrong = client()
        .get(format!("{}/ob/profile", node.url()))
        .basic_auth("yourUsername", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let (status, profile) = call(&node, reqwest::Method::GET, "/ob/profile/", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&profile).unwrap()["version"],
        5
    );

    let cookie = FakeNode::start(Schema::V4, Auth::Cookie("abc".into())).await;
    let resp = client()
        .get(format!("{}/ob/config", cookie.url()))
        .header("cookie", "OpenBazaar_Auth_Cookie=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn the_schema_decides_what_a_listing_must_carry() {
    let v5 = FakeNode::start(Schema::V5, basic()).await;
    // A v4 body on a v5 node loses its price to lenient decoding and fails validation.
    let v4_body = listing(&v5, Schema::V4, Some("rent-x"), "pi").await;
    let (status, body) = call(&v5, reqwest::Method::POST, "/ob/listing", Some(v4_body)).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("currency definition"), "{body}");
    let good = listing(&v5, Schema::V5, Some("rent-x"), "pi").await;
    let (status, body) = call(
        &v5,
        reqwest::Method::POST,
        "/ob/listing/",
        Some(good.clone()),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, r#"{"slug":"rent-x"}"#));
    let (status, body) = call(&v5, reqwest::Method::POST, "/ob/listing", Some(good)).await;
    assert_eq!(status, 409);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["reason"],
        "Listing already exists. Use PUT."
    );
    assert_eq!(
        call(&v5, reqwest::Method::GET, "/wallet/currencies", None)
            .await
            .0,
        200
    );

    let v4 = FakeNode::start(Schema::V4, basic()).await;
    assert_eq!(
        call(&v4, reqwest::Method::GET, "/wallet/currencies", None)
            .await
            .0,
        404
    );
    // Generated slugs get a bare counter on collision.
    for expected in ["vps-rental-pi-01", "vps-rental-pi-011"] {
        let body = listing(&v4, Schema::V4, None, "VPS rental: pi-01").await;
        let (status, text) = call(&v4, reqwest::Method::POST, "/ob/listing", Some(body)).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap()["slug"],
            expected
        );
    }
    assert_eq!(slug_from_title(&"x".repeat(80)).len(), 65);
    // No accepted currency, an expired listing: refused with the node's reasons.
    let mut bad = listing(&v4, Schema::V4, Some("bad"), "pi").await;
    bad["metadata"]["acceptedCurrencies"] = json!([]);
    assert_eq!(
        call(&v4, reqwest::Method::POST, "/ob/listing", Some(bad))
            .await
            .0,
        500
    );
    let mut old = listing(&v4, Schema::V4, Some("old"), "pi").await;
    old["metadata"]["expiry"] = json!("2001-01-01T00:00:00Z");
    let (status, body) = call(&v4, reqwest::Method::POST, "/ob/listing", Some(old)).await;
    assert_eq!(status, 500);
    assert!(body.contains("future"), "{body}");
    // Responses are sanitised: strings HTML-escaped.
    let (_, text) = call(
        &v4,
        reqwest::Method::GET,
        "/ob/listing/vps-rental-pi-01",
        None,
    )
    .await;
    let _: Value = serde_json::from_str(&text).unwrap();
    let (status, _) = call(&v4, reqwest::Method::DELETE, "/ob/listing/nope", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_funded_order_is_notified_pushed_and_fulfilled_once() {
    let node = FakeNode::start(Schema::V5, basic()).await;
    let body = listing(&node, Schema::V5, Some("rent-pi"), "pi <b>&").await;
    assert_eq!(
        call(&node, reqwest::Method::POST, "/ob/listing", Some(body))
            .await
            .0,
        200
    );
    let (_, text) = call(&node, reqwest::Method::GET, "/ob/listing/rent-pi", None).await;
    assert!(text.contains("pi &lt;b&gt;&amp;"), "sanitised: {text}");

    let mut request = format!("ws://{}/ws", node.addr)
        .into_client_request()
        .unwrap();
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("yourUsername:{PASSWORD}"),
    );
    request
        .headers_mut()
        .insert("authorization", format!("Basic {auth}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request.clone())
        .await
        .unwrap();
    let (mut other, _) = tokio_tungstenite::connect_async(request).await.unwrap();

    let stray = node.notify("follow", json!({"peerId": "QmFan"}));
    let order = node.fund_order("rent-pi").unwrap();
    let frame = |m: Option<Result<Message, _>>| match m {
        Some(Ok(Message::Text(t))) => serde_json::from_str::<Value>(&t).unwrap(),
        other => panic!("no frame: {other:?}"),
    };
    assert_eq!(frame(ws.next().await)["notification"]["type"], "follow");
    let pushed = frame(ws.next().await);
    assert_eq!(pushed["notification"]["orderId"], order.as_str());
    assert_eq!(pushed["notification"]["price"]["amount"], "300");

    // What a client sends is echoed to every client.
    ws.send(Message::Text("hello".into())).await.unwrap();
    let _ = frame(other.next().await);
    let _ = frame(other.next().await);
    assert_eq!(
        other.next().await.unwrap().unwrap(),
        Message::Text("hello".into())
    );

    let (_, text) = call(
        &node,
        reqwest::Method::GET,
        "/ob/notifications?limit=10",
        None,
    )
    .await;
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list["unread"], 2);
    assert_eq!(list["notifications"][0]["type"], "order", "newest first");
    assert_eq!(
        list["notifications"][1]["notification"]["notificationId"],
        stray.as_str()
    );
    let (_, text) = call(
        &node,
        reqwest::Method::GET,
        "/ob/notifications?filter=order",
        None,
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["notifications"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let fulfil = json!({"orderId": order, "note": "claim at https://example/claim"});
    let (status, body) = call(
        &node,
        reqwest::Method::POST,
        "/ob/orderfulfillment",
        Some(json!({"orderId": "QmNope"})),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        call(
            &node,
            reqwest::Method::POST,
            "/ob/orderfulfillment",
            Some(fulfil.clone())
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            &node,
            reqwest::Method::POST,
            "/ob/orderfulfillment",
            Some(fulfil)
        )
        .await
        .0,
        400
    );
    assert_eq!(
        node.sale(&order).unwrap().state,
        p2pvps_tests::openbazaar::FULFILLED
    );
    let (_, sales) = call(&node, reqwest::Method::GET, "/ob/sales?state=3", None).await;
    assert_eq!(
        serde_json::from_str::<Value>(&sales).unwrap()["queryCount"],
        0
    );

    // Faults for the adapter's retry tests.
    node.fail_next(1, Fault::ServerError);
    assert_eq!(
        call(&node, reqwest::Method::GET, "/ob/config", None)
            .await
            .0,
        500
    );
    node.fail_next(1, Fault::Garbage);
    let (status, body) = call(&node, reqwest::Method::GET, "/ob/config", None).await;
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&body).is_err());
    // A stalled request answers only once released.
    node.fail_next(1, Fault::Stall);
    let stalled = tokio::spawn({
        let node = node.clone();
        async move {
            call(&node, reqwest::Method::GET, "/ob/config", None)
                .await
                .0
        }
    });
    let mut stalled = std::pin::pin!(stalled);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), &mut stalled)
            .await
            .is_err(),
        "no answer while stalled"
    );
    node.release();
    assert_eq!(stalled.await.unwrap(), 200);
    assert!(
        node.calls()
            .iter()
            .any(|c| c == "POST /ob/orderfulfillment")
    );
}

#[tokio::test]
async fn an_order_placed_offline_waits_pending_and_is_confirmed_once_funded() {
    use p2pvps_tests::openbazaar::{
        AWAITING_FULFILLMENT, AWAITING_PAYMENT, DECLINED, PENDING, Purchase,
    };
    let node = FakeNode::start(Schema::V5, basic()).await;
    let body = listing(&node, Schema::V5, Some("rent-pi"), "pi").await;
    assert_eq!(
        call(&node, reqwest::Method::POST, "/ob/listing", Some(body))
            .await
            .0,
        200
    );
    let offline = Purchase {
        offline: true,
        ..Purchase::default()
    };
    let order = node.place_order("rent-pi", offline.clone()).unwrap();
    let json = |text: &str| serde_json::from_str::<Value>(text).unwrap();
    let confirm = |id: &str, reject: bool| json!({"orderId": id, "reject": reject});

    // Stored PENDING and unpaid: listed among the sales, not notified, not confirmable, not fulfillable.
    let (_, sales) = call(&node, reqwest::Method::GET, "/ob/sales?state=0,3", None).await;
    assert_eq!(json(&sales)["sales"][0]["state"], "PENDING");
    let (_, notes) = call(&node, reqwest::Method::GET, "/ob/notifications", None).await;
    assert_eq!(json(&notes)["total"], 0, "an order is notified once funded");
    let (_, detail) = call(
        &node,
        reqwest::Method::GET,
        &format!("/ob/order/{order}"),
        None,
    )
    .await;
    let detail = json(&detail);
    assert_eq!(detail["funded"], false);
    assert_eq!(
        detail["contract"]["buyerOrder"]["payment"]["bigAmount"],
        "300"
    );
    assert!(detail["contract"]["vendorOrderConfirmation"].is_null());
    let (status, text) = call(
        &node,
        reqwest::Method::POST,
        "/ob/orderconfirmation",
        Some(confirm(&order, false)),
    )
    .await;
    assert_eq!(
        (status, json(&text)["reason"].as_str()),
        (
            400,
            Some("payment address must be funded before confirmation")
        )
    );
    let fulfil = json!({"orderId": order, "note": "n"});
    let (status, _) = call(
        &node,
        reqwest::Method::POST,
        "/ob/orderfulfillment",
        Some(fulfil.clone()),
    )
    .await;
    assert_eq!(status, 400);

    // Paid: funded and notified (with the order's amount), still PENDING until confirmed.
    assert!(node.pay(&order));
    assert!(!node.pay(&order), "funded once");
    let sale = node.sale(&order).unwrap();
    assert_eq!((sale.state, sale.funded), (PENDING, true));
    let (_, notes) = call(&node, reqwest::Method::GET, "/ob/notifications", None).await;
    let notes = json(&notes);
    assert_eq!(
        notes["notifications"][0]["notification"]["orderId"],
        order.as_str()
    );
    assert_eq!(
        notes["notifications"][0]["notification"]["price"]["amount"],
        "300"
    );
    let mut events = node.events();
    let (status, text) = call(
        &node,
        reqwest::Method::POST,
        "/ob/orderconfirmation",
        Some(confirm(&order, false)),
    )
    .await;
    assert_eq!((status, text.as_str()), (200, "{}"));
    assert_eq!(events.try_recv().unwrap(), format!("confirmed {order}"));
    let sale = node.sale(&order).unwrap();
    assert_eq!((sale.state, sale.confirmed), (AWAITING_FULFILLMENT, true));
    let (status, text) = call(
        &node,
        reqwest::Method::POST,
        "/ob/orderconfirmation",
        Some(confirm(&order, false)),
    )
    .await;
    assert_eq!(
        (status, json(&text)["reason"].as_str()),
        (400, Some("order has already been confirmed"))
    );
    assert_eq!(
        call(
            &node,
            reqwest::Method::POST,
            "/ob/orderfulfillment",
            Some(fulfil)
        )
        .await
        .0,
        200
    );

    // An order placed online is confirmed at once: it awaits payment (not among PENDING or awaiting
    // fulfillment), then fulfillment; it cannot be confirmed again.
    let online = node.place_order("rent-pi", Purchase::default()).unwrap();
    assert_eq!(node.sale(&online).unwrap().state, AWAITING_PAYMENT);
    let (_, sales) = call(&node, reqwest::Method::GET, "/ob/sales?state=0,3", None).await;
    assert_eq!(json(&sales)["queryCount"], 0);
    assert!(node.pay(&online));
    assert_eq!(node.sale(&online).unwrap().state, AWAITING_FULFILLMENT);
    let (status, _) = call(
        &node,
        reqwest::Method::POST,
        "/ob/orderconfirmation",
        Some(confirm(&online, false)),
    )
    .await;
    assert_eq!(status, 400);

    // Rejecting needs no funding; an unknown order is 404; a body that is not JSON is 400.
    let declined = node.place_order("rent-pi", offline).unwrap();
    let (status, _) = call(
        &node,
        reqwest::Method::POST,
        "/ob/orderconfirmation",
        Some(confirm(&declined, true)),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(node.sale(&declined).unwrap().state, DECLINED);
    let (status, _) = call(
        &node,
        reqwest::Method::POST,
        "/ob/orderconfirmation",
        Some(confirm("QmNope", false)),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(&node, reqwest::Method::POST, "/ob/orderconfirmation", None).await;
    assert_eq!(status, 400);
}
