//! `http`: call an HTTP endpoint, with retries on connect errors, timeouts, 429 and 5xx.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use flows_engine::{
    Connector, Issue, StepCx, StepExec, StepFailure, StepOutcome,
    template::{Template, TemplateValue},
};
use rand::Rng;
use reqwest::{Method, header::HeaderMap};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    config::{self, Compiler, secret_names},
    egress,
};

/// Process-wide settings for outbound HTTP.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Largest response body read into a step output.
    pub max_response_bytes: usize,
    pub connect_timeout: Duration,
    pub user_agent: String,
    /// Allow loopback, private and other special-purpose targets (`--allow-private-targets`).
    /// Cloud metadata and link-local addresses stay refused either way.
    pub allow_private_targets: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            max_response_bytes: 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
            user_agent: concat!("hookflow/", env!("CARGO_PKG_VERSION")).to_string(),
            allow_private_targets: false,
        }
    }
}

impl HttpOptions {
    /// A client for these options. Redirects are not followed: a 3xx is the step's answer.
    ///
    /// Its resolver refuses names that resolve only to denied addresses (see [`egress`]), but
    /// reqwest does not resolve IP-literal hosts: run [`egress::check_url`] or
    /// [`egress::check_target`] on every URL before sending.
    pub fn client(&self) -> reqwest::Client {
        // reqwest is built without a default crypto provider; install ours once per process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve names itself, past the guarded resolver.
            .no_proxy()
            .dns_resolver(Arc::new(egress::GuardedResolver::new(
                self.allow_private_targets,
            )))
            .user_agent(self.user_agent.clone())
            .build()
            .expect("HTTP client configuration is valid")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpConfig {
    /// GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS. Default: POST when there is a body, else GET.
    method: Option<String>,
    url: String,
    #[serde(default)]
    headers: Map<String, Value>,
    #[serde(default)]
    query: Map<String, Value>,
    /// JSON body (a template).
    body: Option<Value>,
    /// Raw text body (a template), sent as is.
    body_text: Option<String>,
    auth: Option<AuthConfig>,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default)]
    retry: RetryPolicy,
    /// Accepted statuses; default any 2xx.
    expect: Option<Vec<u16>>,
}

