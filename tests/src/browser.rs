//! Real headless Chromium driven through WebDriver (Debian's `chromium` and `chromedriver`), for the
//! dashboard's end-to-end tests. Waits poll for a condition with a deadline; nothing sleeps blindly.

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

/// How long a page gets to show what a test waits for (a cold wasm start included).
const WAIT: Duration = Duration::from_secs(20);

pub struct Browser {
    pub client: Client,
    base: String,
    _driver: Child,
    /// Chromium's profile, removed when the browser is dropped.
    _profile: tempfile::TempDir,
}

/// Where screenshots go: `target/screenshots/` of the workspace.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots")
}

impl Browser {
    /// Starts chromedriver on a free port and a fresh Chromium profile, `width` pixels wide, for the app at
    /// `base` (`http://127.0.0.1:PORT`).
    pub async fn start(base: &str, width: u32) -> Self {
        // A port taken between the check and chromedriver's bind (by another process) means another
        // port: chromedriver exits without saying it started.
        let mut attempts = 0;
        let (port, driver, mut lines) = loop {
            attempts += 1;
            let port = crate::openssh::free_port();
            let mut driver = Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("chromedriver starts (Debian package chromium-driver)");
            // It says when it listens.
            let stdout = driver.stdout.take().expect("chromedriver stdout");
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let started = tokio::time::timeout(WAIT, async {
                let mut said = Vec::new();
                while let Some(line) = lines.next_line().await.expect("chromedriver output") {
                    if line.contains("started successfully") {
                        return Ok(());
                    }
                    said.push(line);
                }
                Err(said)
            })
            .await
            .expect("chromedriver listening within 20 s");
            match started {
                Ok(()) => break (port, driver, lines),
                Err(_) if attempts < 5 => continue,
                Err(said) => panic!("chromedriver exited before listening: {said:?}"),
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let profile = crate::temp_dir("p2pvps-chromium-");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},900"),
                ]
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");
        Self {
            client,
            base: base.to_owned(),
            _driver: driver,
            _profile: profile,
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

    /// Waits until the first `css` element's text contains `wanted`; returns that text. The page checks
    /// on every animation frame, so nothing here sleeps.
    pub async fn wait_text(&self, css: &str, wanted: &str) -> String {
        let found = self
            .until(
                "const el = document.querySelector(arguments[0]);
                 return el && el.innerText.includes(arguments[1]) ? el.innerText : null;",
                vec![json!(css), json!(wanted)],
            )
            .await;
        match found {
            Ok(text) => text.as_str().unwrap_or_default().to_owned(),
            Err(last) => panic!("`{css}` never showed {wanted:?} (last: {last})"),
        }
    }

    /// Waits until the browser is at `path`.
    pub async fn wait_path(&self, path: &str) {
        let found = self
            .until(
                "return location.pathname === arguments[0] ? location.pathname : null;",
                vec![json!(path)],
            )
            .await;
        if let Err(last) = found {
            panic!("never reached {path} (at {last})");
        }
    }

    /// Evaluates `check` (a function body over `arguments`) on every animation frame until it returns
    /// something other than null, for up to [`WAIT`]. On time-out, returns what the page showed last.
    async fn until(
        &self,
        check: &str,
        args: Vec<serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let script = format!(
            "const args = Array.from(arguments).slice(0, -1);
             const done = arguments[arguments.length - 1];
             const check = function() {{ {check} }};
             const deadline = performance.now() + {ms};
             (function poll() {{
               let v = null;
               try {{ v = check.apply(null, args); }} catch (e) {{}}
               if (v !== null) {{ done({{ok: v}}); }}
               else if (performance.now() > deadline) {{ done({{timeout: location.pathname + ' ' + document.body.innerText.slice(0, 300)}}); }}
               else {{ requestAnimationFrame(poll); }}
             }})();",
            ms = WAIT.as_millis()
        );
        let out = self
            .client
            .execute_async(&script, args)
            .await
            .map_err(|e| e.to_string())?;
        match out.get("ok") {
            Some(v) => Ok(v.clone()),
            None => Err(out["timeout"].as_str().unwrap_or_default().to_owned()),
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
    }
}
