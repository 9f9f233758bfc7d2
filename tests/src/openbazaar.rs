//! A fake OpenBazaar node (test support only): the API of openbazaar-go v0.13/v0.14 as our marketplace
//! adapter meets it, with its quirks, since no real node runs offline any more.
//!
//! Reproduced: prefix routing (a trailing slash is harmless), Basic auth compared against the hex SHA-256
//! of the password (case-insensitive) or the `OpenBazaar_Auth_Cookie` cookie, failing with a plain-text
//! `403 - Forbidden`; `{"success":false,"reason":...}` errors; response sanitising (HTML-escaped strings,
//! null keys dropped); lenient decoding (unknown fields ignored, so a v4 body on a v5 node loses its price);
//! slug rules; the listing validation that matters to us; the schema switch (profile `version`,
//! `/wallet/currencies` only in v5); notifications newest first with per-version `price`; sales and the
//! fulfillment gate; `/ws` frames without replay, echoing what clients send.
//!
//! Orders as openbazaar-go's vendor side keeps them: an order placed while the vendor is online is
//! confirmed at once and waits in AWAITING_PAYMENT; one that reached the vendor offline (a DIRECT payment)
//! is stored PENDING, unconfirmed and unpaid. Funding (`processSalePayment`) compares the payments with
//! the amount of the buyer's order (not the listing's price: a buyer's node may ask less), then moves a
//! confirmed order to AWAITING_FULFILLMENT, leaves an unconfirmed one PENDING ("Unconfirmed orders go into
//! PENDING"), and only then stores and pushes the `order` notification. `POST /ob/orderconfirmation`
//! accepts only a PENDING order (400 `order has already been confirmed`) and only once funded unless
//! rejecting (400 `payment address must be funded before confirmation`); `GET /ob/order/{id}` reports
//! `funded`, the buyer's payment and the listing as bought (`vendorListings`, with its price).
//!
//! Test hooks are methods of [`FakeNode`], not HTTP paths (nothing can collide with OpenBazaar's API): a
//! buyer's order for a listing (online or offline, for any amount and currency) and its funding, any
//! other notification, faults (500, garbage, a stall until released) for the next requests, and the call
//! log.

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// The listing schema the node speaks: v4 (openbazaar-go v0.12/v0.13) or v5 (v0.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    V4,
    V5,
}

/// How clients must authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Username` and the hex SHA-256 of the password, as the node's config holds them.
    Basic { user: String, password: String },
    /// `OpenBazaar_Auth_Cookie=<value>`.
    Cookie(String),
}

/// What the next requests suffer (a hook for tests of the adapter's retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 500 with an error body.
    ServerError,
    /// 200 with a body that is not JSON.
    Garbage,
    /// No answer until the test calls [`FakeNode::release`] (a node that hangs).
    Stall,
}

/// The order states of `pb/protos/orders.proto` the fake uses.
pub const PENDING: u8 = 0;
pub const AWAITING_PAYMENT: u8 = 1;
pub const AWAITING_FULFILLMENT: u8 = 3;
pub const FULFILLED: u8 = 5;
pub const DECLINED: u8 = 8;

#[derive(Debug, Clone)]
pub struct Sale {
    pub order_id: String,
    pub slug: String,
    pub state: u8,
    pub read: bool,
    /// The fulfillment the vendor sent, as posted.
    pub fulfillment: Option<Value>,
    /// The amount of the buyer's order (what its funding is compared with), in its currency.
    pub price_minor: u64,
    pub currency: String,
    /// The order's payment address holds its whole amount.
    pub funded: bool,
    /// The vendor has confirmed the order (at once when online; by `POST /ob/orderconfirmation` for an
    /// order that reached it offline).
    pub confirmed: bool,
    /// Reached the vendor offline (a DIRECT payment).
    pub offline: bool,
    /// The listing as the order's contract copies it (`vendorListings`).
    pub listing: Value,
}

/// A buyer's order as it reaches the vendor (a test hook): by default placed while the vendor is online,
/// for the listing's price in its currency.
#[derive(Debug, Clone, Default)]
pub struct Purchase {
    /// Sent while the vendor was offline: stored PENDING and unconfirmed.
    pub offline: bool,
    /// What the buyer's order pays, when not the listing's price (the buyer's node computes it).
    pub amount: Option<u64>,
    /// The currency it pays in, when not the listing's (a listing priced in dollars is paid in a coin:
    /// the buyer's node converts the price, and `amount` says what it came to).
    pub currency: Option<String>,
    /// The price of the buyer's copy of the listing, when not the current one (an older version, which
    /// the vendor signed too).
    pub listing_price: Option<u64>,
}

#[derive(Debug, Clone)]
struct Stored {
    id: String,
    kind: String,
    read: bool,
    timestamp: String,
    payload: Value,
}

