//! `msa-doctor lint` end to end: one fixture repository per situation of issue 12, each with
//! its exact findings (rule, file, line, workload) and exit code; SARIF validated against the
//! vendored 2.1.0 schema; the other formats; inputs (stdin, Helm, Kustomize, .gitignore,
//! symlink loops, a 1,000-Deployment dump) and usage errors.

use assert_cmd::Command;
use serde_json::Value;
use std::path::Path;

const FIX: &str = "tests/fixtures/lint";

/// `msa-doctor lint ARGS`, with PATH as given (None: the test's own PATH).
fn lint(args: &[&str], path: Option<String>) -> (i32, String, String) {
    let mut cmd = Command::cargo_bin("msa-doctor").unwrap();
    cmd.arg("lint").args(args).env_remove("NO_COLOR");
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A PATH without helm or kubectl: the renderers are absent.
fn bare_path() -> Option<String> {
    Some("/nonexistent".into())
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

fn json(args: &[&str], path: Option<String>) -> (i32, Value) {
    let mut a = vec!["-o", "json"];
    a.extend_from_slice(args);
    let (code, out, err) = lint(&a, path);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    assert_eq!(v["schema"], "msa-doctor/lint/v1");
    (code, v)
}

/// Findings as (rule, file relative to the fixtures, line, workload).
fn findings(v: &Value) -> Vec<(String, String, u64, Option<String>)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let file = f["file"].as_str().unwrap();
            (
                f["rule"].as_str().unwrap().to_string(),
                file.strip_prefix(&format!("{FIX}/"))
                    .unwrap_or(file)
                    .to_string(),
                f["line"].as_u64().unwrap(),
                f["workload"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn f(rule: &str, file: &str, line: u64, w: Option<&str>) -> (String, String, u64, Option<String>) {
    (rule.into(), file.into(), line, w.map(str::to_string))
}

/// Workloads as (name, service, scraped_by).
fn workloads(v: &Value) -> Vec<(String, Option<String>, String)> {
    v["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap().to_string(),
                w["service"].as_str().map(str::to_string),
                w["scraped_by"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn fixture(name: &str) -> String {
    format!("{FIX}/{name}")
}

#[test]
fn course_style_names_are_found_and_the_app_side_is_read() {
    let (code, v) = json(&[&fixture("course")], bare_path());
    assert_eq!(code, 1);
    assert_eq!(
        findings(&v),
        vec![
            f(
                "container-port-missing",
                "course/k8s/order/order-deploy.yml",
                19,
                Some("order-deploy")
            ),
            f(
                "web-starter-missing",
                "course/orchestrator-service/pom.xml",
                10,
                Some("orchestrator-deploy")
            ),
            f(
                "percentiles-histogram-missing",
                "course/orchestrator-service/src/main/resources/application.properties",
                1,
                Some("orchestrator-deploy")
            ),
            f(
                "actuator-missing",
                "course/user-service/build.gradle",
                7,
                Some("user-deploy")
            ),
            f(
                "prometheus-registry-missing",
                "course/user-service/build.gradle",
                7,
                Some("user-deploy")
            ),
            f(
                "application-tag-missing",
                "course/user-service/src/main/resources/application.yml",
                1,
                Some("user-deploy")
            ),
            f(
                "percentiles-histogram-missing",
                "course/user-service/src/main/resources/application.yml",
                1,
                Some("user-deploy")
            ),
            f(
                "prometheus-endpoint-not-exposed",
                "course/user-service/src/main/resources/application.yml",
                1,
                Some("user-deploy")
            ),
        ]
    );
    assert_eq!(
        workloads(&v),
        vec![
            ("postgres".into(), None, "none".into()),
            (
                "orchestrator-deploy".into(),
                Some("orchestrator-service".into()),
                "pod-annotations".into()
            ),
            (
                "order-deploy".into(),
                Some("order-service".into()),
                "pod-annotations".into()
            ),
            (
                "user-deploy".into(),
                Some("user-service".into()),
                "pod-annotations".into()
            ),
        ]
    );
    assert_eq!(v["summary"]["checked"], 3);
    assert_eq!(v["summary"]["error"], 5);
    assert_eq!(v["summary"]["warning"], 1);
    assert_eq!(v["summary"]["note"], 2);
    // The build file's own syntax in the fix.
    let fix = v["findings"][3]["fix"].as_str().unwrap();
    assert_eq!(
        fix,
        "implementation 'org.springframework.boot:spring-boot-starter-actuator'"
    );
}

#[test]
fn services_named_on_the_command_line_resolve_through_services_and_labels() {
    let (code, v) = json(
        &[
            "--services",
            "user-service,order,delivery-service",
            &fixture("course"),
        ],
        bare_path(),
    );
    assert_eq!(code, 1);
    let fs = findings(&v);
    assert!(fs.contains(&f("service-not-found", "", 0, None)), "{fs:?}");
    let w = workloads(&v);
    // user-service through its Service, order through the app label; orchestrator not named.
    assert!(w.contains(&(
        "user-deploy".into(),
        Some("user-service".into()),
        "pod-annotations".into()
    )));
    assert!(w.contains(&(
        "order-deploy".into(),
        Some("order".into()),
        "pod-annotations".into()
    )));
    assert!(w.contains(&("orchestrator-deploy".into(), None, "pod-annotations".into())));
    assert!(!fs.iter().any(|x| x.0 == "web-starter-missing"), "{fs:?}");
}

#[test]
fn kustomize_is_rendered_and_findings_point_at_the_patch() {
    // Real kubectl when installed; else a stand-in printing what kubectl renders.
    let path = if on_path("kubectl") {
        None
    } else {
        Some(format!(
            "{}/{FIX}/fake-kubectl:/usr/bin:/bin",
            std::env::current_dir().unwrap().display()
        ))
    };
    let (code, v) = json(&[&fixture("kustomize")], path);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&v),
        vec![f(
            "scrape-path-mismatch",
            "kustomize/overlays/prod/scrape-patch.yaml",
            10,
            Some("prod-payment")
        )]
    );
    assert_eq!(
        workloads(&v),
        vec![(
            "prod-payment".into(),
            Some("prod-payment".into()),
            "pod-annotations".into()
        )]
    );
    assert_eq!(
        v["workloads"][0]["file"],
        format!("{FIX}/kustomize/base/deployment.yaml")
    );
}

#[test]
fn without_kubectl_kustomize_patches_are_patches_not_workloads() {
    let (code, v) = json(&[&fixture("kustomize")], bare_path());
    assert_eq!(code, 1);
    assert_eq!(
        findings(&v),
        vec![
            f(
                "not-scraped",
                "kustomize/base/deployment.yaml",
                10,
                Some("payment")
            ),
            f(
                "kustomize-not-rendered",
                "kustomize/overlays/prod/kustomization.yaml",
                1,
                None
            ),
        ]
    );
    assert_eq!(
        workloads(&v),
        vec![("payment".into(), Some("payment".into()), "none".into())]
    );
}

#[test]
fn a_helm_chart_without_helm_is_reported_once_and_nothing_checked_is_exit_1() {
    let (code, v) = json(&[&fixture("helm")], bare_path());
    assert_eq!(code, 1);
    assert_eq!(
        findings(&v),
        vec![f(
            "helm-chart-not-rendered",
            "helm/shop/Chart.yaml",
            1,
            None
        )]
    );
    assert_eq!(v["summary"]["workloads"], 0);
    let (code, out, _) = lint(&["--color", "never", &fixture("helm")], bare_path());
    assert_eq!(code, 1);
    assert!(out.contains("nothing was checked"), "{out}");
    for l in out.lines() {
        assert!(
            l.chars().count() <= 100,
            "line wider than the 100 columns: {l}"
        );
    }
    assert!(
        out.contains(&format!(
            "helm template shop {FIX}/helm/shop | msa-doctor lint -"
        )),
        "{out}"
    );
}

#[test]
fn a_helm_chart_is_rendered_with_helm_and_findings_point_at_the_template() {
    // The stand-in comes first; /usr/bin and /bin give it `cat`.
    let fake = format!(
        "{}/{FIX}/fake-helm:/usr/bin:/bin",
        std::env::current_dir().unwrap().display()
    );
    let (code, v) = json(&[&fixture("helm")], Some(fake));
    assert_eq!(code, 1);
    assert_eq!(
        findings(&v),
        vec![f(
            "scrape-path-mismatch",
            "helm/shop/templates/deployment.yaml",
            13,
            Some("shop-cart")
        )]
    );
}

#[test]
fn service_annotations_are_a_scrape_mechanism() {
    let (code, v) = json(&[&fixture("service-annotations")], bare_path());
    assert_eq!(code, 1);
    assert_eq!(
        findings(&v),
        vec![
            f(
                "scrape-port-undeclared",
                "service-annotations/app.yaml",
                31,
                Some("catalog")
            ),
            f(
                "scrape-path-mismatch",
                "service-annotations/app.yaml",
                68,
                Some("search")
            ),
        ]
    );
    assert_eq!(
        workloads(&v),
        vec![
            (
                "catalog".into(),
                Some("catalog".into()),
                "service-annotations".into()
            ),
            (
                "search".into(),
                Some("search".into()),
                "service-annotations".into()
            ),
        ]
    );
}

#[test]
fn a_service_monitor_with_a_split_endpoint_and_a_wrong_port_name() {
    let (code, v) = json(&[&fixture("servicemonitor")], bare_path());
    assert_eq!(code, 1);
    assert_eq!(
        findings(&v),
        vec![
            f(
                "monitor-port-unknown",
                "servicemonitor/inventory.yaml",
                47,
                None
            ),
            f(
                "scrape-path-mismatch",
                "servicemonitor/inventory.yaml",
                47,
                Some("inventory")
            ),
            f(
                "monitor-endpoint-incomplete",
                "servicemonitor/inventory.yaml",
                48,
                None
            ),
            f(
                "monitor-selects-nothing",
                "servicemonitor/inventory.yaml",
                56,
                None
            ),
        ]
    );
    assert_eq!(
        workloads(&v),
        vec![(
            "inventory".into(),
            Some("inventory".into()),
            "service-monitor".into()
        )]
    );
    let split = &v["findings"][2];
    assert!(
        split["message"]
            .as_str()
            .unwrap()
            .contains("split into two list items")
    );
    assert_eq!(split["fix"], "- port: http\n  path: /actuator/prometheus");
    assert!(
        v["findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("(its ports: http)")
    );
}

#[test]
fn an_app_serving_metrics_keeps_it_and_json_lists_and_gitignore_are_read() {
    let (code, v) = json(&[&fixture("metrics-app")], bare_path());
    assert_eq!(findings(&v), vec![], "{v:#}");
    assert_eq!(code, 0);
    assert_eq!(
        workloads(&v),
        vec![
            (
                "billing".into(),
                Some("billing".into()),
                "pod-annotations".into()
            ),
            (
                "gateway".into(),
                Some("gateway".into()),
                "pod-annotations".into()
            ),
        ]
    );
    // ignored/broken.yaml is in .gitignore: never read, so no yaml-syntax finding.
    assert_eq!(v["summary"]["files"], 6);
}

#[test]
fn duplicate_keys_and_syntax_errors_are_findings_and_the_rest_is_checked() {
    let (code, v) = json(&[&fixture("duplicate-keys")], bare_path());
    assert_eq!(code, 1);
    assert_eq!(
        findings(&v),
        vec![
            f("yaml-syntax", "duplicate-keys/broken.yaml", 6, None),
            f(
                "duplicate-key",
                "duplicate-keys/deploy.yaml",
                29,
                Some("notify")
            ),
        ]
    );
    assert_eq!(
        v["findings"][1]["message"],
        "key `resources` appears twice, lines 24 and 29; the second one wins"
    );
    assert_eq!(v["summary"]["checked"], 1);
}

#[test]
fn a_prometheus_configmap_with_static_jobs() {
    let (code, v) = json(&[&fixture("prometheus-configmap")], bare_path());
    assert_eq!(code, 1);
    assert_eq!(
        findings(&v),
        vec![
            f(
                "annotations-not-discovered",
                "prometheus-configmap/prometheus-config.yaml",
                11,
                Some("delivery-service")
            ),
            f(
                "scrape-port-mismatch",
                "prometheus-configmap/prometheus-config.yaml",
                15,
                Some("order-service")
            ),
            f(
                "scrape-path-mismatch",
                "prometheus-configmap/prometheus-config.yaml",
                16,
                Some("user-service")
            ),
        ]
    );
    assert_eq!(
        workloads(&v),
        vec![
            (
                "order-service".into(),
                Some("order-service".into()),
                "static-config".into()
            ),
            (
                "user-service".into(),
                Some("user-service".into()),
                "static-config".into()
            ),
            (
                "delivery-service".into(),
                Some("delivery-service".into()),
                "pod-annotations".into()
            ),
        ]
    );
    // The fix is a job that discovers pods and keeps the annotated ones.
    let fix = v["findings"][0]["fix"].as_str().unwrap();
    assert!(
        fix.contains("- role: pod")
            && fix.contains("__meta_kubernetes_pod_annotation_prometheus_io_scrape"),
        "{fix}"
    );
}

#[test]
fn unquoted_true_and_8080_are_not_strings() {
    let (code, v) = json(&[&fixture("unquoted")], bare_path());
    assert_eq!(code, 1);
    assert_eq!(
        findings(&v),
        vec![
            f(
                "annotation-not-a-string",
                "unquoted/review.yaml",
                17,
                Some("review")
            ),
            f(
                "annotation-not-a-string",
                "unquoted/review.yaml",
                19,
                Some("review")
            ),
        ]
    );
    assert_eq!(v["findings"][0]["fix"], "prometheus.io/scrape: \"true\"");
}

#[test]
fn standard_input_is_read_with_a_dash() {
    let text = std::fs::read_to_string(fixture("unquoted/review.yaml")).unwrap();
    let out = Command::cargo_bin("msa-doctor")
        .unwrap()
        .args(["lint", "-o", "json", "-"])
        .env("PATH", "/nonexistent")
        .write_stdin(text)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        findings(&v),
        vec![
            f("annotation-not-a-string", "-", 17, Some("review")),
            f("annotation-not-a-string", "-", 19, Some("review")),
        ]
    );
}

#[test]
fn sarif_is_valid_against_the_2_1_0_schema() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string("tests/schemas/sarif-schema-2.1.0.json").unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for name in [
        "course",
        "servicemonitor",
        "duplicate-keys",
        "metrics-app",
        "helm",
    ] {
        let (_, out, err) = lint(&["-o", "sarif", &fixture(name)], bare_path());
        let sarif: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
        let errors: Vec<String> = validator
            .iter_errors(&sarif)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
        let (_, v) = json(&[&fixture(name)], bare_path());
        let results = sarif["runs"][0]["results"].as_array().unwrap();
        assert_eq!(
            results.len(),
            v["findings"].as_array().unwrap().len(),
            "{name}"
        );
        for (r, f) in results.iter().zip(v["findings"].as_array().unwrap()) {
            assert_eq!(r["ruleId"], f["rule"]);
            assert_eq!(r["level"], f["severity"]);
            assert_eq!(
                r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
                f["file"]
            );
            assert_eq!(
                r["locations"][0]["physicalLocation"]["region"]["startLine"],
                f["line"]
            );
        }
    }
    // The schema really checks: a result without a message is refused.
    let bad = serde_json::json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}}, "results": [{"ruleId": "r"}]}]});
    assert!(!validator.is_valid(&bad));
}

