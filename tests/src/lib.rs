//! Test helpers: start the real application on port 0 against the test's own database (`#[sqlx::test]`
//! creates and drops it), and talk to it over real HTTP, so tests read as stories.

use p2pvps_server::accounts::users;
use p2pvps_server::app::{self, Running, Settings};
use p2pvps_server::infra::audit::Actor;
use p2pvps_server::infra::crypto::SecretBox;
use p2pvps_shared::{Email, Password, Role};
use serde_json::{Value, json};
use sqlx::PgPool;

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub base: String,
    pub pool: PgPool,
    pub secrets: SecretBox,
    running: Option<Running>,
}

/// The dashboard build to serve: `P2PVPS_WEB_DIR` (`cargo xtask test` sets it), else `target/dist`. Fails
/// when there is none, rather than letting a dashboard test pass without a dashboard.
pub fn web_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("P2PVPS_WEB_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dist")
        });
    assert!(
        dir.join("index.html").is_file(),
        "no dashboard build in {}: run `cargo xtask frontend` (or `cargo xtask test`)",
        dir.display()
    );
    dir
}

/// A fresh directory under the system's temporary directory, its name starting with `prefix`, removed
/// when dropped: at the end of the test, or while a failed test unwinds. Keep it for as long as a server
/// (or a restarted one) uses it.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("a temporary directory")
}

/// A fresh random key, as a deployment without `P2PVPS_SECRET_KEY` would generate.
pub fn test_key() -> SecretBox {
    SecretBox::generate()
}

impl TestApp {
    pub async fn start(pool: PgPool) -> Self {
        Self::start_with(pool, |_| {}).await
    }

    /// With the SSH tunnel server on 127.0.0.1 (port 0 unless given), a host key in `data_dir`, and a
    /// small tunnel port range of its own (tests run in parallel).
    pub async fn start_with_ssh(pool: PgPool, data_dir: &std::path::Path, ssh_port: u16) -> Self {
        Self::start_with_ssh_and(pool, data_dir, ssh_port, |_| {}).await
    }

    /// [`TestApp::start_with_ssh`], then `adjust` the settings.
    pub async fn start_with_ssh_and(
        pool: PgPool,
        data_dir: &std::path::Path,
        ssh_port: u16,
        adjust: impl FnOnce(&mut Settings),
    ) -> Self {
        let host_key = p2pvps_server::ssh::host_key::load_or_create(data_dir).expect("host key");
        let ports = openssh::free_port_range(3);
        Self::start_with(pool, move |s| {
            adjust(s);
            s.tunnel_ports = ports;
            s.ssh = Some(p2pvps_server::ssh::SshSettings {
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], ssh_port)),
                tunnel_bind: std::net::IpAddr::from([127, 0, 0, 1]),
                host_key,
                auth_timeout: std::time::Duration::from_secs(2),
            });
        })
        .await
    }

    pub fn ssh_addr(&self) -> std::net::SocketAddr {
        self.running
            .as_ref()
            .and_then(|r| r.ssh_addr)
            .expect("started with SSH")
    }

    /// The web gateway's listeners (started with `Settings::gateway`).
    pub fn gateway(&self) -> &p2pvps_server::gateway::Gateway {
        self.running
            .as_ref()
            .and_then(|r| r.gateway.as_ref())
            .expect("started with a gateway")
    }

    pub async fn start_with(pool: PgPool, adjust: impl FnOnce(&mut Settings)) -> Self {
        let secrets = test_key();
        let mut settings = Settings::for_tests(secrets.clone());
        adjust(&mut settings);
        let running = app::start(settings, pool.clone())
            .await
            .expect("server starts");
        Self {
            base: format!("http://{}", running.addr),
            pool,
            secrets,
            running: Some(running),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The metrics listener's `/metrics` URL.
    pub fn metrics_url(&self) -> String {
        let addr = self
            .running
            .as_ref()
            .and_then(|r| r.metrics_addr)
            .expect("started with a metrics listener");
        format!("http://{addr}/metrics")
    }

    /// The Prometheus text of `/metrics`, from the metrics listener.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.metrics_url())
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics text")
    }

    /// Runs the server's periodic housekeeping once now (expiries, unpaid orders), instead of waiting
    /// for its 30 s timer.
    pub async fn housekeep(&self) {
        self.running.as_ref().expect("running").housekeep().await;
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("clean shutdown");
        }
    }

    /// A client with no credentials.
    pub fn anonymous(&self) -> Client {
        Client::new(self, None)
    }

    /// A client with no session whose connections come from `address` (another loopback address plays
    /// another host: the server listens on 127.0.0.1 and sees the source address).
    pub fn anonymous_from(&self, address: std::net::IpAddr) -> Client {
        let mut client = Client::new(self, None);
        client.http = reqwest::Client::builder()
            .cookie_store(true)
            .local_address(address)
            .build()
            .expect("client");
        client
    }

    /// Creates a user directly in the database (any role, admins too) and signs in with a bearer token.
    pub async fn user(&self, email: &str, role: Role) -> Client {
        let mut tx = self.pool.begin().await.expect("begin");
        users::create(
            &mut tx,
            Some(&Actor::system()),
            &Email::parse(email).expect("valid email"),
            &Password::parse(PASSWORD).expect("valid password"),
            role,
            false,
        )
        .await
        .expect("user created");
        tx.commit().await.expect("commit");
        self.log_in_bearer(email).await
    }

    pub async fn log_in_bearer(&self, email: &str) -> Client {
        self.log_in_bearer_with(email, PASSWORD).await
    }

    /// Logs in with `password` and a bearer token.
    pub async fn log_in_bearer_with(&self, email: &str, password: &str) -> Client {
        let r = self
            .anonymous()
            .gql(
                "mutation($i: LogInInput!) { logIn(input: $i) { token } }",
                json!({"i": {"email": email, "password": password, "bearer": true}}),
            )
            .await;
        let token = r
            .data("logIn.token")
            .as_str()
            .expect("a bearer token")
            .to_owned();
        Client::new(self, Some(token))
    }

    /// Signs up through the API with the cookie session, as the dashboard does.
    pub async fn sign_up_cookie(&self, email: &str, role: &str) -> (Client, Gql) {
        let client = Client::new(self, None);
        let r = client
            .gql(
                "mutation($i: SignUpInput!) { signUp(input: $i) { user { id email role } token } }",
                json!({"i": {"email": email, "password": PASSWORD, "role": role}}),
            )
            .await;
        (client, r)
    }
}

