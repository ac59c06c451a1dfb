//! The shared run context: settings, clients built once per run, and typed facts that one
//! check learns and the checks that need it read.

use crate::settings::Settings;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::clients::{Clients, KubeUnavailable};

/// Typed facts one check learns and the checks that `need` it read (a data source uid, a
/// Grafana session). Keyed by type: each fact is its own struct.
#[derive(Default)]
pub struct Facts {
    map: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    added: tokio::sync::Notify,
}

impl Facts {
    /// Records a fact, replacing an older one of the same type.
    pub fn put<T: Any + Send + Sync>(&self, value: T) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(TypeId::of::<T>(), Arc::new(value));
        self.added.notify_waiters();
    }

    /// Waits until a check records a fact of this type. Only for eager probes (see
    /// [`crate::engine::Probe::eager`]): the runner stops them if the producer fails.
    pub async fn wait<T: Any + Send + Sync>(&self) -> Arc<T> {
        loop {
            let notified = self.added.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = self.get::<T>() {
                return v;
            }
            notified.await;
        }
    }

    /// Reads a fact, if a check recorded one.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&TypeId::of::<T>())
            .cloned()
            .and_then(|a| a.downcast::<T>().ok())
    }
}

/// What a running check is lent.
#[derive(Clone)]
pub struct CheckCtx {
    /// The run's settings.
    pub settings: Arc<Settings>,
    /// Clients built once per run.
    pub clients: Arc<Clients>,
    /// Facts learnt by the checks this one needs.
    pub facts: Arc<Facts>,
    /// The check's own time limit.
    pub timeout: Duration,
    /// When the check's time is up: every call it makes ends by then.
    pub deadline: Instant,
}

impl CheckCtx {
    /// A context whose deadline is `timeout` from now.
    pub fn new(
        settings: Arc<Settings>,
        clients: Arc<Clients>,
        facts: Arc<Facts>,
        timeout: Duration,
    ) -> Self {
        CheckCtx {
            settings,
            clients,
            facts,
            timeout,
            deadline: Instant::now() + timeout,
        }
    }

    /// The time left before the deadline (at least a millisecond, so a call can fail by
    /// itself rather than never start).
    pub fn remaining(&self) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    }

    /// The Kubernetes client, or why there is none.
    pub async fn kube(&self) -> Result<kube::Client, KubeUnavailable> {
        self.clients.kube(&self.settings).await
    }
}
