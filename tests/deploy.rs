//! deploy/ as Kubernetes would take it, and against the code it deploys:
//! - every deploy/*.yaml document is a valid object of its kind (k8s-openapi types, with no
//!   field lost on the way: a misspelt field fails);
//! - the ClusterRole in deploy/rbac.yaml grants exactly the resources the code reads (every
//!   `kube::Api<T>` and dynamic resource in src/, both ways) and only read verbs;
//! - every container's `args` is a command line msa-doctor itself accepts;
//! - the PrometheusRule passes `promtool check rules`, and it and the Grafana dashboard use
//!   only the metrics msa-doctor exports;
//! - the krew manifest is complete and fill-checksums.sh fills it in.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Node, Pod, PodSpec, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every document of every deploy/*.yaml, with its file.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("deploy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", f.display()));
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        for d in docs.into_iter().filter(|d| !d.is_null()) {
            out.push((name.clone(), d));
        }
    }
    out
}

/// Deserializes as `T` and back: the object must come out as it went in, so an unknown or
/// misspelt field (which serde would drop) is caught.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(file: &str, doc: &Value) -> T {
    let t: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{file}: not a valid {}: {e}", doc["kind"]));
    let back = serde_json::to_value(&t).unwrap();
    assert_eq!(
        &back, doc,
        "{file}: {} {} lost fields on the way through k8s-openapi (a misspelt field?)",
        doc["kind"], doc["metadata"]["name"]
    );
    t
}

fn pod_specs() -> Vec<(String, PodSpec)> {
    let mut out = Vec::new();
    for (file, d) in documents() {
        let spec = match d["kind"].as_str().unwrap() {
            "Job" => typed::<Job>(&file, &d).spec.and_then(|s| s.template.spec),
            "CronJob" => typed::<CronJob>(&file, &d)
                .spec
                .job_template
                .spec
                .and_then(|s| s.template.spec),
            "Deployment" => typed::<Deployment>(&file, &d).spec.template.spec,
            _ => continue,
        };
        out.push((file, spec.expect("a pod spec")));
    }
    out
}

#[test]
fn every_manifest_is_a_valid_object_of_its_kind() {
    let mut kinds = BTreeSet::new();
    for (file, d) in documents() {
        let kind = d["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no kind"));
        kinds.insert(kind.to_string());
        assert!(
            d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| !n.is_empty()),
            "{file}: {kind} has no name"
        );
        match kind {
            "ServiceAccount" => {
                typed::<ServiceAccount>(&file, &d);
            }
            "ClusterRole" => {
                typed::<ClusterRole>(&file, &d);
            }
            "ClusterRoleBinding" => {
                typed::<ClusterRoleBinding>(&file, &d);
            }
            "Role" => {
                typed::<Role>(&file, &d);
            }
            "RoleBinding" => {
                typed::<RoleBinding>(&file, &d);
            }
            "Job" => {
                typed::<Job>(&file, &d);
            }
            "CronJob" => {
                typed::<CronJob>(&file, &d);
            }
            "Deployment" => {
                typed::<Deployment>(&file, &d);
            }
            "Service" => {
                typed::<Service>(&file, &d);
            }
            // The Prometheus operator's kinds have no k8s-openapi type: their shape here.
            "ServiceMonitor" => {
                assert_eq!(d["apiVersion"], "monitoring.coreos.com/v1", "{file}");
                assert!(d["spec"]["selector"]["matchLabels"].is_object(), "{file}");
                let eps = d["spec"]["endpoints"].as_array().expect("endpoints");
                assert!(eps.iter().all(|e| e["port"].is_string()), "{file}");
            }
            "PrometheusRule" => {
                assert_eq!(d["apiVersion"], "monitoring.coreos.com/v1", "{file}");
                assert!(d["spec"]["groups"].is_array(), "{file}");
            }
            "Plugin" => assert_eq!(
                d["apiVersion"], "krew.googlecontainertools.github.com/v1alpha2",
                "{file}"
            ),
            other => panic!("{file}: no test knows the kind {other}"),
        }
    }
    for k in [
        "ClusterRole",
        "Job",
        "CronJob",
        "Deployment",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(kinds.contains(k), "deploy/ has no {k}: {kinds:?}");
    }
    // The ServiceMonitor's port is the Service's, which is the container's.
    let docs = documents();
    let service = docs.iter().find(|(_, d)| d["kind"] == "Service").unwrap();
    let sm = docs
        .iter()
        .find(|(_, d)| d["kind"] == "ServiceMonitor")
        .unwrap();
    assert_eq!(
        sm.1["spec"]["endpoints"][0]["port"],
        service.1["spec"]["ports"][0]["name"]
    );
    assert_eq!(
        sm.1["spec"]["selector"]["matchLabels"],
        service.1["spec"]["selector"]
    );
}