fn default_timeout_ms() -> u64 {
    10_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum AuthConfig {
    Bearer(String),
    Basic(BasicAuth),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BasicAuth {
    username: String,
    #[serde(default)]
    password: String,
}

/// Exponential backoff with jitter; the one retry policy of http steps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_ms: u64,
    pub max_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_ms: 500,
            max_ms: 30_000,
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`: `initial · 2^(attempt-1)`, capped, with ±25 % jitter,
    /// or the server's `Retry-After` when it asked for one (still capped).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let cap = Duration::from_millis(self.max_ms);
        if let Some(ra) = retry_after {
            return ra.min(cap);
        }
        let base = self
            .initial_ms
            .saturating_mul(1u64 << (attempt.saturating_sub(1)).min(20))
            .min(self.max_ms);
        let jitter = rand::rng().random_range(0.75..=1.25);
        Duration::from_millis((base as f64 * jitter) as u64).min(cap)
    }
}

pub struct HttpConnector {
    client: reqwest::Client,
    opts: HttpOptions,
}

impl HttpConnector {
    pub fn new(opts: HttpOptions) -> Self {
        Self {
            client: opts.client(),
            opts,
        }
    }
}

#[derive(Debug)]
struct HttpStep {
    client: reqwest::Client,
    max_response_bytes: usize,
    allow_private: bool,
    method: Method,
    url: Template,
    headers: Vec<(String, Template)>,
    query: Vec<(String, Template)>,
    body: Body,
    auth: Auth,
    timeout: Duration,
    retry: RetryPolicy,
    expect: Option<Vec<u16>>,
}

#[derive(Debug)]
enum Body {
    None,
    Json(TemplateValue),
    Text(Template),
}

#[derive(Debug)]
enum Auth {
    None,
    Bearer(Template),
    Basic(Template, Template),
}

impl Connector for HttpConnector {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn describe(&self) -> &'static str {
        "Call an HTTP endpoint"
    }

    fn prepare(&self, config: &Map<String, Value>) -> Result<Arc<dyn StepExec>, Vec<Issue>> {
        let cfg: HttpConfig = config::parse(config)?;
        let mut c = Compiler::default();
        let method = match cfg.method.as_deref().map(str::to_ascii_uppercase) {
            None if cfg.body.is_some() || cfg.body_text.is_some() => Method::POST,
            None => Method::GET,
            Some(m)
                if ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
                    .contains(&m.as_str()) =>
            {
                Method::from_bytes(m.as_bytes()).expect("known method")
            }
            Some(m) => {
                c.issues.push(Issue::new("method", format!("'{m}' is not a supported method (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS)")));
                Method::GET
            }
        };
        let url = c.template("url", &cfg.url);
        if url.is_literal() {
            match url::Url::parse(&cfg.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                Ok(u) => c.issues.push(Issue::new(
                    "url",
                    format!("scheme '{}' is not allowed; use http or https", u.scheme()),
                )),
                Err(e) => c
                    .issues
                    .push(Issue::new("url", format!("not a valid URL: {e}"))),
            }
        }
        let headers = c.string_map("headers", &cfg.headers);
        let query = c.string_map("query", &cfg.query);
        let body = match (&cfg.body, &cfg.body_text) {
            (Some(_), Some(_)) => {
                c.issues.push(Issue::new(
                    "body_text",
                    "use either body (JSON) or body_text (raw), not both",
                ));
                Body::None
            }
            (Some(b), None) => Body::Json(c.value("body", b)),
            (None, Some(t)) => Body::Text(c.template("body_text", t)),
            (None, None) => Body::None,
        };
        let auth = match &cfg.auth {
            None => Auth::None,
            Some(AuthConfig::Bearer(t)) => Auth::Bearer(c.template("auth.bearer", t)),
            Some(AuthConfig::Basic(b)) => Auth::Basic(
                c.template("auth.basic.username", &b.username),
                c.template("auth.basic.password", &b.password),
            ),
        };
        if !(1..=300_000).contains(&cfg.timeout_ms) {
            c.issues.push(Issue::new(
                "timeout_ms",
                "must be between 1 and 300000 milliseconds",
            ));
        }
        if !(1..=20).contains(&cfg.retry.max_attempts) {
            c.issues
                .push(Issue::new("retry.max_attempts", "must be between 1 and 20"));
        }
        if let Some(bad) = cfg
            .expect
            .iter()
            .flatten()
            .find(|s| !(100..=599).contains(*s))
        {
            c.issues
                .push(Issue::new("expect", format!("{bad} is not an HTTP status")));
        }
        c.finish(Arc::new(HttpStep {
            client: self.client.clone(),
            max_response_bytes: self.opts.max_response_bytes,
            allow_private: self.opts.allow_private_targets,
            method,
            url,
            headers,
            query,
            body,
            auth,
            timeout: Duration::from_millis(cfg.timeout_ms),
            retry: cfg.retry,
            expect: cfg.expect,
        }) as Arc<dyn StepExec>)
    }
}

/// Why one attempt did not succeed, and whether another may.
struct AttemptError {
    error: String,
    retryable: bool,
    retry_after: Option<Duration>,
    response: Option<Value>,
}

impl HttpStep {
    fn build(&self, cx: &StepCx<'_>) -> Result<reqwest::RequestBuilder, String> {
        let render = |t: &Template| {
            t.render_string(cx.ctx, cx.secrets)
                .map_err(|e| e.to_string())
        };
        let url = render(&self.url)?;
        let parsed = url::Url::parse(&url).map_err(|e| format!("URL '{url}' is not valid: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "scheme '{}' is not allowed; use http or https",
                parsed.scheme()
            ));
        }
        egress::check_url(&parsed, self.allow_private)
            .map_err(|e| format!("egress denied: {e}"))?;
        let mut req = self
            .client
            .request(self.method.clone(), parsed)
            .timeout(self.timeout);
        let query: Vec<(String, String)> = self
            .query
            .iter()
            .map(|(k, t)| Ok((k.clone(), render(t)?)))
            .collect::<Result<_, String>>()?;
        if !query.is_empty() {
            req = req.query(&query);
        }
        // Lets receivers that support it drop a retried call they already handled.
        if !self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("idempotency-key"))
        {
            req = req.header("idempotency-key", format!("{}:{}", cx.run.id, cx.step_id));
        }
        for (k, t) in &self.headers {
            req = req.header(k.as_str(), render(t)?);
        }
        req = match &self.auth {
            Auth::None => req,
            Auth::Bearer(t) => req.bearer_auth(render(t)?),
            Auth::Basic(u, p) => req.basic_auth(render(u)?, Some(render(p)?)),
        };
        req = match &self.body {
            Body::None => req,
            Body::Json(t) => req.json(&t.render(cx.ctx, cx.secrets).map_err(|e| e.to_string())?),
            Body::Text(t) => req.body(render(t)?),
        };
        Ok(req)
    }

    async fn attempt(&self, cx: &StepCx<'_>) -> Result<Value, AttemptError> {
        let fatal = |error: String| AttemptError {
            error,
            retryable: false,
            retry_after: None,
            response: None,
        };
        let req = self.build(cx).map_err(fatal)?;
        let resp = req.send().await.map_err(|e| match egress::denial(&e) {
            Some(reason) => fatal(format!("egress denied: {reason}")),
            None => AttemptError {
                error: describe_send_error(&e),
                retryable: e.is_connect() || e.is_timeout() || e.is_request(),
                retry_after: None,
                response: None,
            },
        })?;
        let status = resp.status().as_u16();
        let retry_after = retry_after(resp.headers());
        let headers = header_object(resp.headers());
        let is_json = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("json"));
        let bytes = read_capped(resp, self.max_response_bytes)
            .await
            .map_err(|error| AttemptError {
                // The endpoint already acted on the request; sending it again is not safe.
                error,
                retryable: false,
                retry_after: None,
                response: Some(json!({"status": status, "headers": headers.clone()})),
            })?;
        let body = if is_json {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        } else if bytes.is_empty() {
            Value::Null
        } else {
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        };
        // Built by hand: `json!` would copy the body through a serializer.
        let response = Value::Object(Map::from_iter([
            ("status".to_string(), Value::from(status)),
            ("headers".to_string(), headers),
            ("body".to_string(), body),
        ]));
        let ok = match &self.expect {
            Some(list) => list.contains(&status),
            None => (200..300).contains(&status),
        };
        if ok {
            Ok(response)
        } else {
            Err(AttemptError {
                error: format!("{} {} answered {status}", self.method, self.url.source()),
                retryable: status == 429 || status >= 500,
                retry_after,
                response: Some(response),
            })
        }
    }
}

#[async_trait]
impl StepExec for HttpStep {
    async fn run(&self, cx: &StepCx<'_>) -> Result<StepOutcome, StepFailure> {
        let mut attempt = 1;
        loop {
            match self.attempt(cx).await {
                Ok(output) => {
                    return Ok(StepOutcome {
                        output,
                        attempts: attempt,
                        proceed: true,
                    });
                }
                Err(e) if e.retryable && attempt < self.retry.max_attempts => {
                    tracing::debug!(step = cx.step_id, attempt, error = %e.error, "http step attempt failed; retrying");
                    tokio::time::sleep(self.retry.delay(attempt, e.retry_after)).await;
                    attempt += 1;
                }
                Err(e) => {
                    return Err(StepFailure {
                        error: e.error,
                        attempts: attempt,
                        output: e.response,
                    });
                }
            }
        }
    }

    fn summary(&self) -> String {
        format!("{} {}", self.method, self.url.source())
    }

    fn secret_refs(&self) -> Vec<String> {
        let mut refs = secret_names(
            std::iter::once(&self.url)
                .chain(self.headers.iter().map(|(_, t)| t))
                .chain(self.query.iter().map(|(_, t)| t)),
        );
        match &self.body {
            Body::Json(t) => refs.extend(t.secret_refs().into_iter().map(str::to_string)),
            Body::Text(t) => refs.extend(secret_names([t])),
            Body::None => {}
        }
        match &self.auth {
            Auth::Bearer(t) => refs.extend(secret_names([t])),
            Auth::Basic(u, p) => refs.extend(secret_names([u, p])),
            Auth::None => {}
        }
        refs
    }
}

fn describe_send_error(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut msg = format!("{what}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

/// `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

/// Response headers as a JSON object with lower-case names; repeated headers joined with ", ".
pub fn header_object(headers: &HeaderMap) -> Value {
    let mut map = Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match map.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                map.insert(name.as_str().to_string(), Value::String(value));
            }
        }
    }
    Value::Object(map)
}

