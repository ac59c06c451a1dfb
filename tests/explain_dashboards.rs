//! The dashboard scan's offline parts, on the two real sample dashboards the Grafana emulator
//! provisions (src/sandbox/dashboards/): every panel is found (rows and nested panels too),
//! variables expand as Grafana expands them (`$var`, `${var}`, `${var:fmt}`, `[[var]]` and the
//! built-in intervals), `label_values(...)` variable queries parse, and relative time ranges
//! convert. No stack: the scan against a live Grafana is in tests/explain_stack.rs, which
//! shares its stacks with the query explanations.

mod support;

use msa_doctor::explain::dashboard::{
    all_panels, builtins, dashboard_model, expand, parse_label_values, relative_seconds,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
#[cfg(all(unix, feature = "sandbox"))]
use support::fake_prom::fake_prometheus;

const SPRING: &str = include_str!("../src/sandbox/dashboards/spring-boot-observability.json");
const KAFKA: &str = include_str!("../src/sandbox/dashboards/kafka-exporter-overview.json");
const GUIDE: &str = include_str!("../src/sandbox/dashboards/msa-monitoring.json");
/// A Grafana 12 dashboard in schema v2 (`dashboard.grafana.app/v2beta1`): panels are
/// `elements`, placed by a rows layout holding a grid and an auto grid.
const V2: &str = include_str!("fixtures/grafana/dashboard-v2.json");

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

#[test]
fn a_classic_dashboard_is_read_as_it_is() {
    let doc = json!({"dashboard": model(GUIDE), "meta": {}});
    let m = dashboard_model(&doc).unwrap();
    assert_eq!(m, model(GUIDE));
    assert_eq!(ids(&all_panels(&m)), vec![1, 2, 3, 4]);
}

fn v2_panels(doc: &Value) -> Vec<Value> {
    let m = dashboard_model(doc).unwrap_or_else(|e| panic!("unreadable: {e}"));
    assert_eq!(m["title"], "Orders (schema v2)");
    assert_eq!(m["time"], json!({"from": "now-15m", "to": "now"}));
    all_panels(&m)
}

#[test]
fn a_schema_v2_dashboard_is_read_from_its_elements_in_layout_order() {
    let v2 = model(V2);
    // As the Kubernetes API gives it, and wrapped as /api/dashboards/uid/UID gives it.
    for doc in [
        v2.clone(),
        json!({"dashboard": v2.clone(), "meta": {}}),
        json!({"dashboard": v2["spec"].clone()}),
    ] {
        let panels = v2_panels(&doc);
        // The layout's order (rows, then grid items, then the auto grid); an element the
        // layout does not place is not shown by Grafana either.
        assert_eq!(ids(&panels), vec![2, 1, 10], "{panels:#?}");
        let orders = &panels[1];
        assert_eq!(orders["title"], "Orders per minute");
        assert_eq!(
            orders["targets"][0]["expr"],
            "sum(rate(http_server_requests_seconds_count{application=\"$application\", method=\"$method\"}[1m])) * 60"
        );
        assert_eq!(orders["targets"][0]["refId"], "A");
        assert_eq!(orders["targets"][0]["hide"], false);
        assert_eq!(
            orders["targets"][0]["datasource"],
            json!({"type": "prometheus", "uid": "${datasource}"})
        );
        assert_eq!(
            orders["targets"][1]["hide"], true,
            "a hidden query stays hidden"
        );
        // No data source named: the type only, so the default Prometheus is used.
        assert_eq!(
            panels[0]["targets"][0]["datasource"],
            json!({"type": "prometheus"})
        );
        assert_eq!(
            panels[2]["targets"][0]["datasource"],
            json!({"type": "loki", "uid": "P8E80F9AEF21F6940"})
        );
    }
}

#[test]
fn schema_v2_variables_become_classic_ones() {
    let m = dashboard_model(&model(V2)).unwrap();
    let list = m["templating"]["list"].as_array().unwrap();
    let names: Vec<&str> = list.iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(names, vec!["datasource", "application", "method"]);
    assert_eq!(list[0]["type"], "datasource");
    assert_eq!(list[0]["query"], "prometheus");
    assert_eq!(list[1]["type"], "query");
    assert_eq!(
        list[1]["query"]["query"],
        "label_values(http_server_requests_seconds_count, application)"
    );
    assert_eq!(list[1]["datasource"]["uid"], "${datasource}");
    assert_eq!(
        parse_label_values(list[1]["query"]["query"].as_str().unwrap()),
        Some((
            Some("http_server_requests_seconds_count".to_string()),
            "application".to_string()
        ))
    );
    assert_eq!(list[2]["type"], "custom");
    assert_eq!(list[2]["current"]["value"], "POST");
}

#[test]
fn a_dashboard_shape_it_cannot_read_is_an_error_naming_what_is_missing() {
    let mut no_queries = model(V2);
    no_queries["spec"]["elements"]["panel-1"]["spec"]["data"] = json!({"kind": "QueryGroup"});
    let mut unknown_kind = model(V2);
    unknown_kind["spec"]["elements"]["panel-2"]["kind"] = json!("FancyPanel");
    let mut dangling = model(V2);
    dangling["spec"]["elements"]
        .as_object_mut()
        .unwrap()
        .remove("panel-10");
    let mut elements_list = model(V2);
    elements_list["spec"]["elements"] = json!([]);
    let cases = [
        (
            no_queries,
            "panel element \"panel-1\" has no `data.spec.queries` list",
        ),
        (
            unknown_kind,
            "element \"panel-2\" is of kind \"FancyPanel\"",
        ),
        (
            dangling,
            "places element \"panel-10\", which `elements` does not hold",
        ),
        (elements_list, "`elements` is not a map"),
        (
            json!({"dashboard": {"title": "t", "panels": {"a": 1}}}),
            "`panels` is not a list",
        ),
        (
            json!({"dashboard": {"title": "t", "widgets": []}}),
            "no `panels`, `rows` or `elements`",
        ),
        (json!({"dashboard": "text"}), "no dashboard object"),
        (json!({"meta": {}}), "no `panels`, `rows` or `elements`"),
    ];
    for (doc, says) in cases {
        match dashboard_model(&doc) {
            Ok(m) => panic!("read {doc} as {m}"),
            Err(e) => assert!(e.contains(says), "{e:?} does not say {says:?}"),
        }
    }
}

/// The scan against the emulated Grafana serving a schema v2 dashboard: its panel queries are
/// found and run (not "0 panel queries, all with data"), and a v2 dashboard it cannot read is
/// an error naming the dashboard.
#[cfg(all(unix, feature = "sandbox"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_scans_a_schema_v2_dashboard_through_grafana() {
    use msa_doctor::sandbox::grafana::{GrafanaOptions, GrafanaSim};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let prom = fake_prometheus();
    // Provisioned as Grafana 12 stores a v2 dashboard: the spec, with its uid.
    let mut v2 = model(V2)["spec"].clone();
    v2["uid"] = json!("orders-v2");
    let mut broken = v2.clone();
    broken["uid"] = json!("broken-v2");
    broken["title"] = json!("Broken v2");
    broken["elements"]["panel-1"]["spec"]["data"] = json!({"kind": "QueryGroup"});
    let g = GrafanaSim::start(GrafanaOptions {
        datasource_url: format!("http://127.0.0.1:{prom}"),
        extra_dashboards: vec![v2, broken],
        ..GrafanaOptions::default()
    })
    .await
    .expect("grafana starts");
    let url = g.url.trim_end_matches('/').to_string();
    let run = |uid: &'static str, url: String| {
        tokio::task::spawn_blocking(move || {
            let home = tempfile::tempdir().unwrap();
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_msa-doctor"));
            for var in [
                "KUBECONFIG",
                "GRAFANA_PASSWORD",
                "GRAFANA_TOKEN",
                "MSA_DOCTOR_PROMETHEUS_URL",
            ] {
                c.env_remove(var);
            }
            c.env("HOME", home.path())
                .current_dir(home.path())
                .args([
                    "explain",
                    "--no-kube",
                    "--dashboard",
                    uid,
                    "--output",
                    "json",
                ])
                .args(["--grafana-url", &url])
                .output()
                .unwrap()
        })
    };
    let o = run("orders-v2", url.clone()).await.unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let d = &r["dashboards"][0];
    assert_eq!(d["title"], "Orders (schema v2)", "{r}");
    assert_eq!(d["window"], "15m", "{r}");
    let panels: Vec<(String, String)> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["panel"].as_str().unwrap().to_string(),
                p["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(panels.len(), 3, "{r}");
    for (panel, status) in [
        ("Consumer lag", "data"),
        ("Orders per minute", "data"),
        ("Logs", "not-prometheus"),
    ] {
        assert!(
            panels.iter().any(|(p, s)| p == panel && s == status),
            "{panel} {status}: {panels:?}"
        );
    }
    let orders = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["panel"] == "Orders per minute")
        .unwrap();
    assert!(
        orders["expanded"]
            .as_str()
            .unwrap()
            .contains("application=\"order-service\", method=\"POST\""),
        "variables expand: {orders}"
    );

    let o = run("broken-v2", url).await.unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_ne!(o.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("broken-v2")
            && stderr.contains("cannot read this dashboard")
            && stderr.contains("panel element \"panel-1\" has no `data.spec.queries` list"),
        "{stderr}"
    );
    g.shutdown().await;
}

/// Multi-value and "All" variables are escaped as Grafana's Prometheus data source writes
/// them (two backslashes before a regex character in the query text), so the query parses and
/// matches the literal values; a plain variable keeps its value.
#[test]
fn multi_value_variables_are_escaped_as_grafana_does() {
    use msa_doctor::explain::dashboard::grafana_interpolate;
    let values = vec!["api.example.com".to_string(), "web-1".to_string()];
    let multi = grafana_interpolate(&values, true);
    assert_eq!(multi, r"(api\\.example\\.com|web-1)");
    let q = format!("up{{instance=~\"{multi}\"}}");
    assert!(
        promql_parser::parser::parse(&q).is_ok(),
        "Prometheus would refuse {q}"
    );
    // One value of a multi-value variable is still escaped, without the group.
    assert_eq!(
        grafana_interpolate(&values[..1], true),
        r"api\\.example\\.com"
    );
    // A plain variable: only backslashes and quotes.
    assert_eq!(grafana_interpolate(&values[..1], false), "api.example.com");
}
