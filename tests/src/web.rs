//! A device's web server (the origin) and real HTTP clients (curl, WebSocket) for the gateway tests.

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::routing::{any, get};
use futures::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::Command;

/// The page every origin serves at `/`, with its name in it.
pub fn page(name: &str) -> String {
    format!("<h1>hello from {name}</h1>")
}

/// Starts the device's web server on 127.0.0.1: `/` a page, `/headers` the request headers as JSON,
/// `/upload` (any method) the length and SHA-256 of the streamed body, `/ws` a WebSocket echo, `/stall`
/// a body that stops half-way.
pub async fn origin(name: &str) -> u16 {
    let page = page(name);
    let app = Router::new()
        .route("/", get(move || async move { axum::response::Html(page) }))
        .route("/headers", get(headers))
        .route("/cookies", get(cookies))
        .route("/upload", any(upload))
        .route("/ws", get(ws))
        .route("/stall", get(stall));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

async fn headers(headers: HeaderMap) -> axum::Json<serde_json::Value> {
    let map: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").into()))
        .collect();
    axum::Json(map.into())
}

/// Sets a host-only cookie, one for its own host, and one for the parent domain (cookie tossing).
async fn cookies(headers: HeaderMap) -> axum::response::Response {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h).to_owned();
    let parent = host.split_once('.').map_or("", |(_, p)| p).to_owned();
    let mut response = axum::response::IntoResponse::into_response("cookies set");
    for cookie in [
        "own=1; Path=/".to_owned(),
        format!("mine=1; Domain={host}; Path=/"),
        format!("p2pvps_session=tossed; Domain={parent}; Path=/"),
    ] {
        response.headers_mut().append(
            axum::http::header::SET_COOKIE,
            cookie.parse().expect("a header value"),
        );
    }
    response
}

async fn upload(body: axum::body::Body) -> String {
    let mut stream = body.into_data_stream();
    let mut hash = Sha256::new();
    let mut len = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("body chunk");
        len += chunk.len();
        hash.update(&chunk);
    }
    format!("{len} {}", hex(&hash.finalize()))
}

/// Sends the start of a body, then nothing, for ever (a device that hangs mid-response).
async fn stall() -> axum::body::Body {
    let start = futures::stream::once(async { Ok::<_, std::io::Error>("partial".to_owned()) });
    axum::body::Body::from_stream(start.chain(futures::stream::pending()))
}

async fn ws(upgrade: WebSocketUpgrade) -> axum::response::Response {
    upgrade.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(msg)) = socket.next().await {
            let reply = match msg {
                Message::Text(t) => Message::Text(format!("echo: {t}").into()),
                Message::Binary(b) => Message::Binary(b),
                Message::Close(_) => break,
                _ => continue,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `len` bytes of a repeating non-trivial pattern written to `path`; returns `"LEN SHA256"` as `/upload` does.
pub fn payload_file(path: &Path, len: usize) -> String {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(path, &data).unwrap();
    format!("{len} {}", hex(&Sha256::digest(&data)))
}

/// The answer of a real `curl`: status, HTTP version and body.
#[derive(Debug)]
pub struct Curl {
    pub status: u16,
    pub version: String,
    pub body: String,
}

/// Runs `curl` for `url`, resolving its host to 127.0.0.1 at `port` and trusting `ca` (when given).
pub async fn curl(url: &str, port: u16, ca: Option<&Path>, extra: &[&str]) -> Curl {
    let host = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split([':', '/']).next())
        .unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "60", "--resolve"])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(["-w", "\n%{http_code} %{http_version}"]);
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(ca);
    }
    cmd.args(extra).arg(url).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("curl finished")
        .expect("curl ran");
    assert!(
        out.status.success(),
        "curl {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let (body, tail) = text.rsplit_once('\n').unwrap();
    let (status, version) = tail.split_once(' ').unwrap();
    Curl {
        status: status.parse().unwrap(),
        version: version.to_owned(),
        body: body.to_owned(),
    }
}

/// Sends raw bytes on a fresh connection and returns the status code of the answer.
pub async fn raw_status(addr: std::net::SocketAddr, request: &[u8]) -> u16 {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before reading everything we send.
    let _ = socket.write_all(request).await;
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), socket.read_exact(&mut head))
        .await
        .expect("an answer within 10 s")
        .expect("a status line");
    let line = String::from_utf8_lossy(&head).into_owned();
    line[9..12]
        .parse()
        .unwrap_or_else(|_| panic!("status line: {line}"))
}

/// A TLS client configuration trusting only the PEM CA at `ca`.
pub fn tls_trusting(ca: &Path) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Opens a WebSocket to `url` (ws:// or wss://) at 127.0.0.1:`port`, sends a text and returns the echo.
pub async fn websocket_echo(url: &str, port: u16, ca: &Path, text: &str) -> String {
    use tokio_tungstenite::tungstenite::Message as M;
    let host = url
        .split("://")
        .nth(1)
        .unwrap()
        .split([':', '/'])
        .next()
        .unwrap()
        .to_owned();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let reply = if url.starts_with("wss://") {
        let connector = tokio_rustls::TlsConnector::from(tls_trusting(ca));
        let name = rustls::pki_types::ServerName::try_from(host).unwrap();
        let tls = connector.connect(name, tcp).await.expect("TLS handshake");
        let (mut ws, _) = tokio_tungstenite::client_async(url, tls)
            .await
            .expect("websocket upgrade through the gateway");
        ws.send(M::Text(text.into())).await.unwrap();
        ws.next().await
    } else {
        let (mut ws, _) = tokio_tungstenite::client_async(url, tcp)
            .await
            .expect("websocket upgrade through the gateway");
        ws.send(M::Text(text.into())).await.unwrap();
        ws.next().await
    };
    match reply {
        Some(Ok(M::Text(t))) => t.to_string(),
        other => panic!("no echo: {other:?}"),
    }
}

/// The real `lt` client: `P2PVPS_LT`, as `cargo xtask test` installs it, or installed now from the same
/// pinned lockfile into `target/localtunnel-npm`.
pub fn lt_bin() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("P2PVPS_LT") {
        return path.into();
    }
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("target/localtunnel-npm");
    let bin = dir.join("node_modules/.bin/lt");
    if !bin.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        for file in ["package.json", "package-lock.json"] {
            std::fs::copy(root.join("xtask/localtunnel").join(file), dir.join(file)).unwrap();
        }
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel", "error"])
            .current_dir(&dir)
            .status()
            .expect("npm runs");
        assert!(status.success(), "npm ci of localtunnel@2.0.2 failed");
    }
    bin
}
