//! The only code that talks to the world: Grafana (its API and its data source proxy),
//! Prometheus (through that proxy or directly) and the Kubernetes API, plus the `http` check
//! kind's requests. Every call returns a typed answer or a typed [`CallError`] naming the call;
//! nothing here turns a failure into an empty default.
//!
//! [`Clients`] holds what a run shares: one HTTP [`Transport`] (deadlines, a per-run byte
//! budget, a cap per server), the Kubernetes client (built once, its exec plugin run once),
//! and the memoised answers several checks need ([`PromMemo`], [`KubeMemo`]). Every text that
//! came from a server goes through [`redact::clean`] before it is shown.

pub mod error;
pub mod grafana;
pub mod http;
pub mod kube;
pub mod prom;
pub mod redact;

pub use error::{CallError, ErrorKind};
pub use http::{Answer, Lane, Transport};
pub use kube::{KubeMemo, KubeSource, KubeUnavailable};
pub use prom::{PromApi, PromMemo};

use crate::settings::{GrafanaAuth, Settings};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// Network clients and memoised answers, built once per run and lent to every check.
pub struct Clients {
    /// The HTTP transport for Grafana, Prometheus and `http` checks.
    pub http: Transport,
    /// Kubernetes lists fetched once per run.
    pub kube_memo: KubeMemo,
    kube: OnceCell<Result<::kube::Client, KubeUnavailable>>,
    kube_context: Mutex<Option<String>>,
    prom: Mutex<HashMap<String, Arc<PromMemo>>>,
}

impl Clients {
    /// Builds the HTTP transport and registers the run's secrets with the redactor; the
    /// Kubernetes client is built on first use.
    pub fn new(settings: &Settings) -> Self {
        match &settings.grafana_auth {
            GrafanaAuth::Password { user, password, .. } => {
                redact::register_credentials(user, password.expose())
            }
            GrafanaAuth::Token(t) => redact::register(t.expose()),
        }
        Clients {
            http: Transport::new(settings.timeout),
            kube_memo: KubeMemo::default(),
            kube: OnceCell::new(),
            kube_context: Mutex::new(None),
            prom: Mutex::new(HashMap::new()),
        }
    }

    /// The Kubernetes client, from `--kubeconfig`/`--context`, `KUBECONFIG` (merged),
    /// `~/.kube/config` or the in-cluster environment, built once per run.
    pub async fn kube(&self, settings: &Settings) -> Result<::kube::Client, KubeUnavailable> {
        self.kube
            .get_or_init(|| async {
                if settings.no_kube {
                    return Err(KubeUnavailable {
                        disabled: true,
                        reason: "cluster checks are off (--no-kube)".into(),
                    });
                }
                let src = KubeSource::from_process(
                    settings.kubeconfig.clone(),
                    settings.context.clone(),
                    settings.timeout,
                );
                let (client, context) = kube::build(&src, &self.http).await?;
                *self.kube_context.lock().unwrap_or_else(|e| e.into_inner()) = context;
                Ok(client)
            })
            .await
            .clone()
    }

    /// The kube context in use, once the client was built.
    pub fn kube_context(&self) -> Option<String> {
        self.kube_context
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The memo of one Prometheus (by its base: a URL or a Grafana data source).
    pub fn prom_memo(&self, key: &str) -> Arc<PromMemo> {
        self.prom
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone()
    }
}
