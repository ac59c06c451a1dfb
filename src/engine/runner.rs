//! The runner: every check whose `needs` have passed starts at once (bounded by `--jobs`), each
//! under its own deadline; a check whose prerequisite did not pass is skipped, naming it; a
//! panic is an `error` for that check alone; `--wait` re-runs what failed until a deadline.

use super::{CheckCtx, CheckResult, CheckSpec, Outcome, Severity, Status};
use futures::FutureExt;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What the runner tells reporters while it works.
#[derive(Clone, Debug)]
pub enum RunEvent {
    /// A check started.
    Started {
        /// Its id.
        id: String,
    },
    /// A check ended.
    Finished(Box<CheckResult>),
    /// `--wait`: some retryable checks did not pass; they run again after a pause.
    Retrying {
        /// The attempt about to start (2 for the first retry).
        attempt: u32,
        /// The checks that did not pass.
        failing: Vec<String>,
        /// Time left before the `--wait` deadline.
        remaining: Duration,
    },
}

/// `--only` and `--skip`, by id or category.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// When not empty, only these (and their prerequisites) run.
    pub only: Vec<String>,
    /// These do not run (nor what needs them).
    pub skip: Vec<String>,
}

impl Selection {
    fn matches(key: &str, spec: &CheckSpec) -> bool {
        key == spec.id || key == spec.category
    }
}

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Checks running at once at most.
    pub jobs: usize,
    /// The deadline of a check that names none.
    pub default_timeout: Duration,
    /// `--wait`: re-run failing retryable checks until they pass or this much time is up.
    pub wait: Option<Duration>,
    /// The pause between two attempts under `--wait`.
    pub retry_interval: Duration,
    /// Which checks run.
    pub selection: Selection,
    /// Values for `{name}` in remedy templates that the evidence does not give (namespace, ...).
    pub template_vars: serde_json::Map<String, Value>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            jobs: 16,
            default_timeout: Duration::from_secs(5),
            wait: None,
            retry_interval: Duration::from_secs(2),
            selection: Selection::default(),
            template_vars: Default::default(),
        }
    }
}

/// Runs a validated plan (checks in dependency order) against one context.
pub struct Runner {
    specs: Vec<CheckSpec>,
    options: RunOptions,
}

#[derive(Clone)]
enum Done {
    Ran(CheckResult),
}

impl Runner {
    /// Takes checks in dependency order (as [`crate::config::Plan`] gives them).
    pub fn new(specs: Vec<CheckSpec>, options: RunOptions) -> Self {
        Runner { specs, options }
    }

    /// Runs everything; returns the results in dependency order.
    pub async fn run(
        &self,
        cx: CheckCtx,
        events: &mut (dyn FnMut(RunEvent) + Send),
    ) -> Vec<CheckResult> {
        let index: HashMap<&str, usize> = self
            .specs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let (selected, filtered) = self.select(&index);

        let mut results: HashMap<usize, CheckResult> = HashMap::new();
        for (i, reason) in &filtered {
            results.insert(*i, self.skipped(*i, reason.clone(), 0));
        }
        let deadline = self.options.wait.map(|w| Instant::now() + w);
        let mut to_run: BTreeSet<usize> = selected.clone();
        let mut attempt = 1;
        loop {
            self.round(&cx, &index, &to_run, attempt, &mut results, events)
                .await;
            let Some(deadline) = deadline else { break };
            let failing: Vec<usize> = to_run
                .iter()
                .copied()
                .filter(|i| {
                    let r = &results[i];
                    self.specs[*i].retry && matches!(r.status, Status::Fail | Status::Error)
                })
                .collect();
            let now = Instant::now();
            if failing.is_empty() || now >= deadline {
                break;
            }
            let remaining = deadline - now;
            attempt += 1;
            events(RunEvent::Retrying {
                attempt,
                failing: failing.iter().map(|i| self.specs[*i].id.clone()).collect(),
                remaining,
            });
            tokio::time::sleep(self.options.retry_interval.min(remaining)).await;
            // The failing checks again, and every selected check downstream of one of them.
            let mut next: BTreeSet<usize> = failing.into_iter().collect();
            for (i, spec) in self.specs.iter().enumerate() {
                if selected.contains(&i)
                    && spec
                        .needs
                        .iter()
                        .any(|n| index.get(n.as_str()).is_some_and(|j| next.contains(j)))
                {
                    next.insert(i);
                }
            }
            to_run = next;
        }
        let mut out: Vec<CheckResult> = Vec::with_capacity(self.specs.len());
        for i in 0..self.specs.len() {
            if let Some(r) = results.remove(&i) {
                out.push(r);
            }
        }
        out
    }