struct Node {
    schema: Schema,
    auth: Auth,
    peer_id: String,
    wallets: Vec<String>,
    profile: Option<Value>,
    listings: BTreeMap<String, Value>,
    images: Vec<String>,
    notifications: Vec<Stored>,
    sales: BTreeMap<String, Sale>,
    calls: Vec<String>,
    faults: VecDeque<Fault>,
    counter: u64,
    /// `listed <slug>`, `delisted <slug>`, `confirmed <order id>`, `declined <order id>`,
    /// `fulfilled <order id>`, `read <order id>` (its notification), `stalled <prefix>`, `forbidden` (a
    /// request with wrong credentials), as they happen.
    events: broadcast::Sender<String>,
    /// Answer `/ws` upgrades with 404 (a node whose websocket is unreachable).
    no_websocket: bool,
    /// Set by [`FakeNode::release`]: stalled requests answer.
    released: tokio::sync::watch::Sender<bool>,
    /// Requests whose path starts with this stall (until released), announced as `stalled <prefix>`.
    stall_on: Option<String>,
}

impl Node {
    fn next_id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("Qm{prefix}{:040}", self.counter)
    }
}

/// A running fake node on 127.0.0.1.
#[derive(Clone)]
pub struct FakeNode {
    pub addr: SocketAddr,
    node: Arc<Mutex<Node>>,
    frames: broadcast::Sender<String>,
}

type Shared = (Arc<Mutex<Node>>, broadcast::Sender<String>);

impl FakeNode {
    /// Starts a node speaking `schema`, with a vendor profile and BTC and BCH wallets.
    pub async fn start(schema: Schema, auth: Auth) -> Self {
        // The tests' HTTP clients (reqwest on rustls) need the process's TLS provider, as the server sets it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let node = Arc::new(Mutex::new(Node {
            schema,
            auth,
            peer_id: "QmVendorPeer0000000000000000000000000000000000".to_owned(),
            wallets: vec!["BTC".to_owned(), "BCH".to_owned()],
            profile: Some(json!({"name": "p2pvps", "vendor": true})),
            listings: BTreeMap::new(),
            images: Vec::new(),
            notifications: Vec::new(),
            sales: BTreeMap::new(),
            calls: Vec::new(),
            faults: VecDeque::new(),
            counter: 0,
            events: broadcast::channel(64).0,
            no_websocket: false,
            released: tokio::sync::watch::channel(false).0,
            stall_on: None,
        }));
        let (frames, _) = broadcast::channel(256);
        let shared: Shared = (Arc::clone(&node), frames.clone());
        let app = Router::new()
            .route("/ws", axum::routing::get(websocket))
            .fallback(api)
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, node, frames }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Node> {
        self.node.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every request so far, as `METHOD /path`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    pub fn listing(&self, slug: &str) -> Option<Value> {
        self.lock().listings.get(slug).cloned()
    }

    /// What happens from now on: `listed <slug>`, `delisted <slug>`, `confirmed <order id>`,
    /// `declined <order id>`, `fulfilled <order id>`, `read <order id>` (its notification marked read),
    /// `stalled <prefix>`, `forbidden` (wrong credentials).
    pub fn events(&self) -> broadcast::Receiver<String> {
        self.lock().events.subscribe()
    }

    /// Lets every stalled request (and any later one) answer.
    pub fn release(&self) {
        let mut node = self.lock();
        node.stall_on = None;
        node.released.send_replace(true);
    }

    /// From now on, requests whose path starts with `prefix` get no answer until [`FakeNode::release`];
    /// each is announced on [`FakeNode::events`] as `stalled <prefix>` when it arrives.
    pub fn stall_on(&self, prefix: &str) {
        self.lock().stall_on = Some(prefix.to_owned());
    }

    /// Makes `/ws` unreachable, so clients rely on polling.
    pub fn refuse_websockets(&self) {
        self.lock().no_websocket = true;
    }

    pub fn sale(&self, order_id: &str) -> Option<Sale> {
        self.lock().sales.get(order_id).cloned()
    }

    /// The next `n` requests suffer `fault`.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.lock().faults.extend(std::iter::repeat_n(fault, n));
    }

    /// A buyer orders the listing `slug` while the vendor is online and pays it in full: the sale awaits
    /// fulfillment, an `order` notification is stored and pushed on `/ws`. Returns the order id.
    pub fn fund_order(&self, slug: &str) -> Option<String> {
        let order_id = self.place_order(slug, Purchase::default())?;
        self.pay(&order_id);
        Some(order_id)
    }

    /// A buyer's order for the listing `slug` reaches the vendor, not paid yet: online, it is confirmed
    /// and awaits payment; offline, it is stored PENDING, unconfirmed. No notification (openbazaar-go
    /// notifies an order once funded). Returns the order id.
    pub fn place_order(&self, slug: &str, purchase: Purchase) -> Option<String> {
        let mut node = self.lock();
        let mut listing = node.listings.get(slug)?.clone();
        if let Some(price) = purchase.listing_price {
            match node.schema {
                Schema::V5 => listing["item"]["bigPrice"] = json!(price.to_string()),
                Schema::V4 => listing["item"]["price"] = json!(price),
            }
        }
        let order_id = node.next_id("Order");
        let (minor, currency) = price_of(&listing);
        node.sales.insert(
            order_id.clone(),
            Sale {
                order_id: order_id.clone(),
                slug: slug.to_owned(),
                state: if purchase.offline {
                    PENDING
                } else {
                    AWAITING_PAYMENT
                },
                read: false,
                fulfillment: None,
                price_minor: purchase.amount.unwrap_or(minor),
                currency: purchase.currency.unwrap_or(currency),
                funded: false,
                confirmed: !purchase.offline,
                offline: purchase.offline,
                listing,
            },
        );
        Some(order_id)
    }

    /// The buyer pays the whole amount of their order (`processSalePayment`): it is funded; a confirmed
    /// order awaiting payment moves to AWAITING_FULFILLMENT, an unconfirmed one is (or stays) PENDING; the
    /// `order` notification, carrying the order's amount, is stored and pushed. False for an unknown or
    /// already funded order.
    pub fn pay(&self, order_id: &str) -> bool {
        let mut node = self.lock();
        let schema = node.schema;
        let title = {
            let Some(sale) = node.sales.get(order_id) else {
                return false;
            };
            node.listings
                .get(&sale.slug)
                .map(|l| l["item"]["title"].clone())
                .unwrap_or(Value::Null)
        };
        let Some(sale) = node.sales.get_mut(order_id) else {
            return false;
        };
        if sale.funded {
            return false;
        }
        sale.funded = true;
        if sale.state == AWAITING_PAYMENT {
            sale.state = if sale.confirmed {
                AWAITING_FULFILLMENT
            } else {
                PENDING
            };
        }
        let price = money_json(sale.price_minor, &sale.currency, schema);
        let payload = json!({
            "type": "order", "orderId": order_id, "slug": sale.slug, "title": title,
            "buyerId": "QmBuyerPeer", "buyerHandle": "", "listingType": "SERVICE",
            "price": price, "priceModifier": 0, "thumbnail": {"tiny": "QmThumb", "small": "QmThumb"},
        });
        drop(node);
        self.notify("order", payload);
        true
    }

    /// Stores and pushes a notification of any type (e.g. `follow`) with `payload`'s fields.
    pub fn notify(&self, kind: &str, payload: Value) -> String {
        let mut node = self.lock();
        let id = node.next_id("Notif");
        let mut payload = payload;
        if let Some(map) = payload.as_object_mut() {
            map.insert("notificationId".into(), json!(id));
            map.insert("type".into(), json!(kind));
        }
        node.notifications.push(Stored {
            id: id.clone(),
            kind: kind.to_owned(),
            read: false,
            timestamp: chrono::Utc::now().to_rfc3339(),
            payload: payload.clone(),
        });
        drop(node);
        let _ = self
            .frames
            .send(sanitize(json!({ "notification": payload })).to_string());
        id
    }
}

