//! The four report formats over one hand-built run that holds every status: snapshots of each,
//! plus the properties a snapshot cannot promise (valid XML, the JSON contract, no ANSI code
//! without colour, no secret, a summary line no CI scanner mistakes for a test runner's).

use msa_doctor::cli::Format;
use msa_doctor::engine::{CheckResult, Status};
use msa_doctor::report::{RenderOptions, Report, Target, Verbosity, render};
use serde_json::{Value, json};
use std::time::{Duration, UNIX_EPOCH};

const PLAIN: RenderOptions = RenderOptions {
    color: false,
    unicode: true,
    verbosity: Verbosity::Normal,
};

fn check(id: &str, status: Status, ms: u64, message: &str) -> CheckResult {
    CheckResult {
        id: id.into(),
        category: id.split('.').next().unwrap_or_default().into(),
        title: String::new(),
        status,
        message: message.into(),
        remedy: None,
        needs: vec![],
        skipped_because: None,
        duration: Duration::from_millis(ms),
        evidence: json!({}),
        attempts: 1,
        docs: None,
    }
}

/// 2 passed, 1 warning, 2 failed, 1 skipped, 1 error; `grafana` checks are split by a `k8s` one
/// so that grouping by category is visible.
fn mixed() -> Report {
    let started_at = UNIX_EPOCH + Duration::from_secs(1_795_608_000); // 2026-11-25T12:00:00Z
    let checks = vec![
        CheckResult {
            title: "Grafana answers at the URL".into(),
            ..check("access.grafana", Status::Pass, 12, "Grafana 11.2.0 answers at http://localhost:3000")
        },
        CheckResult {
            title: "The credentials are accepted".into(),
            needs: vec!["access.grafana".into()],
            ..check("grafana.login", Status::Pass, 8, "logged in as admin")
        },
        CheckResult {
            title: "Every Deployment asks Prometheus to scrape its pods".into(),
            remedy: Some(
                "kubectl -n metacoding patch deployment order-service --type merge -p '{\"spec\":{\"template\":{\"metadata\":{\"annotations\":{\"prometheus.io/scrape\":\"true\"}}}}}'\n\
                 kubectl -n metacoding patch deployment delivery-service --type merge -p '{\"spec\":{\"template\":{\"metadata\":{\"annotations\":{\"prometheus.io/scrape\":\"true\"}}}}}'\n"
                    .into(),
            ),
            evidence: json!({
                "deployments": ["order-service", "delivery-service"],
                "not_scraped": ["kafka", "mysql", "frontend"],
            }),
            ..check(
                "k8s.scrape-annotations",
                Status::Fail,
                31,
                "order-service, delivery-service: prometheus.io/scrape is on the Deployment's metadata, not on spec.template.metadata",
            )
        },
        CheckResult {
            title: "admin/admin no longer logs in".into(),
            needs: vec!["grafana.login".into()],
            remedy: Some(
                "kubectl -n monitoring exec deploy/grafana -- grafana cli admin reset-admin-password 'NEW-PASSWORD'".into(),
            ),
            evidence: json!({"user": "admin"}),
            ..check("grafana.default-password", Status::Warn, 6, "admin/admin still logs in")
        },
        CheckResult {
            title: "Every annotated pod is an up target".into(),
            needs: vec!["grafana.login".into()],
            remedy: Some(
                "# is Prometheus running and ready?\nkubectl -n monitoring get pods -l app=prometheus\n\nkubectl -n monitoring logs deploy/prometheus --tail=50".into(),
            ),
            evidence: json!({
                "url": "http://localhost:3000/api/datasources/proxy/uid/prometheus/api/v1/targets?state=active&scrapePool=kubernetes-pods",
                "status": 502,
            }),
            ..check(
                "prometheus.targets",
                Status::Error,
                1_520,
                "unexpected HTTP 502 from Grafana's data source proxy | body: <html>Bad Gateway</html>",
            )
        },
        CheckResult {
            title: "A Kafka exporter exports consumer lag for the topic".into(),
            needs: vec!["grafana.login".into()],
            remedy: Some(
                "# in the kafka-exporter Deployment (namespace monitoring):\nargs:\n  - --kafka.server=kafka.metacoding:9092\n  - --topic.filter=order-created"
                    .into(),
            ),
            evidence: json!({"topic": "order-created", "lag_series": 0}),
            ..check(
                "kafka.exporter",
                Status::Fail,
                44,
                "no series kafka_consumergroup_lag{topic=\"order-created\"}",
            )
        },
        CheckResult {
            title: "Every service received user requests".into(),
            needs: vec!["prometheus.targets".into()],
            skipped_because: Some("needs prometheus.targets, which ended in error".into()),
            ..check(
                "data.traffic",
                Status::Skip,
                0,
                "needs prometheus.targets, which ended in error",
            )
        },
    ];
    Report {
        started_at,
        duration: Duration::from_millis(1_642),
        target: Target {
            grafana_url: "http://localhost:3000".into(),
            prometheus: "grafana-proxy".into(),
            kube_context: Some("kind-msa".into()),
            namespace: "metacoding".into(),
        },
        checks,
    }
}