#[test]
fn human_lines_are_file_line_severity_message_with_the_fix_under_them() {
    let (code, out, _) = lint(&["--color", "never", &fixture("course")], bare_path());
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!(
            "{FIX}/course/k8s/order/order-deploy.yml:19: error: no container declares a"
        )) || out.contains(&format!(
            "{FIX}/course/k8s/order/order-deploy.yml:19: error: no container"
        )),
        "{out}"
    );
    assert!(
        out.contains("    fix: implementation 'io.micrometer:micrometer-registry-prometheus'"),
        "{out}"
    );
    for l in out.lines() {
        assert!(
            l.chars().count() <= 100,
            "line wider than the 100 columns: {l}"
        );
    }
    assert!(
        out.ends_with(
            "msa-doctor lint: 11 files, 4 workloads, 3 checked: 5 errors, 1 warning, 2 notes\n"
        ),
        "{out}"
    );
}

#[test]
fn junit_and_markdown() {
    let (_, out, _) = lint(&["-o", "junit", &fixture("course")], bare_path());
    assert!(out.starts_with("<?xml"), "{out}");
    assert!(
        out.contains("name=\"user-service (Deployment user-deploy)\""),
        "{out}"
    );
    assert!(out.contains("type=\"actuator-missing\""), "{out}");
    assert_eq!(out.matches("<failure").count(), 3, "{out}");
    let (_, out, _) = lint(&["-o", "markdown", &fixture("servicemonitor")], bare_path());
    assert!(
        out.contains("| error | [`monitor-port-unknown`](docs/lint.md#monitor-port-unknown) |"),
        "{out}"
    );
    assert!(out.contains("### Fixes"), "{out}");
}