/// An amount as the node writes it: v0.14 `{amount: "<str>", currency: {code, divisibility}}`, v0.13
/// `{amount: <int>, currencyCode}`.
fn money_json(minor: u64, currency: &str, schema: Schema) -> Value {
    match schema {
        Schema::V5 => {
            json!({"amount": minor.to_string(), "currency": {"code": currency, "divisibility": divisibility(currency)}})
        }
        Schema::V4 => json!({"amount": minor, "currencyCode": currency}),
    }
}

fn divisibility(currency: &str) -> u32 {
    match currency {
        "BTC" | "BCH" | "LTC" | "ZEC" => 8,
        _ => 2,
    }
}

fn price_of(listing: &Value) -> (u64, String) {
    let item = &listing["item"];
    match item.get("bigPrice").and_then(Value::as_str) {
        Some(big) => (
            big.parse().unwrap_or(0),
            item["priceCurrency"]["code"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        ),
        None => (
            item["price"].as_u64().unwrap_or(0),
            listing["metadata"]["pricingCurrency"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        ),
    }
}

/// HTML-escapes every string and drops keys whose value is null, as `api/sanitize.go` does.
pub fn sanitize(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&#34;")
                .replace('\'', "&#39;"),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(sanitize).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, sanitize(v)))
                .collect::<Map<_, _>>(),
        ),
        other => other,
    }
}

fn ok(value: Value) -> Response {
    (StatusCode::OK, axum::Json(sanitize(value))).into_response()
}

fn error(status: StatusCode, reason: &str) -> Response {
    let body = json!({"success": false, "reason": reason.replace('"', "'")});
    (status, axum::Json(body)).into_response()
}

fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, "403 - Forbidden").into_response()
}