/// Read a response body, refusing one larger than `cap` bytes.
pub async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|len| len as usize > cap) {
        return Err(format!("response body is larger than {cap} bytes"));
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading response: {e}"))?
    {
        if buf.len() + chunk.len() > cap {
            return Err(format!("response body is larger than {cap} bytes"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        net::SocketAddr,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use flows_engine::{
        Dispatch, RunInfo,
        connector::{ChainRequest, DeliveryRequest},
        secrets::RunSecrets,
    };

    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial_ms: 100,
            max_ms: 1000,
        };
        let d1 = p.delay(1, None).as_millis();
        let d3 = p.delay(3, None).as_millis();
        assert!((75..=125).contains(&d1), "{d1}");
        assert!((300..=500).contains(&d3), "{d3}");
        assert!(p.delay(10, None) <= Duration::from_millis(1000));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(60))),
            Duration::from_millis(1000)
        );
    }

    #[test]
    fn validates_config_with_locations() {
        let c = HttpConnector::new(HttpOptions::default());
        let cfg = |v: Value| v.as_object().unwrap().clone();
        let errs = c
            .prepare(&cfg(json!({"url": "ftp://x", "method": "FETCH"})))
            .unwrap_err();
        let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(
            got.iter().any(|e| e.starts_with("method: 'FETCH'")),
            "{got:?}"
        );
        assert!(
            got.iter().any(|e| e.starts_with("url: scheme 'ftp'")),
            "{got:?}"
        );
        let errs = c
            .prepare(&cfg(json!({"url": "http://x", "bogus": 1})))
            .unwrap_err();
        assert!(
            errs[0].message.contains("unknown field `bogus`"),
            "{errs:?}"
        );
        let errs = c
            .prepare(&cfg(
                json!({"url": "http://x", "headers": {"A": "{{ $.a[ }}"}}),
            ))
            .unwrap_err();
        assert_eq!(errs[0].path, "headers.A");
        assert!(
            c.prepare(&cfg(
                json!({"url": "http://x/{{ $.input.id }}", "body": {"a": "{{ $.input }}"}})
            ))
            .is_ok()
        );
    }

    struct NoDispatch;

    #[async_trait]
    impl Dispatch for NoDispatch {
        async fn chain(&self, _: ChainRequest) -> Result<String, String> {
            Err("not used".into())
        }
        async fn deliver(&self, _: DeliveryRequest) -> Result<String, String> {
            Err("not used".into())
        }
        async fn await_delivery(&self, _: &str) -> Result<Value, String> {
            Err("not used".into())
        }
    }

    /// A loopback server that counts requests and answers JSON with an `x-test` header.
    async fn local_server() -> (SocketAddr, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                ([("x-test", "yes")], axum::Json(json!({"ok": true})))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (addr, hits)
    }

    async fn run_step(allow_private_targets: bool, url: &str) -> Result<StepOutcome, StepFailure> {
        let connector = HttpConnector::new(HttpOptions {
            allow_private_targets,
            ..HttpOptions::default()
        });
        let cfg = json!({"url": url, "retry": {"max_attempts": 3, "initial_ms": 1, "max_ms": 1}});
        let step = connector.prepare(cfg.as_object().unwrap()).unwrap();
        let store = HashMap::new();
        let secrets = RunSecrets::new(&store);
        let run = RunInfo {
            id: "run_1".into(),
            flow: "f".into(),
            version: 1,
            attempt: 1,
            depth: 0,
        };
        let ctx = json!({"input": {}});
        step.run(&StepCx {
            ctx: (&ctx).into(),
            secrets: &secrets,
            run: &run,
            step_id: "call",
            dispatch: &NoDispatch,
        })
        .await
    }

    #[tokio::test]
    async fn step_refuses_private_targets_without_sending() {
        let (addr, hits) = local_server().await;
        let port = addr.port();
        let err = run_step(false, &format!("http://127.0.0.1:{port}/x"))
            .await
            .unwrap_err();
        assert_eq!(
            err.error,
            "egress denied: 127.0.0.1 is a loopback address; start hookflow with --allow-private-targets to allow private targets"
        );
        assert_eq!((err.attempts, err.output), (1, None));
        let err = run_step(false, &format!("http://localhost:{port}/"))
            .await
            .unwrap_err();
        assert!(
            err.error
                .starts_with("egress denied: localhost is a loopback name"),
            "{}",
            err.error
        );
        assert_eq!(err.attempts, 1);
        let err = run_step(true, "http://[::ffff:a9fe:a9fe]/latest/meta-data/")
            .await
            .unwrap_err();
        assert!(
            err.error
                .ends_with("is a link-local/cloud metadata address and is never allowed"),
            "{}",
            err.error
        );
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "the local server must not be reached"
        );
    }

    #[tokio::test]
    async fn step_reaches_private_targets_when_allowed() {
        let (addr, hits) = local_server().await;
        let out = run_step(true, &format!("http://127.0.0.1:{}/x", addr.port()))
            .await
            .unwrap();
        assert_eq!(out.attempts, 1);
        assert_eq!(out.output["status"], 200);
        assert_eq!(out.output["headers"]["x-test"], "yes");
        assert_eq!(out.output["body"], json!({"ok": true}));
        assert_eq!(out.output.as_object().unwrap().len(), 3);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }
}
