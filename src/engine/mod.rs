//! The checklist engine: check definitions, outcomes, the shared run context and the runner.
//!
//! Nothing under `engine/` prints: the runner sends [`RunEvent`]s and returns [`CheckResult`]s,
//! which `report/` renders.

mod check;
mod context;
mod outcome;
mod runner;

pub use check::{CheckSpec, Origin, Probe, Severity};
pub use context::{CheckCtx, Clients, Facts, KubeUnavailable};
pub use outcome::{CheckResult, Outcome, Status, Summary};
pub use runner::{RunEvent, RunOptions, Runner, Selection, fill_template};
