//! Every kind of check, bound by its `kind = "..."` name: the general kinds (`tcp`, `http`,
//! `exec`) and the guide's own. [`build`] validates a kind's `args` and binds them.

use crate::engine::Probe;
use std::path::Path;
use std::sync::Arc;

pub mod dashboards;
pub mod data;
pub mod exec;
pub mod grafana;
pub mod http;
pub mod kafka;
pub mod kube;
pub mod net;
pub mod panel;
pub mod prom;

/// Why a check definition's kind could not be bound.
#[derive(Debug)]
pub enum BuildError {
    /// No such kind.
    UnknownKind,
    /// The kind exists but its `args` are invalid (the message says which and why).
    Args(String),
}

/// Every kind name, for `list` and error messages.
pub const KINDS: &[&str] = &[
    "tcp",
    "http",
    "exec",
    "grafana.access",
    "grafana.login",
    "grafana.default-password",
    "grafana.datasource",
    "kube.reachable",
    "kube.scrape-annotations",
    "prometheus.api",
    "prometheus.targets",
    "data.traffic",
    "data.time-range",
    "kafka.exporter",
    "panel.query",
    "grafana.dashboards",
];

/// Binds a kind to its arguments. `base` is the folder of the check file, against which
/// relative paths (an exec plugin) resolve.
pub fn build(
    kind: &str,
    args: &toml::Table,
    base: Option<&Path>,
) -> Result<Arc<dyn Probe>, BuildError> {
    match kind {
        "tcp" => Ok(Arc::new(net::Tcp::from_args(args)?)),
        "http" => Ok(Arc::new(http::Http::from_args(args)?)),
        "exec" => Ok(Arc::new(exec::Exec::from_args(args, base)?)),
        "grafana.access" => Ok(Arc::new(grafana::Access::from_args(args)?)),
        "grafana.login" => Ok(Arc::new(grafana::Login::from_args(args)?)),
        "grafana.default-password" => Ok(Arc::new(grafana::DefaultPassword::from_args(args)?)),
        "grafana.datasource" => Ok(Arc::new(grafana::DatasourceCheck::from_args(args)?)),
        "kube.reachable" => Ok(Arc::new(kube::Reachable::from_args(args)?)),
        "kube.scrape-annotations" => Ok(Arc::new(kube::ScrapeAnnotations::from_args(args)?)),
        "prometheus.api" => Ok(Arc::new(prom::ApiCheck::from_args(args)?)),
        "prometheus.targets" => Ok(Arc::new(prom::TargetsCheck::from_args(args)?)),
        "data.traffic" => Ok(Arc::new(data::Traffic::from_args(args)?)),
        "data.time-range" => Ok(Arc::new(data::TimeRange::from_args(args)?)),
        "kafka.exporter" => Ok(Arc::new(kafka::ExporterCheck::from_args(args)?)),
        "panel.query" => Ok(Arc::new(panel::PanelQuery::from_args(args)?)),
        "grafana.dashboards" => Ok(Arc::new(dashboards::Dashboards::from_args(args)?)),
        _ => Err(BuildError::UnknownKind),
    }
}

/// For kinds that take no `args`: an empty table, or an error naming the unknown keys.
pub fn no_args(args: &toml::Table) -> Result<(), BuildError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoArgs {}
    parse_args::<NoArgs>(args).map(|_| ())
}

/// Deserialises a kind's `args` table into its own struct (unknown keys refused).
pub fn parse_args<T: serde::de::DeserializeOwned>(args: &toml::Table) -> Result<T, BuildError> {
    toml::Value::Table(args.clone())
        .try_into::<T>()
        .map_err(|e| BuildError::Args(e.message().trim().to_string()))
}

pub use crate::clients::http::cut;

/// Quotes a word for bash when it holds anything but letters, digits and `-_.:/@=`.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/@=".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