fn authorized(auth: &Auth, headers: &HeaderMap) -> bool {
    match auth {
        Auth::Basic { user, password } => {
            let Some(given) = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Basic "))
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok())
            else {
                return false;
            };
            let Some((u, p)) = given.split_once(':') else {
                return false;
            };
            let hashed: String = Sha256::digest(p.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            u == user && hashed.eq_ignore_ascii_case(password)
        }
        Auth::Cookie(value) => headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .any(|c| c.trim() == format!("OpenBazaar_Auth_Cookie={value}")),
    }
}

async fn websocket(
    State((node, frames)): State<Shared>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let (auth, refused, events) = {
        let n = node.lock().unwrap_or_else(|p| p.into_inner());
        (n.auth.clone(), n.no_websocket, n.events.clone())
    };
    if refused {
        return (StatusCode::NOT_FOUND, "404 page not found").into_response();
    }
    if !authorized(&auth, &headers) {
        return forbidden();
    }
    upgrade.on_upgrade(move |socket| {
        let _ = events.send("websocket open".to_owned());
        relay(socket, frames)
    })
}

/// Pushes frames to one client; whatever it sends goes to every client ("just echo for now").
async fn relay(socket: WebSocket, frames: broadcast::Sender<String>) {
    let (mut out, mut incoming) = socket.split();
    let mut rx = frames.subscribe();
    loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Ok(text) => if out.send(Message::Text(text.into())).await.is_err() { return },
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            msg = incoming.next() => match msg {
                Some(Ok(Message::Text(t))) => { let _ = frames.send(t.to_string()); }
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

async fn api(State((node, frames)): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    let (fault, mut released) = {
        let mut n = node.lock().unwrap_or_else(|p| p.into_inner());
        n.calls
            .push(format!("{} {}", parts.method, parts.uri.path()));
        if !authorized(&n.auth, &parts.headers) {
            let _ = n.events.send("forbidden".to_owned());
            return forbidden();
        }
        let targeted = n
            .stall_on
            .as_deref()
            .is_some_and(|p| parts.uri.path().starts_with(p));
        if targeted {
            let _ = n.events.send(format!(
                "stalled {}",
                n.stall_on.as_deref().unwrap_or_default()
            ));
        }
        let fault = if targeted {
            Some(Fault::Stall)
        } else {
            n.faults.pop_front()
        };
        (fault, n.released.subscribe())
    };
    match fault {
        Some(Fault::ServerError) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "fault injected");
        }
        Some(Fault::Garbage) => return (StatusCode::OK, "<html>not json").into_response(),
        Some(Fault::Stall) => {
            let _ = released.wait_for(|r| *r).await;
        }
        None => {}
    }
    let fake = FakeNode {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        node,
        frames,
    };
    handle(
        &fake,
        &parts.method,
        parts.uri.path(),
        parts.uri.query(),
        &body,
    )
}