#[test]
fn usage_errors_are_exit_2_with_stdout_empty() {
    let (code, out, err) = lint(&["no/such/dir"], None);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(
        err.contains("no/such/dir") && err.contains("no such file or folder"),
        "{err}"
    );
    let (code, out, err) = lint(&["-o", "xml", &fixture("course")], None);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(err.contains("sarif"), "{err}");
}

#[test]
fn an_empty_folder_checks_nothing_and_is_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let (code, v) = json(&[dir.path().to_str().unwrap()], bare_path());
    assert_eq!(code, 1);
    assert_eq!(v["summary"]["checked"], 0);
}

fn deployment(name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n      annotations:\n        prometheus.io/scrape: \"true\"\n        prometheus.io/path: /actuator/prometheus\n        prometheus.io/port: \"8080\"\n    spec:\n      containers:\n        - name: app\n          image: shop/{name}:1\n          env:\n            - name: SPRING_PROFILES_ACTIVE\n              value: prod\n          ports:\n            - containerPort: 8080\n"
    )
}

#[cfg(unix)]
#[test]
fn a_symlink_loop_is_walked_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.yaml"), deployment("loopy")).unwrap();
    std::os::unix::fs::symlink(dir.path(), dir.path().join("again")).unwrap();
    let (code, v) = json(&[dir.path().to_str().unwrap()], bare_path());
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["summary"]["workloads"], 1);
}

