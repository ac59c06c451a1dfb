//! Reports: one model ([`Report`]) rendered as human text, JSON (`msa-doctor/v1`), JUnit XML
//! or Markdown. Nothing else in the crate formats results.

use crate::cli::Format;
use crate::engine::{CheckResult, Summary};
use serde::Serialize;
use std::time::{Duration, SystemTime};

pub mod human;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod styles;

/// What the run was pointed at.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Target {
    /// Grafana as the laptop reaches it.
    pub grafana_url: String,
    /// `grafana-proxy`, or the Prometheus URL given.
    pub prometheus: String,
    /// The kube context, when a cluster was reached.
    pub kube_context: Option<String>,
    /// The application namespace.
    pub namespace: String,
}

/// One run's results.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// When the run started.
    pub started_at: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// What it was pointed at.
    pub target: Target,
    /// The checks, in dependency order.
    pub checks: Vec<CheckResult>,
}

impl Report {
    /// The counts per status.
    pub fn summary(&self) -> Summary {
        Summary::of(&self.checks)
    }
}

/// How to render.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// ANSI colours in the human report.
    pub color: bool,
    /// ✔ ‼ ✖ ↷ rather than the ASCII fallback.
    pub unicode: bool,
}

/// Renders a report in a format.
pub fn render(report: &Report, format: Format, opts: RenderOptions) -> String {
    match format {
        Format::Human => human::render(report, opts),
        Format::Json => json::render(report),
        Format::Junit => junit::render(report),
        Format::Markdown => markdown::render(report),
    }
}
