//! An OpenBazaar node (openbazaar-go v0.13 with listing schema v4, or v0.14 with schema v5), through its
//! JSON API. The schema is read once from the profile's `version`; accepted currencies from the node's
//! wallets (`/ob/config`); our image is uploaded once per node before the first listing (v0.13+ re-adds
//! images it does not hold, and fails).
//!
//! Orders come from unread `order` notifications (each marked read once handled; other types are marked
//! read at once, so none can block an order) and, as a safety net, from sales PENDING or awaiting
//! fulfillment. A PENDING sale may be unfunded (openbazaar-go stores an order that reached the vendor
//! offline as PENDING before it is paid), so what an order's buyer paid is read from the order itself
//! (`GET /ob/order/{id}`: `funded` and the buyer's payment amount). A funded order still PENDING ("unconfirmed
//! orders go into PENDING") is confirmed with `POST /ob/orderconfirmation` before it is fulfilled.

use super::{ListingSpec, MarketError, Marketplace, Order, Payment};
use base64::Engine;
use p2pvps_shared::Money;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::OnceCell;

/// How to authenticate to the node.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// The API user name and the password (the node stores its SHA-256).
    Basic { user: String, password: String },
    /// The value of `OpenBazaar_Auth_Cookie` (from the node's `.cookie` file).
    Cookie(String),
}

/// Every request gives up after this long.
/// How long one API call may take by default.
pub const TIMEOUT: Duration = Duration::from_secs(15);
/// Our listing picture (1x1 PNG): the node requires one image per listing.
const IMAGE_PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// What a listing needs from the node, read once.
#[derive(Debug, Clone)]
struct NodeFacts {
    schema: u32,
    currencies: Vec<String>,
    image: Value,
}

pub struct OpenBazaar {
    base: String,
    credentials: Credentials,
    http: reqwest::Client,
    timeout: Duration,
    facts: OnceCell<NodeFacts>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorBody {
    reason: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct NotificationList {
    notifications: Vec<NotificationEnvelope>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NotificationEnvelope {
    read: bool,
    #[serde(rename = "type")]
    kind: String,
    notification: Value,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SalesList {
    sales: Vec<Value>,
}

impl OpenBazaar {
    pub fn new(url: &str, credentials: Credentials) -> Result<Self, MarketError> {
        Self::with_timeout(url, credentials, TIMEOUT)
    }

    /// A client whose every call gives up after `timeout` (a node that hangs must not hold a pass).
    pub fn with_timeout(
        url: &str,
        credentials: Credentials,
        timeout: Duration,
    ) -> Result<Self, MarketError> {
        // TLS to an https:// node on ring (the provider the rest of the server uses), when none is set yet.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| MarketError::Network(e.to_string()))?;
        Ok(Self {
            base: url.trim_end_matches('/').to_owned(),
            credentials,
            http,
            timeout,
            facts: OnceCell::new(),
        })
    }

    /// One API call: JSON in, JSON out, errors classified (403 with a plain-text body is an auth failure).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, MarketError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        req = match &self.credentials {
            Credentials::Basic { user, password } => req.basic_auth(user, Some(password)),
            Credentials::Cookie(c) => req.header("cookie", format!("OpenBazaar_Auth_Cookie={c}")),
        };
        if let Some(body) = body {
            req = req.json(body);
        }
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                MarketError::Timeout(self.timeout.as_secs().max(1))
            } else {
                MarketError::Network(e.without_url().to_string())
            }
        };
        let resp = req.send().await.map_err(failed)?;
        let status = resp.status();
        let text = resp.text().await.map_err(failed)?;
        if status == StatusCode::FORBIDDEN {
            return Err(MarketError::Auth);
        }
        if !status.is_success() {
            let reason = serde_json::from_str::<ErrorBody>(&text)
                .map(|e| e.reason)
                .unwrap_or_else(|_| text.chars().take(200).collect());
            return Err(MarketError::Refused {
                status: status.as_u16(),
                reason,
            });
        }
        serde_json::from_str(&text).map_err(|e| MarketError::Decode(e.to_string()))
    }

