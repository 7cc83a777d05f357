//! A real browser for tests: headless Chromium (Debian's `chromium`, which `.ci/run` installs)
//! driven over the DevTools protocol, so a test checks what a person sees (rendered text, a
//! screenshot), not the raw HTML. A missing Chromium fails the test: it must never pass by
//! skipping the check.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const CHROMIUM: &str = "/usr/bin/chromium";
const WAIT: Duration = Duration::from_secs(30);

/// A running Chromium; killed (and its profile removed) when dropped, also when a test panics.
pub struct Chromium {
    child: Child,
    ws_url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Chromium {
    /// Starts Chromium headless on a free DevTools port and waits for its WebSocket address.
    pub fn launch() -> Chromium {
        assert!(
            std::path::Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: the browser test needs Debian's `chromium` package \
             (`apt-get install -y chromium`; .ci/run installs it)"
        );
        let profile = tempfile::tempdir().expect("a temporary Chromium profile");
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-port=0",
            ])
            .args(["--no-first-run", "--no-default-browser-check", "--disable-extensions"])
            // Containers often have a small /dev/shm; Chromium then crashes rendering large pages.
            .arg("--disable-dev-shm-usage")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("Chromium starts");
        // Chromium prints its DevTools address on stderr; the thread keeps draining stderr
        // afterwards so a chatty browser never blocks on a full pipe.
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line
                    .split_once("DevTools listening on ")
                    .map(|(_, u)| u.trim().to_string())
                {
                    let _ = tx.send(url);
                }
            }
        });
        let mut chromium = Chromium {
            child,
            ws_url: String::new(),
            _profile: profile,
        };
        chromium.ws_url = rx
            .recv_timeout(WAIT)
            .expect("Chromium printed its DevTools address within 30 s");
        chromium
    }

    /// Opens a new tab and attaches to it.
    pub async fn new_page(&self) -> Page {
        let (ws, _) = tokio_tungstenite::connect_async(self.ws_url.as_str())
            .await
            .expect("DevTools WebSocket connects");
        let mut page = Page {
            ws,
            session: None,
            next_id: 0,
            events: Vec::new(),
        };
        let target = page.call("Target.createTarget", json!({ "url": "about:blank" })).await;
        let target_id = target["targetId"].as_str().expect("a target id").to_string();
        let attached = page
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await;
        page.session = Some(attached["sessionId"].as_str().expect("a session id").to_string());
        page.call("Page.enable", json!({})).await;
        page
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One tab, spoken to through its flattened DevTools session.
pub struct Page {
    ws: Socket,
    session: Option<String>,
    next_id: u64,
    /// Events read while waiting for a reply, kept for [`Page::wait_event`].
    events: Vec<Value>,
}

impl Page {
    /// Sends a DevTools command and returns its result (panics on a protocol error).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .expect("DevTools send");
        loop {
            let message = self.read().await;
            if message["id"] == json!(id) {
                assert!(message.get("error").is_none(), "{method} failed: {message}");
                return message["result"].clone();
            }
            self.events.push(message);
        }
    }

    /// Waits for the event `method` (it may already have arrived during a call).
    pub async fn wait_event(&mut self, method: &str) -> Value {
        if let Some(i) = self.events.iter().position(|e| e["method"] == method) {
            return self.events.remove(i);
        }
        loop {
            let message = self.read().await;
            if message["method"] == method {
                return message;
            }
        }
    }

    async fn read(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("DevTools answered within 30 s")
                .expect("DevTools connection open")
                .expect("DevTools frame");
            if let Message::Text(text) = frame {
                return serde_json::from_str(text.as_str()).expect("DevTools sends JSON");
            }
        }
    }

    /// Loads `url` and waits for its load event.
    pub async fn navigate(&mut self, url: &str) {
        self.events.clear();
        let result = self.call("Page.navigate", json!({ "url": url })).await;
        assert!(
            result.get("errorText").is_none(),
            "navigation to {url} failed: {result}"
        );
        self.wait_event("Page.loadEventFired").await;
    }

    /// Evaluates `expression` in the page and returns its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        assert!(result.get("exceptionDetails").is_none(), "{expression}: {result}");
        result["result"]["value"].clone()
    }

    /// A PNG of the whole page.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG")
    }
}
