//! `webhook_out`: send the step's body onward, durably — to other flows (a queued run, no network
//! hop) and/or to external URLs (a signed delivery with its own retry schedule).

use std::sync::Arc;

use async_trait::async_trait;
use flows_engine::{
    Connector, Issue, StepCx, StepExec, StepFailure, StepOutcome,
    connector::{ChainRequest, DeliveryRequest},
    flow::{MAX_CHAIN_DEPTH, is_flow_name},
    issue::index_path,
    template::{Template, TemplateValue},
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::config::{self, Compiler, secret_names};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookOutConfig {
    /// Chain to one flow.
    flow: Option<String>,
    /// Chain to several flows.
    #[serde(default)]
    flows: Vec<String>,
    /// Deliver to one external endpoint.
    url: Option<String>,
    /// Deliver to several external endpoints.
    #[serde(default)]
    urls: Vec<String>,
    /// What to send; default `{{ $.input }}`.
    body: Option<Value>,
    /// Standard Webhooks signing secret (`whsec_...`), usually `{{ secrets.NAME }}`.
    secret: Option<String>,
    /// Complete the step only when every delivery succeeded or gave up.
    #[serde(default)]
    wait: bool,
}

pub struct WebhookOutConnector;

#[derive(Debug)]
struct WebhookOut {
    flows: Vec<String>,
    urls: Vec<Template>,
    body: TemplateValue,
    secret: Option<Template>,
    wait: bool,
}

impl Connector for WebhookOutConnector {
    fn kind(&self) -> &'static str {
        "webhook_out"
    }

    fn describe(&self) -> &'static str {
        "Send onward to other flows or external webhook endpoints"
    }

    fn prepare(&self, config: &Map<String, Value>) -> Result<Arc<dyn StepExec>, Vec<Issue>> {
        let cfg: WebhookOutConfig = config::parse(config)?;
        let mut c = Compiler::default();
        if cfg.flow.is_some() && !cfg.flows.is_empty() {
            c.issues.push(Issue::new(
                "flows",
                "use either flow (one) or flows (several), not both",
            ));
        }
        if cfg.url.is_some() && !cfg.urls.is_empty() {
            c.issues.push(Issue::new(
                "urls",
                "use either url (one) or urls (several), not both",
            ));
        }
        let (flows_at, flows): (Vec<String>, Vec<String>) = match cfg.flow {
            Some(f) => (vec!["flow".to_string()], vec![f]),
            None => (
                cfg.flows
                    .iter()
                    .enumerate()
                    .map(|(i, _)| index_path("flows", i))
                    .collect(),
                cfg.flows,
            ),
        };
        for (at, f) in flows_at.iter().zip(&flows) {
            if !is_flow_name(f) {
                c.issues
                    .push(Issue::new(at, format!("'{f}' is not a flow name")));
            }
        }
        for (i, f) in flows.iter().enumerate() {
            if flows[..i].contains(f) {
                c.issues.push(Issue::new(
                    &flows_at[i],
                    format!("flow '{f}' is listed twice"),
                ));
            }
        }
        let urls: Vec<Template> = match cfg.url {
            Some(u) => vec![url_template(&mut c, "url", &u)],
            None => cfg
                .urls
                .iter()
                .enumerate()
                .map(|(i, u)| url_template(&mut c, &index_path("urls", i), u))
                .collect(),
        };
        if flows.is_empty() && urls.is_empty() {
            c.issues
                .push(Issue::new("", "name a target: flow, flows, url or urls"));
        }
        let body = match &cfg.body {
            Some(b) => c.value("body", b),
            None => c.value("body", &Value::String("{{ $.input }}".into())),
        };
        let secret = cfg.secret.as_deref().map(|s| c.template("secret", s));
        if secret.is_some() && urls.is_empty() {
            c.issues.push(Issue::new(
                "secret",
                "only deliveries to a url are signed; chaining to flows needs no secret",
            ));
        }
        c.finish(Arc::new(WebhookOut {
            flows,
            urls,
            body,
            secret,
            wait: cfg.wait,
        }) as Arc<dyn StepExec>)
    }
}

fn url_template(c: &mut Compiler, at: &str, src: &str) -> Template {
    let t = c.template(at, src);
    if t.is_literal() {
        match url::Url::parse(src) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            Ok(u) => c.issues.push(Issue::new(
                at,
                format!("scheme '{}' is not allowed; use http or https", u.scheme()),
            )),
            Err(e) => c
                .issues
                .push(Issue::new(at, format!("not a valid URL: {e}"))),
        }
    }
    t
}

