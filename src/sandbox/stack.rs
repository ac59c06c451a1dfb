//! The practice stack, assembled: the emulated cluster (Kubernetes API and pods), a real
//! Prometheus or VictoriaMetrics scraping it, and the emulated Grafana whose data source points
//! at that database, each on its own loopback ports, so that two stacks can run side by side.
//! [`Stack::settings`] is what `msa-doctor` would be given against it.

use crate::cli::Backend;
use crate::sandbox::cluster::{ClusterOptions, ClusterSim, ResourceKind};
use crate::sandbox::faults::{Fault, FaultSet};
use crate::sandbox::grafana::{GrafanaOptions, GrafanaSim};
use crate::sandbox::prom::{PromError, Tsdb, TsdbOptions};
use crate::sandbox::scale::{self, Scale};
use crate::settings::{GrafanaAuth, Secret, Settings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Grafana's admin password when a fault changed it.
const CHANGED_PASSWORD: &str = "s3cure-pass";

/// What to start.
#[derive(Clone, Debug, Default)]
pub struct StackOptions {
    /// How the stack is broken.
    pub faults: FaultSet,
    /// The database that scrapes the emulated pods.
    pub backend: Backend,
    /// The binary of that database (`--prometheus-bin`); `None` looks on `PATH`.
    pub prometheus_bin: Option<PathBuf>,
}

/// Why the stack did not start.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The time-series database is missing or did not start.
    #[error(transparent)]
    Tsdb(#[from] PromError),
    /// The emulated cluster did not start.
    #[error("cannot start the emulated cluster: {0}")]
    Cluster(std::io::Error),
    /// The emulated Grafana did not start.
    #[error("cannot start the emulated Grafana: {0}")]
    Grafana(std::io::Error),
    /// A file of the stack could not be written.
    #[error("cannot prepare the practice stack: {0}")]
    Prepare(std::io::Error),
}

impl StackError {
    /// Whether the database's binary is missing (an installation problem, exit code 2).
    pub fn is_not_installed(&self) -> bool {
        matches!(self, StackError::Tsdb(PromError::NotInstalled { .. }))
    }
}

/// A running practice stack. [`Stack::shutdown`] stops it and waits; dropping it stops every
/// process and server too and removes every temporary file.
pub struct Stack {
    /// Grafana as the laptop reaches it (the port-forward), without a trailing slash.
    pub grafana_url: String,
    /// The database, without a trailing slash.
    pub prometheus_url: String,
    /// The emulated Kubernetes API.
    pub kube_url: String,
    /// A kubeconfig for the emulated API.
    pub kubeconfig_path: PathBuf,
    /// The Grafana user msa-doctor is given.
    pub doctor_user: String,
    /// The Grafana password msa-doctor is given (not always Grafana's: see `wrong-password`).
    pub doctor_password: Secret,
    /// Whether [`Stack::doctor_password`] is the built-in default, as when nothing is configured.
    pub doctor_password_defaulted: bool,
    /// A file holding Grafana's real admin password (for `--grafana-password-file`).
    pub grafana_password_file: PathBuf,
    /// From the database's start to its first scrape of a `kubernetes-pods` target.
    pub time_to_first_scrape: Duration,
    /// From [`Stack::start`] to ready.
    pub startup: Duration,
    /// How the stack is broken.
    pub faults: FaultSet,
    /// The database in use.
    pub backend: Backend,
    /// The database's process id.
    pub prometheus_pid: u32,
    /// The database's configuration file.
    pub prometheus_config: PathBuf,
    /// The scale fixture, when on.
    pub scale: Option<Scale>,
    // Declared in stop order: Grafana, the database, then the cluster it scrapes.
    grafana: Option<GrafanaSim>,
    tsdb: Option<Tsdb>,
    cluster: Option<ClusterSim>,
    dir: Option<TempDir>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("grafana_url", &self.grafana_url)
            .field("prometheus_url", &self.prometheus_url)
            .field("kube_url", &self.kube_url)
            .field("faults", &self.faults)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// Starts the cluster, the database (waiting for its first scrape) and Grafana.
    pub async fn start(opts: StackOptions) -> Result<Stack, StackError> {
        let t0 = Instant::now();
        // The scale benchmark's fixture (src/sandbox/scale.rs), off unless the variable is set.
        let scale = Scale::from_env().map_err(|e| {
            StackError::Prepare(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        })?;
        // Fail fast on a missing binary, before anything is started.
        crate::sandbox::prom::find_binary(opts.prometheus_bin.as_deref(), opts.backend)?;
        // What a stack killed by SIGKILL left behind goes first.
        crate::sandbox::hygiene::remove_stale_dirs();
        let dir = crate::sandbox::hygiene::owned_tempdir("msa-doctor-stack-")
            .map_err(StackError::Prepare)?;
        let faults = opts.faults.clone();
        let grafana_password =
            if faults.has(Fault::WrongPassword) || faults.has(Fault::PasswordChanged) {
                CHANGED_PASSWORD
            } else {
                "admin"
            };
        let grafana_password_file = dir.path().join("grafana-password");
        write_private(&grafana_password_file, grafana_password).map_err(StackError::Prepare)?;

        // Grafana chooses its own port when it starts, after the database (whose URL it needs);
        // svc/grafana's Endpoints get a placeholder now and its real port then.
        let grafana_port = crate::sandbox::prom::free_port().map_err(StackError::Prepare)?;
        let settings = Settings::defaults();
        let cluster = ClusterSim::start(ClusterOptions {
            app_namespace: settings.namespace.clone(),
            monitoring_namespace: settings.monitoring_namespace.clone(),
            faults: faults.clone(),
            grafana_port,
            scale,
        })
        .await
        .map_err(StackError::Cluster)?;

        let tsdb = match Tsdb::start(TsdbOptions {
            backend: opts.backend,
            binary: opts.prometheus_bin.clone(),
            faults: faults.clone(),
            sd_pods_url: cluster.sd_pods_url.clone(),
            kube_url: cluster.kube_url.clone(),
            namespaces: vec![
                settings.namespace.clone(),
                settings.monitoring_namespace.clone(),
            ],
            app_namespace: settings.namespace.clone(),
            cadvisor_targets: cluster.cadvisor_targets.clone(),
            pod_ip_prefix: cluster.pod_ip_prefix,
            pods_scrape_interval: scale.map(|_| scale::SCRAPE_INTERVAL),
        })
        .await
        {
            Ok(t) => t,
            Err(e) => {
                cluster.shutdown().await;
                return Err(e.into());
            }
        };

        let datasource_url = if faults.has(Fault::DatasourceWrongUrl) {
            "http://localhost:9090".to_string()
        } else {
            tsdb.url.clone()
        };
        let grafana = match GrafanaSim::start(GrafanaOptions {
            faults: faults.clone(),
            datasource_url,
            admin_password: grafana_password.to_string(),
            extra_dashboards: scale.map(scale::dashboards).unwrap_or_default(),
            count_requests: scale.is_some(),
            ..GrafanaOptions::default()
        })
        .await
        {
            Ok(g) => g,
            Err(e) => {
                tsdb.shutdown().await;
                cluster.shutdown().await;
                return Err(StackError::Grafana(e));
            }
        };
        // svc/prometheus and svc/grafana point where the real processes listen.
        if let Ok(addr) = tsdb.url.trim_start_matches("http://").parse::<SocketAddr>() {
            cluster.set_prometheus_address(addr);
        }
        let monitoring = settings.monitoring_namespace.clone();
        cluster
            .store()
            .modify(ResourceKind::Endpoints, &monitoring, "grafana", |obj| {
                if let Some(p) = obj.pointer_mut("/subsets/0/ports/0/port") {
                    *p = serde_json::json!(grafana.port);
                }
            });

        let (doctor_password, defaulted) = if faults.has(Fault::PasswordChanged) {
            (CHANGED_PASSWORD, false)
        } else {
            ("admin", true)
        };
        Ok(Stack {
            grafana_url: grafana.url.trim_end_matches('/').to_string(),
            prometheus_url: tsdb.url.clone(),
            kube_url: cluster.kube_url.clone(),
            kubeconfig_path: cluster.kubeconfig_path.clone(),
            doctor_user: "admin".into(),
            doctor_password: Secret::new(doctor_password),
            doctor_password_defaulted: defaulted,
            grafana_password_file,
            time_to_first_scrape: tsdb.time_to_first_scrape,
            startup: t0.elapsed(),
            faults,
            backend: opts.backend,
            prometheus_pid: tsdb.pid,
            prometheus_config: tsdb.config_path.clone(),
            scale,
            grafana: Some(grafana),
            tsdb: Some(tsdb),
            cluster: Some(cluster),
            dir: Some(dir),
        })
    }

    /// The settings msa-doctor would run with against this stack: its Grafana URL, kubeconfig
    /// and credentials, every other option at its default. Prometheus is reached through
    /// Grafana's data source proxy, as a user with only Grafana's port forwarded does.
    pub fn settings(&self) -> Settings {
        let mut s = Settings::defaults();
        s.grafana_url = self.grafana_url.clone();
        s.grafana_auth = GrafanaAuth::Password {
            user: self.doctor_user.clone(),
            password: self.doctor_password.clone(),
            defaulted: self.doctor_password_defaulted,
        };
        s.kubeconfig = Some(self.kubeconfig_path.clone());
        s
    }

    /// The time-series database's temporary directory (configuration, data, log).
    pub fn prometheus_dir(&self) -> Option<PathBuf> {
        self.tsdb
            .as_ref()
            .and_then(|t| t.dir().map(|p| p.to_path_buf()))
    }

    /// Stops Grafana, the database (waiting until its process is gone) and the cluster, and
    /// removes the temporary files.
    pub async fn shutdown(mut self) {
        if let Some(g) = self.grafana.take() {
            g.shutdown().await;
        }
        if let Some(t) = self.tsdb.take() {
            t.shutdown().await;
        }
        if let Some(c) = self.cluster.take() {
            c.shutdown().await;
        }
        if let Some(d) = self.dir.take() {
            let _ = d.close();
        }
    }
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}

/// Test support: starts a Prometheus-backed stack with these faults, or panics with the
/// reason (a missing Prometheus names the `apt-get` line). Installs the TLS provider first.
/// Tests of different faults may call it concurrently: every stack has its own ports and its
/// own Prometheus.
pub async fn start_for_test(faults: &[Fault]) -> Stack {
    start_for_test_with(faults, Backend::Prometheus).await
}

/// [`start_for_test`] with the backend chosen.
pub async fn start_for_test_with(faults: &[Fault], backend: Backend) -> Stack {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Stack::start(StackOptions {
        faults: FaultSet::of(faults),
        backend,
        prometheus_bin: None,
    })
    .await
    {
        Ok(s) => s,
        Err(e) => panic!("the practice stack with faults {faults:?} did not start: {e}"),
    }
}