#[test]
fn a_dump_of_1000_deployments_parses() {
    let dir = tempfile::tempdir().unwrap();
    let mut dump = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for i in 0..1000 {
        for l in deployment(&format!("svc-{i}")).lines() {
            dump.push_str(if l.starts_with("apiVersion") {
                "- "
            } else {
                "  "
            });
            dump.push_str(l);
            dump.push('\n');
        }
    }
    let file = dir.path().join("dump.yaml");
    std::fs::write(&file, dump).unwrap();
    let (code, v) = json(&[file.to_str().unwrap()], bare_path());
    assert_eq!(code, 0, "{:#}", v["findings"]);
    assert_eq!(v["summary"]["workloads"], 1000);
    assert_eq!(v["summary"]["checked"], 1000);
}

#[test]
fn every_rule_is_documented_with_an_example() {
    let docs = std::fs::read_to_string("docs/lint.md").unwrap();
    for (id, _, _) in msa_doctor::lint::rules::RULES {
        let heading = format!("### `{id}`");
        let at = docs
            .find(&heading)
            .unwrap_or_else(|| panic!("docs/lint.md has no {heading}"));
        let section = &docs[at + heading.len()..];
        let section = &section[..section.find("\n### ").unwrap_or(section.len())];
        assert!(section.contains("```"), "docs/lint.md: {id} has no example");
    }
    // And every rule a fixture produces is a documented one.
    for name in [
        "course",
        "kustomize",
        "helm",
        "service-annotations",
        "servicemonitor",
        "duplicate-keys",
        "prometheus-configmap",
        "unquoted",
    ] {
        let (_, v) = json(&[&fixture(name)], bare_path());
        for x in findings(&v) {
            assert!(
                msa_doctor::lint::rules::RULES.iter().any(|r| r.0 == x.0),
                "{} is not in RULES",
                x.0
            );
        }
    }
    assert!(Path::new("docs/lint.md").exists());
}