#[test]
fn workloads_run_as_the_service_account_non_root_with_arguments_msa_doctor_accepts() {
    let specs = pod_specs();
    assert_eq!(
        specs.len(),
        3,
        "the Job, the CronJob and serve's Deployment"
    );
    let version = env!("CARGO_PKG_VERSION");
    for (file, spec) in specs {
        assert_eq!(
            spec.service_account_name.as_deref(),
            Some("msa-doctor"),
            "{file}"
        );
        let psc = spec
            .security_context
            .clone()
            .expect("a pod securityContext");
        assert_eq!(psc.run_as_non_root, Some(true), "{file}");
        assert!(psc.run_as_user.is_some_and(|u| u != 0), "{file}");
        for c in &spec.containers {
            let image = c.image.as_deref().unwrap();
            assert!(
                image.ends_with(&format!(":{version}")),
                "{file}: {image} is not {version}"
            );
            let sc = c
                .security_context
                .as_ref()
                .expect("a container securityContext");
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{file}");
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{file}");
            let mut argv = vec!["msa-doctor".to_string()];
            argv.extend(c.args.clone().unwrap_or_default());
            if let Err(e) = msa_doctor::cli::try_parse_from(&argv) {
                panic!("{file}: msa-doctor refuses {argv:?}: {e}");
            }
            // The password comes from a Secret, never from a literal value.
            for env in c.env.iter().flatten() {
                if env.name.contains("PASSWORD") || env.name.contains("TOKEN") {
                    assert!(env.value.is_none(), "{file}: {} is a literal", env.name);
                    assert!(
                        env.value_from
                            .as_ref()
                            .and_then(|v| v.secret_key_ref.as_ref())
                            .is_some(),
                        "{file}: {} is not from a Secret",
                        env.name
                    );
                }
            }
        }
    }
}