/// Removes ANSI CSI sequences (`ESC [ ... letter`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn human() {
    insta::assert_snapshot!(render(&mixed(), Format::Human, PLAIN));
}

#[test]
fn human_ascii() {
    let text = render(
        &mixed(),
        Format::Human,
        RenderOptions {
            color: false,
            unicode: false,
            verbosity: Verbosity::Normal,
        },
    );
    assert!(text.is_ascii(), "non-ASCII character in:\n{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn human_colour_only_when_asked() {
    let report = mixed();
    let plain = render(&report, Format::Human, PLAIN);
    let coloured = render(
        &report,
        Format::Human,
        RenderOptions {
            color: true,
            unicode: true,
            verbosity: Verbosity::Normal,
        },
    );
    assert!(!plain.contains('\x1b'));
    assert!(coloured.contains("\x1b[31"), "failures are red");
    assert!(coloured.contains("\x1b[33"), "warnings are yellow");
    assert_eq!(
        strip_ansi(&coloured),
        plain,
        "colour changes nothing but colour"
    );
    for format in [Format::Json, Format::Junit, Format::Markdown] {
        let text = render(
            &report,
            format,
            RenderOptions {
                color: true,
                unicode: true,
                verbosity: Verbosity::Normal,
            },
        );
        assert!(!text.contains('\x1b'), "{format:?} has an ANSI code");
    }
}

#[test]
fn human_groups_by_first_appearance_and_ends_with_a_prefixed_summary() {
    let text = render(&mixed(), Format::Human, PLAIN);
    let headers: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.is_empty())
        .collect();
    assert_eq!(
        headers,
        [
            "access",
            "grafana",
            "k8s",
            "prometheus",
            "kafka",
            "data",
            "msa-doctor: 2 passed, 1 warning, 2 failed, 1 skipped, 1 error in 1.64s"
        ]
    );
    let grafana = text.split("\nk8s\n").next().unwrap_or_default();
    assert!(
        grafana.contains("(grafana.default-password)"),
        "the warn joins its category"
    );
    // CI scanners take a line like `3 passed, 1 failed` for a test runner's verdict.
    let looks_like_test_runner = |l: &str| {
        let w: Vec<&str> = l.split([' ', ',']).filter(|w| !w.is_empty()).collect();
        w.len() >= 4 && w[0].parse::<u32>().is_ok() && w[1] == "passed"
    };
    assert!(!text.lines().any(looks_like_test_runner));
}

#[test]
fn junit() {
    let xml = render(&mixed(), Format::Junit, PLAIN);
    insta::assert_snapshot!(xml);
    let parsed = quick_junit::Report::deserialize_from_str(&xml).expect("valid JUnit XML");
    assert_eq!(parsed.name.as_ref().map(|n| n.as_str()), Some("msa-doctor"));
    assert_eq!(
        (parsed.tests, parsed.failures, parsed.errors, parsed.skipped),
        (7, 2, 1, 1)
    );
    let suites: Vec<&str> = parsed.test_suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        suites,
        ["access", "grafana", "k8s", "prometheus", "kafka", "data"]
    );
    for suite in &parsed.test_suites {
        for case in &suite.test_cases {
            assert_eq!(
                case.classname.as_ref().map(|c| c.as_str()),
                Some(suite.name.as_str())
            );
            assert!(
                case.name
                    .as_str()
                    .starts_with(&format!("{}.", suite.name.as_str()))
            );
        }
    }
}

#[test]
fn markdown() {
    let md = render(&mixed(), Format::Markdown, PLAIN);
    insta::assert_snapshot!(md);
    let rows = md
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Status") && !l.starts_with("| ---"))
        .count();
    assert_eq!(rows, 7);
    assert!(
        md.contains("proxy \\| body: &lt;html&gt;"),
        "a pipe or tag in a message stays in its cell"
    );
    assert!(md.contains("```yaml\n# in the kafka-exporter"));
    assert_eq!(md.matches("```sh\n").count(), 3);
}

fn redacted_json(report: &Report) -> Value {
    serde_json::from_str(&render(report, Format::Json, PLAIN)).expect("valid JSON")
}

#[test]
fn json() {
    insta::assert_json_snapshot!(redacted_json(&mixed()), {".tool.version" => "[version]"});
}

