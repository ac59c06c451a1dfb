//! The emulated cluster from the outside: kubectl and kube-rs against its API server, watches,
//! the HTTP SD bridge, the pods' scrape endpoints under each fault, two clusters side by side,
//! and nothing left listening after shutdown.
// The practice stack runs Prometheus and manages process groups: Unix only.
#![cfg(all(unix, feature = "sandbox"))]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use msa_doctor::sandbox::cluster::{ClusterOptions, ClusterSim};
use msa_doctor::sandbox::faults::{Fault, FaultSet};
use serde_json::Value;

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn start(faults: &[Fault]) -> ClusterSim {
    init();
    ClusterSim::start(ClusterOptions::new(FaultSet::of(faults), 3000))
        .await
        .expect("the cluster starts")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .expect("client")
}

async fn kube_client(sim: &ClusterSim) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(&sim.kubeconfig_path).expect("kubeconfig reads");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("kubeconfig loads");
    assert_eq!(cfg.default_namespace, "metacoding");
    kube::Client::try_from(cfg).expect("client")
}

async fn kubectl(sim: &ClusterSim, home: &Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("/usr/bin/kubectl")
            .arg("--kubeconfig")
            .arg(&sim.kubeconfig_path)
            .args(args)
            .env("HOME", home)
            .env_remove("KUBECONFIG")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("kubectl finishes in time")
    .expect("kubectl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn get_json(url: &str) -> Value {
    http()
        .get(url)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn kubectl_reads_deployments_and_pods() {
    let sim = start(&[]).await;
    let home = tempfile::tempdir().expect("home");
    let annotation = r"{.spec.template.metadata.annotations.prometheus\.io/scrape}";
    let jsonpath = format!(
        "jsonpath={{range .items[*]}}{{.metadata.name}} {annotation} {{.status.readyReplicas}}{{\"\\n\"}}{{end}}"
    );
    let (ok, out, err) = kubectl(
        &sim,
        home.path(),
        &["get", "deploy", "-n", "metacoding", "-o", &jsonpath],
    )
    .await;
    assert!(ok, "kubectl failed: {err}");
    let lines: Vec<&str> = out.lines().collect();
    for svc in [
        "user-service",
        "order-service",
        "delivery-service",
        "orchestrator-service",
    ] {
        assert!(
            lines.contains(&format!("{svc} true 1").as_str()),
            "{svc} missing in:\n{out}"
        );
    }
    assert!(
        lines.contains(&"kafka  1"),
        "the broker is not annotated:\n{out}"
    );
    assert!(lines.contains(&"kafka-exporter true 1"), "{out}");
    assert!(lines.iter().any(|l| l.starts_with("mysql ")), "{out}");

    // Short names from discovery, the pods' own annotations, and -o yaml.
    let (ok, out, err) = kubectl(
        &sim,
        home.path(),
        &[
            "get",
            "po",
            "-l",
            "app=order-service",
            "-o",
            r"jsonpath={.items[0].metadata.name} {.items[0].metadata.annotations.prometheus\.io/path} {.items[0].status.podIP}",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let p = sim.pod_ip_prefix;
    assert!(out.starts_with("order-service-"), "{out}");
    assert!(
        out.ends_with(&format!(
            " /actuator/prometheus {}.{}.{}.2",
            p[0], p[1], p[2]
        )),
        "{out}"
    );
    let (ok, out, err) = kubectl(
        &sim,
        home.path(),
        &["get", "deploy", "-n", "metacoding", "-o", "yaml"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("prometheus.io/scrape: \"true\""), "{out}");
    // The default (table) output and another namespace.
    let (ok, out, err) = kubectl(&sim, home.path(), &["get", "pods", "-n", "monitoring"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("NAME") && out.contains("grafana-") && out.contains("Running"),
        "{out}"
    );
    // A missing object is a NotFound Status.
    let (ok, _, err) = kubectl(&sim, home.path(), &["get", "deploy", "payment-service"]).await;
    assert!(!ok);
    assert!(
        err.contains("NotFound") && err.contains("payment-service"),
        "{err}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn kube_rs_sees_an_annotation_on_the_deployment_only() {
    let sim = start(&[Fault::AnnotationOnDeployment]).await;
    let client = kube_client(&sim).await;
    let deploys: Api<Deployment> = Api::default_namespaced(client.clone());
    let list = deploys
        .list(&ListParams::default())
        .await
        .expect("deployments list");
    let order = list
        .items
        .iter()
        .find(|d| d.metadata.name.as_deref() == Some("order-service"))
        .expect("order-service");
    let on_deploy = order.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        on_deploy.get("prometheus.io/scrape").map(String::as_str),
        Some("true")
    );
    let tmpl = order
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    assert!(tmpl.is_empty(), "template annotations: {tmpl:?}");

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let lp = ListParams::default().labels("app=order-service");
    let order_pods = pods.list(&lp).await.expect("pods list");
    assert_eq!(order_pods.items.len(), 1);
    assert!(order_pods.items[0].metadata.annotations.is_none());
    let user_pods = pods
        .list(&ListParams::default().labels("app=user-service"))
        .await
        .expect("list");
    let ann = user_pods.items[0]
        .metadata
        .annotations
        .clone()
        .unwrap_or_default();
    assert_eq!(
        ann.get("prometheus.io/scrape").map(String::as_str),
        Some("true")
    );
    let status = user_pods.items[0].status.clone().unwrap_or_default();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert!(status.container_statuses.is_some_and(|c| c[0].ready));

    // All namespaces, cluster-scoped objects, and a NotFound.
    let all: Api<Pod> = Api::all(client.clone());
    let n = all
        .list(&ListParams::default())
        .await
        .expect("all pods")
        .items
        .len();
    assert!(n >= 9, "{n} pods");
    let ns: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = ns
        .list(&ListParams::default())
        .await
        .expect("namespaces")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(names, ["metacoding", "monitoring"]);
    match deploys.get("payment-service").await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 404),
        other => panic!("expected a 404 Status, got {other:?}"),
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn kube_forbidden_denies_deployments_only() {
    let sim = start(&[Fault::KubeForbidden]).await;
    let client = kube_client(&sim).await;
    let deploys: Api<Deployment> = Api::default_namespaced(client.clone());
    match deploys.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            assert_eq!(s.reason, "Forbidden");
            assert!(s.message.contains(
                r#"deployments.apps is forbidden: User "system:serviceaccount:default:msa-doctor" cannot list resource "deployments" in API group "apps" in the namespace "metacoding""#
            ), "{}", s.message);
        }
        other => panic!("expected 403, got {other:?}"),
    }
    let all: Api<Deployment> = Api::all(client.clone());
    match all.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            assert!(s.message.ends_with("at the cluster scope"), "{}", s.message);
        }
        other => panic!("expected 403, got {other:?}"),
    }
    match deploys.get("order-service").await {
        Err(kube::Error::Api(s)) => assert!(
            s.message
                .starts_with(r#"deployments.apps "order-service" is forbidden"#)
        ),
        other => panic!("expected 403, got {other:?}"),
    }
    let pods: Api<Pod> = Api::default_namespaced(client);
    assert!(
        !pods
            .list(&ListParams::default())
            .await
            .expect("pods are allowed")
            .items
            .is_empty()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn watches_stream_changes_and_expire_after_compaction() {
    let sim = start(&[]).await;
    let client = kube_client(&sim).await;
    let pods: Api<Pod> = Api::default_namespaced(client);

    // From "0": the current pods as ADDED.
    let wp = WatchParams::default().timeout(2);
    let events: Vec<WatchEvent<Pod>> = pods
        .watch(&wp, "0")
        .await
        .expect("watch")
        .try_collect()
        .await
        .expect("events");
    let added = events
        .iter()
        .filter(|e| matches!(e, WatchEvent::Added(_)))
        .count();
    assert!(added >= 7, "{added} ADDED events");

    // From the list's resourceVersion: a change arrives as MODIFIED.
    let list = pods.list(&ListParams::default()).await.expect("list");
    let rv = list.metadata.resource_version.clone().expect("list rv");
    let mut stream = pods
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .expect("watch")
        .boxed();
    sim.annotate_pod("user-service", "prometheus.io/scrape", Some("false"))
        .expect("user-service has a pod");
    let ev = tokio::time::timeout(Duration::from_secs(3), stream.next())
        .await
        .expect("an event in time")
        .expect("stream open")
        .expect("event decodes");
    match ev {
        WatchEvent::Modified(p) => {
            let ann = p.metadata.annotations.unwrap_or_default();
            assert_eq!(
                ann.get("prometheus.io/scrape").map(String::as_str),
                Some("false")
            );
        }
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    drop(stream);

    // After compaction the old version is gone (410 in-stream); the new list version is not.
    sim.compact();
    let events: Vec<WatchEvent<Pod>> = pods
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .expect("watch")
        .try_collect()
        .await
        .expect("events");
    match events.as_slice() {
        [WatchEvent::Error(s)] => {
            assert_eq!(s.code, 410);
            assert_eq!(s.reason, "Expired");
        }
        other => panic!("expected one 410 ERROR, got {other:?}"),
    }
    let fresh = pods.list(&ListParams::default()).await.expect("list");
    let new_rv = fresh.metadata.resource_version.expect("rv");
    let started = Instant::now();
    let events: Vec<WatchEvent<Pod>> = pods
        .watch(&WatchParams::default().timeout(1), &new_rv)
        .await
        .expect("watch")
        .try_collect()
        .await
        .expect("events");
    assert!(
        events.iter().all(|e| !matches!(e, WatchEvent::Error(_))),
        "{events:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the watch ends at timeoutSeconds"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn raw_watch_is_chunked_json_lines() {
    let sim = start(&[]).await;
    let url = format!(
        "{}/apis/apps/v1/namespaces/metacoding/deployments?watch=true&resourceVersion=0&timeoutSeconds=1&labelSelector=app%3Dorder-service",
        sim.kube_url
    );
    let resp = http().get(&url).send().await.expect("watch answers");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("chunked")
    );
    let body = resp.text().await.expect("body ends at timeoutSeconds");
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 1, "{body}");
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[0]["object"]["kind"], "Deployment");
    assert_eq!(lines[0]["object"]["apiVersion"], "apps/v1");
    sim.shutdown().await;
}

#[tokio::test]
async fn discovery_and_status_bodies() {
    let sim = start(&[]).await;
    let apis = get_json(&format!("{}/apis", sim.kube_url)).await;
    let groups: Vec<&str> = apis["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(groups, ["apps"], "no monitoring.coreos.com");
    let resp = http()
        .get(format!("{}/apis/monitoring.coreos.com/v1", sim.kube_url))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), 404);
    let status: Value = resp.json().await.expect("status");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "NotFound");
    let core = get_json(&format!("{}/api/v1", sim.kube_url)).await;
    let pods = core["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "pods")
        .cloned()
        .expect("pods resource");
    assert_eq!(pods["shortNames"], serde_json::json!(["po"]));
    let list = get_json(&format!(
        "{}/api/v1/namespaces/metacoding/pods",
        sim.kube_url
    ))
    .await;
    assert_eq!(list["kind"], "PodList");
    assert!(list["items"][0].get("kind").is_none(), "items omit kind");
    assert!(list["metadata"]["resourceVersion"].as_str().is_some());
    sim.shutdown().await;
}

/// The SD target of a Deployment's pod on its first declared port.
fn sd_target<'a>(sd: &'a Value, app: &str) -> &'a serde_json::Map<String, Value> {
    sd.as_array()
        .expect("array")
        .iter()
        .find(|g| g["labels"]["__meta_kubernetes_pod_label_app"] == app)
        .and_then(|g| g["labels"].as_object())
        .unwrap_or_else(|| panic!("no target for {app}: {sd:#}"))
}

#[tokio::test]
async fn http_sd_has_the_pod_role_labels() {
    let sim = start(&[Fault::NoAnnotation, Fault::LabelCollision]).await;
    let sd = get_json(&sim.sd_pods_url).await;
    let p = sim.pod_ip_prefix;
    let user = sd
        .as_array()
        .expect("array")
        .iter()
        .find(|g| g["labels"]["__meta_kubernetes_pod_label_app"] == "user-service")
        .expect("user-service");
    assert_eq!(
        user["targets"],
        serde_json::json!([format!("{}.{}.{}.1:8080", p[0], p[1], p[2])])
    );
    let l = sd_target(&sd, "user-service");
    let get = |k: &str| l.get(k).and_then(Value::as_str).unwrap_or("<absent>");
    assert_eq!(get("__meta_kubernetes_namespace"), "metacoding");
    assert_eq!(
        get("__meta_kubernetes_pod_annotation_prometheus_io_scrape"),
        "true"
    );
    assert_eq!(
        get("__meta_kubernetes_pod_annotationpresent_prometheus_io_scrape"),
        "true"
    );
    assert_eq!(
        get("__meta_kubernetes_pod_annotation_prometheus_io_path"),
        "/actuator/prometheus"
    );
    assert_eq!(get("__meta_kubernetes_pod_label_application"), "metacoding");
    assert_eq!(get("__meta_kubernetes_pod_container_port_number"), "8080");
    assert_eq!(get("__meta_kubernetes_pod_container_port_name"), "http");
    assert_eq!(get("__meta_kubernetes_pod_container_port_protocol"), "TCP");
    assert_eq!(get("__meta_kubernetes_pod_container_init"), "false");
    assert_eq!(
        get("__meta_kubernetes_pod_container_image"),
        "metacoding/user-service:1.0"
    );
    assert_eq!(get("__meta_kubernetes_pod_ready"), "true");
    assert_eq!(get("__meta_kubernetes_pod_phase"), "Running");
    assert_eq!(get("__meta_kubernetes_pod_controller_kind"), "ReplicaSet");
    assert!(get("__meta_kubernetes_pod_controller_name").starts_with("user-service-"));
    assert!(
        get("__meta_kubernetes_pod_name").starts_with(get("__meta_kubernetes_pod_controller_name"))
    );
    assert_eq!(get("__meta_kubernetes_pod_node_name"), "node-1");
    assert_eq!(
        get("__meta_kubernetes_pod_host_ip"),
        sim.node_ip().to_string()
    );
    assert_ne!(get("__meta_kubernetes_pod_uid"), "<absent>");
    assert_eq!(
        get("__meta_kubernetes_pod_labelpresent_pod_template_hash"),
        "true"
    );

    // no-annotation: order-service's pod is discovered but has no scrape annotation.
    let order = sd_target(&sd, "order-service");
    assert!(!order.contains_key("__meta_kubernetes_pod_annotation_prometheus_io_scrape"));
    assert_eq!(
        order
            .get("__meta_kubernetes_pod_annotation_prometheus_io_port")
            .and_then(Value::as_str),
        Some("8080")
    );
    // Every namespace is listed; a container without ports is a port-less target.
    let sidecar = sd
        .as_array()
        .expect("array")
        .iter()
        .find(|g| g["labels"]["__meta_kubernetes_pod_container_name"] == "grafana-sc-dashboard")
        .expect("grafana's sidecar");
    assert_eq!(
        sidecar["labels"]["__meta_kubernetes_namespace"],
        "monitoring"
    );
    let target = sidecar["targets"][0].as_str().expect("target");
    assert!(!target.contains(':'), "port-less target: {target}");
    assert!(
        sidecar["labels"]
            .get("__meta_kubernetes_pod_container_port_number")
            .is_none()
    );

    let cadvisor = get_json(&format!("{}/_sd/cadvisor", sim.kube_url)).await;
    assert_eq!(cadvisor[0]["targets"][0], sim.cadvisor_targets[0].as_str());
    sim.shutdown().await;
}

fn addr(sim: &ClusterSim, deployment: &str) -> SocketAddr {
    sim.pod_address(deployment)
        .unwrap_or_else(|| panic!("{deployment} has a pod"))
}

#[tokio::test]
async fn scrape_endpoints_answer_as_the_faults_say() {
    let sim = start(&[Fault::WrongPath, Fault::Scrape401, Fault::NothingListening]).await;
    let c = http();
    // wrong-path: /metrics is Spring Boot's 404; the real path works.
    let delivery = addr(&sim, "delivery-service");
    let r = c
        .get(format!("http://{delivery}/metrics"))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.expect("whitelabel json");
    assert_eq!(body["error"], "Not Found");
    assert_eq!(body["path"], "/metrics");
    let r = c
        .get(format!("http://{delivery}/actuator/prometheus"))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/plain;version=0.0.4;charset=utf-8")
    );
    let text = r.text().await.expect("body");
    assert!(
        text.contains(r#"jvm_memory_used_bytes{application="delivery-service",area="heap""#),
        "{text}"
    );
    assert!(
        text.contains(r#"status="404",uri="/**"}"#),
        "the /metrics 404 is recorded"
    );

    // scrape-401: Spring Security's Basic challenge on /actuator/**.
    let user = addr(&sim, "user-service");
    let r = c
        .get(format!("http://{user}/actuator/prometheus"))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Basic realm=\"Realm\"")
    );

    // nothing-listening: the pod exists, its port refuses.
    let orch = addr(&sim, "orchestrator-service");
    let err = tokio::net::TcpStream::connect(orch)
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);

    // The exporter and cAdvisor.
    let exporter = addr(&sim, "kafka-exporter");
    let text = c
        .get(format!("http://{exporter}/metrics"))
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("body");
    assert!(
        text.contains(r#"kafka_topic_partitions{topic="order-created"} 3"#),
        "{text}"
    );
    assert!(text.contains(r#"kafka_consumergroup_lag{consumergroup="delivery-service-group",partition="0",topic="order-created"}"#));
    let text = c
        .get(format!(
            "http://{}/metrics/cadvisor",
            sim.cadvisor_targets[0]
        ))
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("body");
    let order_pod = sim
        .pods()
        .iter()
        .find(|p| p.deployment == "order-service")
        .expect("order pod")
        .name
        .clone();
    assert!(
        text.contains(
            r#"container_cpu_usage_seconds_total{container="order-service",cpu="total","#
        )
    );
    assert!(
        text.contains(&format!(
            r#"image="",name="",namespace="metacoding",pod="{order_pod}"}}"#
        )),
        "pod cgroup series"
    );
    sim.shutdown().await;
}

/// The value of the first sample of `series` (a prefix up to the value).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn traffic_moves_the_counters_and_the_cpu() {
    let sim = start(&[Fault::UriMismatch]).await;
    let c = http();
    let order = addr(&sim, "order-service");
    let scrape = |a: SocketAddr| {
        let c = c.clone();
        async move {
            c.get(format!("http://{a}/actuator/prometheus"))
                .send()
                .await
                .expect("answers")
                .text()
                .await
                .expect("body")
        }
    };
    let cpu = |text: &str, pod: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("container_cpu_usage_seconds_total{container=\"order-service\"")
                    && l.contains(pod)
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .expect("cpu sample")
    };
    let kubelet = format!("http://{}/metrics/cadvisor", sim.cadvisor_targets[0]);
    let pod = sim
        .pods()
        .iter()
        .find(|p| p.deployment == "order-service")
        .expect("pod")
        .name
        .clone();
    let cpu0 = cpu(
        &c.get(&kubelet)
            .send()
            .await
            .expect("up")
            .text()
            .await
            .expect("body"),
        &pod,
    );
    let first = scrape(order).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = scrape(order).await;
    let series = r#"http_server_requests_seconds_count{application="order-service",error="none",exception="none",method="POST",outcome="SUCCESS",status="200",uri="/orders"}"#;
    let n1 = sample(&first, series).unwrap_or(0.0);
    let n2 = sample(&second, series).unwrap_or_else(|| panic!("orders were placed: {second}"));
    assert!(n2 > n1, "{n1} -> {n2}");
    assert!(
        !second.contains(r#"uri="/api/orders""#),
        "uri-mismatch records /orders"
    );
    let scrapes = r#"http_server_requests_seconds_count{application="order-service",error="none",exception="none",method="GET",outcome="SUCCESS",status="200",uri="/actuator/prometheus"}"#;
    assert_eq!(
        sample(&second, scrapes),
        Some(1.0),
        "the first scrape shows in the second"
    );
    let cpu1 = cpu(
        &c.get(&kubelet)
            .send()
            .await
            .expect("up")
            .text()
            .await
            .expect("body"),
        &pod,
    );
    assert!(cpu1 > cpu0, "cpu {cpu0} -> {cpu1}");
    // Every service gets requests, logins included.
    let user = scrape(addr(&sim, "user-service")).await;
    assert!(
        user.contains(r#"uri="/login"}"#) || user.contains(r#"uri="/api/users/{userId}"}"#),
        "{user}"
    );
    // A real request is served and counted too.
    let r = c
        .post(format!("http://{order}/orders"))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn without_traffic_only_scrapes_are_recorded() {
    let sim = start(&[Fault::NoTraffic]).await;
    let c = http();
    let order = addr(&sim, "order-service");
    let url = format!("http://{order}/actuator/prometheus");
    let _ = c.get(&url).send().await.expect("answers");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let text = c
        .get(&url)
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("body");
    let uris: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("http_server_requests_seconds_count"))
        .filter_map(|l| l.split("uri=\"").nth(1))
        .filter_map(|l| l.split('"').next())
        .collect();
    assert_eq!(uris, ["/actuator/prometheus"], "{text}");
    sim.shutdown().await;
}

#[tokio::test]
async fn stale_data_and_missing_pieces() {
    let sim = start(&[Fault::StaleData, Fault::NoKafkaExporter, Fault::NoCadvisor]).await;
    assert!(sim.cadvisor_targets.is_empty());
    assert!(sim.pod_address("order-service").is_none());
    assert!(sim.pod_address("kafka-exporter").is_none());
    let deploy = get_json(&format!(
        "{}/apis/apps/v1/namespaces/metacoding/deployments/order-service",
        sim.kube_url
    ))
    .await;
    assert_eq!(deploy["kind"], "Deployment");
    assert_eq!(deploy["spec"]["replicas"], 0);
    assert!(deploy["status"].get("readyReplicas").is_none());
    let pods = get_json(&format!(
        "{}/api/v1/namespaces/metacoding/pods",
        sim.kube_url
    ))
    .await;
    let names: Vec<&str> = pods["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "only kafka and mysql: {names:?}");
    assert_eq!(
        get_json(&format!("{}/_sd/cadvisor", sim.kube_url)).await,
        serde_json::json!([])
    );
    let err = tokio::net::TcpStream::connect((sim.node_ip(), 10250))
        .await
        .expect_err("no kubelet cadvisor");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    sim.shutdown().await;
}

#[tokio::test]
async fn topic_missing_keeps_the_exporter_without_order_created() {
    let sim = start(&[Fault::TopicMissing]).await;
    let exporter = addr(&sim, "kafka-exporter");
    let text = http()
        .get(format!("http://{exporter}/metrics"))
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("body");
    assert!(text.contains("kafka_topic_partitions{topic=\"delivery-completed\"}"));
    assert!(!text.contains("order-created"), "{text}");
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_fault_delays_every_answer() {
    let sim = start(&[Fault::Latency50ms]).await;
    let c = http();
    for url in [
        format!("{}/version", sim.kube_url),
        sim.sd_pods_url.clone(),
        format!("http://{}/actuator/health", addr(&sim, "order-service")),
    ] {
        let t = Instant::now();
        let r = c.get(&url).send().await.expect("answers");
        assert!(r.status().is_success());
        assert!(
            t.elapsed() >= Duration::from_millis(50),
            "{url} took {:?}",
            t.elapsed()
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn two_clusters_run_side_by_side() {
    let a = start(&[]).await;
    let b = start(&[Fault::Scrape401]).await;
    assert_ne!(a.pod_ip_prefix, b.pod_ip_prefix);
    assert_ne!(a.kube_url, b.kube_url);
    assert_ne!(a.kubeconfig_path, b.kubeconfig_path);
    let c = http();
    let ra = c
        .get(format!(
            "http://{}/actuator/prometheus",
            addr(&a, "user-service")
        ))
        .send()
        .await
        .expect("a answers");
    let rb = c
        .get(format!(
            "http://{}/actuator/prometheus",
            addr(&b, "user-service")
        ))
        .send()
        .await
        .expect("b answers");
    assert_eq!(ra.status(), 200);
    assert_eq!(rb.status(), 401);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn nothing_listens_after_shutdown() {
    let sim = start(&[]).await;
    let api: SocketAddr = sim
        .kube_url
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let pod = addr(&sim, "order-service");
    let kubelet: SocketAddr = sim.cadvisor_targets[0].parse().expect("addr");
    let kubeconfig = sim.kubeconfig_path.clone();
    // An open watch and a kept-alive connection must not hold the shutdown up.
    let c = http();
    let watch = c
        .get(format!("{}/api/v1/pods?watch=1", sim.kube_url))
        .send()
        .await
        .expect("watch opens");
    let _ = c
        .get(format!("http://{pod}/actuator/health"))
        .send()
        .await
        .expect("up");
    for a in [api, pod, kubelet] {
        tokio::net::TcpStream::connect(a).await.expect("listening");
    }
    let t = Instant::now();
    sim.shutdown().await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "shutdown took {:?}",
        t.elapsed()
    );
    let rest = tokio::time::timeout(Duration::from_secs(2), watch.text()).await;
    assert!(rest.is_ok(), "the watch ended");
    for a in [api, pod, kubelet] {
        let err = tokio::net::TcpStream::connect(a).await.expect_err("closed");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{a}");
    }
    assert!(
        c.get(format!("http://{pod}/actuator/health"))
            .send()
            .await
            .is_err(),
        "no pooled answer"
    );
    assert!(!kubeconfig.exists(), "the temp dir is gone");

    // Dropping stops it all too.
    let sim = start(&[]).await;
    let pod = addr(&sim, "order-service");
    let kubeconfig = sim.kubeconfig_path.clone();
    drop(sim);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(tokio::net::TcpStream::connect(pod).await.is_err());
    assert!(!kubeconfig.exists());
}