/// `(group, plural)` of a k8s-openapi type named in `Api<T>`.
fn resource_of(name: &str) -> (&'static str, &'static str) {
    fn r<T: k8s_openapi::Resource>() -> (&'static str, &'static str) {
        (T::GROUP, T::URL_PATH_SEGMENT)
    }
    match name {
        "Pod" => r::<Pod>(),
        "Service" => r::<Service>(),
        "Endpoints" => r::<Endpoints>(),
        "Namespace" => r::<Namespace>(),
        "Secret" => r::<Secret>(),
        "ConfigMap" => r::<ConfigMap>(),
        "Node" => r::<Node>(),
        "Deployment" => r::<Deployment>(),
        "StatefulSet" => r::<StatefulSet>(),
        "DaemonSet" => r::<DaemonSet>(),
        "ReplicaSet" => r::<ReplicaSet>(),
        "Job" => r::<Job>(),
        "CronJob" => r::<CronJob>(),
        other => panic!("Api<{other}> in src/: add it to resource_of() and to deploy/rbac.yaml"),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Every `(group, plural)` the code reads from the Kubernetes API. The practice stack
/// (src/sandbox/) serves that API; it does not read a real one.
fn resources_in_code() -> BTreeSet<(String, String)> {
    let typed =
        regex::Regex::new(r"Api<\s*(?:[A-Za-z_][A-Za-z0-9_]*::)*([A-Z][A-Za-z0-9]*)\s*>").unwrap();
    let gvk = regex::Regex::new(r#"GroupVersionKind::gvk\(\s*"([^"]*)""#).unwrap();
    let plural_arg =
        regex::Regex::new(r#"from_gvk_with_plural\([^,]+,\s*"([a-z]+)"\s*\)"#).unwrap();
    let kind_plural = regex::Regex::new(r#"\(\s*"[A-Z][A-Za-z]*"\s*,\s*"([a-z]+)"\s*\)"#).unwrap();
    // The client layer's typed helpers (`list_in::<Pod>`, `get_in::<Service>`, ...) and
    // its memoised lists (`kube_memo.deployments(...)`) read kinds too.
    let helper = regex::Regex::new(
        r"\b(?:get_in|get_cluster|list_in|list_all)::<\s*(?:[A-Za-z_][A-Za-z0-9_]*::)*([A-Z][A-Za-z0-9]*)\s*>",
    )
    .unwrap();
    let memo = regex::Regex::new(r"kube_memo\s*\.\s*(deployments|statefulsets|pods|services)\s*\(")
        .unwrap();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut out = BTreeSet::new();
    for f in files {
        if f.components().any(|c| c.as_os_str() == "sandbox") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for c in memo.captures_iter(&text) {
            let name = match &c[1] {
                "deployments" => "Deployment",
                "statefulsets" => "StatefulSet",
                "pods" => "Pod",
                _ => "Service",
            };
            let (g, p) = resource_of(name);
            out.insert((g.to_string(), p.to_string()));
        }
        for c in typed
            .captures_iter(&text)
            .chain(helper.captures_iter(&text))
        {
            let name = &c[1];
            // `Api<K>`: the client layer's generic helpers, counted where they are called.
            if name == "DynamicObject" || name.len() == 1 {
                continue;
            }
            let (g, p) = resource_of(name);
            out.insert((g.to_string(), p.to_string()));
        }
        let groups: BTreeSet<&str> = gvk
            .captures_iter(&text)
            .map(|c| c.get(1).unwrap().as_str())
            .collect();
        if groups.is_empty() {
            continue;
        }
        assert_eq!(
            groups.len(),
            1,
            "{}: several API groups of dynamic objects; teach this test which plural is whose",
            f.display()
        );
        let group = groups.into_iter().next().unwrap();
        for c in plural_arg
            .captures_iter(&text)
            .chain(kind_plural.captures_iter(&text))
        {
            out.insert((group.to_string(), c[1].to_string()));
        }
    }
    out
}

#[test]
fn the_cluster_role_grants_exactly_what_the_code_reads() {
    let used = resources_in_code();
    // The scan finds what it must: a guard against a regex that matches nothing.
    for must in [
        ("", "services"),
        ("apps", "deployments"),
        ("monitoring.coreos.com", "servicemonitors"),
    ] {
        assert!(
            used.contains(&(must.0.to_string(), must.1.to_string())),
            "{must:?} not found in src/: {used:?}"
        );
    }
    let (file, doc) = documents()
        .into_iter()
        .find(|(_, d)| d["kind"] == "ClusterRole")
        .unwrap();
    let role: ClusterRole = typed(&file, &doc);
    let mut granted = BTreeSet::new();
    for rule in role.rules.unwrap_or_default() {
        for v in &rule.verbs {
            assert!(
                ["get", "list", "watch"].contains(&v.as_str()),
                "{file}: verb {v} is not read-only"
            );
        }
        assert!(
            rule.verbs.iter().any(|v| v == "list") && rule.verbs.iter().any(|v| v == "get"),
            "{file}: the code gets and lists"
        );
        assert!(
            rule.resource_names.is_none(),
            "{file}: the code lists, which resourceNames cannot grant"
        );
        for g in rule.api_groups.iter().flatten() {
            for r in rule.resources.iter().flatten() {
                assert!(r != "*" && g != "*", "{file}: no wildcard");
                granted.insert((g.clone(), r.clone()));
            }
        }
    }
    // Deliberately not granted, and said so in the role's annotation.
    let not_granted: BTreeSet<(String, String)> = role
        .metadata
        .annotations
        .unwrap_or_default()
        .get("msa-doctor.dev/not-granted")
        .map(|s| {
            s.split(',')
                .map(|r| (String::new(), r.trim().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let needed: BTreeSet<_> = used.difference(&not_granted).cloned().collect();
    let missing: Vec<_> = needed.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&needed).collect();
    assert!(
        missing.is_empty(),
        "the code reads {missing:?}, which {file} does not grant: add them, or list them in msa-doctor.dev/not-granted with why"
    );
    assert!(
        unused.is_empty(),
        "{file} grants {unused:?}, which no code reads: remove them"
    );
    for ng in &not_granted {
        assert!(
            used.contains(ng),
            "{file}: {ng:?} is listed as not granted but no code reads it"
        );
    }
}

/// The metric names a PromQL expression selects.
fn metric_names(expr: &str) -> Vec<String> {
    let re = regex::Regex::new(r"\b(msa_doctor_[a-z_]+|up)\b").unwrap();
    re.captures_iter(expr).map(|c| c[1].to_string()).collect()
}

const EXPORTED: [&str; 5] = [
    "msa_doctor_check_status",
    "msa_doctor_check_duration_seconds",
    "msa_doctor_run_duration_seconds",
    "msa_doctor_last_run_timestamp_seconds",
    "msa_doctor_build_info",
];

#[test]
fn the_alert_rules_pass_promtool_and_use_exported_metrics() {
    let (file, doc) = documents()
        .into_iter()
        .find(|(_, d)| d["kind"] == "PrometheusRule")
        .unwrap();
    let groups = doc["spec"].clone();
    for g in groups["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let expr = r["expr"].as_str().unwrap();
            promql_parser::parser::parse(expr).unwrap_or_else(|e| panic!("{file}: {expr}: {e}"));
            let names = metric_names(expr);
            assert!(
                !names.is_empty(),
                "{file}: {expr} reads no msa-doctor metric"
            );
            for n in names {
                assert!(
                    EXPORTED.contains(&n.as_str()),
                    "{file}: {n} is not exported"
                );
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, serde_json::to_string(&groups).unwrap()).unwrap();
    let out = Command::new("/usr/bin/promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .expect("promtool (apt-get install -y prometheus)");
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 rules found"));
}

#[test]
fn the_dashboard_queries_parse_and_use_exported_metrics() {
    let text = std::fs::read_to_string(root().join("deploy/grafana-dashboard.json")).unwrap();
    let d: Value = serde_json::from_str(&text).unwrap();
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 4);
    let mut seen = BTreeSet::new();
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap().replace("$job", ".*");
            promql_parser::parser::parse(&expr)
                .unwrap_or_else(|e| panic!("panel {}: {expr}: {e}", p["title"]));
            for n in metric_names(&expr) {
                assert!(EXPORTED.contains(&n.as_str()), "panel {}: {n}", p["title"]);
                seen.insert(n);
            }
        }
    }
    assert!(seen.contains("msa_doctor_check_status"));
}

#[cfg(unix)]
#[test]
fn krew_manifest_and_its_checksums() {
    let manifest = root().join("deploy/krew/msa-doctor.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let d: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(
        d["spec"]["version"],
        format!("v{}", env!("CARGO_PKG_VERSION"))
    );
    let platforms = d["spec"]["platforms"].as_array().unwrap();
    let mut oses = BTreeSet::new();
    let mut archives = Vec::new();
    for p in platforms {
        oses.insert(
            p["selector"]["matchLabels"]["os"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        let bin = p["bin"].as_str().unwrap();
        assert!(
            bin.starts_with("kubectl-msa_doctor"),
            "{bin}: krew's name for `kubectl msa-doctor`"
        );
        let uri = p["uri"].as_str().unwrap();
        let archive = uri.rsplit('/').next().unwrap().to_string();
        let stem = archive.trim_end_matches(".tar.gz").trim_end_matches(".zip");
        assert!(
            p["files"][0]["from"].as_str().unwrap().starts_with(stem),
            "{uri}"
        );
        assert_eq!(p["files"][0]["to"].as_str().unwrap(), bin);
        archives.push(archive);
    }
    assert_eq!(
        oses,
        ["darwin", "linux", "windows"].map(String::from).into()
    );

    // fill-checksums.sh over fake archives writes each one's sha256 after its uri.
    let dist = tempfile::tempdir().unwrap();
    for (i, a) in archives.iter().enumerate() {
        std::fs::write(dist.path().join(a), format!("archive {i}")).unwrap();
    }
    let out_file = dist.path().join("filled.yaml");
    let script = root().join("deploy/krew/fill-checksums.sh");
    let o = Command::new("bash")
        .arg(&script)
        .arg(dist.path())
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let filled: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    for (p, a) in filled["spec"]["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&archives)
    {
        let sum = Command::new("sha256sum")
            .arg(dist.path().join(a))
            .output()
            .unwrap();
        let want = String::from_utf8_lossy(&sum.stdout)
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(p["sha256"].as_str().unwrap(), want, "{a}");
    }
    // A missing archive is an error naming it, and nothing is written.
    std::fs::remove_file(dist.path().join(&archives[0])).unwrap();
    let other = dist.path().join("other.yaml");
    let o = Command::new("bash")
        .arg(&script)
        .arg(dist.path())
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&archives[0]));
    assert!(!other.exists());
    // The committed manifest is untouched by the test.
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), text);
}

#[test]
fn the_image_runs_as_a_non_root_user_on_a_minimal_base() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let last_from = text.lines().rfind(|l| l.starts_with("FROM ")).unwrap();
    assert!(last_from.contains("distroless"), "{last_from}");
    let user = text.lines().rfind(|l| l.starts_with("USER ")).unwrap();
    assert!(!user.contains(" 0") && !user.contains("root"), "{user}");
    // What the build copies is what include_str! needs.
    for dir in ["checks", "docs", "src"] {
        assert!(text.contains(&format!("COPY {dir} {dir}")), "{dir}");
    }
}

#[test]
fn the_release_matrix_builds_every_archive_krew_names() {
    let wf = std::fs::read_to_string(root().join(".github/workflows/release.yml")).unwrap();
    let wf_doc: Value = serde_saphyr::from_str(&wf).unwrap();
    let targets: BTreeSet<String> = wf_doc["jobs"]["build"]["strategy"]["matrix"]["include"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target"].as_str().unwrap().to_string())
        .collect();
    let krew: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("deploy/krew/msa-doctor.yaml")).unwrap(),
    )
    .unwrap();
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    let mut named = BTreeSet::new();
    for p in krew["spec"]["platforms"].as_array().unwrap() {
        let archive = p["uri"].as_str().unwrap().rsplit('/').next().unwrap();
        let rest = archive
            .strip_prefix(&format!("msa-doctor-{version}-"))
            .unwrap_or_else(|| panic!("{archive} is not msa-doctor-{version}-<target>"));
        let target = rest.trim_end_matches(".tar.gz").trim_end_matches(".zip");
        assert_eq!(
            rest.ends_with(".zip"),
            target.contains("windows"),
            "{archive}"
        );
        named.insert(target.to_string());
    }
    assert_eq!(targets, named, "release.yml builds what krew downloads");
    assert!(wf.contains("msa-doctor-${GITHUB_REF_NAME}-${{ matrix.target }}"));
}
