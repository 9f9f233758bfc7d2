//! Real headless Chromium driven through WebDriver (Debian's `chromium` and `chromedriver`), for the
//! dashboard's end-to-end tests. Waits poll for a condition with a deadline; nothing sleeps blindly.

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// How long a page gets to show what a test waits for (a cold wasm start included).
const WAIT: Duration = Duration::from_secs(20);

pub struct Browser {
    pub client: Client,
    base: String,
    _driver: Child,
    profile: PathBuf,
}

/// Where screenshots go: `target/screenshots/` of the workspace.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots")
}

impl Browser {
    /// Starts chromedriver on a free port and a fresh Chromium profile, `width` pixels wide, for the app at
    /// `base` (`http://127.0.0.1:PORT`).
    pub async fn start(base: &str, width: u32) -> Self {
        let port = crate::openssh::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts (Debian package chromium-driver)");
        let profile =
            std::env::temp_dir().join(format!("p2pvps-chromium-{}", uuid::Uuid::new_v4()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--window-size={width},900"),
                ]
            }),
        );
        // chromedriver answers once it listens: retry the session until then.
        let deadline = tokio::time::Instant::now() + WAIT;
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no WebDriver session: {e}"),
            }
        };
        Self {
            client,
            base: base.to_owned(),
            _driver: driver,
            profile,
        }
    }

    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .expect("page loads");
    }

    /// The element once it exists.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        input.clear().await.expect("clear");
        input.send_keys(text).await.expect("type");
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text")
    }

    /// Waits until the first `css` element's text contains `wanted`; returns that text.
    pub async fn wait_text(&self, css: &str, wanted: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut last = String::new();
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = el.text().await
            {
                if text.contains(wanted) {
                    return text;
                }
                last = text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "`{css}` never showed {wanted:?} (last: {last:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the browser is at `path`.
    pub async fn wait_path(&self, path: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let url = self.client.current_url().await.expect("url");
            if url.path() == path {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never reached {path} (at {url})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG of the page as `target/screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot written");
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
