//! A validated check definition ([`CheckSpec`]) and the [`Probe`] trait every kind implements.

use super::{CheckCtx, Outcome};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// One kind of diagnostic, bound to its `args`: probes one thing and says how to fix it.
#[async_trait::async_trait]
pub trait Probe: Send + Sync {
    /// Runs the probe. A broken stack is an [`Outcome`], never a panic or an `Err`.
    async fn run(&self, cx: &CheckCtx) -> Outcome;

    /// Whether the probe may start before its `needs` have passed. An eager probe takes what
    /// it needs from its prerequisites only through [`crate::engine::Facts::wait`], and never
    /// sends a credential anywhere before a fact proves the target is the right one; the
    /// runner discards its result (and stops it) when a prerequisite fails, and starts its
    /// deadline only when the prerequisites have passed. This takes the chain's depth off the
    /// wall time: the data checks are already waiting when the data source is known.
    fn eager(&self) -> bool {
        false
    }
}

/// What a failure counts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// A failure fails the run.
    Fail,
    /// A failure is reported as a warning.
    Warn,
}

/// Where a check was defined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Compiled in from the crate's `checks/` folder (the file name).
    BuiltIn(&'static str),
    /// Loaded from a file at run time.
    File(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::BuiltIn(name) => write!(f, "built-in (checks/{name})"),
            Origin::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A validated check: everything the runner needs to run it.
#[derive(Clone)]
pub struct CheckSpec {
    /// Stable id, `<category>.<kebab-name>`.
    pub id: String,
    /// The id's prefix unless given.
    pub category: String,
    /// What must hold, in words.
    pub title: String,
    /// The kind's name (`tcp`, `http`, `exec`, `grafana.access`, ...).
    pub kind: String,
    /// Ids that must pass (or warn) before this one runs.
    pub needs: Vec<String>,
    /// Extra prerequisites when Prometheus is reached through Grafana's data source proxy (no
    /// `--prometheus-url`); [`crate::config::Plan::for_settings`] folds them into `needs`.
    pub needs_via_grafana: Vec<String>,
    /// What a failure counts as.
    pub severity: Severity,
    /// Its own deadline; the run's `--timeout` when `None`.
    pub timeout: Option<Duration>,
    /// Whether `--wait` re-runs it when it does not pass.
    pub retry: bool,
    /// A remedy template, filled with `{name}` from the findings and the settings.
    pub remedy: Option<String>,
    /// A documentation link or anchor.
    pub docs: Option<String>,
    /// Where it was defined.
    pub origin: Origin,
    /// The kind, bound to its arguments.
    pub probe: Arc<dyn Probe>,
}

impl std::fmt::Debug for CheckSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckSpec")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("needs", &self.needs)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}