#[async_trait]
impl StepExec for WebhookOut {
    async fn run(&self, cx: &StepCx<'_>) -> Result<StepOutcome, StepFailure> {
        let body = self
            .body
            .render(cx.ctx, cx.secrets)
            .map_err(|e| StepFailure::new(e.to_string()))?;
        let mut runs = Vec::new();
        if !self.flows.is_empty() && cx.run.depth + 1 > MAX_CHAIN_DEPTH {
            return Err(StepFailure::new(format!(
                "chain too deep: this run is {} hops from its webhook; chains stop at {MAX_CHAIN_DEPTH}",
                cx.run.depth
            )));
        }
        for flow in &self.flows {
            let req = ChainRequest {
                flow: flow.clone(),
                body: body.clone(),
                source: json!({"flow": cx.run.flow, "run_id": cx.run.id, "step": cx.step_id}),
                depth: cx.run.depth + 1,
                key: format!("{}:{}:flow:{flow}", cx.run.id, cx.step_id),
            };
            let run_id = cx
                .dispatch
                .chain(req)
                .await
                .map_err(|e| StepFailure::new(format!("chaining to '{flow}': {e}")))?;
            runs.push(json!({"flow": flow, "run_id": run_id}));
        }
        let mut deliveries = Vec::new();
        for (i, url) in self.urls.iter().enumerate() {
            let url = url
                .render_string(cx.ctx, cx.secrets)
                .map_err(|e| StepFailure::new(e.to_string()))?;
            let req = DeliveryRequest {
                url: url.clone(),
                body: body.clone(),
                secret: self.secret.as_ref().map(|s| s.source().to_string()),
                run_id: cx.run.id.clone(),
                step_id: cx.step_id.to_string(),
                key: format!("{}:{}:url:{i}", cx.run.id, cx.step_id),
            };
            let id = cx
                .dispatch
                .deliver(req)
                .await
                .map_err(|e| StepFailure::new(format!("queueing delivery to {url}: {e}")))?;
            deliveries.push(json!({"url": url, "delivery_id": id}));
        }
        if self.wait {
            for d in &mut deliveries {
                let id = d["delivery_id"].as_str().unwrap_or_default().to_string();
                let fin = cx
                    .dispatch
                    .await_delivery(&id)
                    .await
                    .map_err(StepFailure::new)?;
                let ok = fin.get("status").and_then(Value::as_str) == Some("succeeded");
                d["status"] = fin.get("status").cloned().unwrap_or(Value::Null);
                d["response_status"] = fin.get("response_status").cloned().unwrap_or(Value::Null);
                if !ok {
                    return Err(StepFailure {
                        error: format!("delivery {id} to {} failed", d["url"]),
                        attempts: 1,
                        output: Some(json!({"deliveries": deliveries})),
                    });
                }
            }
        }
        let output = match (runs.len(), deliveries.len()) {
            (1, 0) => json!({"run_id": runs[0]["run_id"]}),
            (0, 1) => deliveries.pop().unwrap_or_default(),
            _ => json!({"runs": runs, "deliveries": deliveries}),
        };
        Ok(StepOutcome::done(output))
    }

    fn summary(&self) -> String {
        let targets: Vec<String> = self
            .flows
            .iter()
            .map(|f| format!("flow:{f}"))
            .chain(self.urls.iter().map(|u| u.source().to_string()))
            .collect();
        format!("→ {}", targets.join(", "))
    }

    fn chained_flows(&self) -> Vec<String> {
        self.flows.clone()
    }

    fn secret_refs(&self) -> Vec<String> {
        let mut refs = secret_names(self.urls.iter().chain(self.secret.as_ref()));
        refs.extend(self.body.secret_refs().into_iter().map(str::to_string));
        refs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prep(v: Value) -> Result<Arc<dyn StepExec>, Vec<Issue>> {
        WebhookOutConnector.prepare(v.as_object().unwrap())
    }

    #[test]
    fn needs_a_target_and_valid_names() {
        assert_eq!(
            prep(json!({})).unwrap_err()[0].message,
            "name a target: flow, flows, url or urls"
        );
        let errs = prep(json!({"flows": ["ok", "Not OK", "ok"]})).unwrap_err();
        let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "flows[1]: 'Not OK' is not a flow name",
                "flows[2]: flow 'ok' is listed twice"
            ]
        );
        assert!(
            prep(json!({"url": "gopher://x"})).unwrap_err()[0]
                .message
                .contains("gopher")
        );
        let s = prep(json!({"flows": ["a", "b"], "url": "https://x.test/h"})).unwrap();
        assert_eq!(s.chained_flows(), ["a", "b"]);
        assert_eq!(s.summary(), "→ flow:a, flow:b, https://x.test/h");
    }
}
