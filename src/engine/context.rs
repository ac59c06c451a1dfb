//! The shared run context: settings, clients built once per run, and typed facts that one
//! check learns and the checks that need it read.

use crate::settings::Settings;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

/// Why there is no Kubernetes client for this run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeUnavailable {
    /// True when the user asked for it (`--no-kube`): cluster checks then skip.
    pub disabled: bool,
    /// What went wrong, in words (no secret).
    pub reason: String,
}

/// Network clients, built once per run and lent to every check.
pub struct Clients {
    /// The HTTP client for Grafana and Prometheus (no cookie store: sessions are explicit facts).
    pub http: reqwest::Client,
    kube: OnceCell<Result<kube::Client, KubeUnavailable>>,
    kube_context: Mutex<Option<String>>,
}

impl Clients {
    /// Builds the HTTP client; the Kubernetes client is built on first use.
    pub fn new(settings: &Settings) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("msa-doctor/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("a TLS provider is installed before clients are built");
        Clients {
            http,
            kube: OnceCell::new(),
            kube_context: Mutex::new(None),
        }
    }

    /// The Kubernetes client, inferred from `--kubeconfig`/`--context`, `KUBECONFIG`,
    /// `~/.kube/config` or the in-cluster environment, once per run.
    pub async fn kube(&self, settings: &Settings) -> Result<kube::Client, KubeUnavailable> {
        self.kube
            .get_or_init(|| async {
                if settings.no_kube {
                    return Err(KubeUnavailable {
                        disabled: true,
                        reason: "cluster checks are off (--no-kube)".into(),
                    });
                }
                let (client, context) = build_kube(settings).await?;
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
}

async fn build_kube(
    settings: &Settings,
) -> Result<(kube::Client, Option<String>), KubeUnavailable> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let fail = |reason: String| KubeUnavailable {
        disabled: false,
        reason,
    };
    let options = KubeConfigOptions {
        context: settings.context.clone(),
        ..Default::default()
    };
    let (config, context) = if let Some(path) = &settings.kubeconfig {
        let kc = Kubeconfig::read_from(path)
            .map_err(|e| fail(format!("cannot read kubeconfig {}: {e}", path.display())))?;
        let ctx = settings.context.clone().or(kc.current_context.clone());
        let cfg = kube::Config::from_custom_kubeconfig(kc, &options)
            .await
            .map_err(|e| fail(format!("kubeconfig {}: {e}", path.display())))?;
        (cfg, ctx)
    } else {
        let kc = Kubeconfig::from_env()
            .ok()
            .flatten()
            .or_else(|| Kubeconfig::read().ok());
        let ctx = settings
            .context
            .clone()
            .or_else(|| kc.as_ref().and_then(|k| k.current_context.clone()));
        let cfg = match kc {
            Some(kc) => kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| fail(format!("kubeconfig: {e}")))?,
            None => kube::Config::incluster().map_err(|_| {
                fail(
                    "no kubeconfig found (KUBECONFIG, ~/.kube/config) and not running in a cluster"
                        .into(),
                )
            })?,
        };
        (cfg, ctx)
    };
    let mut config = config;
    config.connect_timeout = Some(settings.timeout);
    config.read_timeout = Some(settings.timeout);
    let client = kube::Client::try_from(config).map_err(|e| fail(format!("kube client: {e}")))?;
    Ok((client, context))
}

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
    /// The check's own deadline.
    pub timeout: Duration,
}

impl CheckCtx {
    /// The Kubernetes client, or why there is none.
    pub async fn kube(&self) -> Result<kube::Client, KubeUnavailable> {
        self.clients.kube(&self.settings).await
    }
}
