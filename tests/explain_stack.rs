//! The PromQL explainer against the practice stack: every verdict from the fault that causes
//! it, asked of the real Prometheus the stack runs (the library call, `explain::explain`), and
//! the binary end to end (`msa-doctor explain`): exit codes, `--output json`'s contract fields,
//! bad PromQL, a run through Grafana's data source proxy, and the dashboard scan
//! (`--all-dashboards`) through the stack's Grafana.
//!
//! One stack per fault, started once and shared by every assertion about that fault; at most
//! four stacks run at once (each has its own Prometheus). Every failure prints the whole
//! explanation.
// The practice stack runs Prometheus and manages process groups: Unix only.
#![cfg(all(unix, feature = "sandbox"))]

use msa_doctor::clients::{PromApi, Transport};
use msa_doctor::explain::{
    self, ExplainOptions, Explanation, QueryResult, SelectorReport, Verdict,
};
use msa_doctor::sandbox::faults::Fault;
use msa_doctor::sandbox::stack::{Stack, start_for_test};
use msa_doctor::sandbox::warm::wait_for_data;
use serde_json::Value;
use std::process::Output;
use std::sync::LazyLock;
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Stacks running at once across the tests of this binary (each has its own Prometheus).
static STACKS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(4));

/// The guide's panel 1.
const PANEL_1: &str =
    r#"rate(http_server_requests_seconds_count{uri="/api/orders", method="POST"}[1m]) * 60"#;
/// The guide's panel 2.
const PANEL_2: &str = r#"kafka_consumergroup_lag{topic="order-created"}"#;
/// The guide's panel 3.
const PANEL_3: &str =
    r#"rate(container_cpu_usage_seconds_total{namespace="metacoding", image!=""}[1m])"#;
/// The guide's fallback panel 2 (panel 4 of msa-guide).
const HEAP: &str = r#"sum(jvm_memory_used_bytes{area="heap"}) by (application)"#;

/// A warm stack, its database reached directly, and its place in the semaphore.
struct Live {
    stack: Stack,
    api: PromApi,
    _permit: SemaphorePermit<'static>,
}

async fn live(faults: &[Fault], warm: Duration) -> Live {
    let permit = STACKS.acquire().await.expect("semaphore");
    let stack = start_for_test(faults).await;
    // Some faults never get warm (no traffic, stale data): the deadline is then the wait.
    let _ = wait_for_data(&stack, warm).await;
    let api = PromApi::direct(
        Transport::new(Duration::from_secs(10)),
        &stack.prometheus_url,
        Duration::from_secs(10),
        Default::default(),
    );
    Live {
        stack,
        api,
        _permit: permit,
    }
}

