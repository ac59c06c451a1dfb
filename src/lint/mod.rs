//! `msa-doctor lint`: a readiness gate for a repository, without a cluster. Before a deploy, it
//! tells whether the services in these manifests (and, when their source is here, the
//! applications) will show up in Prometheus at all.
//!
//! - [`inputs`] reads files, folders, standard input, Helm charts and Kustomize trees;
//! - [`yaml`] parses YAML keeping every node's line (duplicate keys are findings, not aborts);
//! - [`manifests`] reads workloads, Services, monitors and Prometheus scrape jobs;
//! - [`app`] reads Gradle/Maven modules and their Spring configuration;
//! - [`rules`] finds the services, how each is scraped, and what is wrong (one finding each);
//! - [`report`] prints the findings: human lines, `msa-doctor/lint/v1` JSON, SARIF 2.1.0,
//!   JUnit and Markdown.
//!
//! Nothing here talks to a cluster or the network; Helm and kubectl are only run to render.

pub mod app;
pub mod inputs;
pub mod manifests;
pub mod report;
pub mod rules;
pub mod yaml;

use crate::cli::LintArgs;
use crate::config::ConfigError;
use crate::exit_code;
use serde::Serialize;
use std::io::{IsTerminal, Read};

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The service will not be scraped, or not where it serves metrics: fails the gate.
    Error,
    /// Likely a problem (or something not checked); passes the gate.
    Warning,
    /// For information.
    Note,
}

impl Severity {
    /// The word used in every format.
    pub fn word(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

/// One problem, at one file and line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule id (`docs/lint.md#<rule>`).
    pub rule: &'static str,
    /// Its severity.
    pub severity: Severity,
    /// The file to change (`-` for standard input; empty when no file is concerned).
    pub file: String,
    /// The 1-based line (0 when no file is concerned).
    pub line: u32,
    /// The workload's own name, when the finding is about one.
    pub workload: Option<String>,
    /// One line.
    pub message: String,
    /// What to write, or `None`.
    pub fix: Option<String>,
}

impl Finding {
    /// A finding about a file, without workload or fix.
    pub fn file(
        rule: &'static str,
        severity: Severity,
        file: &str,
        line: u32,
        message: String,
    ) -> Self {
        Finding {
            rule,
            severity,
            file: file.to_string(),
            line,
            workload: None,
            message,
            fix: None,
        }
    }
}

/// A workload found in the inputs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkloadInfo {
    /// Its own name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Where it is defined.
    pub file: String,
    /// The line of its document.
    pub line: u32,
    /// The service it is (`--services` name or discovered), or `None` when not checked.
    pub service: Option<String>,
    /// Runs a Spring Boot application (by its image, environment, probes or module).
    pub spring_boot: bool,
    /// How Prometheus finds it: `pod-annotations`, `service-annotations`, `service-monitor`,
    /// `pod-monitor`, `static-config` or `none`.
    pub scraped_by: &'static str,
    /// Why it is not checked (infrastructure, not a named service), when `service` is `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_checked: Option<String>,
}

/// The outcome of a lint run.
#[derive(Clone, Debug, Serialize)]
pub struct LintReport {
    /// Files read.
    pub files: usize,
    /// What was read, one line per input.
    #[serde(skip)]
    pub read: Vec<String>,
    /// Every workload.
    pub workloads: Vec<WorkloadInfo>,
    /// Every finding, sorted by file and line.
    pub findings: Vec<Finding>,
}

impl LintReport {
    /// Workloads checked as services.
    pub fn checked(&self) -> usize {
        self.workloads
            .iter()
            .filter(|w| w.service.is_some())
            .count()
    }

    /// How many findings have this severity.
    pub fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }

    /// The exit code of the contract: 1 on an error finding or when nothing was checked.
    pub fn exit_code(&self, strict: bool) -> i32 {
        if self.count(Severity::Error) > 0
            || self.checked() == 0
            || (strict && self.count(Severity::Warning) > 0)
        {
            exit_code::FAILED
        } else {
            exit_code::OK
        }
    }
}

/// Lints the inputs (the library entry, without printing).
pub fn lint(
    paths: &[std::path::PathBuf],
    stdin: Option<String>,
    services: Option<&[String]>,
    tools: &inputs::Tools,
) -> LintReport {
    let inp = inputs::read(paths, stdin, tools);
    let modules = app::modules(&inp.app_files);
    let objects = manifests::read(&inp.docs);
    let (workloads, mut findings) = rules::run(&inp.docs, &objects, &modules, services);
    findings.extend(inp.findings);
    findings.sort_by(|a, b| {
        (&a.file, a.line, a.rule, &a.workload).cmp(&(&b.file, b.line, b.rule, &b.workload))
    });
    findings.dedup();
    LintReport {
        files: inp.files,
        read: inp.read,
        workloads,
        findings,
    }
}

/// `msa-doctor lint`: reads, lints, prints in the chosen format; returns the exit code.
pub fn run(args: LintArgs) -> Result<i32, ConfigError> {
    use crate::cli::LintFormat;
    for p in &args.paths {
        if p.as_os_str() != "-" && !p.exists() {
            return Err(ConfigError::Read {
                path: p.clone(),
                message: "no such file or folder".into(),
            });
        }
    }
    let stdin = if args.paths.iter().any(|p| p.as_os_str() == "-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| ConfigError::Usage(format!("cannot read standard input: {e}")))?;
        Some(s)
    } else {
        None
    };
    let tools = inputs::Tools::from_path(args.values.clone());
    let report = lint(&args.paths, stdin, args.services.as_deref(), &tools);
    let color = match args.color.unwrap_or(crate::cli::ColorChoice::Auto) {
        crate::cli::ColorChoice::Always => true,
        crate::cli::ColorChoice::Never => false,
        crate::cli::ColorChoice::Auto => {
            std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    };
    let text = match args.output.unwrap_or(LintFormat::Human) {
        LintFormat::Human => {
            let width = terminal_size::terminal_size()
                .map(|(w, _)| w.0 as usize)
                .filter(|_| std::io::stdout().is_terminal())
                .unwrap_or(100);
            report::human(&report, color, width)
        }
        LintFormat::Json => report::json(&report),
        LintFormat::Sarif => report::sarif(&report),
        LintFormat::Junit => report::junit(&report),
        LintFormat::Markdown => report::markdown(&report),
    };
    // One writer for every report: a failed write is exit 3, a closed pipe quiet.
    Ok(crate::app::emit(&text, report.exit_code(args.strict)))
}