    async fn facts(&self) -> Result<&NodeFacts, MarketError> {
        self.facts
            .get_or_try_init(|| async {
                let profile = self.call(Method::GET, "/ob/profile", None).await?;
                let schema = profile["version"].as_u64().unwrap_or(4) as u32;
                let config = self.call(Method::GET, "/ob/config", None).await?;
                let currencies: Vec<String> = config["wallets"]
                    .as_array()
                    .map(|w| w.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                if currencies.is_empty() {
                    return Err(MarketError::Decode("the node reports no wallet".into()));
                }
                let images = self
                    .call(
                        Method::POST,
                        "/ob/images",
                        Some(&json!([{"filename": "p2pvps.png", "image": IMAGE_PNG_BASE64}])),
                    )
                    .await?;
                let hashes = &images[0]["hashes"];
                let image = json!({
                    "filename": "p2pvps.png", "tiny": hashes["tiny"], "small": hashes["small"],
                    "medium": hashes["medium"], "large": hashes["large"], "original": hashes["original"],
                });
                Ok(NodeFacts {
                    schema,
                    currencies,
                    image,
                })
            })
            .await
    }

    /// The listing body in the node's schema (v4: integer `price`; v5: `bigPrice` and `priceCurrency`).
    fn body(facts: &NodeFacts, spec: &ListingSpec) -> Value {
        let currency = spec.price.currency.as_str();
        let decimals = spec.price.currency.decimals();
        let mut metadata = json!({
            "version": facts.schema, "contractType": "SERVICE", "format": "FIXED_PRICE",
            "expiry": spec.expiry.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "acceptedCurrencies": facts.currencies,
        });
        let mut item = json!({
            "title": spec.title, "description": spec.description, "processingTime": "minutes",
            "tags": ["vps"], "categories": [], "condition": "New", "nsfw": false, "options": [],
            "images": [facts.image],
        });
        if facts.schema >= 5 {
            item["bigPrice"] = json!(spec.price.minor.to_string());
            item["priceCurrency"] = json!({"code": currency, "divisibility": decimals});
            item["skus"] =
                json!([{"productID": spec.slug, "bigSurcharge": "0", "bigQuantity": "1"}]);
        } else {
            metadata["pricingCurrency"] = json!(currency);
            item["price"] = json!(spec.price.minor);
            item["skus"] = json!([{"productID": spec.slug, "surcharge": 0, "quantity": 1}]);
        }
        json!({
            "slug": spec.slug, "metadata": metadata, "item": item, "shippingOptions": [], "taxes": [],
            "coupons": [], "moderators": [], "termsAndConditions": "", "refundPolicy": "",
        })
    }
}

#[async_trait::async_trait]
impl Marketplace for OpenBazaar {
    fn name(&self) -> &'static str {
        "openbazaar"
    }