/// Prefix routing as `api/endpoints.go` does it (longer prefixes first where they overlap).
fn handle(
    fake: &FakeNode,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &Bytes,
) -> Response {
    let json_body = || serde_json::from_slice::<Value>(body);
    let rest = |prefix: &str| {
        path.strip_prefix(prefix)
            .unwrap_or("")
            .trim_matches('/')
            .to_owned()
    };
    let mut node = fake.lock();
    if method == Method::OPTIONS {
        return StatusCode::OK.into_response();
    }
    match (method.as_str(), path) {
        ("GET", p) if p.starts_with("/ob/profile") => match &node.profile {
            Some(profile) => {
                let mut profile = profile.clone();
                profile["version"] = json!(if node.schema == Schema::V5 { 5 } else { 4 });
                profile["peerID"] = json!(node.peer_id);
                ok(profile)
            }
            None => error(StatusCode::NOT_FOUND, "Profile not found."),
        },
        ("GET", p) if p.starts_with("/ob/config") => ok(json!({
            "peerID": node.peer_id, "testnet": false, "tor": false, "wallets": node.wallets,
        })),
        ("GET", p) if p.starts_with("/wallet/currencies") => match node.schema {
            Schema::V5 => ok(json!(
                node.wallets
                    .iter()
                    .map(|w| (w.clone(), json!({"code": w, "divisibility": 8})))
                    .collect::<Map<_, _>>()
            )),
            Schema::V4 => (StatusCode::NOT_FOUND, "Not Found").into_response(),
        },
        ("POST", p) if p.starts_with("/ob/images") => {
            let Ok(Value::Array(images)) = json_body() else {
                return error(StatusCode::BAD_REQUEST, "unexpected end of JSON input");
            };
            let mut out = Vec::new();
            for image in images {
                let filename = image["filename"].as_str().unwrap_or("").to_owned();
                let hash = node.next_id("Img");
                node.images.push(filename.clone());
                let hashes: Map<String, Value> = ["tiny", "small", "medium", "large", "original"]
                    .iter()
                    .map(|s| ((*s).to_owned(), json!(format!("{hash}{s}"))))
                    .collect();
                out.push(json!({"filename": filename, "hashes": hashes}));
            }
            ok(Value::Array(out))
        }
        ("GET", p) if p.starts_with("/ob/listings") => {
            let entries: Vec<Value> = node
                .listings
                .values()
                .map(|l| index_entry(l, node.schema))
                .collect();
            ok(Value::Array(entries))
        }
        ("POST", p) if p.starts_with("/ob/listing") => {
            let Ok(mut listing) = json_body() else {
                return error(StatusCode::BAD_REQUEST, "unexpected end of JSON input");
            };
            let explicit = listing["slug"].as_str().unwrap_or("").to_owned();
            if !explicit.is_empty() && node.listings.contains_key(&explicit) {
                return error(StatusCode::CONFLICT, "Listing already exists. Use PUT.");
            }
            if let Err(reason) = validate(&mut listing, &node) {
                return error(StatusCode::INTERNAL_SERVER_ERROR, &reason);
            }
            let slug = if explicit.is_empty() {
                let base = slug_from_title(listing["item"]["title"].as_str().unwrap_or(""));
                let mut slug = base.clone();
                let mut n = 1;
                while node.listings.contains_key(&slug) {
                    slug = format!("{base}{n}");
                    n += 1;
                }
                slug
            } else if explicit.len() > 70 || explicit.contains([' ', '/']) {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Slug must not contain spaces or slashes and be 70 characters or fewer",
                );
            } else {
                explicit
            };
            listing["slug"] = json!(slug);
            node.listings.insert(slug.clone(), listing);
            let _ = node.events.send(format!("listed {slug}"));
            ok(json!({"slug": slug}))
        }
        ("PUT", p) if p.starts_with("/ob/listing") => {
            let Ok(mut listing) = json_body() else {
                return error(StatusCode::BAD_REQUEST, "unexpected end of JSON input");
            };
            let slug = listing["slug"].as_str().unwrap_or("").to_owned();
            if !node.listings.contains_key(&slug) {
                return error(StatusCode::NOT_FOUND, "Listing not found.");
            }
            if let Err(reason) = validate(&mut listing, &node) {
                return error(StatusCode::INTERNAL_SERVER_ERROR, &reason);
            }
            let _ = node.events.send(format!("listed {slug}"));
            node.listings.insert(slug, listing);
            ok(json!({}))
        }
        ("DELETE", p) if p.starts_with("/ob/listing") => {
            let slug = rest("/ob/listing");
            match node.listings.remove(&slug) {
                Some(_) => {
                    let _ = node.events.send(format!("delisted {slug}"));
                    ok(json!({}))
                }
                None => error(StatusCode::NOT_FOUND, "Listing not found."),
            }
        }
        ("GET", p) if p.starts_with("/ob/listing") => match node.listings.get(&rest("/ob/listing"))
        {
            Some(l) => ok(json!({"listing": l, "hash": "QmListingHash", "signature": "c2ln"})),
            None => error(StatusCode::NOT_FOUND, "Listing not found."),
        },
        ("GET", p) if p.starts_with("/ob/notifications") => {
            let params = query_params(query);
            let filter: Vec<String> = params
                .get("filter")
                .map(|f| f.split(',').map(|t| t.trim().to_lowercase()).collect())
                .unwrap_or_default();
            let limit: i64 = params
                .get("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(-1);
            let matching: Vec<&Stored> = node
                .notifications
                .iter()
                .rev()
                .filter(|n| filter.is_empty() || filter.contains(&n.kind.to_lowercase()))
                .collect();
            let unread = node.notifications.iter().filter(|n| !n.read).count();
            let shown: Vec<Value> = matching
                .iter()
                .take(if limit < 0 { usize::MAX } else { limit as usize })
                .map(|n| json!({"timestamp": n.timestamp, "read": n.read, "type": n.kind, "notification": n.payload}))
                .collect();
            ok(json!({"unread": unread, "total": node.notifications.len(), "notifications": shown}))
        }
        ("POST", p) if p.starts_with("/ob/marknotificationsasread") => {
            node.notifications.iter_mut().for_each(|n| n.read = true);
            ok(json!({}))
        }
        ("POST", p) if p.starts_with("/ob/marknotificationasread") => {
            let id = rest("/ob/marknotificationasread");
            match node.notifications.iter_mut().find(|n| n.id == id) {
                Some(n) => {
                    n.read = true;
                    let order = n.payload["orderId"].as_str().map(str::to_owned);
                    if let Some(order) = order {
                        let _ = node.events.send(format!("read {order}"));
                    }
                    ok(json!({}))
                }
                None => error(StatusCode::NOT_FOUND, "Notification not found"),
            }
        }
        ("GET", p) if p.starts_with("/ob/sales") => {
            let params = query_params(query);
            let states: Vec<u8> = params
                .get("state")
                .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
                .unwrap_or_default();
            let sales: Vec<Value> = node
                .sales
                .values()
                .filter(|s| states.is_empty() || states.contains(&s.state))
                .map(|s| sale_json(s, node.schema))
                .collect();
            ok(json!({"queryCount": sales.len(), "sales": sales}))
        }
        ("GET", p) if p.starts_with("/ob/order") => {
            let id = rest("/ob/order");
            let schema = node.schema;
            match node.sales.get_mut(&id) {
                Some(sale) => {
                    sale.read = true;
                    ok(order_json(sale, schema))
                }
                None => error(StatusCode::NOT_FOUND, "order not found"),
            }
        }
        ("POST", p) if p.starts_with("/ob/orderconfirmation") => {
            // `POSTOrderConfirmation`: decoded with encoding/json, then the sale's state and funding.
            let conf = match serde_json::from_slice::<Value>(body) {
                Ok(v) if v.is_object() => v,
                _ => return error(StatusCode::BAD_REQUEST, "unexpected end of JSON input"),
            };
            let id = conf["orderId"].as_str().unwrap_or("").to_owned();
            let reject = conf["reject"].as_bool().unwrap_or(false);
            let events = node.events.clone();
            match node.sales.get_mut(&id) {
                None => error(StatusCode::NOT_FOUND, "sql: no rows in result set"),
                Some(sale) if sale.state != PENDING => {
                    error(StatusCode::BAD_REQUEST, "order has already been confirmed")
                }
                Some(sale) if !sale.funded && !reject => error(
                    StatusCode::BAD_REQUEST,
                    "payment address must be funded before confirmation",
                ),
                Some(sale) if reject => {
                    sale.state = DECLINED;
                    let _ = events.send(format!("declined {id}"));
                    ok(json!({}))
                }
                Some(sale) => {
                    // `ConfirmOfflineOrder`: signed confirmation, funds swept, AWAITING_FULFILLMENT.
                    sale.confirmed = true;
                    sale.state = AWAITING_FULFILLMENT;
                    let _ = events.send(format!("confirmed {id}"));
                    ok(json!({}))
                }
            }
        }
        ("POST", p) if p.starts_with("/ob/orderfulfillment") => {
            let Ok(fulfillment) = json_body() else {
                return error(StatusCode::BAD_REQUEST, "unexpected end of JSON input");
            };
            let id = fulfillment["orderId"].as_str().unwrap_or("").to_owned();
            let events = node.events.clone();
            match node.sales.get_mut(&id) {
                None => error(StatusCode::NOT_FOUND, "order not found"),
                Some(sale) if !matches!(sale.state, 3 | 4) => error(
                    StatusCode::BAD_REQUEST,
                    "order must be in state AWAITING_FULFILLMENT or PARTIALLY_FULFILLED to fulfill",
                ),
                Some(sale) => {
                    sale.state = FULFILLED;
                    sale.fulfillment = Some(fulfillment);
                    let _ = events.send(format!("fulfilled {id}"));
                    ok(json!({}))
                }
            }
        }
        _ => (StatusCode::NOT_FOUND, "404 page not found").into_response(),
    }
}

