//! What one check found ([`Outcome`]) and what the report shows of it ([`CheckResult`]).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Duration;

/// The status of one check, as CONTRACT.md names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The check holds.
    Pass,
    /// The check found something worth fixing that does not empty a panel.
    Warn,
    /// The check found a fault.
    Fail,
    /// A prerequisite did not pass, or the check was filtered out.
    Skip,
    /// The check could not run: an unexpected response, no permission, an internal fault.
    Error,
}

impl Status {
    /// Every status, in report order.
    pub const ALL: [Status; 5] = [
        Status::Pass,
        Status::Warn,
        Status::Fail,
        Status::Skip,
        Status::Error,
    ];

    /// The lowercase name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
            Status::Error => "error",
        }
    }

    /// Whether checks that need this one may run after it.
    pub fn satisfies_needs(self) -> bool {
        matches!(self, Status::Pass | Status::Warn)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a probe found. A broken stack is an `Outcome`, never a Rust error.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Pass, warn, fail or error (skip is the runner's to give).
    pub status: Status,
    /// One line saying what was seen.
    pub message: String,
    /// What to type to fix it; may span lines. Dropped when the check passes.
    pub remedy: Option<String>,
    /// Free-form findings; never a secret.
    pub evidence: Map<String, Value>,
    /// Why `--wait` must not run the check again, when repeating it would do harm (a refused
    /// login counts toward Grafana's lockout): the check keeps this outcome.
    pub no_retry: Option<String>,
}

impl Outcome {
    fn new(status: Status, message: impl Into<String>) -> Self {
        Outcome {
            status,
            message: one_line(&message.into()),
            remedy: None,
            evidence: Map::new(),
            no_retry: None,
        }
    }

    /// `--wait` keeps this outcome instead of running the check again, for this reason (said
    /// in the message when a retry was due).
    pub fn no_retry(mut self, why: impl Into<String>) -> Self {
        self.no_retry = Some(why.into());
        self
    }

    /// The check holds.
    pub fn pass(message: impl Into<String>) -> Self {
        Self::new(Status::Pass, message)
    }

    /// A finding that does not break the chain.
    pub fn warn(message: impl Into<String>) -> Self {
        Self::new(Status::Warn, message)
    }

    /// A fault.
    pub fn fail(message: impl Into<String>) -> Self {
        Self::new(Status::Fail, message)
    }

    /// The check does not apply in this run (e.g. cluster checks under `--no-kube`); the
    /// message is the reason.
    pub fn skip(message: impl Into<String>) -> Self {
        Self::new(Status::Skip, message)
    }

    /// The check could not run.
    pub fn error(message: impl Into<String>) -> Self {
        Self::new(Status::Error, message)
    }

    /// Adds what to type to fix it.
    pub fn remedy(mut self, remedy: impl Into<String>) -> Self {
        let r = remedy.into();
        self.remedy = if r.trim().is_empty() { None } else { Some(r) };
        self
    }

    /// Adds one piece of evidence.
    pub fn evidence(mut self, key: &str, value: impl Serialize) -> Self {
        let v = serde_json::to_value(value).unwrap_or(Value::Null);
        self.evidence.insert(key.to_string(), v);
        self
    }
}

/// Folds a message onto one line, as the contract wants for `message`.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, part) in s
        .split(['\n', '\r'])
        .filter(|p| !p.trim().is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push_str(" / ");
        }
        out.push_str(part.trim());
    }
    out
}

/// One check as the report shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckResult {
    /// Stable id, `<category>.<kebab-name>`.
    pub id: String,
    /// The id's prefix.
    pub category: String,
    /// What must hold, in words.
    pub title: String,
    /// The final status.
    pub status: Status,
    /// One line: what was seen.
    pub message: String,
    /// What to type; `None` when passing.
    pub remedy: Option<String>,
    /// The checks this one needs.
    pub needs: Vec<String>,
    /// Why it was skipped, when it was.
    pub skipped_because: Option<String>,
    /// Wall time of the last attempt.
    #[serde(rename = "duration_ms", serialize_with = "ser_ms")]
    pub duration: Duration,
    /// Free-form findings.
    pub evidence: Value,
    /// How many times it ran (more than one with `--wait`).
    #[serde(skip)]
    pub attempts: u32,
    /// Where its documentation lives.
    #[serde(skip)]
    pub docs: Option<String>,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// How many checks ended in each status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Passed.
    pub pass: usize,
    /// Warned.
    pub warn: usize,
    /// Failed.
    pub fail: usize,
    /// Skipped.
    pub skip: usize,
    /// Could not run.
    pub error: usize,
}

impl Summary {
    /// Counts the results.
    pub fn of(results: &[CheckResult]) -> Self {
        let mut s = Summary::default();
        for r in results {
            match r.status {
                Status::Pass => s.pass += 1,
                Status::Warn => s.warn += 1,
                Status::Fail => s.fail += 1,
                Status::Skip => s.skip += 1,
                Status::Error => s.error += 1,
            }
        }
        s
    }

    /// The exit code of CONTRACT.md for these counts.
    pub fn exit_code(&self, strict: bool) -> i32 {
        if self.fail > 0 || (strict && self.warn > 0) {
            crate::exit_code::FAILED
        } else if self.error > 0 {
            crate::exit_code::ERROR
        } else {
            crate::exit_code::OK
        }
    }
}
