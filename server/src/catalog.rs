//! The in-memory view of stored flows: prepared flows by name and version, and the webhook
//! route table. Rebuilt when a flow changes, so ingress never touches the database to route.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, RwLock},
};

use connectors::verify::Verifier;
use flows_engine::{PreparedFlow, Registry, Trigger, ValidateCx, validate::prepare};
use serde_json::Value;

use crate::{error::Error, store::Store};

/// A flow served at a webhook path, with its prepared verification.
#[derive(Clone)]
pub struct Served {
    pub version: i64,
    pub flow: Arc<PreparedFlow>,
    pub verifier: Option<Arc<Verifier>>,
}

#[derive(Default)]
struct Inner {
    /// name → (current version, prepared flow)
    current: HashMap<String, (i64, Arc<PreparedFlow>)>,
    /// name → verification of its webhook trigger
    verifiers: HashMap<String, Arc<Verifier>>,
    /// webhook path → flow name
    routes: HashMap<String, String>,
    /// (name, version) → prepared flow, for runs queued on an older version
    versions: HashMap<(String, i64), Arc<PreparedFlow>>,
    /// name → the stored definition the current flow was prepared from, so that a reload only
    /// prepares (parses templates and paths, builds verifiers) what changed
    sources: HashMap<String, String>,
}

#[derive(Default)]
pub struct Catalog {
    inner: RwLock<Inner>,
    /// One reload at a time: a reload replaces the whole view with what it read, so one that
    /// read the store before a flow was saved must not finish after the reload that followed
    /// the save (the new flow's path would answer 404 until the next refresh).
    reloading: tokio::sync::Mutex<()>,
}

impl Catalog {
    /// Reload every flow from the store.
    pub async fn reload(&self, store: &Store, registry: &Registry) -> Result<(), Error> {
        let _one_at_a_time = self.reloading.lock().await;
        let rows = store.list_flows().await?;
        let mut next = Inner::default();
        for row in rows {
            let unchanged = {
                let inner = self.inner.read().expect("catalog lock");
                match (inner.current.get(&row.name), inner.sources.get(&row.name)) {
                    (Some((version, flow)), Some(source))
                        if *version == row.version && *source == row.definition =>
                    {
                        Some((flow.clone(), inner.verifiers.get(&row.name).cloned()))
                    }
                    _ => None,
                }
            };
            if let Some((flow, verifier)) = unchanged {
                if let Trigger::Webhook(w) = &flow.flow.trigger
                    && (w.verify.is_none() || verifier.is_some())
                {
                    next.routes.insert(w.path.clone(), row.name.clone());
                }
                if let Some(v) = verifier {
                    next.verifiers.insert(row.name.clone(), v);
                }
                next.versions
                    .insert((row.name.clone(), row.version), flow.clone());
                next.sources.insert(row.name.clone(), row.definition);
                next.current.insert(row.name, (row.version, flow));
                continue;
            }
            let doc: Value = serde_json::from_str(&row.definition)?;
            // Stored flows were valid when saved; secrets may have gone since, which shows at run time.
            let cx = ValidateCx {
                registry,
                secret_exists: None,
            };
            match prepare(&doc, &cx) {
                Ok(flow) => {
                    let flow = Arc::new(flow);
                    if let Trigger::Webhook(w) = &flow.flow.trigger {
                        next.routes.insert(w.path.clone(), row.name.clone());
                        if let Some(cfg) = &w.verify {
                            match Verifier::prepare(cfg) {
                                Ok(v) => {
                                    next.verifiers.insert(row.name.clone(), Arc::new(v));
                                }
                                Err(issues) => {
                                    // Never serve a flow whose verification cannot be built: it would accept anything.
                                    tracing::error!(flow = %row.name, problems = ?issues, "stored flow's verify config is invalid; it is not served");
                                    next.routes.remove(&w.path);
                                }
                            }
                        }
                    }
                    next.versions
                        .insert((row.name.clone(), row.version), flow.clone());
                    next.sources.insert(row.name.clone(), row.definition);
                    next.current.insert(row.name, (row.version, flow));
                }
                Err(issues) => {
                    tracing::error!(flow = %row.name, problems = ?issues.iter().map(ToString::to_string).collect::<Vec<_>>(), "stored flow no longer validates; it is not served");
                }
            }
        }
        let mut inner = self.inner.write().expect("catalog lock");
        // Keep older versions that in-flight runs may still need.
        for (k, v) in inner.versions.drain() {
            next.versions.entry(k).or_insert(v);
        }
        *inner = next;
        Ok(())
    }

    /// The flow served at a webhook path.
    pub fn route(&self, path: &str) -> Option<Served> {
        let inner = self.inner.read().expect("catalog lock");
        let name = inner.routes.get(path)?;
        let (version, flow) = inner.current.get(name)?.clone();
        Some(Served {
            version,
            flow,
            verifier: inner.verifiers.get(name).cloned(),
        })
    }

    pub fn current(&self, name: &str) -> Option<(i64, Arc<PreparedFlow>)> {
        self.inner
            .read()
            .expect("catalog lock")
            .current
            .get(name)
            .cloned()
    }

    /// The flow which serves `path`, if any.
    pub fn route_owner(&self, path: &str) -> Option<String> {
        self.inner
            .read()
            .expect("catalog lock")
            .routes
            .get(path)
            .cloned()
    }

    /// Flow name → the flows it chains to, for every current flow.
    pub fn chain_edges(&self) -> HashMap<String, BTreeSet<String>> {
        let inner = self.inner.read().expect("catalog lock");
        inner
            .current
            .iter()
            .map(|(n, (_, f))| (n.clone(), f.chained_flows()))
            .collect()
    }

    pub fn names(&self) -> BTreeSet<String> {
        self.inner
            .read()
            .expect("catalog lock")
            .current
            .keys()
            .cloned()
            .collect()
    }

    /// A specific version, loading it from the store when it is not cached.
    pub async fn version(
        &self,
        store: &Store,
        registry: &Registry,
        name: &str,
        version: i64,
    ) -> Result<Arc<PreparedFlow>, Error> {
        if let Some(f) = self
            .inner
            .read()
            .expect("catalog lock")
            .versions
            .get(&(name.to_string(), version))
        {
            return Ok(f.clone());
        }
        let row = store
            .flow_version(name, version)
            .await?
            .ok_or_else(|| Error::NotFound(format!("flow '{name}' has no version {version}")))?;
        let doc: Value = serde_json::from_str(&row.definition)?;
        let cx = ValidateCx {
            registry,
            secret_exists: None,
        };
        let flow = Arc::new(prepare(&doc, &cx).map_err(Error::Invalid)?);
        self.inner
            .write()
            .expect("catalog lock")
            .versions
            .insert((name.to_string(), version), flow.clone());
        Ok(flow)
    }
}