fn query_params(query: Option<&str>) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn state_name(state: u8) -> &'static str {
    [
        "PENDING",
        "AWAITING_PAYMENT",
        "AWAITING_PICKUP",
        "AWAITING_FULFILLMENT",
        "PARTIALLY_FULFILLED",
        "FULFILLED",
        "COMPLETED",
        "CANCELED",
        "DECLINED",
        "REFUNDED",
        "DISPUTED",
        "DECIDED",
        "RESOLVED",
        "PAYMENT_FINALIZED",
        "PROCESSING_ERROR",
    ]
    .get(usize::from(state))
    .copied()
    .unwrap_or("PROCESSING_ERROR")
}

fn sale_json(sale: &Sale, schema: Schema) -> Value {
    let total = money_json(sale.price_minor, &sale.currency, schema);
    json!({"orderId": sale.order_id, "slug": sale.slug, "state": state_name(sale.state), "read": sale.read,
           "buyerId": "QmBuyerPeer", "total": total, "timestamp": "2026-01-01T00:00:00Z"})
}

/// `OrderRespApi`: the contract (the listing bought, the buyer's order and payment, the vendor's
/// confirmation once given), `state`, `read`, `funded` and the payment address's transactions.
fn order_json(sale: &Sale, schema: Schema) -> Value {
    let method = if sale.offline {
        "DIRECT"
    } else {
        "ADDRESS_REQUEST"
    };
    let payment = match schema {
        Schema::V5 => {
            json!({"method": method, "address": "1PaymentAddress", "bigAmount": sale.price_minor.to_string(),
            "amountCurrency": {"code": sale.currency, "divisibility": divisibility(&sale.currency)}})
        }
        Schema::V4 => {
            json!({"method": method, "address": "1PaymentAddress", "amount": sale.price_minor,
            "coin": sale.currency})
        }
    };
    let confirmation = sale
        .confirmed
        .then(|| json!({"orderID": sale.order_id, "paymentAddress": "1PaymentAddress"}));
    let transactions: Vec<Value> = if sale.funded {
        vec![
            json!({"txid": "feedface", "confirmations": 1, "height": 1, "value": 0,
            "bigValue": sale.price_minor.to_string(), "currency": {"code": sale.currency, "divisibility": divisibility(&sale.currency)}}),
        ]
    } else {
        Vec::new()
    };
    json!({
        "contract": {
            "vendorListings": [sale.listing],
            "buyerOrder": {"buyerID": {"peerID": "QmBuyerPeer"}, "payment": payment},
            "vendorOrderConfirmation": confirmation,
        },
        "state": state_name(sale.state), "read": true, "funded": sale.funded, "unreadChatMessages": 0,
        "paymentAddressTransactions": transactions,
    })
}