    async fn list(&self, spec: &ListingSpec) -> Result<(), MarketError> {
        let body = Self::body(self.facts().await?, spec);
        match self.call(Method::POST, "/ob/listing", Some(&body)).await {
            Err(MarketError::Refused { status: 409, .. }) => {
                self.call(Method::PUT, "/ob/listing", Some(&body)).await?;
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    async fn delist(&self, slug: &str) -> Result<(), MarketError> {
        match self
            .call(Method::DELETE, &format!("/ob/listing/{slug}"), None)
            .await
        {
            Ok(_) | Err(MarketError::Refused { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn new_orders(&self) -> Result<Vec<Order>, MarketError> {
        let (found, foreign) = read_notifications(
            self.call(Method::GET, "/ob/notifications?limit=-1", None)
                .await?,
        )?;
        // Not ours to act on: read now, so none ever stands in front of an order.
        for id in foreign {
            self.call(
                Method::POST,
                &format!("/ob/marknotificationasread/{id}"),
                None,
            )
            .await?;
        }
        let mut orders: BTreeMap<String, Order> =
            found.into_iter().map(|o| (o.id.clone(), o)).collect();
        // The safety net: paid sales whose notification was lost or already read.
        let sales = read_sales(self.call(Method::GET, "/ob/sales?state=0,3", None).await?)?;
        for sale in sales {
            orders.entry(sale.id.clone()).or_insert(sale);
        }
        Ok(orders.into_values().collect())
    }

    async fn payment(&self, order: &Order) -> Result<Payment, MarketError> {
        let current = self
            .call(Method::GET, &format!("/ob/order/{}", order.id), None)
            .await?;
        Ok(read_payment(&current, &order.slug))
    }

    async fn deliver(&self, order: &Order, note: &str) -> Result<(), MarketError> {
        let current = self
            .call(Method::GET, &format!("/ob/order/{}", order.id), None)
            .await?;
        match current["state"].as_str() {
            Some("AWAITING_FULFILLMENT" | "PARTIALLY_FULFILLED") => {}
            // Paid while we were not confirming orders: accept it first (the node refuses an unfunded
            // one, and one confirmed meanwhile, which is then fulfilled as usual).
            Some("PENDING") => {
                let body = json!({"orderId": order.id, "reject": false});
                match self
                    .call(Method::POST, "/ob/orderconfirmation", Some(&body))
                    .await
                {
                    Ok(_) => {}
                    Err(MarketError::Refused {
                        status: 400,
                        reason,
                    }) if reason == "order has already been confirmed" => {}
                    Err(e) => return Err(e),
                }
            }
            // Already fulfilled (a retry after a crash), or not ours to fulfil.
            _ => return Ok(()),
        }
        let body = json!({"orderId": order.id, "slug": order.slug, "note": note});
        self.call(Method::POST, "/ob/orderfulfillment", Some(&body))
            .await
            .map(|_| ())
    }

    /// `/ws` frames `{"notification": {"type": "order", ...}}` wake the caller; the connection is kept up
    /// with backoff (1 s doubling to 30 s). The node never replays missed frames, so they are only hints.
    async fn watch(&self, wake: std::sync::Arc<tokio::sync::Notify>) {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}/ws", self.base.replacen("http", "ws", 1));
        let mut backoff = Duration::from_secs(1);
        loop {
            let connected = async {
                let mut request = url.as_str().into_client_request().ok()?;
                let auth = match &self.credentials {
                    Credentials::Basic { user, password } => format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD
                            .encode(format!("{user}:{password}"))
                    ),
                    Credentials::Cookie(c) => format!("OpenBazaar_Auth_Cookie={c}"),
                };
                let header = match &self.credentials {
                    Credentials::Basic { .. } => "authorization",
                    Credentials::Cookie(_) => "cookie",
                };
                request.headers_mut().insert(header, auth.parse().ok()?);
                tokio_tungstenite::connect_async(request).await.ok()
            }
            .await;
            if let Some((mut ws, _)) = connected {
                backoff = Duration::from_secs(1);
                // A new connection may have missed frames: look now.
                wake.notify_one();
                while let Some(Ok(frame)) = ws.next().await {
                    if let Ok(text) = frame.to_text()
                        && let Ok(v) = serde_json::from_str::<Value>(text)
                        && v["notification"]["type"] == "order"
                    {
                        wake.notify_one();
                    }
                }
                tracing::info!("OpenBazaar websocket closed; reconnecting");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    async fn mark_handled(&self, order: &Order) -> Result<(), MarketError> {
        if let Some(id) = &order.notification {
            self.call(
                Method::POST,
                &format!("/ob/marknotificationasread/{id}"),
                None,
            )
            .await?;
        }
        Ok(())
    }
}

/// The orders among the unread notifications of `/ob/notifications`, and the ids of the other unread
/// notifications (to mark read). Whatever the node sends, this answers or refuses; it never panics.
pub fn read_notifications(body: Value) -> Result<(Vec<Order>, Vec<String>), MarketError> {
    let list: NotificationList =
        serde_json::from_value(body).map_err(|e| MarketError::Decode(e.to_string()))?;
    let (mut orders, mut foreign) = (Vec::new(), Vec::new());
    for n in list.notifications.into_iter().filter(|n| !n.read) {
        let id = n.notification["notificationId"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if n.kind != "order" {
            if !id.is_empty() {
                foreign.push(id);
            }
            continue;
        }
        let (Some(order), Some(slug)) = (
            n.notification["orderId"].as_str(),
            n.notification["slug"].as_str(),
        ) else {
            continue;
        };
        orders.push(Order {
            id: order.to_owned(),
            slug: slug.to_owned(),
            notification: Some(id).filter(|i| !i.is_empty()),
            paid: money(&n.notification["price"]),
        });
    }
    Ok((orders, foreign))
}

/// The sales listed by `/ob/sales` (PENDING or awaiting fulfilment, as asked).
pub fn read_sales(body: Value) -> Result<Vec<Order>, MarketError> {
    let sales: SalesList =
        serde_json::from_value(body).map_err(|e| MarketError::Decode(e.to_string()))?;
    Ok(sales
        .sales
        .iter()
        .filter_map(|sale| {
            let (Some(order), Some(slug)) = (sale["orderId"].as_str(), sale["slug"].as_str())
            else {
                return None;
            };
            Some(Order {
                id: order.to_owned(),
                slug: slug.to_owned(),
                notification: None,
                paid: money(&sale["total"]),
            })
        })
        .collect())
}

/// What `GET /ob/order/{id}` says of the order's payment: `funded`, the amount of the buyer's order
/// (v0.14 `payment.bigAmount` in `payment.amountCurrency`, v0.13 `payment.amount` in `payment.coin`), and
/// the price of the listing `slug` as the contract copies it (v0.14 `item.bigPrice` in
/// `item.priceCurrency`, v0.13 `item.price` in `metadata.pricingCurrency`). A listing priced in a fiat
/// currency is paid in a coin: the node converts the price at its exchange rate and refuses an order
/// whose amount falls short of it (`ValidatePaymentAmount`), then calls the order funded once that amount
/// is received.
pub fn read_payment(order: &Value, slug: &str) -> Payment {
    let payment = &order["contract"]["buyerOrder"]["payment"];
    let amount = match (&payment["bigAmount"], &payment["amount"]) {
        (Value::String(s), _) => s.parse().ok(),
        (_, Value::Number(n)) => n.as_i64(),
        (_, Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    let code = payment["amountCurrency"]["code"]
        .as_str()
        .or_else(|| payment["coin"].as_str());
    let listings = order["contract"]["vendorListings"].as_array();
    let listing = listings
        .and_then(|all| all.iter().find(|l| l["slug"] == slug))
        .or_else(|| listings.and_then(|all| all.first()));
    Payment {
        funded: order["funded"].as_bool().unwrap_or(false),
        paid: amount
            .zip(code)
            .and_then(|(amount, code)| Money::price(amount, code).ok()),
        listed: listing.and_then(listed_price),
    }
}

/// A listing's price as a contract copies it (v5 `item.bigPrice` + `item.priceCurrency.code`, v4
/// `item.price` + `metadata.pricingCurrency`).
fn listed_price(listing: &Value) -> Option<Money> {
    let item = &listing["item"];
    let (amount, code) = match (&item["bigPrice"], &item["price"]) {
        (Value::String(s), _) => (s.parse().ok()?, item["priceCurrency"]["code"].as_str()?),
        (_, Value::Number(n)) => (
            n.as_i64()?,
            listing["metadata"]["pricingCurrency"].as_str()?,
        ),
        _ => return None,
    };
    Money::price(amount, code).ok()
}

/// The paid amount of a notification or sale (v0.14 `{amount: "<str>", currency: {code}}`, v0.13
/// `{amount: <int>, currencyCode}`).
fn money(price: &Value) -> Option<Money> {
    let amount = match &price["amount"] {
        Value::String(s) => s.parse().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    let code = price["currency"]["code"]
        .as_str()
        .or_else(|| price["currencyCode"].as_str())?;
    Money::price(amount, code).ok()
}

#[cfg(test)]
mod tests {
    use super::{read_notifications, read_payment, read_sales};
    use p2pvps_shared::Money;
    use serde_json::json;

    #[test]
    fn the_payment_is_read_from_the_order_in_either_schema() {
        let v5 = read_payment(
            &json!({"state": "PENDING", "funded": true, "contract": {
            "vendorListings": [
                {"slug": "other", "item": {"bigPrice": "100", "priceCurrency": {"code": "EUR"}}},
                {"slug": "pi", "item": {"bigPrice": "300", "priceCurrency": {"code": "USD", "divisibility": 2}}}],
            "buyerOrder": {"payment": {"method": "DIRECT", "bigAmount": "250", "amountCurrency": {"code": "USD", "divisibility": 2}}}}}),
            "pi",
        );
        assert!(v5.funded);
        assert_eq!(v5.paid, Some(Money::price(250, "USD").unwrap()));
        assert_eq!(v5.listed, Some(Money::price(300, "USD").unwrap()));
        let v4 = read_payment(
            &json!({"funded": false, "contract": {
            "vendorListings": [{"slug": "pi", "metadata": {"pricingCurrency": "USD"}, "item": {"price": 300}}],
            "buyerOrder": {"payment": {"amount": 300, "coin": "BCH"}}}}),
            "renamed",
        );
        assert!(!v4.funded);
        assert_eq!(v4.paid, Some(Money::price(300, "BCH").unwrap()));
        assert_eq!(v4.listed, Some(Money::price(300, "USD").unwrap()));
        let unknown = read_payment(&json!({"funded": true, "contract": {}}), "pi");
        assert_eq!(unknown.paid, None);
        assert_eq!(unknown.listed, None);
        assert!(!read_payment(&json!([1]), "pi").funded);
        let zero = read_payment(
            &json!({"funded": true, "contract": {"buyerOrder":
            {"payment": {"bigAmount": "0", "amountCurrency": {"code": "USD"}}}}}),
            "pi",
        );
        assert_eq!(zero.paid, None);
    }

    #[test]
    fn orders_are_read_from_unread_order_notifications_and_sales() {
        let body = json!({"notifications": [
            {"read": false, "type": "order", "notification": {"notificationId": "n1", "orderId": "o1",
             "slug": "pi", "price": {"amount": "500", "currency": {"code": "USD"}}}},
            {"read": true, "type": "order", "notification": {"notificationId": "n2", "orderId": "o2", "slug": "pi"}},
            {"read": false, "type": "follow", "notification": {"notificationId": "n3"}},
            {"read": false, "type": "order", "notification": {"notificationId": "n4", "slug": "pi"}},
            {"read": false, "type": "order", "notification": {"orderId": "o5", "slug": "pi",
             "price": {"amount": -3, "currencyCode": "USD"}}}
        ]});
        let (orders, foreign) = read_notifications(body).unwrap();
        assert_eq!(foreign, ["n3"]);
        let seen: Vec<_> = orders
            .iter()
            .map(|o| {
                (
                    o.id.as_str(),
                    o.notification.as_deref(),
                    o.paid.as_ref().map(|p| p.minor),
                )
            })
            .collect();
        assert_eq!(seen, [("o1", Some("n1"), Some(500)), ("o5", None, None)]);
        assert!(read_notifications(json!({"notifications": "no"})).is_err());
        assert!(read_notifications(json!([1, 2])).is_err());

        let sales = read_sales(json!({"sales": [{"orderId": "o9", "slug": "pi",
            "total": {"amount": 700, "currencyCode": "USD"}}, {"slug": "no-order"}, 7]}))
        .unwrap();
        assert_eq!(sales.len(), 1);
        assert_eq!(sales[0].paid.as_ref().map(|p| p.minor), Some(700));
    }
}
