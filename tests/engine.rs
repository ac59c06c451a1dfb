//! The runner on a paused clock, with fake probes: concurrency, deadlines, skips, panics,
//! selection, `--wait`, `--jobs`, severity, remedy templates and the order of results.
//!
//! Every test records the runner's events as lines and compares lists, so a change in what the
//! runner tells reporters shows up as a diff.

use msa_doctor::engine::{
    CheckCtx, CheckResult, CheckSpec, Clients, Facts, Origin, Outcome, Probe, RunEvent, RunOptions,
    Runner, Selection, Severity, Status,
};
use msa_doctor::settings::Settings;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// A probe made of a closure that gets the context and returns a future.
struct FnProbe<F>(F);

#[async_trait::async_trait]
impl<F, Fut> Probe for FnProbe<F>
where
    F: Fn(CheckCtx) -> Fut + Send + Sync,
    Fut: Future<Output = Outcome> + Send,
{
    async fn run(&self, cx: &CheckCtx) -> Outcome {
        (self.0)(cx.clone()).await
    }
}

fn probe<F, Fut>(f: F) -> Arc<dyn Probe>
where
    F: Fn(CheckCtx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    Arc::new(FnProbe(f))
}

/// A probe that sleeps, then returns an outcome.
fn sleeps(d: Duration, outcome: Outcome) -> Arc<dyn Probe> {
    probe(move |_| {
        let o = outcome.clone();
        async move {
            tokio::time::sleep(d).await;
            o
        }
    })
}

/// A probe that returns at once.
fn returns(outcome: Outcome) -> Arc<dyn Probe> {
    sleeps(Duration::ZERO, outcome)
}

fn spec(id: &str, needs: &[&str], probe: Arc<dyn Probe>) -> CheckSpec {
    CheckSpec {
        id: id.to_string(),
        category: id.split('.').next().unwrap_or_default().to_string(),
        title: format!("title of {id}"),
        kind: "fake".into(),
        needs: needs.iter().map(|s| s.to_string()).collect(),
        needs_via_grafana: vec![],
        severity: Severity::Fail,
        timeout: None,
        retry: true,
        remedy: None,
        docs: None,
        origin: Origin::BuiltIn("test.toml"),
        probe,
    }
}

fn context() -> CheckCtx {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = Arc::new(Settings::defaults());
    CheckCtx::new(
        settings.clone(),
        Arc::new(Clients::new(&settings)),
        Arc::new(Facts::default()),
        Duration::from_secs(5),
    )
}

struct Run {
    results: Vec<CheckResult>,
    events: Vec<String>,
    elapsed: Duration,
}

impl Run {
    fn get(&self, id: &str) -> &CheckResult {
        self.results
            .iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("no result for {id}"))
    }
    fn ids(&self) -> Vec<&str> {
        self.results.iter().map(|r| r.id.as_str()).collect()
    }
}