    /// Selected checks (with their prerequisites) and the filtered-out ones with the reason.
    fn select(&self, index: &HashMap<&str, usize>) -> (BTreeSet<usize>, Vec<(usize, String)>) {
        let sel = &self.options.selection;
        let mut chosen: BTreeSet<usize> = BTreeSet::new();
        for (i, spec) in self.specs.iter().enumerate() {
            if sel.only.is_empty() || sel.only.iter().any(|k| Selection::matches(k, spec)) {
                chosen.insert(i);
            }
        }
        // Prerequisites of a selected check still run.
        let mut stack: Vec<usize> = chosen.iter().copied().collect();
        while let Some(i) = stack.pop() {
            for n in &self.specs[i].needs {
                if let Some(&j) = index.get(n.as_str())
                    && chosen.insert(j)
                {
                    stack.push(j);
                }
            }
        }
        let mut filtered = Vec::new();
        for (i, spec) in self.specs.iter().enumerate() {
            if let Some(k) = sel.skip.iter().find(|k| Selection::matches(k, spec)) {
                chosen.remove(&i);
                filtered.push((i, format!("filtered out by --skip {k}")));
            } else if !chosen.contains(&i) {
                filtered.push((i, "filtered out by --only".to_string()));
            }
        }
        (chosen, filtered)
    }

    fn skipped(&self, i: usize, reason: String, attempts: u32) -> CheckResult {
        let spec = &self.specs[i];
        CheckResult {
            id: spec.id.clone(),
            category: spec.category.clone(),
            title: spec.title.clone(),
            status: Status::Skip,
            message: reason.clone(),
            remedy: None,
            needs: spec.needs.clone(),
            skipped_because: Some(reason),
            duration: Duration::ZERO,
            evidence: Value::Object(Default::default()),
            attempts,
            docs: spec.docs.clone(),
        }
    }

    /// One pass over `to_run`: results of checks outside it stay as they are.
    async fn round(
        &self,
        cx: &CheckCtx,
        index: &HashMap<&str, usize>,
        to_run: &BTreeSet<usize>,
        attempt: u32,
        results: &mut HashMap<usize, CheckResult>,
        events: &mut (dyn FnMut(RunEvent) + Send),
    ) {
        let semaphore = Arc::new(Semaphore::new(self.options.jobs.max(1)));
        let mut pending: BTreeSet<usize> = to_run.clone();
        for i in to_run {
            results.remove(i);
        }
        let mut running: HashSet<usize> = HashSet::new();
        let mut set: JoinSet<(usize, Done)> = JoinSet::new();
        let mut task_ids: HashMap<tokio::task::Id, usize> = HashMap::new();
        loop {
            // Start or skip everything whose prerequisites are settled.
            let mut progressed = true;
            while progressed {
                progressed = false;
                let ready: Vec<usize> = pending
                    .iter()
                    .copied()
                    .filter(|i| {
                        self.specs[*i].needs.iter().all(|n| match index.get(n.as_str()) {
                            Some(j) => results.contains_key(j),
                            None => true,
                        })
                    })
                    .collect();
                for i in ready {
                    pending.remove(&i);
                    progressed = true;
                    let spec = &self.specs[i];
                    let blocker = spec.needs.iter().find_map(|n| {
                        let j = index.get(n.as_str())?;
                        let r = &results[j];
                        (!r.status.satisfies_needs()).then(|| (n.clone(), r.status))
                    });
                    if let Some((need, status)) = blocker {
                        let reason = match status {
                            Status::Skip => format!("needs {need}, which was skipped"),
                            s => format!("needs {need}, which ended in {s}"),
                        };
                        let r = self.skipped(i, reason, attempt);
                        events(RunEvent::Finished(Box::new(r.clone())));
                        results.insert(i, r);
                        continue;
                    }
                    events(RunEvent::Started {
                        id: spec.id.clone(),
                    });
                    let probe = spec.probe.clone();
                    let timeout = spec.timeout.unwrap_or(self.options.default_timeout);
                    let mut ccx = cx.clone();
                    ccx.timeout = timeout;
                    let sem = semaphore.clone();
                    let handle = set.spawn(async move {
                        let _permit = sem.acquire_owned().await;
                        let start = Instant::now();
                        let outcome = run_one(probe, ccx, timeout).await;
                        (i, Done::Ran(stamp(outcome, start.elapsed())))
                    });
                    task_ids.insert(handle.id(), i);
                    running.insert(i);
                }
            }
            if running.is_empty() {
                break;
            }
            let (i, result) = match set.join_next_with_id().await {
                Some(Ok((_, (i, Done::Ran(r))))) => (i, r),
                Some(Err(e)) => {
                    // A panic inside the probe is caught in run_one; this is a panic in the
                    // runner's own wrapper or a cancelled task: still only this check's error.
                    let Some(&i) = task_ids.get(&e.id()) else {
                        continue;
                    };
                    let mut r = blank(Status::Error);
                    r.message = format!("internal error: the check's task ended abnormally: {e}");
                    (i, r)
                }
                None => break,
            };
            running.remove(&i);
            let r = self.finish(i, result, attempt);
            events(RunEvent::Finished(Box::new(r.clone())));
            results.insert(i, r);
        }
    }

