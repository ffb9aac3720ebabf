//! Outbound webhook delivery: sends queued deliveries signed per Standard Webhooks, records
//! every attempt, and reschedules failures on the delivery schedule until they succeed or it
//! runs out (then the delivery is `failed` and can be redelivered by hand).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use flows_engine::{secrets::RunSecrets, template::Template};
use rand::Rng;
use tokio::{sync::Semaphore, task::JoinSet};

use crate::{
    app::{App, AppState},
    store::{deliveries::AttemptResult, entities::deliveries, now_ms, queue::FlowBudget},
};

const TIMEOUT: Duration = Duration::from_secs(15);
/// Most response body kept per attempt, for looking at.
const KEEP_RESPONSE: usize = 4096;
const CONCURRENCY: usize = 16;
/// Most deliveries to one endpoint (URL) in flight at once from this process.
const PER_ENDPOINT: usize = 4;
/// A receiver's `Retry-After` is honoured up to this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Deliveries this process is sending: their leases are extended while they are in flight and
/// given up on shutdown.
#[derive(Clone, Default)]
struct InFlight(Arc<Mutex<HashSet<String>>>);

impl InFlight {
    fn ids(&self) -> Vec<String> {
        self.0
            .lock()
            .expect("in-flight lock")
            .iter()
            .cloned()
            .collect()
    }
    fn add(&self, id: &str) {
        self.0
            .lock()
            .expect("in-flight lock")
            .insert(id.to_string());
    }
    fn remove(&self, id: &str) {
        self.0.lock().expect("in-flight lock").remove(id);
    }
}

