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
pub mod prometheus;
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
    /// How much of the human report to print (`-q`, `-v`).
    pub verbosity: Verbosity,
}

/// How much the human report says: `-q` problems only, `-v` passing checks' details too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// `-q`: the checks that warned, failed or errored, and the summary line.
    Quiet,
    /// Every check on one line; details under those that did not pass.
    #[default]
    Normal,
    /// `-v`: details and evidence under passing checks too.
    Verbose,
}

impl Verbosity {
    /// From the `-q` and `-v` flags (clap makes them exclusive).
    pub fn from_flags(quiet: bool, verbose: bool) -> Self {
        if quiet {
            Verbosity::Quiet
        } else if verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        }
    }
}

/// Renders a report in a format.
pub fn render(report: &Report, format: Format, opts: RenderOptions) -> String {
    match format {
        Format::Human => human::render(report, opts),
        Format::Json => json::render(report),
        Format::Junit => junit::render(report),
        Format::Markdown => markdown::render(report),
        Format::Prometheus => prometheus::render(report),
    }
}