async fn run(specs: Vec<CheckSpec>, options: RunOptions) -> Run {
    let runner = Runner::new(specs, options);
    let mut events = Vec::new();
    let start = Instant::now();
    let mut record = |e: RunEvent| {
        events.push(match e {
            RunEvent::Started { id } => format!("start {id}"),
            RunEvent::Finished(r) => format!("end {} {}", r.id, r.status),
            RunEvent::Retrying {
                attempt, failing, ..
            } => format!("retry {attempt} {}", failing.join(",")),
        })
    };
    let results = runner.run(context(), &mut record).await;
    Run {
        results,
        events,
        elapsed: start.elapsed(),
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[tokio::test(start_paused = true)]
async fn independent_checks_run_at_the_same_time() {
    let r = run(
        vec![
            spec("t.a", &[], sleeps(secs(1), Outcome::pass("a ok"))),
            spec("t.b", &[], sleeps(secs(1), Outcome::pass("b ok"))),
        ],
        RunOptions::default(),
    )
    .await;
    assert_eq!(
        r.elapsed,
        secs(1),
        "two 1 s checks take 1 s together, not 2"
    );
    assert_eq!(
        r.events,
        ["start t.a", "start t.b", "end t.a pass", "end t.b pass"]
    );
    for id in ["t.a", "t.b"] {
        assert_eq!(r.get(id).status, Status::Pass);
        assert_eq!(r.get(id).duration, secs(1));
        assert_eq!(r.get(id).attempts, 1);
    }
}

#[tokio::test(start_paused = true)]
async fn jobs_one_runs_checks_one_after_the_other() {
    let r = run(
        vec![
            spec("t.a", &[], sleeps(secs(1), Outcome::pass("a ok"))),
            spec("t.b", &[], sleeps(secs(1), Outcome::pass("b ok"))),
        ],
        RunOptions {
            jobs: 1,
            ..RunOptions::default()
        },
    )
    .await;
    assert_eq!(r.elapsed, secs(2));
    assert_eq!(
        r.events,
        ["start t.a", "end t.a pass", "start t.b", "end t.b pass"]
    );
    // The time a check waited for a slot is not its duration.
    assert_eq!(r.get("t.b").duration, secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_check_past_its_deadline_is_an_error_and_the_others_go_on() {
    let mut slow = spec("t.slow", &[], sleeps(secs(3600), Outcome::pass("never")));
    slow.timeout = Some(secs(2));
    let r = run(
        vec![
            slow,
            spec("t.quick", &[], sleeps(secs(1), Outcome::pass("ok"))),
            spec("t.after", &["t.slow"], returns(Outcome::pass("ok"))),
        ],
        RunOptions::default(),
    )
    .await;
    let s = r.get("t.slow");
    assert_eq!(s.status, Status::Error);
    assert_eq!(s.message, "timed out after 2s");
    // Stopped at the deadline plus the runner's grace, not an hour later.
    assert!(s.duration >= secs(2) && s.duration <= secs(2) + Runner::GRACE);
    assert!(r.elapsed < secs(3));
    assert_eq!(r.get("t.quick").status, Status::Pass);
    assert_eq!(r.get("t.after").status, Status::Skip);
    assert_eq!(
        r.get("t.after").skipped_because.as_deref(),
        Some("needs t.slow, which ended in error")
    );
}

#[tokio::test(start_paused = true)]
async fn the_default_timeout_applies_to_checks_that_name_none() {
    let r = run(
        vec![spec(
            "t.slow",
            &[],
            sleeps(secs(60), Outcome::pass("never")),
        )],
        RunOptions {
            default_timeout: Duration::from_millis(1500),
            ..RunOptions::default()
        },
    )
    .await;
    assert_eq!(r.get("t.slow").message, "timed out after 1s 500ms");
}

#[tokio::test(start_paused = true)]
async fn the_probe_sees_its_own_deadline() {
    let mut s = spec(
        "t.deadline",
        &[],
        probe(|cx: CheckCtx| async move { Outcome::pass(format!("{:?}", cx.timeout)) }),
    );
    s.timeout = Some(Duration::from_millis(700));
    let r = run(vec![s], RunOptions::default()).await;
    assert_eq!(r.get("t.deadline").message, "700ms");
}

#[tokio::test(start_paused = true)]
async fn a_skip_cascades_and_names_the_direct_prerequisite() {
    let ran = Arc::new(AtomicU32::new(0));
    let counting = |ran: &Arc<AtomicU32>| {
        let ran = ran.clone();
        probe(move |_| {
            ran.fetch_add(1, Ordering::SeqCst);
            async { Outcome::pass("ran") }
        })
    };
    let r = run(
        vec![
            spec("t.root", &[], returns(Outcome::fail("root is down"))),
            spec("t.one", &["t.root"], counting(&ran)),
            spec("t.two", &["t.one"], counting(&ran)),
            spec("t.three", &["t.two"], counting(&ran)),
        ],
        RunOptions::default(),
    )
    .await;
    assert_eq!(ran.load(Ordering::SeqCst), 0, "a skipped check never runs");
    let because = |id: &str| r.get(id).skipped_because.clone();
    assert_eq!(
        because("t.one").as_deref(),
        Some("needs t.root, which ended in fail")
    );
    assert_eq!(
        because("t.two").as_deref(),
        Some("needs t.one, which was skipped")
    );
    assert_eq!(
        because("t.three").as_deref(),
        Some("needs t.two, which was skipped")
    );
    for id in ["t.one", "t.two", "t.three"] {
        assert_eq!(r.get(id).status, Status::Skip);
        assert_eq!(r.get(id).message, because(id).unwrap());
        assert_eq!(r.get(id).remedy, None);
    }
    assert_eq!(
        r.events,
        [
            "start t.root",
            "end t.root fail",
            "end t.one skip",
            "end t.two skip",
            "end t.three skip"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_warning_satisfies_needs() {
    let r = run(
        vec![
            spec("t.a", &[], returns(Outcome::warn("meh"))),
            spec("t.b", &["t.a"], returns(Outcome::pass("ok"))),
        ],
        RunOptions::default(),
    )
    .await;
    assert_eq!(r.get("t.b").status, Status::Pass);
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_an_error_for_that_check_only() {
    let r = run(
        vec![
            spec(
                "t.boom",
                &[],
                probe(|_| async {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    panic!("boom at line 3")
                }),
            ),
            spec("t.fine", &[], sleeps(secs(1), Outcome::pass("fine"))),
            spec("t.also-fine", &[], sleeps(secs(2), Outcome::pass("fine"))),
            spec("t.after-boom", &["t.boom"], returns(Outcome::pass("never"))),
        ],
        RunOptions::default(),
    )
    .await;
    let b = r.get("t.boom");
    assert_eq!(b.status, Status::Error);
    assert_eq!(
        b.message,
        "internal error: the check panicked: boom at line 3"
    );
    assert_eq!(r.get("t.fine").status, Status::Pass);
    assert_eq!(r.get("t.also-fine").status, Status::Pass);
    assert_eq!(r.get("t.after-boom").status, Status::Skip);
    assert_eq!(r.results.len(), 4);
}

#[tokio::test(start_paused = true)]
async fn only_runs_the_selection_and_its_prerequisites() {
    let specs = vec![
        spec("net.reach", &[], returns(Outcome::pass("ok"))),
        spec("app.login", &["net.reach"], returns(Outcome::pass("ok"))),
        spec("app.data", &["app.login"], returns(Outcome::pass("ok"))),
        spec("other.thing", &[], returns(Outcome::pass("ok"))),
    ];
    let only = |keys: &[&str]| RunOptions {
        selection: Selection {
            only: keys.iter().map(|s| s.to_string()).collect(),
            skip: vec![],
        },
        ..RunOptions::default()
    };
    let r = run(specs.clone(), only(&["app.login"])).await;
    let statuses: Vec<(&str, Status, Option<&str>)> = r
        .results
        .iter()
        .map(|c| (c.id.as_str(), c.status, c.skipped_because.as_deref()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("net.reach", Status::Pass, None),
            ("app.login", Status::Pass, None),
            ("app.data", Status::Skip, Some("filtered out by --only")),
            ("other.thing", Status::Skip, Some("filtered out by --only")),
        ]
    );
    // Filtered checks are reported to the reporters too, before anything runs.
    assert_eq!(
        r.events[..2],
        [
            "end app.data skip".to_string(),
            "end other.thing skip".to_string()
        ]
    );

    // A category selects all of its checks.
    let r = run(specs, only(&["app"])).await;
    assert_eq!(r.get("net.reach").status, Status::Pass);
    assert_eq!(r.get("app.data").status, Status::Pass);
    assert_eq!(r.get("other.thing").status, Status::Skip);
}

#[tokio::test(start_paused = true)]
async fn skip_drops_a_check_and_what_needs_it() {
    let specs = vec![
        spec("net.reach", &[], returns(Outcome::pass("ok"))),
        spec("app.login", &["net.reach"], returns(Outcome::pass("ok"))),
        spec("other.thing", &[], returns(Outcome::pass("ok"))),
    ];
    let skip = |keys: &[&str], only: &[&str]| RunOptions {
        selection: Selection {
            only: only.iter().map(|s| s.to_string()).collect(),
            skip: keys.iter().map(|s| s.to_string()).collect(),
        },
        ..RunOptions::default()
    };
    let r = run(specs.clone(), skip(&["net.reach"], &[])).await;
    assert_eq!(
        r.get("net.reach").skipped_because.as_deref(),
        Some("filtered out by --skip net.reach")
    );
    assert_eq!(
        r.get("app.login").skipped_because.as_deref(),
        Some("needs net.reach, which was skipped")
    );
    assert_eq!(r.get("other.thing").status, Status::Pass);

    // By category; and --skip beats a prerequisite pulled in by --only.
    let r = run(specs, skip(&["net"], &["app.login"])).await;
    assert_eq!(
        r.get("net.reach").skipped_because.as_deref(),
        Some("filtered out by --skip net")
    );
    assert_eq!(r.get("app.login").status, Status::Skip);
    assert_eq!(
        r.get("other.thing").skipped_because.as_deref(),
        Some("filtered out by --only")
    );
}

/// Fails `fails` times, then passes.
fn flaky(fails: u32, calls: Arc<AtomicU32>) -> Arc<dyn Probe> {
    probe(move |_| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if n <= fails {
                Outcome::fail(format!("attempt {n} failed"))
            } else {
                Outcome::pass(format!("attempt {n} passed"))
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn wait_reruns_a_failing_check_until_it_passes() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut stubborn = spec("t.no-retry", &[], returns(Outcome::fail("always")));
    stubborn.retry = false;
    let r = run(
        vec![
            spec("t.flaky", &[], flaky(2, calls.clone())),
            spec("t.after", &["t.flaky"], returns(Outcome::pass("ok"))),
            spec("t.steady", &[], returns(Outcome::pass("ok"))),
            stubborn,
        ],
        RunOptions {
            wait: Some(secs(30)),
            retry_interval: secs(2),
            ..RunOptions::default()
        },
    )
    .await;
    let f = r.get("t.flaky");
    assert_eq!(f.status, Status::Pass);
    assert_eq!(f.message, "attempt 3 passed");
    assert_eq!(f.attempts, 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // What needs it ran again once it passed; what passed at once ran once.
    assert_eq!(r.get("t.after").status, Status::Pass);
    assert_eq!(r.get("t.after").attempts, 3);
    assert_eq!(r.get("t.steady").attempts, 1);
    assert_eq!(r.get("t.no-retry").attempts, 1);
    assert_eq!(r.get("t.no-retry").status, Status::Fail);
    let retries: Vec<&String> = r.events.iter().filter(|e| e.starts_with("retry")).collect();
    assert_eq!(retries, ["retry 2 t.flaky", "retry 3 t.flaky"]);
    // Three attempts of 100 ms and two pauses of 2 s.
    assert_eq!(r.elapsed, Duration::from_millis(4300));
}

#[tokio::test(start_paused = true)]
async fn wait_gives_up_at_its_deadline() {
    let calls = Arc::new(AtomicU32::new(0));
    let r = run(
        vec![spec("t.broken", &[], flaky(u32::MAX, calls.clone()))],
        RunOptions {
            wait: Some(secs(5)),
            retry_interval: secs(2),
            ..RunOptions::default()
        },
    )
    .await;
    let b = r.get("t.broken");
    assert_eq!(b.status, Status::Fail);
    assert!(b.attempts >= 2, "retried at least once");
    assert_eq!(b.attempts, calls.load(Ordering::SeqCst));
    assert!(
        r.elapsed <= secs(6),
        "stops about when --wait is up: {:?}",
        r.elapsed
    );
}

#[tokio::test(start_paused = true)]
async fn wait_keeps_an_outcome_that_says_a_retry_would_do_harm() {
    // A refused login: repeating it locks the account. Its need flaps first, so the login
    // runs for the first time on the second attempt, and then never again.
    let logins = Arc::new(AtomicU32::new(0));
    let reach = Arc::new(AtomicU32::new(0));
    let counted = logins.clone();
    let refused = probe(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            Outcome::fail("Grafana refused user admin: HTTP 401 invalid username or password")
                .no_retry("a refused password is sent once")
        }
    });
    let r = run(
        vec![
            spec("t.reach", &[], flaky(1, reach.clone())),
            spec("t.login", &["t.reach"], refused),
            spec("t.after-login", &["t.login"], returns(Outcome::pass("ok"))),
            spec("t.broken", &[], returns(Outcome::fail("still broken"))),
        ],
        RunOptions {
            wait: Some(secs(10)),
            retry_interval: secs(2),
            ..RunOptions::default()
        },
    )
    .await;
    assert_eq!(logins.load(Ordering::SeqCst), 1, "the login was sent once");
    let l = r.get("t.login");
    assert_eq!(l.status, Status::Fail);
    assert_eq!(
        l.message,
        "Grafana refused user admin: HTTP 401 invalid username or password \
         (not retried under --wait: a refused password is sent once)"
    );
    assert_eq!(l.attempts, 2, "it ran on the attempt where its need passed");
    assert_eq!(r.get("t.after-login").status, Status::Skip);
    // Other failures are still retried until the deadline.
    assert!(r.get("t.broken").attempts >= 4, "{:?}", r.get("t.broken"));
    assert!(
        r.events
            .iter()
            .filter(|e| e.starts_with("retry"))
            .all(|e| !e.contains("t.login")),
        "{:?}",
        r.events
    );
}

#[tokio::test(start_paused = true)]
async fn without_wait_a_no_retry_message_is_left_as_it_is() {
    let r = run(
        vec![spec(
            "t.login",
            &[],
            returns(Outcome::fail("refused").no_retry("a refused password is sent once")),
        )],
        RunOptions::default(),
    )
    .await;
    assert_eq!(r.get("t.login").message, "refused");
}

#[tokio::test(start_paused = true)]
async fn without_wait_a_failure_is_final() {
    let calls = Arc::new(AtomicU32::new(0));
    let r = run(
        vec![spec("t.flaky", &[], flaky(1, calls.clone()))],
        RunOptions::default(),
    )
    .await;
    assert_eq!(r.get("t.flaky").status, Status::Fail);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn severity_warn_turns_a_failure_into_a_warning() {
    let mut soft = spec("t.soft", &[], returns(Outcome::fail("old password")));
    soft.severity = Severity::Warn;
    let mut soft_error = spec(
        "t.soft-error",
        &[],
        returns(Outcome::error("no permission")),
    );
    soft_error.severity = Severity::Warn;
    let r = run(
        vec![
            soft,
            soft_error,
            spec("t.after", &["t.soft"], returns(Outcome::pass("ok"))),
        ],
        RunOptions::default(),
    )
    .await;
    assert_eq!(r.get("t.soft").status, Status::Warn);
    assert_eq!(r.get("t.soft").message, "old password");
    // An error is not a finding: it stays an error.
    assert_eq!(r.get("t.soft-error").status, Status::Error);
    assert_eq!(r.get("t.after").status, Status::Pass);
}

#[tokio::test(start_paused = true)]
async fn remedy_templates_are_filled_from_evidence_and_settings() {
    let template =
        "kubectl -n {namespace} rollout restart deployment {deployment}\n# {unknown} stays";
    let mut failing = spec(
        "t.restart",
        &[],
        returns(Outcome::fail("stuck").evidence("deployment", "order-service")),
    );
    failing.remedy = Some(template.into());
    let mut list = spec(
        "t.list",
        &[],
        returns(
            Outcome::fail("two")
                .evidence("deployment", ["a", "b"])
                .evidence("namespace", "from-evidence"),
        ),
    );
    list.remedy = Some(template.into());
    let mut own = spec(
        "t.own",
        &[],
        returns(Outcome::fail("x").remedy("the probe's own remedy")),
    );
    own.remedy = Some(template.into());
    let mut passing = spec(
        "t.pass",
        &[],
        returns(Outcome::pass("ok").remedy("dropped")),
    );
    passing.remedy = Some(template.into());

    let mut vars = serde_json::Map::new();
    vars.insert("namespace".into(), "metacoding".into());
    let r = run(
        vec![failing, list, own, passing],
        RunOptions {
            template_vars: vars,
            ..RunOptions::default()
        },
    )
    .await;
    assert_eq!(
        r.get("t.restart").remedy.as_deref(),
        Some("kubectl -n metacoding rollout restart deployment order-service\n# {unknown} stays")
    );
    // Evidence beats a setting of the same name; lists are joined by commas.
    assert_eq!(
        r.get("t.list").remedy.as_deref(),
        Some("kubectl -n from-evidence rollout restart deployment a,b\n# {unknown} stays")
    );
    assert_eq!(
        r.get("t.own").remedy.as_deref(),
        Some("the probe's own remedy")
    );
    assert_eq!(r.get("t.pass").remedy, None);
}

#[tokio::test(start_paused = true)]
async fn results_come_in_dependency_order_whatever_the_input_order() {
    // Given backwards: c needs b needs a; d is free; the slow one ends last but is listed first.
    let r = run(
        vec![
            spec("t.c", &["t.b"], returns(Outcome::pass("ok"))),
            spec("t.d", &[], sleeps(secs(5), Outcome::pass("ok"))),
            spec("t.b", &["t.a"], sleeps(secs(1), Outcome::pass("ok"))),
            spec("t.a", &[], sleeps(secs(1), Outcome::pass("ok"))),
        ],
        RunOptions::default(),
    )
    .await;
    assert_eq!(r.ids(), ["t.a", "t.b", "t.c", "t.d"]);
    for (i, res) in r.results.iter().enumerate() {
        for n in &res.needs {
            let j = r.ids().iter().position(|x| x == n).unwrap();
            assert!(j < i, "{} is listed before its need {n}", res.id);
        }
    }
    // And a check starts only once what it needs has ended.
    let pos = |e: &str| r.events.iter().position(|x| x == e).unwrap();
    assert!(pos("end t.a pass") < pos("start t.b"));
    assert!(pos("end t.b pass") < pos("start t.c"));
    assert_eq!(r.elapsed, secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_definition_the_loader_would_refuse_is_an_error_not_a_hang() {
    let r = run(
        vec![
            spec("t.x", &["t.y"], returns(Outcome::pass("never"))),
            spec("t.y", &["t.x"], returns(Outcome::pass("never"))),
            spec("t.z", &["t.nowhere"], returns(Outcome::pass("never"))),
            spec("t.after", &["t.x"], returns(Outcome::pass("never"))),
            spec("t.free", &[], returns(Outcome::pass("ok"))),
        ],
        RunOptions::default(),
    )
    .await;
    assert_eq!(r.results.len(), 5);
    assert_eq!(r.get("t.x").status, Status::Error);
    assert_eq!(r.get("t.x").message, "dependency cycle: t.x -> t.y -> t.x");
    assert_eq!(r.get("t.y").status, Status::Error);
    assert_eq!(
        r.get("t.z").message,
        "needs \"t.nowhere\", which no check defines"
    );
    assert_eq!(r.get("t.after").status, Status::Skip);
    assert_eq!(r.get("t.free").status, Status::Pass);
}

#[tokio::test(start_paused = true)]
async fn facts_flow_from_a_check_to_the_checks_that_need_it() {
    #[derive(Debug)]
    struct Uid(String);
    let r = run(
        vec![
            spec(
                "t.read",
                &["t.learn"],
                probe(|cx: CheckCtx| async move {
                    match cx.facts.get::<Uid>() {
                        Some(u) => Outcome::pass(format!("uid {}", u.0)),
                        None => Outcome::fail("no uid"),
                    }
                }),
            ),
            spec(
                "t.learn",
                &[],
                probe(|cx: CheckCtx| async move {
                    tokio::time::sleep(secs(1)).await;
                    cx.facts.put(Uid("prom-1".into()));
                    Outcome::pass("learnt")
                }),
            ),
        ],
        RunOptions::default(),
    )
    .await;
    assert_eq!(r.get("t.read").message, "uid prom-1");
}

#[tokio::test(start_paused = true)]
async fn what_reporters_are_told_snapshot() {
    let mut slow = spec("t.slow", &[], sleeps(secs(3600), Outcome::pass("never")));
    slow.timeout = Some(secs(2));
    let mut soft = spec(
        "t.soft",
        &[],
        sleeps(secs(1), Outcome::fail("old password")),
    );
    soft.severity = Severity::Warn;
    soft.remedy = Some("change the password of {user} in {namespace}".into());
    let mut vars = serde_json::Map::new();
    vars.insert("namespace".into(), "metacoding".into());
    vars.insert("user".into(), "admin".into());
    let r = run(
        vec![
            spec("net.reach", &[], sleeps(secs(1), Outcome::pass("reached"))),
            slow,
            spec("t.after-slow", &["t.slow"], returns(Outcome::pass("never"))),
            spec(
                "t.boom",
                &["net.reach"],
                probe(|_| async { panic!("index out of bounds") }),
            ),
            soft,
            spec("t.after-soft", &["t.soft"], returns(Outcome::pass("ran"))),
            spec("other.filtered", &[], returns(Outcome::pass("never"))),
        ],
        RunOptions {
            selection: Selection {
                only: vec!["t".into()],
                skip: vec![],
            },
            template_vars: vars,
            ..RunOptions::default()
        },
    )
    .await;
    let mut lines = r.events.clone();
    lines.push(String::new());
    for c in &r.results {
        lines.push(format!(
            "{} {} {:?} {:?} remedy={:?} attempts={}",
            c.id, c.status, c.duration, c.message, c.remedy, c.attempts
        ));
    }
    insta::assert_snapshot!(lines.join("\n"));
}

/// An eager probe: starts before its needs settle and takes what it needs through facts.
struct Eager<F>(F);

#[async_trait::async_trait]
impl<F, Fut> Probe for Eager<F>
where
    F: Fn(CheckCtx) -> Fut + Send + Sync,
    Fut: Future<Output = Outcome> + Send,
{
    async fn run(&self, cx: &CheckCtx) -> Outcome {
        (self.0)(cx.clone()).await
    }
    fn eager(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct Token(u32);

#[tokio::test(start_paused = true)]
async fn an_eager_check_starts_early_and_its_deadline_starts_when_its_needs_pass() {
    // The producer takes 3 s; the eager check waits for its fact, then works 1 s: its own 2 s
    // deadline counts from the producer's end, so it passes, at 4 s, not 5 s.
    let started = Arc::new(AtomicU32::new(0));
    let s2 = started.clone();
    let mut eager = spec(
        "t.eager",
        &["t.produce"],
        Arc::new(Eager(move |cx: CheckCtx| {
            let s = s2.clone();
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                let t = cx.facts.wait::<Token>().await;
                tokio::time::sleep(secs(1)).await;
                Outcome::pass(format!("token {}", t.0))
            }
        })),
    );
    eager.timeout = Some(secs(2));
    let r = run(
        vec![
            spec(
                "t.produce",
                &[],
                probe(|cx: CheckCtx| async move {
                    tokio::time::sleep(secs(3)).await;
                    cx.facts.put(Token(7));
                    Outcome::pass("produced")
                }),
            ),
            eager,
        ],
        RunOptions::default(),
    )
    .await;
    assert_eq!(
        r.get("t.eager").status,
        Status::Pass,
        "{:?}",
        r.get("t.eager")
    );
    assert_eq!(r.get("t.eager").message, "token 7");
    assert_eq!(started.load(Ordering::SeqCst), 1);
    assert_eq!(r.elapsed, secs(4));
    // Its duration is its own second, not the producer's three.
    assert_eq!(r.get("t.eager").duration, secs(1));
}

#[tokio::test(start_paused = true)]
async fn an_eager_check_is_stopped_and_skipped_when_a_need_fails() {
    let finished = Arc::new(AtomicU32::new(0));
    let f2 = finished.clone();
    let r = run(
        vec![
            spec("t.produce", &[], sleeps(secs(1), Outcome::fail("broken"))),
            spec(
                "t.eager",
                &["t.produce"],
                Arc::new(Eager(move |cx: CheckCtx| {
                    let f = f2.clone();
                    async move {
                        let _ = cx.facts.wait::<Token>().await;
                        f.fetch_add(1, Ordering::SeqCst);
                        Outcome::pass("never")
                    }
                })),
            ),
        ],
        RunOptions::default(),
    )
    .await;
    let e = r.get("t.eager");
    assert_eq!(e.status, Status::Skip);
    assert_eq!(
        e.skipped_because.as_deref(),
        Some("needs t.produce, which ended in fail")
    );
    assert_eq!(finished.load(Ordering::SeqCst), 0);
    assert_eq!(r.elapsed, secs(1));
}

#[tokio::test(start_paused = true)]
async fn an_eager_result_that_comes_first_waits_for_its_needs() {
    // The eager check needs no fact and ends at once; its result counts only once the need
    // has passed, and is dropped when the need fails.
    for (need, want) in [
        (Outcome::pass("ok"), Status::Pass),
        (Outcome::fail("no"), Status::Skip),
    ] {
        let r = run(
            vec![
                spec("t.need", &[], sleeps(secs(2), need)),
                spec(
                    "t.quick",
                    &["t.need"],
                    Arc::new(Eager(|_cx: CheckCtx| async { Outcome::pass("quick") })),
                ),
            ],
            RunOptions::default(),
        )
        .await;
        assert_eq!(r.get("t.quick").status, want);
        assert_eq!(r.ids(), vec!["t.need", "t.quick"]);
    }
}

#[tokio::test(start_paused = true)]
async fn an_eager_result_already_in_is_dropped_when_a_need_fails_later() {
    // The eager check ends at 0.5 s with a failure of its own; its need fails at 1 s: the
    // report must say skip, not the eager check's failure.
    let r = run(
        vec![
            spec(
                "t.need",
                &[],
                sleeps(secs(1), Outcome::fail("the root cause")),
            ),
            spec(
                "t.echo",
                &["t.need"],
                Arc::new(Eager(|_cx: CheckCtx| async {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Outcome::fail("an echo")
                })),
            ),
            spec(
                "t.later",
                &["t.echo"],
                Arc::new(Eager(|_cx: CheckCtx| async {
                    Outcome::fail("another echo")
                })),
            ),
        ],
        RunOptions::default(),
    )
    .await;
    assert_eq!(r.get("t.echo").status, Status::Skip);
    assert_eq!(r.get("t.later").status, Status::Skip);
    assert_eq!(r.get("t.need").status, Status::Fail);
}