pub async fn run_deliveries(app: AppState) {
    let lease_ms = app.cfg.reliability.lease_ms;
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let mut running = JoinSet::new();
    let in_flight = InFlight::default();
    // Deliveries in flight per endpoint; an aborted send (shutdown) never comes back, which is
    // fine because the loop has ended by then.
    let endpoints = Arc::new(Mutex::new(FlowBudget::new(PER_ENDPOINT)));
    let heartbeat = {
        let (store, in_flight) = (app.store.clone(), in_flight.clone());
        let every = Duration::from_millis((lease_ms / 3).max(10) as u64);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = store.heartbeat_deliveries(&in_flight.ids(), lease_ms).await {
                    tracing::warn!(error = %e, "delivery lease heartbeat failed");
                }
            }
        })
    };
    loop {
        if app.shutdown.is_cancelled() {
            break;
        }
        let free = slots.available_permits() as u64;
        let claimed = if free == 0 {
            Vec::new()
        } else {
            let budget = endpoints.lock().expect("endpoints lock").clone();
            app.store
                .claim_deliveries(free, lease_ms, &budget)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "could not claim deliveries");
                    Vec::new()
                })
        };
        let idle = claimed.is_empty();
        for d in claimed {
            let permit = slots
                .clone()
                .try_acquire_owned()
                .expect("counted free slots");
            let (app, in_flight, endpoints) = (app.clone(), in_flight.clone(), endpoints.clone());
            in_flight.add(&d.id);
            endpoints.lock().expect("endpoints lock").take(&d.url);
            running.spawn(async move {
                let (id, url) = (d.id.clone(), d.url.clone());
                send(&app, d).await;
                in_flight.remove(&id);
                endpoints.lock().expect("endpoints lock").put_back(&url);
                drop(permit);
            });
        }
        while running.try_join_next().is_some() {}
        if idle {
            let wait = match app.store.next_delivery_due().await {
                Ok(Some(due)) => Duration::from_millis((due - now_ms()).clamp(10, 1000) as u64),
                _ => Duration::from_secs(1),
            };
            tokio::select! {
                _ = app.shutdown.cancelled() => break,
                _ = app.wake_deliveries.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
    // Sends in flight get the grace period; the rest are left for other processes.
    let deadline = tokio::time::Instant::now() + app.cfg.reliability.shutdown_grace;
    while !running.is_empty() {
        tokio::select! {
            _ = running.join_next() => {}
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    running.abort_all();
    while running.join_next().await.is_some() {}
    heartbeat.abort();
    if let Err(e) = app.store.release_deliveries(&in_flight.ids()).await {
        tracing::error!(error = %e, "could not release deliveries; they are retried when their lease expires");
    }
}

/// One attempt of one delivery.
async fn send(app: &App, d: deliveries::Model) {
    let started = std::time::Instant::now();
    let outcome = attempt(app, &d).await;
    let duration_ms = started.elapsed().as_millis() as i64;
    let (status, body, error, retry_after) = match outcome {
        Ok(a) => (Some(a.status), Some(a.body), None, a.retry_after),
        Err((s, e)) => (s, None, Some(e), None),
    };
    let succeeded = error.is_none() && status.is_some_and(|s| (200..300).contains(&s));
    let error = error
        .or_else(|| (!succeeded).then(|| format!("the endpoint answered {}", status.unwrap_or(0))));
    // 410 Gone: the receiver asks us to stop (Standard Webhooks).
    let gone = status == Some(410);
    // A refused target will not become allowed by waiting.
    let denied = error
        .as_deref()
        .is_some_and(|e| e.starts_with("egress denied"));
    let next = if succeeded || gone || denied {
        None
    } else {
        next_delay(
            &app.cfg.delivery_schedule.0,
            d.attempts as usize + 1,
            retry_after,
        )
        .map(|delay| now_ms() + delay.as_millis() as i64)
    };
    metrics::counter!("hookflow_deliveries_total", "status" => if succeeded { "succeeded" } else if next.is_some() { "retrying" } else { "failed" })
        .increment(1);
    let result = AttemptResult {
        response_status: status,
        response_body: body,
        error,
        duration_ms,
        next_attempt_at: next,
        succeeded,
    };
    if let Err(e) = app.store.record_delivery_attempt(&d, result).await {
        tracing::error!(delivery = %d.id, error = %e, "could not record a delivery attempt; it will be retried");
    }
}

/// The wait before attempt number `done + 1`: the schedule's delay with ±20 % jitter, or longer
/// when the receiver asked for it with `Retry-After` (capped at an hour); `None` when the schedule
/// is spent. The same rules as an http step's `retry` (exponential there, a list here).
fn next_delay(
    schedule: &[Duration],
    done: usize,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let delay = schedule.get(done)?;
    let jitter = rand::rng().random_range(0.8..=1.2);
    let planned = Duration::from_millis((delay.as_millis() as f64 * jitter) as u64);
    Some(match retry_after {
        Some(ra) => planned.max(ra.min(MAX_RETRY_AFTER)),
        None => planned,
    })
}

/// An answer from the receiver.
struct Answer {
    status: i32,
    body: String,
    /// Asked for on 429 and 503 only.
    retry_after: Option<Duration>,
}

/// Send the request: `Ok` when an answer came, `Err((status, error))` otherwise.
async fn attempt(app: &App, d: &deliveries::Model) -> Result<Answer, (Option<i32>, String)> {
    // IP-literal hosts never reach the guarded resolver, so every target is checked here too.
    let url = connectors::egress::check_target(&d.url, app.cfg.allow_private_targets)
        .map_err(|e| (None, format!("egress denied: {e}")))?;
    let mut req = app
        .http
        .post(url)
        .timeout(TIMEOUT)
        .header("content-type", "application/json")
        .header("webhook-id", &d.id);
    if let Some(secret_src) = &d.secret {
        let secret = render_secret(app, secret_src)
            .await
            .map_err(|e| (None, e))?;
        let ts = chrono::Utc::now().timestamp();
        let sig = connectors::signing::sign(&secret, &d.id, ts, d.body.as_bytes())
            .map_err(|e| (None, e))?;
        req = req
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig);
    } else {
        req = req.header(
            "webhook-timestamp",
            chrono::Utc::now().timestamp().to_string(),
        );
    }
    let resp =
        req.body(d.body.clone()).send().await.map_err(|e| {
            match connectors::egress::denial(&e) {
                Some(reason) => (None, format!("egress denied: {reason}")),
                None => (None, describe(&e)),
            }
        })?;
    let status = resp.status().as_u16() as i32;
    let retry_after = [429, 503]
        .contains(&status)
        .then(|| connectors::http::retry_after(resp.headers()))
        .flatten();
    let body = connectors::http::read_capped(resp, 1024 * 1024)
        .await
        .unwrap_or_default();
    let mut text = String::from_utf8_lossy(&body).into_owned();
    if text.len() > KEEP_RESPONSE {
        let cut = (0..=KEEP_RESPONSE)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
    }
    Ok(Answer {
        status,
        body: text,
        retry_after,
    })
}

/// Render a stored secret template (`{{ secrets.NAME }}` or a literal) with secrets only.
async fn render_secret(app: &App, src: &str) -> Result<String, String> {
    let t = Template::compile(src).map_err(|e| format!("signing secret: {e}"))?;
    let secrets: HashMap<String, String> = if t.secret_refs().is_empty() {
        HashMap::new()
    } else {
        app.store
            .load_secrets(&app.key)
            .await
            .map_err(|e| e.to_string())?
    };
    let rs = RunSecrets::new(&secrets);
    t.render_string(&serde_json::Value::Null, &rs)
        .map_err(|e| format!("signing secret: {e}"))
}

/// A send error with its causes, which say what actually went wrong (refused, timed out, DNS).
fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_runs_out() {
        let s = [Duration::ZERO, Duration::from_secs(5)];
        let t = next_delay(&s, 1, None).unwrap().as_millis();
        assert!((4_000..=6_000).contains(&t), "{t}");
        assert!(next_delay(&s, 2, None).is_none());
    }

    #[test]
    fn retry_after_lengthens_the_wait_but_is_capped() {
        let s = [
            Duration::ZERO,
            Duration::from_secs(5),
            Duration::from_secs(5),
        ];
        let ra = Some(Duration::from_secs(120));
        assert_eq!(next_delay(&s, 1, ra), Some(Duration::from_secs(120)));
        let short = next_delay(&s, 1, Some(Duration::from_secs(1))).unwrap();
        assert!(
            short >= Duration::from_secs(4),
            "a shorter Retry-After does not hurry the schedule"
        );
        let huge = Some(Duration::from_secs(86_400));
        assert_eq!(next_delay(&s, 1, huge), Some(MAX_RETRY_AFTER));
        assert!(
            next_delay(&s, 3, ra).is_none(),
            "Retry-After does not extend a spent schedule"
        );
    }
}
