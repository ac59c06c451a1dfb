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

/// Runs a plan (checks and their `needs`) against one context.
pub struct Runner {
    /// In dependency order: a check after everything it needs (cycles last).
    specs: Vec<CheckSpec>,
    options: RunOptions,
    /// Checks that cannot run because of their definition (an unknown need, a cycle), and why.
    broken: HashMap<usize, String>,
}

#[derive(Clone)]
enum Done {
    /// The result, and why `--wait` must not repeat the check, if it must not.
    Ran(CheckResult, Option<String>),
}

impl Runner {
    /// How long past a check's own deadline the runner waits before it stops the check. A
    /// probe that honours [`CheckCtx::timeout`] reports its own, more precise, message ("no
    /// answer from host:port within 2s"); the runner's stop is for a probe that does not.
    pub const GRACE: Duration = Duration::from_millis(250);

    /// Takes checks in any order ([`crate::config::Plan`] gives them in dependency order
    /// already); the results come in dependency order. A need that names no check, or a
    /// dependency cycle (which [`crate::config`] refuses), makes the check an `error`.
    pub fn new(specs: Vec<CheckSpec>, options: RunOptions) -> Self {
        let (specs, broken) = dependency_order(specs);
        Runner {
            specs,
            options,
            broken,
        }
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
            .rev() // The first of two equal ids wins (the second is an error).
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let (selected, filtered) = self.select(&index);

        let mut results: HashMap<usize, CheckResult> = HashMap::new();
        for (i, reason) in filtered {
            let r = self.skipped(i, reason, 0);
            events(RunEvent::Finished(Box::new(r.clone())));
            results.insert(i, r);
        }
        let deadline = self.options.wait.map(|w| Instant::now() + w);
        let mut to_run: BTreeSet<usize> = selected.clone();
        let mut attempt = 1;
        // Checks whose outcome says a retry would do harm: they keep their first result.
        let mut no_retry: HashMap<usize, String> = HashMap::new();
        let failed = |r: Option<&CheckResult>| {
            r.is_some_and(|r| matches!(r.status, Status::Fail | Status::Error))
        };
        loop {
            self.round(
                &cx,
                &index,
                &to_run,
                attempt,
                &mut results,
                &mut no_retry,
                events,
            )
            .await;
            let Some(deadline) = deadline else { break };
            let failing: Vec<usize> = to_run
                .iter()
                .copied()
                .filter(|i| {
                    self.specs[*i].retry
                        && !self.broken.contains_key(i)
                        && !no_retry.contains_key(i)
                        && failed(results.get(i))
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
            // The failing checks again, and every selected check downstream of one of them
            // (the specs are in dependency order, so one pass finds the transitive ones).
            let mut next: BTreeSet<usize> = failing.into_iter().collect();
            for (i, spec) in self.specs.iter().enumerate() {
                if selected.contains(&i)
                    && !no_retry.contains_key(&i)
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
        if self.options.wait.is_some() {
            for (i, why) in &no_retry {
                if let Some(r) = results.get_mut(i)
                    && self.specs[*i].retry
                    && matches!(r.status, Status::Fail | Status::Error)
                {
                    r.message = format!("{} (not retried under --wait: {why})", r.message);
                }
            }
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

    /// One pass over `to_run`: results of checks outside it stay as they are. A check starts
    /// when everything it needs has a result and fewer than `jobs` checks are running, so a
    /// `Started` event means the check really started.
    // Private, called once: the run's state is passed piece by piece rather than bundled.
    #[allow(clippy::too_many_arguments)]
    async fn round(
        &self,
        cx: &CheckCtx,
        index: &HashMap<&str, usize>,
        to_run: &BTreeSet<usize>,
        attempt: u32,
        results: &mut HashMap<usize, CheckResult>,
        no_retry: &mut HashMap<usize, String>,
        events: &mut (dyn FnMut(RunEvent) + Send),
    ) {
        let jobs = self.options.jobs.max(1);
        let mut pending: BTreeSet<usize> = to_run.clone();
        for i in to_run {
            results.remove(i);
        }
        // Checks whose needs passed, waiting for a free slot, in dependency order.
        let mut ready: BTreeSet<usize> = BTreeSet::new();
        let mut set: JoinSet<(usize, Done)> = JoinSet::new();
        let mut task_ids: HashMap<tokio::task::Id, usize> = HashMap::new();
        // Eager checks started before their needs settled: their task and the signal that
        // starts their deadline; results that came back before the needs settled.
        let mut early: HashMap<
            usize,
            (
                tokio::task::AbortHandle,
                tokio::sync::watch::Sender<Option<Instant>>,
            ),
        > = HashMap::new();
        let mut early_done: HashMap<usize, CheckResult> = HashMap::new();
        let mut ready_running: HashSet<usize> = HashSet::new();
        loop {
            // Settle everything whose prerequisites are settled: skip it, or queue it.
            let mut progressed = true;
            while progressed {
                progressed = false;
                let settled: Vec<usize> = pending
                    .iter()
                    .copied()
                    .filter(|i| {
                        self.broken.contains_key(i)
                            || self.specs[*i].needs.iter().all(|n| {
                                index
                                    .get(n.as_str())
                                    .is_some_and(|j| results.contains_key(j))
                            })
                    })
                    .collect();
                for i in settled {
                    pending.remove(&i);
                    progressed = true;
                    let spec = &self.specs[i];
                    if let Some(why) = self.broken.get(&i) {
                        let mut r = blank(Status::Error);
                        r.message = why.clone();
                        let r = self.finish(i, r, attempt);
                        events(RunEvent::Finished(Box::new(r.clone())));
                        results.insert(i, r);
                        continue;
                    }
                    let blocker = spec.needs.iter().find_map(|n| {
                        let r = &results[&index[n.as_str()]];
                        (!r.status.satisfies_needs()).then(|| (n.clone(), r.status))
                    });
                    if let Some((need, status)) = blocker {
                        let reason = match status {
                            Status::Skip => format!("needs {need}, which was skipped"),
                            s => format!("needs {need}, which ended in {s}"),
                        };
                        // A speculative start is stopped and its result, if any, dropped.
                        if let Some((h, _)) = early.remove(&i) {
                            h.abort();
                        }
                        early_done.remove(&i);
                        let r = self.skipped(i, reason, attempt);
                        events(RunEvent::Finished(Box::new(r.clone())));
                        results.insert(i, r);
                        continue;
                    }
                    if let Some(r) = early_done.remove(&i) {
                        early.remove(&i);
                        let r = self.finish(i, r, attempt);
                        events(RunEvent::Finished(Box::new(r.clone())));
                        results.insert(i, r);
                        continue;
                    }
                    if let Some((h, go)) = early.remove(&i) {
                        // Its needs passed: its deadline starts now; its result counts.
                        events(RunEvent::Started {
                            id: spec.id.clone(),
                        });
                        let _ = go.send(Some(Instant::now()));
                        early.insert(i, (h, go));
                        continue;
                    }
                    ready.insert(i);
                }
            }
            // Eager checks start now, unless a need has already failed; they do not take a
            // job slot while they wait for the facts of their prerequisites.
            let eager_now: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|i| {
                    !early.contains_key(i)
                        && !early_done.contains_key(i)
                        && self.specs[*i].probe.eager()
                })
                .filter(|i| {
                    self.specs[*i].needs.iter().all(|n| {
                        index.get(n.as_str()).is_none_or(|j| {
                            results.get(j).is_none_or(|r| r.status.satisfies_needs())
                        })
                    })
                })
                .collect();
            for i in eager_now {
                let (go_tx, go_rx) = tokio::sync::watch::channel(None);
                let handle = self.spawn_check(&mut set, cx, i, go_rx);
                task_ids.insert(handle.id(), i);
                early.insert(i, (handle, go_tx));
            }
            while ready_running.len() < jobs
                && let Some(i) = ready.pop_first()
            {
                events(RunEvent::Started {
                    id: self.specs[i].id.clone(),
                });
                let (_go_tx, go_rx) = tokio::sync::watch::channel(Some(Instant::now()));
                let handle = self.spawn_check(&mut set, cx, i, go_rx);
                task_ids.insert(handle.id(), i);
                ready_running.insert(i);
            }
            if set.is_empty() {
                // Nothing runs and nothing more can start. Whatever is still pending waits on
                // a check that will never settle, which the ordering rules out; report it
                // rather than drop it from the report.
                for i in std::mem::take(&mut pending) {
                    let mut r = blank(Status::Error);
                    r.message = "internal error: its prerequisites never settled".into();
                    let r = self.finish(i, r, attempt);
                    events(RunEvent::Finished(Box::new(r.clone())));
                    results.insert(i, r);
                }
                break;
            }
            let (i, result) = match set.join_next_with_id().await {
                Some(Ok((_, (i, Done::Ran(r, why))))) => {
                    if let Some(why) = why {
                        no_retry.insert(i, why);
                    }
                    (i, r)
                }
                Some(Err(e)) if e.is_cancelled() => continue,
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
            if results.contains_key(&i) {
                // An eager check whose need failed was settled as skipped; its task had
                // already ended, so the abort came too late: drop what it found.
                continue;
            }
            if pending.contains(&i) {
                // An eager check ended before its needs settled: keep its result until they do.
                early_done.insert(i, result);
                continue;
            }
            ready_running.remove(&i);
            early.remove(&i);
            let r = self.finish(i, result, attempt);
            events(RunEvent::Finished(Box::new(r.clone())));
            results.insert(i, r);
        }
    }

    /// Spawns one check; its deadline starts when `go` holds an instant.
    fn spawn_check(
        &self,
        set: &mut JoinSet<(usize, Done)>,
        cx: &CheckCtx,
        i: usize,
        go: tokio::sync::watch::Receiver<Option<Instant>>,
    ) -> tokio::task::AbortHandle {
        let spec = &self.specs[i];
        let probe = spec.probe.clone();
        let timeout = spec.timeout.unwrap_or(self.options.default_timeout);
        let mut ccx = cx.clone();
        ccx.timeout = timeout;
        // Every call of the check ends by its deadline, counted from its start: an eager check
        // waiting for its prerequisites' facts spends its own time.
        ccx.deadline = std::time::Instant::now() + timeout;
        set.spawn(async move {
            let start = Instant::now();
            let (outcome, went) = run_one(probe, ccx, timeout, go).await;
            // Time spent waiting for the prerequisites is theirs, not this check's.
            let from = went.map_or(start, |g| g.max(start));
            let why = outcome.no_retry.clone();
            (
                i,
                Done::Ran(
                    stamp(outcome, Instant::now().saturating_duration_since(from)),
                    why,
                ),
            )
        })
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
        // Whatever a check says may quote a server, a plugin or a file: one redactor and one
        // sanitiser before any report sees it.
        use crate::clients::redact::{clean, clean_json};
        r.message = clean(&r.message);
        r.remedy = r.remedy.as_deref().map(clean);
        clean_json(&mut r.evidence);
        r
    }
}

/// Sorts checks so each comes after everything it needs, keeping the given order otherwise.
/// Checks with a need that names no check, or on a dependency cycle, come last with the reason
/// they cannot run.
fn dependency_order(specs: Vec<CheckSpec>) -> (Vec<CheckSpec>, HashMap<usize, String>) {
    let index: HashMap<&str, usize> = specs
        .iter()
        .enumerate()
        .rev() // The first of two equal ids wins, as a map insert of the reversed list gives.
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    // 0 new, 1 on the path, 2 placed, 3 cannot run.
    let mut state = vec![0u8; specs.len()];
    let mut order: Vec<usize> = Vec::with_capacity(specs.len());
    let mut why: HashMap<usize, String> = HashMap::new();
    fn visit(
        i: usize,
        specs: &[CheckSpec],
        index: &HashMap<&str, usize>,
        state: &mut [u8],
        order: &mut Vec<usize>,
        why: &mut HashMap<usize, String>,
        path: &mut Vec<usize>,
    ) -> bool {
        match state[i] {
            2 => return true,
            3 => return false,
            1 => {
                let start = path.iter().position(|&x| x == i).unwrap_or(0);
                let mut names: Vec<&str> = path[start..]
                    .iter()
                    .map(|&j| specs[j].id.as_str())
                    .collect();
                names.push(specs[i].id.as_str());
                let reason = format!("dependency cycle: {}", names.join(" -> "));
                for &j in &path[start..] {
                    why.entry(j).or_insert_with(|| reason.clone());
                }
                return false;
            }
            _ => {}
        }
        state[i] = 1;
        path.push(i);
        let mut ok = true;
        for n in &specs[i].needs {
            match index.get(n.as_str()) {
                Some(&j) => ok &= visit(j, specs, index, state, order, why, path),
                None => {
                    why.entry(i)
                        .or_insert_with(|| format!("needs {n:?}, which no check defines"));
                    ok = false;
                }
            }
        }
        path.pop();
        if ok && !why.contains_key(&i) {
            state[i] = 2;
            order.push(i);
            true
        } else {
            state[i] = 3;
            false
        }
    }
    for (i, s) in specs.iter().enumerate() {
        if index[s.id.as_str()] != i {
            why.insert(i, format!("another check has the same id {:?}", s.id));
            state[i] = 3;
        }
    }
    for i in 0..specs.len() {
        let mut path = Vec::new();
        visit(
            i, &specs, &index, &mut state, &mut order, &mut why, &mut path,
        );
    }
    // Checks that cannot run come last, in the given order; a check that needs one of them is
    // skipped when it ends in `error`, so it must come after it too.
    let placed: HashSet<usize> = order.iter().copied().collect();
    order.extend((0..specs.len()).filter(|i| !placed.contains(i)));
    let mut slots: Vec<Option<CheckSpec>> = specs.into_iter().map(Some).collect();
    let mut broken = HashMap::new();
    let mut sorted = Vec::with_capacity(order.len());
    for (pos, i) in order.into_iter().enumerate() {
        if let Some(reason) = why.remove(&i) {
            broken.insert(pos, reason);
        }
        if let Some(s) = slots[i].take() {
            sorted.push(s);
        }
    }
    (sorted, broken)
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

/// Runs a probe; its deadline starts when `go` holds an instant (at once for a check whose
/// needs have passed, later for an eager one). Returns the outcome and when it was let go.
async fn run_one(
    probe: Arc<dyn super::Probe>,
    cx: CheckCtx,
    timeout: Duration,
    mut go: tokio::sync::watch::Receiver<Option<Instant>>,
) -> (Outcome, Option<Instant>) {
    let fut = AssertUnwindSafe(async move { probe.run(&cx).await }).catch_unwind();
    let deadline = async {
        let t = loop {
            if let Some(t) = *go.borrow_and_update() {
                break t;
            }
            if go.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::time::sleep_until(t + timeout + Runner::GRACE).await;
    };
    let result = tokio::select! {
        r = fut => Ok(r),
        _ = deadline => Err(()),
    };
    let went = *go.borrow();
    let outcome = match result {
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
    };
    (outcome, went)
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