/// An HTTP client with a cookie jar and optionally a bearer token.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub token: Option<String>,
    endpoint: String,
}

impl Client {
    /// Disables the user `id` (the client must be an admin's).
    pub async fn disable_user(&self, id: impl std::fmt::Display) {
        self.gql(
            "mutation($u: ID!) { disableUser(userId: $u) { disabled } }",
            json!({"u": id.to_string()}),
        )
        .await
        .ok();
    }

    fn new(app: &TestApp, token: Option<String>) -> Self {
        Self {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .build()
                .expect("client"),
            token,
            endpoint: app.url("/graphql"),
        }
    }

    pub async fn gql(&self, query: &str, variables: Value) -> Gql {
        self.gql_raw(json!({"query": query, "variables": variables}))
            .await
    }

    pub async fn gql_raw(&self, body: Value) -> Gql {
        let mut req = self.http.post(&self.endpoint).json(&body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let set_cookie: Vec<String> = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let body: Value = resp.json().await.expect("JSON response");
        Gql {
            status,
            body,
            set_cookie,
        }
    }
}

/// A GraphQL response with helpers to read it.
#[derive(Debug, Clone)]
pub struct Gql {
    pub status: u16,
    pub body: Value,
    pub set_cookie: Vec<String>,
}

impl Gql {
    /// The value at a dotted path under `data` (`"device.owner.email"`); numbers index lists.
    pub fn data(&self, path: &str) -> &Value {
        let mut v = &self.body["data"];
        for part in path.split('.') {
            v = match part.parse::<usize>() {
                Ok(i) => &v[i],
                Err(_) => &v[part],
            };
        }
        v
    }

    /// The first error's `extensions.code`, or None when there is no error.
    pub fn code(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["code"].as_str()
    }

    pub fn field(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["field"].as_str()
    }

    pub fn message(&self) -> &str {
        self.body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
    }

    /// Fails with the errors shown when the response has any.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert!(
            self.body.get("errors").is_none(),
            "unexpected errors: {}",
            self.body
        );
        self
    }

    #[track_caller]
    pub fn assert_code(&self, code: &str) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "expected {code}, got {}",
            self.body
        );
        self
    }
}

/// Registers a device through the API; returns (id, credential).
pub async fn add_device(client: &Client, name: &str) -> (String, String) {
    let d = create_device(client, json!({ "name": name })).await;
    (d.id, d.credential)
}

/// A device as `createDevice` returned it.
pub struct NewDevice {
    pub id: String,
    /// Shown once, at creation.
    pub credential: String,
    /// Its public port on the tunnel server.
    pub port: u16,
}

/// Creates a device with `input` (a `CreateDeviceInput`) as `client`.
pub async fn create_device(client: &Client, input: Value) -> NewDevice {
    let r = client
        .gql(
            "mutation($i: CreateDeviceInput!) { createDevice(input: $i) { credential device { id tunnelPort } } }",
            json!({ "i": input }),
        )
        .await;
    r.ok();
    let text = |path: &str| r.data(path).as_str().expect(path).to_owned();
    NewDevice {
        id: text("createDevice.device.id"),
        credential: text("createDevice.credential"),
        port: r
            .data("createDevice.device.tunnelPort")
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .expect("a port"),
    }
}

