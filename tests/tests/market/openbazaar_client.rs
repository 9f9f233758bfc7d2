//! Our OpenBazaar adapter against the fake node, in both listing schemas.

use p2pvps_server::market::openbazaar::{Credentials, OpenBazaar};
use p2pvps_server::market::{ListingSpec, MarketError, Marketplace};
use p2pvps_shared::Money;
use p2pvps_tests::openbazaar::{Auth, FULFILLED, FakeNode, Fault, Schema};
use serde_json::json;
use sha2::{Digest, Sha256};

fn node_auth() -> Auth {
    Auth::Basic {
        user: "ob".into(),
        password: Sha256::digest(b"secret-password")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    }
}

/// Our adapter, logging in to `node` as `node_auth` expects.
fn adapter(node: &FakeNode) -> OpenBazaar {
    OpenBazaar::new(
        &node.url(),
        Credentials::Basic {
            user: "ob".into(),
            password: "secret-password".into(),
        },
    )
    .unwrap()
}

fn spec() -> ListingSpec {
    ListingSpec {
        slug: "rent-0b7e5a52".into(),
        title: "VPS rental: kitchen pi".into(),
        description: "A Raspberry Pi 4 for 24 hours".into(),
        price: Money::price(300, "USD").unwrap(),
        expiry: chrono::Utc::now() + chrono::Duration::days(30),
    }
}

async fn round_trip(schema: Schema) {
    let node = FakeNode::start(schema, node_auth()).await;
    let ob = adapter(&node);
    // Listed with a body the node accepts in its own schema; listing again updates it.
    ob.list(&spec()).await.unwrap();
    let listing = node.listing("rent-0b7e5a52").expect("listed");
    match schema {
        Schema::V5 => assert_eq!(listing["item"]["bigPrice"], "300"),
        Schema::V4 => assert_eq!(listing["item"]["price"], 300),
    }
    assert_eq!(
        listing["metadata"]["acceptedCurrencies"],
        json!(["BTC", "BCH"])
    );
    let mut renamed = spec();
    renamed.title = "VPS rental: kitchen pi (renamed)".into();
    ob.list(&renamed).await.unwrap();
    assert_eq!(
        node.listing("rent-0b7e5a52").unwrap()["item"]["title"],
        "VPS rental: kitchen pi (renamed)"
    );

    // A stray notification before and after the order never hides it, and is read at once.
    let before = node.notify("follow", json!({"peerId": "QmFan"}));
    let order_id = node.fund_order("rent-0b7e5a52").unwrap();
    let after = node.notify("moderatorAdd", json!({"peerId": "QmMod"}));
    let orders = ob.new_orders().await.unwrap();
    assert_eq!(orders.len(), 1, "{orders:?}");
    let order = &orders[0];
    assert_eq!(
        (order.id.as_str(), order.slug.as_str()),
        (order_id.as_str(), "rent-0b7e5a52")
    );
    assert_eq!(order.paid, Some(Money::price(300, "USD").unwrap()));
    let calls = node.calls();
    for stray in [&before, &after] {
        assert!(
            calls.contains(&format!("POST /ob/marknotificationasread/{stray}")),
            "{calls:?}"
        );
    }

    // Delivered once, even when asked twice (a retry after a crash).
    ob.deliver(
        order,
        "Claim your access at https://p2pvps.example/claim/ABC",
    )
    .await
    .unwrap();
    ob.deliver(order, "again").await.unwrap();
    let sale = node.sale(&order_id).unwrap();
    assert_eq!(sale.state, FULFILLED);
    assert_eq!(
        sale.fulfillment.unwrap()["note"],
        "Claim your access at https://p2pvps.example/claim/ABC"
    );
    let fulfilments = node
        .calls()
        .iter()
        .filter(|c| *c == "POST /ob/orderfulfillment")
        .count();
    assert_eq!(fulfilments, 1);
    ob.mark_handled(order).await.unwrap();
    assert!(ob.new_orders().await.unwrap().is_empty());

    ob.delist("rent-0b7e5a52").await.unwrap();
    assert!(node.listing("rent-0b7e5a52").is_none());
    ob.delist("rent-0b7e5a52").await.unwrap();
}

#[tokio::test]
async fn lists_takes_orders_and_delivers_once_on_a_v4_node() {
    round_trip(Schema::V4).await;
}

#[tokio::test]
async fn lists_takes_orders_and_delivers_once_on_a_v5_node() {
    round_trip(Schema::V5).await;
}

#[tokio::test]
async fn a_sale_whose_notification_was_lost_is_still_found() {
    let node = FakeNode::start(Schema::V5, Auth::Cookie("c00kie".into())).await;
    let ob = OpenBazaar::new(&node.url(), Credentials::Cookie("c00kie".into())).unwrap();
    ob.list(&spec()).await.unwrap();
    let order_id = node.fund_order("rent-0b7e5a52").unwrap();
    // Someone read every notification (e.g. in the desktop app): the sales list still has the order.
    let status = reqwest::Client::new()
        .post(format!("{}/ob/marknotificationsasread", node.url()))
        .header("cookie", "OpenBazaar_Auth_Cookie=c00kie")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let orders = ob.new_orders().await.unwrap();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].id, order_id);
    assert_eq!(orders[0].notification, None);
}

#[tokio::test]
async fn failures_are_classified() {
    let node = FakeNode::start(Schema::V5, node_auth()).await;
    let wrong = OpenBazaar::new(
        &node.url(),
        Credentials::Basic {
            user: "ob".into(),
            password: "wrong".into(),
        },
    )
    .unwrap();
    let err = wrong.new_orders().await.unwrap_err();
    assert!(matches!(err, MarketError::Auth), "{err}");
    assert!(!err.is_transient());

    let ob = adapter(&node);
    node.fail_next(1, Fault::ServerError);
    let err = ob.new_orders().await.unwrap_err();
    assert!(
        matches!(err, MarketError::Refused { status: 500, .. }),
        "{err}"
    );
    assert!(err.is_transient());
    node.fail_next(1, Fault::Garbage);
    let err = ob.new_orders().await.unwrap_err();
    assert!(matches!(err, MarketError::Decode(_)), "{err}");
    // A listing the node refuses (here: already expired) is reported with the node's reason.
    let mut old = spec();
    old.expiry = chrono::Utc::now() - chrono::Duration::days(1);
    let err = ob.list(&old).await.unwrap_err();
    assert!(err.to_string().contains("future"), "{err}");
    assert!(ob.new_orders().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_node_is_a_network_error() {
    // Bound and never listening for the whole test: connections are refused, and no other test takes it.
    let (_held, port) = p2pvps_tests::openssh::refusing_port();
    let ob = OpenBazaar::new(
        &format!("http://127.0.0.1:{port}"),
        Credentials::Cookie("x".into()),
    )
    .unwrap();
    let err = ob.new_orders().await.unwrap_err();
    assert!(matches!(err, MarketError::Network(_)), "{err}");
    assert!(err.is_transient());
}