    fn finish(&self, i: usize, mut r: CheckResult, attempt: u32) -> CheckResult {
        let spec = &self.specs[i];
        r.id = spec.id.clone();
        r.category = spec.category.clone();
        r.title = spec.title.clone();
        r.needs = spec.needs.clone();
        r.attempts = attempt;
        r.docs = spec.docs.clone();
        if r.status == Status::Fail && spec.severity == Severity::Warn {
            r.status = Status::Warn;
        }
        if r.status == Status::Pass {
            r.remedy = None;
        } else if r.remedy.is_none()
            && let Some(t) = &spec.remedy
        {
            let mut vars = self.options.template_vars.clone();
            if let Value::Object(ev) = &r.evidence {
                vars.extend(ev.clone());
            }
            r.remedy = Some(fill_template(t, &Value::Object(vars)));
        }
        r
    }
}

fn blank(status: Status) -> CheckResult {
    CheckResult {
        id: String::new(),
        category: String::new(),
        title: String::new(),
        status,
        message: String::new(),
        remedy: None,
        needs: vec![],
        skipped_because: None,
        duration: Duration::ZERO,
        evidence: Value::Object(Default::default()),
        attempts: 1,
        docs: None,
    }
}

fn stamp(o: Outcome, elapsed: Duration) -> CheckResult {
    let mut r = blank(o.status);
    r.message = o.message;
    r.remedy = o.remedy;
    r.evidence = Value::Object(o.evidence);
    r.duration = elapsed;
    if r.status == Status::Skip {
        // Probes may skip (e.g. cluster checks under --no-kube); the reason is their message.
        r.skipped_because = Some(r.message.clone());
    }
    r
}

async fn run_one(probe: Arc<dyn super::Probe>, cx: CheckCtx, timeout: Duration) -> Outcome {
    let fut = AssertUnwindSafe(async move { probe.run(&cx).await }).catch_unwind();
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Outcome::error(format!("internal error: the check panicked: {what}"))
        }
        Err(_) => Outcome::error(format!(
            "timed out after {}",
            humantime::format_duration(timeout)
        )),
    }
}

/// Fills `{name}` in a remedy template from the check's evidence (strings, numbers and lists
/// joined by commas). Unknown names stay as they are, so a reader sees what was meant.
pub fn fill_template(template: &str, evidence: &Value) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end)
                if !after[..end].is_empty()
                    && after[..end]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-') =>
            {
                let key = &after[..end];
                match evidence.get(key).map(render_value) {
                    Some(v) => out.push_str(&v),
                    None => out.push_str(&rest[start..start + end + 2]),
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(render_value).collect::<Vec<_>>().join(","),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
