//! The dashboard scan's offline parts, on the two real sample dashboards the Grafana emulator
//! provisions (src/sandbox/dashboards/): every panel is found (rows and nested panels too),
//! variables expand as Grafana expands them (`$var`, `${var}`, `${var:fmt}`, `[[var]]` and the
//! built-in intervals), `label_values(...)` variable queries parse, and relative time ranges
//! convert. No stack: the scan against a live Grafana is in tests/explain_stack.rs, which
//! shares its stacks with the query explanations.

use msa_doctor::explain::dashboard::{
    all_panels, builtins, expand, parse_label_values, relative_seconds,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const SPRING: &str = include_str!("../src/sandbox/dashboards/spring-boot-observability.json");
const KAFKA: &str = include_str!("../src/sandbox/dashboards/kafka-exporter-overview.json");
const GUIDE: &str = include_str!("../src/sandbox/dashboards/msa-monitoring.json");

fn model(text: &str) -> Value {
    serde_json::from_str(text).expect("a sample dashboard parses")
}

fn ids(panels: &[Value]) -> Vec<i64> {
    panels.iter().filter_map(|p| p["id"].as_i64()).collect()
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Seconds of a Prometheus duration such as `15s`, `1m`, `1h30m`.
fn seconds(d: &str) -> u64 {
    humantime::parse_duration(d)
        .unwrap_or_else(|e| panic!("{d:?} is not a duration: {e}"))
        .as_secs()
}

#[test]
fn all_panels_finds_every_panel_of_the_spring_boot_sample() {
    let panels = all_panels(&model(SPRING));
    assert_eq!(
        ids(&panels),
        vec![4, 16, 6, 22, 18, 20, 8, 23, 12, 14, 2],
        "{panels:#?}"
    );
    // Every panel of the sample has its query (the two Loki panels included).
    let exprs: Vec<&str> = panels
        .iter()
        .filter_map(|p| p["targets"][0]["expr"].as_str())
        .collect();
    assert_eq!(exprs.len(), 11);
    assert!(
        exprs.iter().filter(|e| e.contains("$app_name")).count() >= 9,
        "{exprs:#?}"
    );
}

#[test]
fn all_panels_finds_every_panel_of_the_kafka_sample() {
    let panels = all_panels(&model(KAFKA));
    assert_eq!(ids(&panels), vec![14, 12, 16, 18, 8], "{panels:#?}");
    for p in &panels {
        assert_eq!(
            p["datasource"], "${DS_PROMETHEUS_WH211}",
            "panel {} keeps its unresolved input",
            p["id"]
        );
    }
}

#[test]
fn all_panels_finds_the_guide_panels() {
    let panels = all_panels(&model(GUIDE));
    assert_eq!(ids(&panels), vec![1, 2, 3, 4]);
    assert_eq!(
        panels[0]["targets"][0]["expr"],
        "rate(http_server_requests_seconds_count{uri=\"/api/orders\", method=\"POST\"}[1m]) * 60"
    );
}

#[test]
fn all_panels_opens_rows_collapsed_rows_and_the_old_rows_schema() {
    // The sample panels, regrouped the three ways Grafana stores rows: an open row (its panels
    // follow it at the top level), a collapsed row (its panels nested inside it) and the
    // pre-5.0 `rows[]` list.
    let spring = all_panels(&model(SPRING));
    let kafka = all_panels(&model(KAFKA));
    let grouped = json!({
        "panels": [
            {"id": 100, "type": "row", "title": "HTTP", "collapsed": false, "panels": []},
            spring[0], spring[1],
            {"id": 101, "type": "row", "title": "Kafka", "collapsed": true, "panels": [kafka[0], kafka[1]]},
            {"id": 102, "type": "row", "title": "Empty row", "collapsed": true},
        ],
        "rows": [
            {"title": "legacy", "panels": [kafka[2], spring[2]]},
        ],
    });
    let found = all_panels(&grouped);
    assert_eq!(ids(&found), vec![4, 16, 14, 12, 16, 6], "{found:#?}");
    assert!(
        found.iter().all(|p| p["type"] != "row"),
        "rows are containers, not panels"
    );
    // Nothing to find is not an error.
    assert!(all_panels(&json!({})).is_empty());
    assert!(all_panels(&json!({"panels": "not a list"})).is_empty());
}

#[test]
fn expand_replaces_every_variable_syntax() {
    let v = vars(&[
        ("app", "order-service"),
        ("instance", "10.42.0.7:8080"),
        ("topic", "order-created"),
    ]);
    assert_eq!(
        expand(r#"up{application="$app"}"#, &v),
        r#"up{application="order-service"}"#
    );
    assert_eq!(
        expand(r#"up{application="${app}"}"#, &v),
        r#"up{application="order-service"}"#
    );
    assert_eq!(
        expand(r#"up{application=~"${app:regex}"}"#, &v),
        r#"up{application=~"order-service"}"#
    );
    assert_eq!(
        expand(r#"up{application="[[app]]"}"#, &v),
        r#"up{application="order-service"}"#
    );
    assert_eq!(
        expand(r#"up{application="[[app:raw]]"}"#, &v),
        r#"up{application="order-service"}"#
    );
    // Several in one query, next to other characters.
    assert_eq!(
        expand(
            r#"x{application="$app",instance='$instance',topic=~"${topic}|x"}"#,
            &v
        ),
        r#"x{application="order-service",instance='10.42.0.7:8080',topic=~"order-created|x"}"#
    );
    // A longer name is another variable: $application is not $app followed by "lication".
    assert_eq!(expand("$application", &v), "$application");
    // Unknown variables and lone dollars stay as written, so the scan can name them.
    assert_eq!(
        expand(r#"up{a="$nope", b="${nope}", c="[[nope]]"} * $ 2"#, &v),
        r#"up{a="$nope", b="${nope}", c="[[nope]]"} * $ 2"#
    );
    // Unclosed forms are left alone, and never panic.
    for odd in [
        "${app", "[[app", "$", "[[", "${}", "x[[app]", "é$app", "$app🙂",
    ] {
        let _ = expand(odd, &v);
    }
    assert_eq!(expand("é$app", &v), "éorder-service");
    assert_eq!(expand("$app🙂", &v), "order-service🙂");
}

#[test]
fn expand_replaces_the_built_in_intervals() {
    let mut v = builtins(900.0, 15.0);
    v.insert("app".into(), "user-service".into());
    let q = r#"sum(rate(http_server_requests_seconds_count{application="$app"}[$__rate_interval])) / $__range_s"#;
    assert_eq!(
        expand(q, &v),
        r#"sum(rate(http_server_requests_seconds_count{application="user-service"}[1m])) / 900"#
    );
    assert_eq!(expand("rate(x[$__interval])", &v), "rate(x[15s])");
    assert_eq!(expand("increase(x[$__range])", &v), "increase(x[15m])");
    assert_eq!(expand("increase(x[${__range}])", &v), "increase(x[15m])");
    // $__interval_ms is its own variable, not $__interval followed by "_ms".
    assert_eq!(expand("$__interval_ms", &v), "15000");
    // Every expanded sample query parses as PromQL (the Loki ones aside).
    let mut v = builtins(300.0, 15.0);
    v.insert("app_name".into(), "order-service".into());
    v.insert("log_keyword".into(), String::new());
    for p in all_panels(&model(SPRING)) {
        if p["datasource"]["type"] == "loki" {
            continue;
        }
        let e = expand(p["targets"][0]["expr"].as_str().unwrap(), &v);
        assert!(!e.contains('$'), "panel {}: {e}", p["id"]);
        msa_doctor::explain::parse(&e)
            .unwrap_or_else(|err| panic!("panel {}: {e}: {err}", p["id"]));
    }
}

#[test]
fn builtins_are_grafanas_values() {
    // Last 15 minutes, a 15 s scrape: Grafana's $__interval is max(round(15m / ~1000 points), 15s)
    // and $__rate_interval is max($__interval + scrape, 4 * scrape).
    let b = builtins(900.0, 15.0);
    assert_eq!(seconds(&b["__interval"]), 15);
    assert_eq!(b["__interval_ms"], "15000");
    assert_eq!(seconds(&b["__rate_interval"]), 60);
    assert_eq!(seconds(&b["__range"]), 900);
    assert_eq!(b["__range_s"], "900");
    assert_eq!(b["__range_ms"], "900000");

    // A 30 s scrape: the interval is the scrape interval, the rate interval four of them.
    let b = builtins(900.0, 30.0);
    assert_eq!(seconds(&b["__interval"]), 30);
    assert_eq!(seconds(&b["__rate_interval"]), 120);

    // A 1 s scrape over 15 minutes: round(0.9 s) = 1 s; rate interval max(1 + 1, 4) = 4 s.
    let b = builtins(900.0, 1.0);
    assert_eq!(seconds(&b["__interval"]), 1);
    assert_eq!(seconds(&b["__rate_interval"]), 4);

    // Last 24 hours: 86.4 s rounds (Grafana's roundInterval) to 1m, which beats the 15 s
    // scrape; the rate interval is then interval + scrape = 75 s.
    let b = builtins(86400.0, 15.0);
    assert_eq!(seconds(&b["__interval"]), 60);
    assert_eq!(b["__interval_ms"], "60000");
    assert_eq!(seconds(&b["__rate_interval"]), 75);
    assert_eq!(seconds(&b["__range"]), 86400);

    // Last 6 hours: 21.6 s rounds to 20 s, above a 15 s scrape.
    let b = builtins(6.0 * 3600.0, 15.0);
    assert_eq!(seconds(&b["__interval"]), 20);
    assert_eq!(seconds(&b["__rate_interval"]), 60);

    // Grafana does not round the scrape interval itself: a 7 s scrape stays 7 s.
    let b = builtins(900.0, 7.0);
    assert_eq!(seconds(&b["__interval"]), 7);
    assert_eq!(seconds(&b["__rate_interval"]), 28);

    // Last 7 days: 604.8 s rounds to 10m.
    let b = builtins(7.0 * 86400.0, 15.0);
    assert_eq!(seconds(&b["__interval"]), 600);
}

#[test]
fn parse_label_values_reads_both_forms() {
    assert_eq!(
        parse_label_values("label_values(application)"),
        Some((None, "application".to_string()))
    );
    assert_eq!(
        parse_label_values("  label_values( application ) "),
        Some((None, "application".to_string()))
    );
    assert_eq!(
        parse_label_values(
            r#"label_values(jvm_memory_used_bytes{application="$application"}, instance)"#
        ),
        Some((
            Some(r#"jvm_memory_used_bytes{application="$application"}"#.to_string()),
            "instance".to_string()
        ))
    );
    // The kafka sample's: several matchers, single quotes, commas inside the braces.
    let (m, l) = parse_label_values(
        "label_values(kafka_topic_partition_current_offset{instance='$instance',topic!='__consumer_offsets',topic!='--kafka'}, topic)",
    )
    .expect("parses");
    assert_eq!(
        m.as_deref(),
        Some(
            "kafka_topic_partition_current_offset{instance='$instance',topic!='__consumer_offsets',topic!='--kafka'}"
        )
    );
    assert_eq!(l, "topic");
    assert_eq!(
        parse_label_values("label_values(kafka_consumergroup_current_offset, job)"),
        Some((
            Some("kafka_consumergroup_current_offset".into()),
            "job".into()
        ))
    );
    // Other variable queries are not label_values.
    assert_eq!(parse_label_values("label_names()"), None);
    assert_eq!(parse_label_values("query_result(up)"), None);
    assert_eq!(parse_label_values("label_values(application"), None);
    assert_eq!(parse_label_values(""), None);
}

#[test]
fn parse_label_values_reads_every_variable_of_the_samples() {
    for text in [SPRING, KAFKA] {
        let m = model(text);
        for v in m["templating"]["list"].as_array().unwrap() {
            if v["type"] != "query" {
                continue;
            }
            let q = v["query"]
                .as_str()
                .or_else(|| v["query"]["query"].as_str())
                .unwrap();
            let (_, label) = parse_label_values(q).unwrap_or_else(|| panic!("{q}"));
            assert!(
                ["application", "job", "instance", "topic"].contains(&label.as_str()),
                "{q} -> {label}"
            );
        }
    }
}

#[test]
fn relative_seconds_reads_grafanas_relative_times() {
    assert_eq!(relative_seconds("now"), Some(0.0));
    assert_eq!(relative_seconds("now-5m"), Some(300.0));
    assert_eq!(relative_seconds("now-15m"), Some(900.0));
    assert_eq!(relative_seconds(" now-1h "), Some(3600.0));
    assert_eq!(relative_seconds("now-24h"), Some(86400.0));
    assert_eq!(relative_seconds("now-30s"), Some(30.0));
    assert_eq!(relative_seconds("now-7d"), Some(7.0 * 86400.0));
    assert_eq!(relative_seconds("now-2w"), Some(14.0 * 86400.0));
    // A rounded range ("Yesterday so far" style) keeps its offset.
    assert_eq!(relative_seconds("now-1d/d"), Some(86400.0));
    // Absolute times, future times and nonsense are not relative offsets.
    for s in [
        "2026-11-25T12:00:00Z",
        "1700000000000",
        "now+1h",
        "now-",
        "now-m",
        "now-5x",
        "",
        "later",
    ] {
        assert_eq!(relative_seconds(s), None, "{s}");
    }
}

#[test]
fn sample_time_ranges_convert() {
    for (text, want) in [(SPRING, 300.0), (KAFKA, 86400.0), (GUIDE, 900.0)] {
        let m = model(text);
        let from = relative_seconds(m["time"]["from"].as_str().unwrap()).unwrap();
        let to = relative_seconds(m["time"]["to"].as_str().unwrap()).unwrap();
        assert_eq!(from - to, want, "{}", m["title"]);
    }
}

#[test]
fn regex_format_escapes_a_single_value_but_not_an_alternation() {
    let v = vars(&[("svc", "order.service"), ("many", "(a\\.b|c)")]);
    assert_eq!(
        expand(r#"up{job=~"${svc:regex}"}"#, &v),
        r#"up{job=~"order\.service"}"#
    );
    assert_eq!(
        expand(r#"up{job=~"${many:regex}"}"#, &v),
        r#"up{job=~"(a\.b|c)"}"#
    );
    assert_eq!(
        expand(r#"up{job="${svc}"}"#, &v),
        r#"up{job="order.service"}"#
    );
}