/// Puts a live rental of `device` for `renter` straight into the database (the marketplace comes later).
pub async fn rent(
    pool: &PgPool,
    secrets: &SecretBox,
    device: &str,
    renter_email: &str,
    login: &str,
) -> uuid::Uuid {
    let id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO rentals (id, device_id, renter_id, marketplace, order_ref, state, price_minor, currency, \
         starts_at, ends_at, login_name, login_secret_enc) \
         SELECT $1, $2::uuid, u.id, 'admin', $1::text, 'active', 300, 'USD', now(), now() + interval '1 day', $3, $4 \
         FROM users u WHERE u.email = $5",
    )
    .bind(id)
    .bind(device)
    .bind(login)
    .bind(secrets.seal(b"renter-secret"))
    .bind(renter_email)
    .execute(pool)
    .await
    .expect("rental inserted");
    id
}

/// graphql-transport-ws helpers for subscription tests.
pub mod ws {
    use super::TestApp;
    use futures::{SinkExt, StreamExt};
    use serde_json::{Value, json};
    use std::time::Duration;
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

    pub type Ws = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    pub async fn next_json(ws: &mut Ws) -> Value {
        let deadline = Duration::from_secs(10);
        loop {
            let msg = tokio::time::timeout(deadline, ws.next())
                .await
                .expect("a message within 10 s")
                .expect("stream open")
                .expect("no websocket error");
            if let Message::Text(t) = msg {
                return serde_json::from_str(&t).unwrap();
            }
        }
    }

    pub async fn connect(app: &TestApp, token: &str) -> Ws {
        let auth = json!({"authorization": format!("Bearer {token}")});
        connect_with(app, &[], auth).await
    }

    /// Opens a graphql-transport-ws connection with extra handshake headers and an init payload.
    pub async fn connect_with(app: &TestApp, headers: &[(&str, &str)], payload: Value) -> Ws {
        let mut req = app
            .url("/graphql")
            .replace("http", "ws")
            .into_client_request()
            .unwrap();
        let h = req.headers_mut();
        h.insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        for (name, value) in headers {
            let name =
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .unwrap();
            h.insert(name, value.parse().unwrap());
        }
        let (mut ws, resp) = tokio_tungstenite::connect_async(req)
            .await
            .expect("websocket upgrade");
        assert_eq!(
            resp.headers()["sec-websocket-protocol"],
            "graphql-transport-ws"
        );
        let init = json!({"type": "connection_init", "payload": payload});
        ws.send(Message::Text(init.to_string().into()))
            .await
            .unwrap();
        assert_eq!(next_json(&mut ws).await["type"], "connection_ack");
        ws
    }

    /// Sends a subscription and proves (with a ping round trip) the server has taken it before returning.
    pub async fn subscribe(ws: &mut Ws, id: &str, query: &str) {
        let sub = json!({"id": id, "type": "subscribe", "payload": {"query": query}});
        ws.send(Message::Text(sub.to_string().into()))
            .await
            .unwrap();
        ws.send(Message::Text(json!({"type": "ping"}).to_string().into()))
            .await
            .unwrap();
        assert_eq!(next_json(ws).await["type"], "pong");
    }
}

pub mod browser;
pub mod openbazaar;
pub mod openssh;
pub mod server;
pub mod swarm;
pub mod web;

/// Waits for `device` to reach `status` as seen through Postgres `NOTIFY device_status` (subscribe with
/// [`status_listener`] before causing the change).
/// The storefront's id for a device (what `offers` shows and `orderRental` takes).
pub async fn offer_of(pool: &PgPool, device: &str) -> String {
    sqlx::query_scalar::<_, uuid::Uuid>("SELECT offer_id FROM devices WHERE id = $1::uuid")
        .bind(device)
        .fetch_one(pool)
        .await
        .expect("the device exists")
        .to_string()
}

pub async fn wait_status(listener: &mut sqlx::postgres::PgListener, device: &str, status: &str) {
    let deadline = std::time::Duration::from_secs(20);
    tokio::time::timeout(deadline, async {
        loop {
            let n = listener.recv().await.expect("notification");
            let v: Value = serde_json::from_str(n.payload()).unwrap();
            if v["device_id"] == device && v["status"] == status {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("device {device} did not become {status} within 20 s"));
}

pub async fn status_listener(pool: &PgPool) -> sqlx::postgres::PgListener {
    let mut l = sqlx::postgres::PgListener::connect_with(pool)
        .await
        .unwrap();
    l.listen(p2pvps_server::infra::events::DEVICE_STATUS_CHANNEL)
        .await
        .unwrap();
    l
}
