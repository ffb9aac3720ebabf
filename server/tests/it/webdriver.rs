//! A minimal W3C WebDriver client over `reqwest`, driving Debian's headless Chromium through
//! chromedriver: enough to click, type, read and take screenshots, without a WebDriver crate.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use reqwest::{Client, Method};
use serde_json::{Value, json};
use tempfile::TempDir;

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    http: Client,
    driver_url: String,
    session: String,
    driver: Child,
    _profile: TempDir,
    downloads: TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// A fresh headless Chromium (its own profile and download folder) at `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "browser tests need Debian's chromium and chromium-driver (scripts/test.sh installs them: apt-get install -y chromium chromium-driver)"
        );
        let port = free_port();
        // Its own process group, so that Chromium can be ended with it whatever happens.
        let driver = std::os::unix::process::CommandExt::process_group(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            0,
        )
        .spawn()
        .expect("start chromedriver");
        let driver_url = format!("http://127.0.0.1:{port}");
        let http = Client::new();
        for _ in 0..100 {
            if let Ok(r) = http.get(format!("{driver_url}/status")).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                         "--disable-dev-shm-usage", format!("--window-size={width},{height}"),
                         format!("--user-data-dir={}", profile.path().display())],
                "prefs": {"download.default_directory": downloads.path().display().to_string(),
                          "download.prompt_for_download": false}
            }
        }}});
        let resp: Value = http
            .post(format!("{driver_url}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {resp}"))
            .to_string();
        let b = Browser {
            http,
            driver_url,
            session,
            driver,
            _profile: profile,
            downloads,
        };
        b.cmd(Method::POST, "goog/cdp/execute", json!({"cmd": "Browser.setDownloadBehavior",
            "params": {"behavior": "allow", "downloadPath": b.downloads.path().display().to_string()}})).await;
        b.cmd(
            Method::POST,
            "timeouts",
            json!({"implicit": 0, "pageLoad": 30000, "script": 10000}),
        )
        .await;
        b
    }

    async fn try_cmd(&self, method: Method, path: &str, body: Value) -> Result<Value, Value> {
        let url = format!("{}/session/{}/{path}", self.driver_url, self.session);
        let mut req = self.http.request(method.clone(), url);
        if method != Method::GET && method != Method::DELETE {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("chromedriver answers");
        let ok = resp.status().is_success();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(v["value"].clone())
        }
    }

    async fn cmd(&self, method: Method, path: &str, body: Value) -> Value {
        self.try_cmd(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(Method::POST, "url", json!({"url": url})).await;
    }

    pub async fn url(&self) -> String {
        self.cmd(Method::GET, "url", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd(
            Method::POST,
            "window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    pub async fn add_cookie(&self, name: &str, value: &str) {
        self.cmd(
            Method::POST,
            "cookie",
            json!({"cookie": {"name": name, "value": value, "path": "/", "httpOnly": true}}),
        )
        .await;
    }

    /// Run a script in the page; `arguments[0..]` are `args`.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.cmd(
            Method::POST,
            "execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    async fn find_now(&self, css: &str) -> Option<String> {
        let v = self
            .try_cmd(
                Method::POST,
                "element",
                json!({"using": "css selector", "value": css}),
            )
            .await
            .ok()?;
        v[ELEMENT].as_str().map(str::to_string)
    }

    /// The element matching `css`, waiting up to 20 s for it (CI machines are busy).
    pub async fn find(&self, css: &str) -> String {
        for _ in 0..400 {
            if let Some(id) = self.find_now(css).await {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let url = self.url().await;
        let text = self
            .eval(
                "return document.body ? document.body.innerText.slice(0, 3000) : ''",
                json!([]),
            )
            .await;
        panic!(
            "no element '{css}' on {url}:\n{}",
            text.as_str().unwrap_or_default()
        );
    }

    pub async fn exists(&self, css: &str) -> bool {
        self.find_now(css).await.is_some()
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        // Scrolled into view first: a sticky header must not take the click.
        self.cmd(Method::POST, "execute/sync", json!({"script": "arguments[0].scrollIntoView({block: 'center'})", "args": [{ELEMENT: id}]})).await;
        self.cmd(Method::POST, &format!("element/{id}/click"), json!({}))
            .await;
    }

    /// Replace the value of the field `css` with `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.cmd(Method::POST, &format!("element/{id}/clear"), json!({}))
            .await;
        self.cmd(
            Method::POST,
            &format!("element/{id}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// Choose an option of a `<select>` (fires `change`, which some selects answer with an htmx swap).
    pub async fn select(&self, css: &str, value: &str) {
        self.click(&format!("{css} option[value=\"{value}\"]"))
            .await;
    }

    /// Send a file path to an `<input type=file>`.
    pub async fn upload(&self, css: &str, file: &Path) {
        let id = self.find(css).await;
        self.cmd(
            Method::POST,
            &format!("element/{id}/value"),
            json!({"text": file.display().to_string()}),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.cmd(Method::GET, &format!("element/{id}/text"), Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn body_text(&self) -> String {
        self.eval("return document.body.innerText", json!([]))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Wait until the text of `css` contains `needle` (the page may update itself meanwhile).
    pub async fn wait_text(&self, css: &str, needle: &str, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = match self.find_now(css).await {
                Some(id) => self
                    .try_cmd(Method::GET, &format!("element/{id}/text"), Value::Null)
                    .await
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                None => String::new(),
            };
            if got.contains(needle) {
                return got;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "'{css}' never contained '{needle}' (last: '{got}') on {}",
                    self.url().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of an open alert/confirm/prompt dialog, if any.
    pub async fn alert_text(&self) -> Option<String> {
        self.try_cmd(Method::GET, "alert/text", Value::Null)
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
    }

    pub async fn screenshot(&self, path: &Path) {
        use base64::prelude::*;
        let v = self.cmd(Method::GET, "screenshot", Value::Null).await;
        let png = BASE64_STANDARD.decode(v.as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Resize the window to the page's full height (up to `max`) and take a screenshot.
    pub async fn screenshot_page(&self, path: &Path, width: u32, max: u32) {
        self.resize(width, 900).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let h = self
            .eval("return document.documentElement.scrollHeight", json!([]))
            .await
            .as_u64()
            .unwrap_or(900) as u32;
        // The window's frame is not part of the viewport; chromedriver sizes the window.
        self.resize(width, h.clamp(600, max) + 90).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        self.screenshot(path).await;
    }

    /// A downloaded file named `name`, once it is complete.
    pub async fn download(&self, name: &str) -> PathBuf {
        let path = self.downloads.path().join(name);
        for _ in 0..200 {
            if path.exists()
                && !self
                    .downloads
                    .path()
                    .join(format!("{name}.crdownload"))
                    .exists()
            {
                return path;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let found: Vec<_> = std::fs::read_dir(self.downloads.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        panic!("no download '{name}' (found {found:?})");
    }

    /// End the session (closes Chromium) and chromedriver.
    pub async fn quit(self) {
        // Drop does it: the session's DELETE, then the process group.
    }
}

impl Drop for Browser {
    /// Also after a failed test: DELETE the session (Chromium exits), then end chromedriver's
    /// process group, which takes any Chromium process still left with it.
    fn drop(&mut self) {
        let addr = self.driver_url.trim_start_matches("http://").to_string();
        if let Ok(mut s) = TcpStream::connect(&addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
        }
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