fn index_entry(listing: &Value, schema: Schema) -> Value {
    let (minor, currency) = price_of(listing);
    let price = match schema {
        Schema::V5 => {
            json!({"amount": minor.to_string(), "currency": {"code": currency, "divisibility": 2}})
        }
        Schema::V4 => json!({"amount": minor, "currencyCode": currency}),
    };
    json!({"hash": "QmListingHash", "slug": listing["slug"], "title": listing["item"]["title"],
           "contractType": listing["metadata"]["contractType"], "price": price,
           "acceptedCurrencies": listing["metadata"]["acceptedCurrencies"]})
}

/// `gosimple/slug`-like: lower case, runs of other characters become one dash, cut to 65 characters.
pub fn slug_from_title(title: &str) -> String {
    let mut slug = String::new();
    for c in title.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_matches('-');
    slug.chars()
        .take(65)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

/// The parts of `ValidateListing` that matter to us; the body is read leniently (unknown fields ignored),
/// and the node's schema decides where the price is read from.
fn validate(listing: &mut Value, node: &Node) -> Result<(), String> {
    let version = if node.schema == Schema::V5 { 5 } else { 4 };
    if listing["metadata"]["version"].is_null() {
        listing["metadata"]["version"] = json!(version);
    }
    let title = listing["item"]["title"].as_str().unwrap_or("");
    if title.is_empty() || title.chars().count() > 140 {
        return Err("Title must be between 1 and 140 characters".into());
    }
    let expiry = listing["metadata"]["expiry"].as_str().unwrap_or("");
    match chrono::DateTime::parse_from_rfc3339(expiry) {
        Ok(t) if t > chrono::Utc::now() => {}
        _ => return Err("Listing expiration must be in the future".into()),
    }
    let accepted: Vec<&str> = listing["metadata"]["acceptedCurrencies"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if accepted.is_empty() {
        return Err("A listing must accept at least one currency".into());
    }
    if let Some(c) = accepted
        .iter()
        .find(|c| !node.wallets.iter().any(|w| w == *c))
    {
        return Err(format!(
            "Listing accepts {c}, which this node's wallet does not support"
        ));
    }
    let images = listing["item"]["images"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if images.is_empty() {
        return Err("Listing must contain at least one image".into());
    }
    for image in &images {
        for size in ["tiny", "small", "medium", "large", "original"] {
            let hash = image[size].as_str().unwrap_or("");
            if !hash.starts_with("Qm") {
                if hash.starts_with('z') && !node.images.iter().any(|f| image["filename"] == *f) {
                    return Err(format!(
                        "ipfs add (root/images/{size}/{}): no such file",
                        image["filename"].as_str().unwrap_or("")
                    ));
                }
                return Err(format!("Image {size} hash is not a valid CID"));
            }
        }
    }
    match node.schema {
        Schema::V5 => {
            let big = listing["item"]["bigPrice"].as_str().unwrap_or("");
            let currency = listing["item"]["priceCurrency"]["code"]
                .as_str()
                .unwrap_or("");
            if big.is_empty() || currency.is_empty() {
                return Err("validate sellable listing (ERR_CURRENCY_DEFINITION_UNDEFINED): currency definition is not defined".into());
            }
            if big.parse::<u64>().map_or(true, |p| p == 0) {
                return Err("Zero price listings are not allowed".into());
            }
        }
        Schema::V4 => {
            if listing["item"]["price"].as_u64().unwrap_or(0) == 0 {
                return Err("Zero price listings are not allowed".into());
            }
        }
    }
    Ok(())
}

/// Waits (up to `within`) for the event `wanted` on `events`; false if it did not come.
/// Asserts that `wanted` happens on the node within `secs` seconds; `why` says what it proves.
pub async fn expect_event(
    events: &mut broadcast::Receiver<String>,
    wanted: &str,
    secs: u64,
    why: &str,
) {
    assert!(
        event(events, wanted, Duration::from_secs(secs)).await,
        "no `{wanted}` within {secs} s: {why}"
    );
}

pub async fn event(
    events: &mut broadcast::Receiver<String>,
    wanted: &str,
    within: Duration,
) -> bool {
    tokio::time::timeout(within, async {
        loop {
            match events.recv().await {
                Ok(e) if e == wanted => return true,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return false,
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// `n` online devices of one owner, priced and listed on `node` (logged in as [`NODE_USER`]) under our slugs, as
/// the server's reconcile would have left them (and keeps them, as they are for rent); the in-process app
/// that created them is stopped again.
/// Returns the slugs.
pub async fn listed_devices(pool: &sqlx::PgPool, node: &FakeNode, n: usize) -> Vec<String> {
    use p2pvps_server::market::openbazaar::{Credentials, OpenBazaar};
    use p2pvps_server::market::{ListingSpec, Marketplace};
    let app = crate::TestApp::start(pool.clone()).await;
    let owner = app.user("o@example.com", p2pvps_shared::Role::Owner).await;
    let ob = OpenBazaar::new(
        &node.url(),
        Credentials::Basic {
            user: NODE_USER.into(),
            password: NODE_PASSWORD.into(),
        },
    )
    .unwrap();
    let price = p2pvps_shared::Money::price(300, "USD").unwrap();
    let mut slugs = Vec::new();
    for i in 0..n {
        let (device, _) = crate::add_device(&owner, &format!("pi-{i}")).await;
        let device: uuid::Uuid = device.parse().unwrap();
        sqlx::query(
            "UPDATE devices SET price_minor = 300, currency = 'USD', for_rent = true WHERE id = $1",
        )
        .bind(device)
        .execute(pool)
        .await
        .unwrap();
        p2pvps_server::devices::status::record_status(
            pool,
            device,
            p2pvps_shared::DeviceStatus::Online,
        )
        .await
        .unwrap();
        let slug = p2pvps_server::market::reconcile::slug(device);
        let mut tx = pool.begin().await.unwrap();
        p2pvps_server::market::listings::mark_listed(&mut tx, "openbazaar", device, &slug, &price)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        ob.list(&ListingSpec {
            slug: slug.clone(),
            title: format!("VPS rental: pi-{i} (24 h)"),
            description: "24 hours".into(),
            price: price.clone(),
            expiry: chrono::Utc::now() + chrono::Duration::days(30),
        })
        .await
        .unwrap();
        slugs.push(slug);
    }
    app.stop().await;
    slugs
}

/// The login our server uses on a fake node in the crash and chaos tests.
pub const NODE_USER: &str = "ob";
pub const NODE_PASSWORD: &str = "secret-password";

/// A fake node expecting [`NODE_USER`] / [`NODE_PASSWORD`] by Basic auth (stored, as openbazaar-go does,
/// as the password's hex SHA-256).
pub async fn node_with_basic_auth(schema: Schema) -> FakeNode {
    FakeNode::start(
        schema,
        Auth::Basic {
            user: NODE_USER.into(),
            password: Sha256::digest(NODE_PASSWORD.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        },
    )
    .await
}

/// `p2pvps serve` flags that sell on `node` (polled every second).
pub fn market_args(node: &FakeNode) -> Vec<String> {
    [
        "--openbazaar-url",
        &node.url(),
        "--openbazaar-user",
        NODE_USER,
        "--openbazaar-password",
        NODE_PASSWORD,
        "--market-poll",
        "1",
        "--public-url",
        "https://p2pvps.example",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Starts `p2pvps serve` with `args`, waits until its request to `point` reaches `node` (which holds it),
/// then SIGKILLs it and lets the node answer again: a crash at that point of order processing.
pub async fn killed_at(
    node: &FakeNode,
    pool: &sqlx::PgPool,
    data: &std::path::Path,
    args: &[&str],
    point: &str,
) {
    let mut events = node.events();
    node.stall_on(point);
    let server = crate::server::Server::start(pool, data, args).await;
    expect_event(
        &mut events,
        &format!("stalled {point}"),
        30,
        "the server reached the point where it is killed",
    )
    .await;
    server.kill().await;
    node.release();
}

/// The ledger after OpenBazaar sales: how many rentals' entries do not sum to zero (per currency), and how
/// many payments the marketplace made.
pub async fn ledger_after_sales(pool: &sqlx::PgPool) -> (i64, i64) {
    let unbalanced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT rental_id, currency FROM ledger_entries GROUP BY rental_id, currency \
         HAVING sum(amount_minor) <> 0) x",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let payments: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_entries WHERE account = 'marketplace:openbazaar'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    (unbalanced, payments)
}
