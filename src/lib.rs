//! msa-doctor: a doctor for the monitoring of a microservice system.
//!
//! It walks the whole chain a Grafana panel depends on (laptop, port-forward, Grafana, data
//! source, Prometheus, discovery, target, application, traffic) and names the root cause of an
//! empty panel together with what to type to fix it.
//!
//! The crate is laid out as a library with a thin binary (`src/main.rs`):
//! - [`cli`] parses the command line, [`settings`] merges flags, environment and config file;
//! - [`config`] loads and validates check definitions (`checks/*.toml` and `--checks DIR`);
//! - [`engine`] runs the checks as a dependency graph, concurrently, each under a deadline;
//! - [`probes`] holds every kind of check, general (`tcp`, `http`, `exec`) and the guide's own;
//! - [`report`] renders one result model as human text, JSON, JUnit, Markdown or Prometheus
//!   metrics;
//! - [`lint`] checks a repository's manifests and applications without a cluster;
//! - [`serve`] re-runs the checklist and serves its metrics; [`docs`], [`shell`] and
//!   [`version`] answer `docs`, `completion`/`man` and `version`.
#![warn(missing_docs)]

pub mod app;
pub mod cli;
pub mod clients;
pub mod commands;
pub mod config;
pub mod config_show;
pub mod docs;
pub mod domain;
pub mod engine;
pub mod exit_code;
pub mod explain;
pub mod lint;
pub mod probes;
pub mod report;
// The practice stack starts Prometheus in a process group of its own and handles SIGTERM:
// Unix only. Elsewhere `demo` says so (see `app`).
#[cfg(all(feature = "sandbox", unix))]
pub mod sandbox;
pub mod serve;
pub mod settings;
pub mod shell;
pub mod version;