#[test]
fn json_has_every_contract_field_with_its_type() {
    let doc = redacted_json(&mixed());
    assert_eq!(doc["schema"], "msa-doctor/v1");
    assert_eq!(doc["tool"]["name"], "msa-doctor");
    assert!(doc["tool"]["version"].is_string());
    assert_eq!(doc["started_at"], "2026-11-25T12:00:00Z");
    assert_eq!(doc["duration_ms"], 1642);
    let target = &doc["target"];
    for key in ["grafana_url", "prometheus", "kube_context", "namespace"] {
        assert!(target[key].is_string(), "target.{key}");
    }
    assert_eq!(
        doc["summary"],
        json!({"pass": 2, "warn": 1, "fail": 2, "skip": 1, "error": 1})
    );
    let checks = doc["checks"].as_array().expect("checks is an array");
    assert_eq!(checks.len(), 7);
    let contract_keys = [
        "id",
        "category",
        "title",
        "status",
        "message",
        "remedy",
        "needs",
        "skipped_because",
        "duration_ms",
        "evidence",
        // v1.1: the check's section of docs/checks.md (`msa-doctor docs ID` prints it).
        "docs_url",
    ];
    for c in checks {
        let obj = c.as_object().expect("a check is an object");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut want = contract_keys.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want, "exactly the contract's fields");
        for key in ["id", "category", "title", "status", "message"] {
            assert!(c[key].is_string(), "{key} in {c}");
        }
        assert!(
            c["docs_url"].is_null()
                || c["docs_url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("docs/checks.md#")),
            "docs_url in {c}"
        );
        assert!(
            c["needs"]
                .as_array()
                .is_some_and(|n| n.iter().all(Value::is_string))
        );
        assert!(c["duration_ms"].is_u64());
        assert!(c["evidence"].is_object());
        let status = c["status"].as_str().unwrap_or_default();
        assert!(["pass", "warn", "fail", "skip", "error"].contains(&status));
        match status {
            "pass" => assert!(c["remedy"].is_null(), "remedy of {c}"),
            "skip" => {}
            _ => assert!(c["remedy"].is_string(), "remedy of {c}"),
        }
        assert_eq!(
            c["skipped_because"].is_string(),
            status == "skip",
            "skipped_because of {c}"
        );
        assert!(
            !c["message"].as_str().unwrap_or_default().contains('\n'),
            "message is one line"
        );
    }
    // Dependency order: every check comes after what it needs.
    let ids: Vec<&str> = checks.iter().filter_map(|c| c["id"].as_str()).collect();
    for (i, c) in checks.iter().enumerate() {
        for need in c["needs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            assert!(ids[..i].contains(&need), "{} before {need}", ids[i]);
        }
    }
}

#[test]
fn json_keeps_the_contract_whoever_built_the_result() {
    let mut report = mixed();
    report.checks[0].remedy = Some("nothing to do".into());
    report.checks[0].skipped_because = Some("stale".into());
    report.checks[0].evidence = Value::Null;
    let doc = redacted_json(&report);
    assert!(doc["checks"][0]["remedy"].is_null());
    assert!(doc["checks"][0]["skipped_because"].is_null());
    assert_eq!(doc["checks"][0]["evidence"], json!({}));
    assert_eq!(doc["target"]["kube_context"], "kind-msa");
    report.target.kube_context = None;
    assert!(redacted_json(&report)["target"]["kube_context"].is_null());
}

#[test]
fn no_format_shows_credentials_from_a_url() {
    let mut report = mixed();
    report.target.grafana_url = "http://admin:s3cret@localhost:3000".into();
    report.target.prometheus = "http://prom:t0ken@localhost:9090".into();
    for format in [Format::Human, Format::Json, Format::Junit, Format::Markdown] {
        let text = render(&report, format, PLAIN);
        assert!(
            !text.contains("s3cret") && !text.contains("t0ken"),
            "{format:?}:\n{text}"
        );
    }
    assert_eq!(
        redacted_json(&report)["target"]["grafana_url"],
        "http://localhost:3000/"
    );
}

#[test]
fn an_empty_run_still_renders() {
    let report = Report {
        checks: vec![],
        ..mixed()
    };
    assert!(
        render(&report, Format::Human, PLAIN).ends_with(
            "msa-doctor: 0 passed, 0 warnings, 0 failed, 0 skipped, 0 errors in 1.64s\n"
        )
    );
    let xml = render(&report, Format::Junit, PLAIN);
    assert_eq!(
        quick_junit::Report::deserialize_from_str(&xml)
            .map(|r| r.tests)
            .ok(),
        Some(0)
    );
    assert!(render(&report, Format::Markdown, PLAIN).contains("No check ran."));
    assert_eq!(redacted_json(&report)["checks"], json!([]));
}