impl Live {
    async fn explain(&self, query: &str) -> Explanation {
        explain::explain(&self.api, query, ExplainOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"))
    }

    /// Explains until `ok` holds (data that is still warming up), or returns the last answer.
    async fn explain_until(
        &self,
        query: &str,
        within: Duration,
        ok: impl Fn(&Explanation) -> bool,
    ) -> Explanation {
        let start = std::time::Instant::now();
        loop {
            let ex = self.explain(query).await;
            if ok(&ex) || start.elapsed() > within {
                return ex;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn show(ex: &Explanation) -> String {
    serde_json::to_string_pretty(ex).unwrap_or_default()
}

/// The only selector of a one-selector query.
fn only(ex: &Explanation) -> &SelectorReport {
    assert_eq!(ex.selectors.len(), 1, "{}", show(ex));
    &ex.selectors[0]
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `msa-doctor` with a clean environment (no config file, no kubeconfig, no colour), run
/// from an empty folder, with these extra variables.
async fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // The stack's servers run on this runtime: the blocking child waits on another thread.
    tokio::task::spawn_blocking(move || {
        let home = tempfile::tempdir().expect("a temporary folder");
        let mut c = assert_cmd::Command::cargo_bin("msa-doctor").expect("the binary");
        for var in [
            "KUBECONFIG",
            "NO_COLOR",
            "GRAFANA_USER",
            "GRAFANA_PASSWORD",
            "GRAFANA_TOKEN",
            "MSA_DOCTOR_GRAFANA_URL",
            "MSA_DOCTOR_PROMETHEUS_URL",
        ] {
            c.env_remove(var);
        }
        c.env("HOME", home.path()).current_dir(home.path());
        for (k, v) in &env {
            c.env(k, v);
        }
        c.args(&args)
            .timeout(Duration::from_secs(120))
            .output()
            .expect("msa-doctor runs")
    })
    .await
    .expect("the run finished")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The environment of a run through the stack's Grafana, as `demo --keep-running` prints it.
fn grafana_env(stack: &Stack) -> Vec<(&'static str, String)> {
    vec![
        ("MSA_DOCTOR_GRAFANA_URL", stack.grafana_url.clone()),
        ("GRAFANA_USER", stack.doctor_user.clone()),
        ("GRAFANA_PASSWORD", "admin".to_string()),
        (
            "KUBECONFIG",
            stack.kubeconfig_path.to_string_lossy().into_owned(),
        ),
    ]
}

fn refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// `msa-doctor explain --all-dashboards --output json` through the stack's Grafana.
async fn scan_all(stack: &Stack) -> (Output, Value) {
    let env = grafana_env(stack);
    let o = cli(
        &[
            "explain",
            "--all-dashboards",
            "--no-kube",
            "--output",
            "json",
        ],
        &refs(&env),
    )
    .await;
    let v: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON: {e}\n{}", text(&o)));
    (o, v)
}

fn dashboard<'a>(scan: &'a Value, uid: &str) -> &'a Value {
    scan["dashboards"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["uid"] == uid))
        .unwrap_or_else(|| panic!("no dashboard {uid} in the scan:\n{scan:#}"))
}

fn panel(d: &Value, id: i64) -> &Value {
    d["panels"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["panel_id"] == id))
        .unwrap_or_else(|| panic!("no panel {id} in {}:\n{d:#}", d["uid"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_promql_is_a_usage_error_with_a_caret() {
    // Parsing comes before any network: no stack, and a Prometheus URL nothing listens on.
    let q = r#"rate(http_server_requests_seconds_count{uri="/api/orders"[1m])"#;
    let o = cli(
        &["explain", "--prometheus-url", "http://127.0.0.1:9", q],
        &[],
    )
    .await;
    let all = text(&o);
    assert_eq!(o.status.code(), Some(2), "{all}");
    assert!(o.stdout.is_empty(), "{all}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("invalid PromQL:"), "{all}");
    let lines: Vec<&str> = err.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == q)
        .unwrap_or_else(|| panic!("the query is not echoed\n{all}"));
    let caret = lines
        .get(at + 1)
        .unwrap_or_else(|| panic!("no caret line\n{all}"));
    assert_eq!(caret.trim(), "^", "{all}");
    // The caret points into the query, at or after the unclosed brace's content.
    let col = caret.find('^').unwrap() - lines[at].find('r').unwrap();
    assert!(
        (q.find('{').unwrap()..=q.len()).contains(&col),
        "caret at {col}\n{all}"
    );

    // Another mistake, another message: an unknown function.
    let o = cli(
        &[
            "explain",
            "--prometheus-url",
            "http://127.0.0.1:9",
            "rat(up[1m])",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("rat") && err.contains('^'), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_stack() {
    let l = live(&[], Duration::from_secs(30)).await;

    // Every guide panel is present.
    for q in [PANEL_1, PANEL_2, PANEL_3, HEAP] {
        let ex = l
            .explain_until(q, Duration::from_secs(20), |e| {
                e.result == QueryResult::Data
            })
            .await;
        assert_eq!(ex.result, QueryResult::Data, "{}", show(&ex));
        assert!(
            ex.selectors.iter().all(|s| s.verdict == Verdict::Present),
            "{}",
            show(&ex)
        );
        assert!(
            ex.root_cause.is_none() && ex.remedy.is_none(),
            "{}",
            show(&ex)
        );
    }

    // Zero: the error log counter exists and never moves.
    let ex = l
        .explain(r#"rate(logback_events_total{level="error"}[1m])"#)
        .await;
    assert_eq!(ex.result, QueryResult::Zero, "{}", show(&ex));
    let s = only(&ex);
    assert_eq!(s.verdict, Verdict::Zero, "{}", show(&ex));
    assert!(s.detail.contains("never increased"), "{}", show(&ex));
    assert!(ex.root_cause.is_some(), "{}", show(&ex));
    let ex = l.explain(r#"logback_events_total{level="error"}"#).await;
    assert_eq!(
        (ex.result, only(&ex).verdict),
        (QueryResult::Zero, Verdict::Zero),
        "{}",
        show(&ex)
    );

    // Metric missing, with Micrometer's newer name (the unit suffix) as the fix.
    let q = r#"sum(jvm_threads_live{application="order-service"})"#;
    let ex = l.explain(q).await;
    assert_eq!(ex.result, QueryResult::Empty, "{}", show(&ex));
    let s = only(&ex);
    assert_eq!(s.verdict, Verdict::MetricMissing, "{}", show(&ex));
    assert_eq!(
        s.suggestions.first().map(String::as_str),
        Some("jvm_threads_live_threads"),
        "{}",
        show(&ex)
    );
    assert!(
        s.detail.contains("did you mean jvm_threads_live_threads?"),
        "{}",
        show(&ex)
    );
    assert!(
        s.detail.contains("Micrometer"),
        "the producer is named: {}",
        show(&ex)
    );
    assert_eq!(
        ex.remedy.as_deref(),
        Some(r#"sum(jvm_threads_live_threads{application="order-service"})"#),
        "{}",
        show(&ex)
    );

    // histogram_quantile over a _count: no le label (and no buckets: percentiles are off).
    let q = r#"histogram_quantile(0.99, sum(rate(http_server_requests_seconds_count{application="order-service"}[1m])) by (le))"#;
    let ex = l.explain(q).await;
    assert_eq!(ex.result, QueryResult::Empty, "{}", show(&ex));
    let s = only(&ex);
    assert_eq!(s.verdict, Verdict::LabelMissing, "{}", show(&ex));
    assert_eq!(s.evidence["label"], "le", "{}", show(&ex));
    assert!(
        s.detail.contains("http_server_requests_seconds_bucket"),
        "{}",
        show(&ex)
    );
    assert!(
        ex.remedy
            .as_deref()
            .unwrap_or("")
            .contains("percentiles-histogram"),
        "{}",
        show(&ex)
    );

    // The binary: exit 0 with data, 1 without, over --prometheus-url.
    let url = l.stack.prometheus_url.clone();
    let o = cli(
        &[
            "explain",
            "--prometheus-url",
            &url,
            "--color",
            "never",
            HEAP,
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("data") && out.contains("✔ present"),
        "{}",
        text(&o)
    );
    let o = cli(
        &[
            "explain",
            "--prometheus-url",
            &url,
            "--color",
            "never",
            "jvm_threads_live",
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("metric-missing") && out.contains("jvm_threads_live_threads"),
        "{}",
        text(&o)
    );

    // The dashboard scan through Grafana: the guide's panels have data; the Kafka sample's
    // ${DS_PROMETHEUS...} input was never replaced.
    let (o, scan) = scan_all(&l.stack).await;
    assert_eq!(
        scan["schema"], "msa-doctor/explain-dashboards/v1",
        "{scan:#}"
    );
    // The Kafka sample and the Spring Boot sample's Loki and histogram panels have no data.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let guide = dashboard(&scan, "msa-guide");
    assert_eq!(guide["window"], "15m", "{guide:#}");
    for id in 1..=4 {
        assert_eq!(panel(guide, id)["status"], "data", "panel {id}: {guide:#}");
    }
    let kafka = dashboard(&scan, "jwPKIsniz");
    let panels = kafka["panels"].as_array().expect("panels");
    assert_eq!(panels.len(), 5, "{kafka:#}");
    for p in panels {
        assert_eq!(p["status"], "datasource-unresolved", "{kafka:#}");
        assert!(
            p["detail"]
                .as_str()
                .unwrap_or("")
                .contains("${DS_PROMETHEUS_WH211}"),
            "{kafka:#}"
        );
    }
    let spring = dashboard(&scan, "dLsDQIUnzb");
    // $app_name is label_values(application): an application of this stack, not the saved app-a.
    let app = spring["variables"]["app_name"].as_str().unwrap_or("");
    assert!(app.ends_with("-service"), "{spring:#}");
    assert_eq!(panel(spring, 12)["status"], "data", "{spring:#}");
    assert!(
        panel(spring, 12)["expanded"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("application=\"{app}\"")),
        "{spring:#}"
    );
    assert_eq!(panel(spring, 14)["status"], "not-prometheus", "{spring:#}");
    // The p99 panel reads _bucket series that Spring Boot publishes only when asked.
    let p99 = panel(spring, 8);
    assert_eq!(p99["status"], "empty", "{spring:#}");
    assert_eq!(
        p99["explanation"]["selectors"][0]["verdict"], "metric-missing",
        "{p99:#}"
    );

    // The human scan names the unresolved input.
    let env = grafana_env(&l.stack);
    let o = cli(
        &[
            "explain",
            "--all-dashboards",
            "--no-kube",
            "--color",
            "never",
        ],
        &refs(&env),
    )
    .await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("Kafka Exporter Overview") && out.contains("${DS_PROMETHEUS_WH211}"),
        "{}",
        text(&o)
    );
    assert!(out.contains("MSA Monitoring (msa-guide)"), "{}", text(&o));
    assert!(!out.contains("s3cure") && !String::from_utf8_lossy(&o.stderr).contains("s3cure"));
    l.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_mismatch() {
    let l = live(&[Fault::UriMismatch], Duration::from_secs(30)).await;
    let ex = l.explain(PANEL_1).await;
    assert_eq!(ex.result, QueryResult::Empty, "{}", show(&ex));
    let s = only(&ex);
    assert_eq!(s.verdict, Verdict::ValueMissing, "{}", show(&ex));
    assert!(
        s.detail
            .contains("label uri never had the value \"/api/orders\""),
        "{}",
        show(&ex)
    );
    assert_eq!(
        s.suggestions.first().map(String::as_str),
        Some(r#"uri="/orders""#),
        "{}",
        show(&ex)
    );
    assert!(
        strings(&s.evidence["existing_values"]).contains(&"/orders".to_string()),
        "{}",
        show(&ex)
    );
    assert_eq!(
        ex.remedy.as_deref(),
        Some(r#"rate(http_server_requests_seconds_count{uri="/orders", method="POST"}[1m]) * 60"#),
        "{}",
        show(&ex)
    );
    // The remedy is a query that returns data.
    let fixed = l.explain(ex.remedy.as_deref().unwrap()).await;
    assert_eq!(fixed.result, QueryResult::Data, "{}", show(&fixed));

    // --output json: the contract's fields, exit 1.
    let url = l.stack.prometheus_url.clone();
    let o = cli(
        &[
            "explain",
            "--prometheus-url",
            &url,
            "--window",
            "15m",
            "--output",
            "json",
            PANEL_1,
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}\n{}", text(&o)));
    assert_eq!(v["schema"], "msa-doctor/explain/v1", "{v:#}");
    assert_eq!(v["query"], PANEL_1, "{v:#}");
    assert_eq!(v["window"], "15m", "{v:#}");
    assert_eq!(v["result"], "empty", "{v:#}");
    let sel = &v["selectors"][0];
    assert_eq!(
        sel["selector"],
        r#"http_server_requests_seconds_count{uri="/api/orders", method="POST"}[1m]"#,
        "{v:#}"
    );
    assert_eq!(sel["verdict"], "value-missing", "{v:#}");
    assert!(sel["detail"].is_string(), "{v:#}");
    assert_eq!(sel["suggestions"][0], r#"uri="/orders""#, "{v:#}");
    assert!(sel["evidence"]["existing_values"].is_array(), "{v:#}");
    assert!(
        v["root_cause"]
            .as_str()
            .unwrap_or("")
            .contains("/api/orders"),
        "{v:#}"
    );
    assert_eq!(
        v["remedy"],
        r#"rate(http_server_requests_seconds_count{uri="/orders", method="POST"}[1m]) * 60"#,
        "{v:#}"
    );
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "query",
            "remedy",
            "result",
            "root_cause",
            "schema",
            "selectors",
            "window"
        ],
        "{v:#}"
    );
    let mut keys: Vec<&str> = sel
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["detail", "evidence", "selector", "suggestions", "verdict"],
        "{v:#}"
    );

    // Through Grafana's data source proxy (no --prometheus-url), as a user with only
    // Grafana's port forwarded: the same diagnosis.
    let env = grafana_env(&l.stack);
    let o = cli(
        &["explain", "--no-kube", "--color", "never", PANEL_1],
        &refs(&env),
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("value-missing") && out.contains(r#"try: uri="/orders""#),
        "{}",
        text(&o)
    );
    assert!(
        out.contains("root cause:") && out.contains(r#"{uri="/orders", method="POST"}"#),
        "{}",
        text(&o)
    );

    // The dashboard scan names panel 1 as empty, with the uri suggestion.
    let (o, scan) = scan_all(&l.stack).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let p1 = panel(dashboard(&scan, "msa-guide"), 1);
    assert_eq!(p1["status"], "empty", "{p1:#}");
    assert_eq!(
        p1["explanation"]["selectors"][0]["verdict"], "value-missing",
        "{p1:#}"
    );
    assert_eq!(
        p1["explanation"]["selectors"][0]["suggestions"][0], r#"uri="/orders""#,
        "{p1:#}"
    );
    for id in 2..=4 {
        assert_eq!(
            panel(dashboard(&scan, "msa-guide"), id)["status"],
            "data",
            "{scan:#}"
        );
    }
    let o = cli(
        &[
            "explain",
            "--all-dashboards",
            "--no-kube",
            "--color",
            "never",
        ],
        &refs(&env),
    )
    .await;
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.contains("주문 요청량"))
        .unwrap_or_else(|| panic!("panel 1 is not named\n{}", text(&o)));
    assert!(
        line.contains('✖') && line.contains("/api/orders"),
        "{line}\n{}",
        text(&o)
    );
    assert!(out.contains(r#"uri="/orders""#), "{}", text(&o));
    l.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_collision() {
    let l = live(&[Fault::LabelCollision], Duration::from_secs(30)).await;
    // The app's own tag was renamed: the value lives in exported_application.
    let q = r#"jvm_memory_used_bytes{application="order-service"}"#;
    let ex = l.explain(q).await;
    assert_eq!(ex.result, QueryResult::Empty, "{}", show(&ex));
    let s = only(&ex);
    assert_eq!(s.verdict, Verdict::LabelMissing, "{}", show(&ex));
    assert!(s.detail.contains("exported_application"), "{}", show(&ex));
    assert_eq!(
        s.suggestions.first().map(String::as_str),
        Some(r#"exported_application="order-service""#),
        "{}",
        show(&ex)
    );
    assert_eq!(
        ex.remedy.as_deref(),
        Some(r#"jvm_memory_used_bytes{exported_application="order-service"}"#),
        "{}",
        show(&ex)
    );
    let fixed = l.explain(ex.remedy.as_deref().unwrap()).await;
    assert_eq!(fixed.result, QueryResult::Data, "{}", show(&fixed));

    // The guide's fallback panel returns one line (the team-wide target label), not one per
    // service: the grouping label is shadowed.
    let ex = l.explain(HEAP).await;
    let s = only(&ex);
    assert_eq!(s.verdict, Verdict::LabelMissing, "{}", show(&ex));
    assert_eq!(
        s.suggestions,
        vec!["by (exported_application)".to_string()],
        "{}",
        show(&ex)
    );
    assert!(
        s.detail.contains("metacoding") && s.detail.contains("order-service"),
        "{}",
        show(&ex)
    );
    assert!(
        ex.root_cause
            .as_deref()
            .unwrap_or("")
            .contains("exported_application"),
        "{}",
        show(&ex)
    );
    assert!(
        ex.remedy
            .as_deref()
            .unwrap_or("")
            .contains("honor_labels: true"),
        "{}",
        show(&ex)
    );
    l.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_scrape() {
    // A 30 s scrape: the first samples take up to 30 s, the second as long again.
    let l = live(&[Fault::SlowScrape], Duration::from_secs(45)).await;
    // [1m] holds two 30 s samples at best: rate() is empty or gappy.
    let q = r#"rate(http_server_requests_seconds_count{uri="/api/orders", method="POST"}[1m])"#;
    let ex = l
        .explain_until(q, Duration::from_secs(30), |e| {
            !e.selectors.is_empty() && e.selectors[0].verdict != Verdict::MetricMissing
        })
        .await;
    let s = only(&ex);
    assert_eq!(s.verdict, Verdict::WindowTooShort, "{}", show(&ex));
    assert!(s.detail.contains("[1m]"), "{}", show(&ex));
    assert!(
        s.suggestions
            .iter()
            .any(|x| x.ends_with("[$__rate_interval]")),
        "{}",
        show(&ex)
    );
    assert!(ex.root_cause.is_some(), "{}", show(&ex));

    // [45s] is shorter than two scrape intervals: never two samples.
    let q = r#"rate(http_server_requests_seconds_count{uri="/api/orders", method="POST"}[45s])"#;
    let ex = l.explain(q).await;
    let s = only(&ex);
    assert_eq!(s.verdict, Verdict::WindowTooShort, "{}", show(&ex));
    assert!(
        s.detail.contains("[45s]") && s.detail.contains("30s"),
        "{}",
        show(&ex)
    );
    assert_eq!(s.evidence["scrape_interval"], "30s", "{}", show(&ex));
    assert_eq!(
        ex.remedy.as_deref(),
        Some(r#"rate(http_server_requests_seconds_count{uri="/api/orders", method="POST"}[2m])"#),
        "{}",
        show(&ex)
    );
    l.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_traffic() {
    let l = live(&[Fault::NoTraffic], Duration::from_secs(10)).await;
    let ex = l.explain(PANEL_1).await;
    assert_eq!(ex.result, QueryResult::Empty, "{}", show(&ex));
    let s = only(&ex);
    assert_eq!(s.verdict, Verdict::ValueMissing, "{}", show(&ex));
    assert!(
        s.detail.contains("Prometheus's own scrapes") && s.detail.contains("/actuator/prometheus"),
        "{}",
        show(&ex)
    );
    // No uri to suggest: the fix is traffic, not the query.
    assert!(s.suggestions.is_empty(), "{}", show(&ex));
    assert!(
        ex.root_cause
            .as_deref()
            .unwrap_or("")
            .contains("no user request"),
        "{}",
        show(&ex)
    );
    assert!(
        ex.remedy.as_deref().unwrap_or("").contains("send traffic"),
        "{}",
        show(&ex)
    );
    l.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_data() {
    let l = live(&[Fault::StaleData], Duration::from_secs(5)).await;
    let ex = l.explain(HEAP).await;
    assert_eq!(ex.result, QueryResult::Empty, "{}", show(&ex));
    let s = only(&ex);
    assert_eq!(s.verdict, Verdict::Stale, "{}", show(&ex));
    // The samples stopped 47 minutes ago.
    let re = regex::Regex::new(r"last seen (\d+) min ago").unwrap();
    let n: u64 = re
        .captures(&s.detail)
        .and_then(|c| c[1].parse().ok())
        .unwrap_or_else(|| panic!("no \"last seen N min ago\": {}", show(&ex)));
    assert!(
        (46..=48).contains(&n),
        "last seen {n} min ago, the data stopped 47 min ago: {}",
        show(&ex)
    );
    let ago = s.evidence["last_seen_seconds_ago"].as_f64().unwrap_or(0.0);
    assert!((46.0 * 60.0..49.0 * 60.0).contains(&ago), "{}", show(&ex));
    assert!(
        ex.remedy.as_deref().unwrap_or("").contains("time range"),
        "{}",
        show(&ex)
    );

    // A longer window reaches the data.
    let wide = explain::explain(
        &l.api,
        HEAP,
        ExplainOptions {
            window: Duration::from_secs(3600),
            ..ExplainOptions::default()
        },
    )
    .await
    .expect("explains");
    assert_eq!(wide.result, QueryResult::Data, "{}", show(&wide));
    l.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_kafka_exporter() {
    let l = live(&[Fault::NoKafkaExporter], Duration::from_secs(20)).await;
    let ex = l.explain(PANEL_2).await;
    assert_eq!(ex.result, QueryResult::Empty, "{}", show(&ex));
    let s = only(&ex);
    assert_eq!(s.verdict, Verdict::MetricMissing, "{}", show(&ex));
    assert!(s.detail.contains("kafka_exporter"), "{}", show(&ex));
    let remedy = ex.remedy.as_deref().unwrap_or("");
    assert!(
        remedy.contains("helm install kafka-exporter") && remedy.contains("jvm_memory_used_bytes"),
        "{}",
        show(&ex)
    );
    l.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_missing() {
    let l = live(&[Fault::TopicMissing], Duration::from_secs(20)).await;
    let ex = l
        .explain_until(PANEL_2, Duration::from_secs(20), |e| {
            e.selectors
                .first()
                .is_some_and(|s| s.verdict == Verdict::ValueMissing)
        })
        .await;
    assert_eq!(ex.result, QueryResult::Empty, "{}", show(&ex));
    let s = only(&ex);
    assert_eq!(s.verdict, Verdict::ValueMissing, "{}", show(&ex));
    assert!(
        s.detail.contains("topic") && s.detail.contains("order-created"),
        "{}",
        show(&ex)
    );
    let existing = strings(&s.evidence["existing_values"]);
    assert!(
        !existing.is_empty() && !existing.contains(&"order-created".to_string()),
        "{}",
        show(&ex)
    );
    assert!(
        s.suggestions.iter().all(|x| x.starts_with("topic=")),
        "{}",
        show(&ex)
    );
    l.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cadvisor() {
    let l = live(&[Fault::NoCadvisor], Duration::from_secs(20)).await;
    let ex = l.explain(PANEL_3).await;
    assert_eq!(ex.result, QueryResult::Empty, "{}", show(&ex));
    let s = only(&ex);
    assert_eq!(s.verdict, Verdict::MetricMissing, "{}", show(&ex));
    assert!(s.detail.contains("cAdvisor"), "{}", show(&ex));
    assert!(
        ex.remedy
            .as_deref()
            .unwrap_or("")
            .contains("/metrics/cadvisor"),
        "{}",
        show(&ex)
    );
    l.stack.shutdown().await;
}
