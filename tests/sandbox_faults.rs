//! Every fault of the practice stack shows in the stack itself: asked of the real Prometheus
//! (targets, queries), the Grafana emulator and the Kubernetes emulator, never of msa-doctor's
//! checks. A few tests each start several stacks at once (one per fault, each with its own
//! Prometheus), so the file runs in well under a minute on two cores; every failure names its
//! fault.
// The practice stack runs Prometheus and manages process groups: Unix only.
#![cfg(all(unix, feature = "sandbox"))]

use msa_doctor::cli::Backend;
use msa_doctor::sandbox::faults::Fault;
use msa_doctor::sandbox::stack::{Stack, start_for_test_with};
use serde_json::Value;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Check = Result<(), String>;

fn client(timeout: Duration) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

/// Retries a check until it passes or `within` is up; the last failure is the answer.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> Check
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Check>,
{
    let t = Instant::now();
    loop {
        match check().await {
            Ok(()) => return Ok(()),
            Err(e) if t.elapsed() > within => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

fn ensure(cond: bool, what: impl FnOnce() -> String) -> Check {
    if cond { Ok(()) } else { Err(what()) }
}

async fn get_json(url: &str, query: &[(&str, &str)]) -> Result<Value, String> {
    let resp = client(Duration::from_secs(5))
        .get(url)
        .query(query)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    resp.json().await.map_err(|e| format!("GET {url}: {e}"))
}

async fn query(s: &Stack, q: &str) -> Result<Vec<Value>, String> {
    let v = get_json(
        &format!("{}/api/v1/query", s.prometheus_url),
        &[("query", q)],
    )
    .await?;
    if v["status"] != "success" {
        return Err(format!("{q}: {v}"));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

async fn targets(s: &Stack) -> Result<Value, String> {
    get_json(&format!("{}/api/v1/targets", s.prometheus_url), &[]).await
}

fn pool<'a>(t: &'a Value, which: &str, job: &str) -> Vec<&'a Value> {
    t["data"][which]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|x| {
                    x["scrapePool"] == job
                        || x["labels"]["job"] == job
                        || x["discoveredLabels"]["job"] == job
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The active `kubernetes-pods` target of a service.
fn active_of<'a>(t: &'a Value, app: &str) -> Option<&'a Value> {
    pool(t, "activeTargets", "kubernetes-pods")
        .into_iter()
        .find(|x| {
            x["labels"]["app"] == app
                || x["discoveredLabels"]["__meta_kubernetes_pod_label_app"] == app
        })
}

fn dropped_of<'a>(t: &'a Value, app: &str) -> Option<&'a Value> {
    pool(t, "droppedTargets", "kubernetes-pods")
        .into_iter()
        .find(|x| x["discoveredLabels"]["__meta_kubernetes_pod_label_app"] == app)
}

/// A target of a service is down with an error containing `needle`.
async fn down_with(s: &Stack, app: &str, needle: &str) -> Check {
    eventually(Duration::from_secs(10), || async {
        let t = targets(s).await?;
        let x = active_of(&t, app).ok_or_else(|| format!("{app} is not an active target"))?;
        let err = x["lastError"].as_str().unwrap_or("");
        ensure(x["health"] == "down" && err.contains(needle), || {
            format!(
                "{app}: health {} lastError {err:?}, expected down with {needle:?}",
                x["health"]
            )
        })
    })
    .await
}

async fn dropped_not_active(s: &Stack, app: &str) -> Check {
    eventually(Duration::from_secs(10), || async {
        let t = targets(s).await?;
        ensure(active_of(&t, app).is_none(), || {
            format!("{app} is an active target")
        })?;
        let d = dropped_of(&t, app).ok_or_else(|| format!("{app} is not among droppedTargets"))?;
        ensure(
            d["discoveredLabels"]["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
                .is_null(),
            || format!("{app}'s pod has the scrape annotation: {d}"),
        )
    })
    .await
}

/// A GET to Grafana: (status, content type, body).
async fn grafana(
    s: &Stack,
    path: &str,
    auth: Option<(&str, &str)>,
    timeout: Duration,
) -> Result<(u16, String, String), reqwest::Error> {
    let mut req = client(timeout).get(format!("{}{path}", s.grafana_url));
    if let Some((u, p)) = auth {
        req = req.basic_auth(u, Some(p));
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.text().await?;
    Ok((status, ct, body))
}

fn doctor(s: &Stack) -> (String, String) {
    (
        s.doctor_user.clone(),
        s.doctor_password.expose().to_string(),
    )
}

/// Grafana's real admin password, from the stack's password file.
fn real_password(s: &Stack) -> String {
    std::fs::read_to_string(&s.grafana_password_file)
        .map(|p| p.trim_end().to_string())
        .unwrap_or_default()
}

async fn datasources(s: &Stack, user: &str, pass: &str) -> Result<Vec<Value>, String> {
    let (st, _, body) = grafana(
        s,
        "/api/datasources",
        Some((user, pass)),
        Duration::from_secs(5),
    )
    .await
    .map_err(|e| e.to_string())?;
    ensure(st == 200, || format!("/api/datasources: HTTP {st}: {body}"))?;
    let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

async fn kube(s: &Stack, path: &str) -> Result<(u16, Value), String> {
    let resp = client(Duration::from_secs(5))
        .get(format!("{}{path}", s.kube_url))
        .send()
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let st = resp.status().as_u16();
    let v = resp.json().await.map_err(|e| format!("GET {path}: {e}"))?;
    Ok((st, v))
}

async fn deployment(s: &Stack, name: &str) -> Result<Value, String> {
    let (st, v) = kube(s, "/apis/apps/v1/namespaces/metacoding/deployments").await?;
    ensure(st == 200, || format!("deployments: HTTP {st}: {v}"))?;
    v["items"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["metadata"]["name"] == name).cloned())
        .ok_or_else(|| format!("no deployment {name}"))
}

/// The newest sample of a selector in the last 90 minutes, as unix seconds: the samples' own
/// timestamps (`timestamp()`), since a range query repeats the last sample for the 5 minutes
/// of Prometheus' lookback.
async fn newest_sample(s: &Stack, selector: &str) -> Result<Option<f64>, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let start = (now - 90 * 60).to_string();
    let end = now.to_string();
    let q = format!("max(timestamp({selector}))");
    let v = get_json(
        &format!("{}/api/v1/query_range", s.prometheus_url),
        &[
            ("query", q.as_str()),
            ("start", &start),
            ("end", &end),
            ("step", "15"),
            ("nocache", "1"),
        ],
    )
    .await?;
    let mut newest: Option<f64> = None;
    for series in v["data"]["result"].as_array().cloned().unwrap_or_default() {
        for p in series["values"].as_array().cloned().unwrap_or_default() {
            if let Some(t) = p[1].as_str().and_then(|x| x.parse::<f64>().ok()) {
                newest = Some(newest.map_or(t, |n: f64| n.max(t)));
            }
        }
    }
    Ok(newest)
}

/// What each fault must look like, asked of the stack.
async fn shows(f: Fault, s: &Stack) -> Check {
    let quick = Duration::from_secs(3);
    match f {
        Fault::NoPortForward => {
            let r = grafana(s, "/api/health", None, quick).await;
            ensure(matches!(&r, Err(e) if e.is_connect()), || {
                format!("Grafana's port answers: {r:?}")
            })
        }
        Fault::PortTaken => {
            let (st, ct, body) = grafana(s, "/api/health", None, quick)
                .await
                .map_err(|e| e.to_string())?;
            let is_grafana =
                serde_json::from_str::<Value>(&body).is_ok_and(|v| v.get("database").is_some());
            ensure(!is_grafana && ct.contains("text/html"), || {
                format!("not another program: HTTP {st} {ct}: {body:.200}")
            })
        }
        Fault::WrongPassword => {
            let (u, p) = doctor(s);
            let (st, _, _) = grafana(s, "/api/user", Some((&u, &p)), quick)
                .await
                .map_err(|e| e.to_string())?;
            ensure(st == 401, || {
                format!("the doctor's password got HTTP {st}, expected 401")
            })?;
            let (st, _, _) = grafana(s, "/api/user", Some(("admin", &real_password(s))), quick)
                .await
                .map_err(|e| e.to_string())?;
            ensure(st == 200, || {
                format!("Grafana's own password got HTTP {st}")
            })
        }
        Fault::PasswordChanged => {
            let (st, _, _) = grafana(s, "/api/user", Some(("admin", "admin")), quick)
                .await
                .map_err(|e| e.to_string())?;
            ensure(st == 401, || {
                format!("admin/admin got HTTP {st}, expected 401")
            })?;
            let (u, p) = doctor(s);
            ensure(p != "admin" && !s.doctor_password_defaulted, || {
                "the doctor got admin/admin".into()
            })?;
            let (st, _, _) = grafana(s, "/api/user", Some((&u, &p)), quick)
                .await
                .map_err(|e| e.to_string())?;
            ensure(st == 200, || {
                format!("the doctor's (changed) password got HTTP {st}")
            })
        }
        Fault::NoDatasource => {
            let ds = datasources(s, "admin", "admin").await?;
            ensure(!ds.iter().any(|d| d["type"] == "prometheus"), || {
                format!("a Prometheus data source exists: {ds:?}")
            })
        }
        Fault::DatasourceWrongUrl => {
            let ds = datasources(s, "admin", "admin").await?;
            let prom = ds
                .iter()
                .find(|d| d["type"] == "prometheus")
                .ok_or("no Prometheus data source")?;
            ensure(prom["url"] == "http://localhost:9090", || {
                format!("data source URL {}", prom["url"])
            })?;
            let uid = prom["uid"].as_str().unwrap_or_default();
            let (st, _, body) = grafana(
                s,
                &format!("/api/datasources/uid/{uid}/health"),
                Some(("admin", "admin")),
                Duration::from_secs(15),
            )
            .await
            .map_err(|e| e.to_string())?;
            ensure(st != 200 && !body.contains("\"OK\""), || {
                format!("the data source test passed: HTTP {st} {body}")
            })?;
            // Prometheus itself is fine.
            ensure(
                !query(s, "up{job=\"kubernetes-pods\"} == 1")
                    .await?
                    .is_empty(),
                || "no target up".into(),
            )
        }
        Fault::NoAnnotation => {
            dropped_not_active(s, "order-service").await?;
            let d = deployment(s, "order-service").await?;
            ensure(
                d["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"].is_null(),
                || {
                    format!(
                        "the pod template has the annotation: {}",
                        d["spec"]["template"]
                    )
                },
            )
        }
        Fault::AnnotationOnDeployment => {
            dropped_not_active(s, "order-service").await?;
            let d = deployment(s, "order-service").await?;
            ensure(
                d["metadata"]["annotations"]["prometheus.io/scrape"] == "true",
                || format!("not on the Deployment's metadata: {}", d["metadata"]),
            )?;
            ensure(
                d["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"].is_null(),
                || "also on the pod template".into(),
            )
        }
        Fault::WrongPath => {
            down_with(s, "delivery-service", "404").await?;
            let t = targets(s).await?;
            let url = active_of(&t, "delivery-service")
                .map(|x| x["scrapeUrl"].clone())
                .unwrap_or_default();
            ensure(
                url.as_str().is_some_and(|u| u.ends_with("/metrics")),
                || format!("scrapeUrl {url}"),
            )
        }
        Fault::Scrape401 => down_with(s, "user-service", "401").await,
        Fault::NothingListening => down_with(s, "orchestrator-service", "connection refused").await,
        Fault::NoTraffic => {
            // Prometheus' own scrapes are counted; nobody calls the business endpoints.
            eventually(Duration::from_secs(10), || async {
                ensure(
                    !query(
                        s,
                        "http_server_requests_seconds_count{uri=\"/actuator/prometheus\"}",
                    )
                    .await?
                    .is_empty(),
                    || "no scrape requests counted yet".into(),
                )
            })
            .await?;
            let business = query(
                s,
                "http_server_requests_seconds_count{uri!~\"/actuator.*\"}",
            )
            .await?;
            ensure(business.is_empty(), || {
                format!("requests recorded: {business:?}")
            })
        }
        Fault::StaleData => {
            let now = query(s, "http_server_requests_seconds_count").await?;
            ensure(now.is_empty(), || {
                format!("fresh samples: {:?}", now.first())
            })?;
            let newest = newest_sample(s, "http_server_requests_seconds_count")
                .await?
                .ok_or("no old samples at all")?;
            let age = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_err(|e| e.to_string())?
                .as_secs_f64()
                - newest;
            eprintln!(
                "stale-data ({:?}): newest http_server_requests sample {:.1} min old",
                s.backend,
                age / 60.0
            );
            ensure((46.5 * 60.0..61.0 * 60.0).contains(&age), || {
                format!("newest sample {age:.0}s old")
            })?;
            let d = deployment(s, "order-service").await?;
            ensure(d["spec"]["replicas"] == 0, || {
                format!("order-service replicas {}", d["spec"]["replicas"])
            })
        }
        Fault::NoKafkaExporter => {
            let t = targets(s).await?;
            let any = active_of(&t, "kafka-exporter").is_some()
                || dropped_of(&t, "kafka-exporter").is_some();
            ensure(!any, || "a kafka-exporter pod is discovered".into())?;
            ensure(
                query(s, "kafka_consumergroup_lag").await?.is_empty(),
                || "kafka lag exported".into(),
            )?;
            ensure(deployment(s, "kafka-exporter").await.is_err(), || {
                "a kafka-exporter Deployment exists".into()
            })
        }
        Fault::TopicMissing => {
            eventually(Duration::from_secs(10), || async {
                ensure(
                    !query(s, "kafka_topic_partitions").await?.is_empty(),
                    || "the exporter is not scraped".into(),
                )
            })
            .await?;
            let lag = query(s, "kafka_consumergroup_lag{topic=\"order-created\"}").await?;
            ensure(lag.is_empty(), || {
                format!("order-created has lag series: {lag:?}")
            })?;
            let topic = query(s, "kafka_topic_partitions{topic=\"order-created\"}").await?;
            ensure(topic.is_empty(), || "the topic exists".into())
        }
        Fault::UriMismatch => {
            eventually(Duration::from_secs(15), || async {
                ensure(
                    !query(s, "http_server_requests_seconds_count{application=\"order-service\", uri=\"/orders\"}").await?.is_empty(),
                    || "no uri=\"/orders\" series".into(),
                )
            })
            .await?;
            let api = query(s, "http_server_requests_seconds_count{application=\"order-service\", uri=\"/api/orders\"}").await?;
            ensure(api.is_empty(), || "uri=\"/api/orders\" is recorded".into())
        }
        Fault::NoCadvisor => {
            let t = targets(s).await?;
            ensure(
                pool(&t, "activeTargets", "kubernetes-cadvisor").is_empty(),
                || "a cadvisor target".into(),
            )?;
            ensure(
                query(s, "container_cpu_usage_seconds_total")
                    .await?
                    .is_empty(),
                || "cAdvisor metrics".into(),
            )
        }
        Fault::KubeForbidden => {
            let (st, v) = kube(s, "/apis/apps/v1/namespaces/metacoding/deployments").await?;
            ensure(st == 403 && v["reason"] == "Forbidden", || {
                format!("deployments: HTTP {st}: {v}")
            })?;
            // Discovery still works: Prometheus scrapes.
            ensure(
                !query(s, "up{job=\"kubernetes-pods\"} == 1")
                    .await?
                    .is_empty(),
                || "no target up".into(),
            )
        }
        Fault::GrafanaHangs => {
            let t = Instant::now();
            let r = grafana(s, "/api/health", None, Duration::from_millis(1500)).await;
            ensure(
                matches!(&r, Err(e) if e.is_timeout())
                    && t.elapsed() >= Duration::from_millis(1400),
                || format!("Grafana answered: {r:?}"),
            )
        }
        Fault::Grafana500Html => {
            let (st, ct, body) = grafana(s, "/api/health", None, quick)
                .await
                .map_err(|e| e.to_string())?;
            ensure(st == 500 && ct.contains("text/html"), || {
                format!("HTTP {st} {ct}: {body:.200}")
            })
        }
        Fault::LabelCollision => {
            eventually(Duration::from_secs(10), || async {
                let r = query(
                    s,
                    "http_server_requests_seconds_count{job=\"kubernetes-pods\"}",
                )
                .await?;
                ensure(
                    !r.is_empty()
                        && r.iter()
                            .all(|x| x["metric"]["exported_application"].is_string()),
                    || format!("series without exported_application: {:?}", r.first()),
                )
            })
            .await
        }
        Fault::SlowScrape => {
            let t = targets(s).await?;
            let act = pool(&t, "activeTargets", "kubernetes-pods");
            ensure(!act.is_empty(), || "no active target".into())?;
            for x in act {
                let interval = x["scrapeInterval"]
                    .as_str()
                    .or(x["discoveredLabels"]["__scrape_interval__"].as_str());
                ensure(interval == Some("30s"), || {
                    format!("scrape interval {interval:?}")
                })?;
            }
            Ok(())
        }
        Fault::Latency50ms => {
            let t = Instant::now();
            let (st, _, _) = grafana(s, "/api/health", None, quick)
                .await
                .map_err(|e| e.to_string())?;
            let took = t.elapsed();
            ensure(st == 200 && took >= Duration::from_millis(50), || {
                format!("HTTP {st} in {took:?}")
            })?;
            eventually(Duration::from_secs(10), || async {
                let t = targets(s).await?;
                let x = active_of(&t, "order-service").ok_or("order-service is not active")?;
                let d = x["lastScrapeDuration"].as_f64().unwrap_or(0.0);
                ensure(x["health"] == "up" && d >= 0.05, || {
                    format!("scrape took {d}s")
                })
            })
            .await
        }
    }
}

/// The healthy stack: everything the faults break works.
async fn healthy(s: &Stack) -> Check {
    let t = targets(s).await?;
    for svc in msa_doctor::settings::DEFAULT_SERVICES {
        let x = active_of(&t, svc).ok_or_else(|| format!("{svc} is not an active target"))?;
        ensure(x["health"] == "up", || format!("{svc}: {x}"))?;
        if s.backend == Backend::Prometheus {
            ensure(x["scrapeInterval"] == "1s", || {
                format!("{svc}: interval {}", x["scrapeInterval"])
            })?;
        }
    }
    eventually(Duration::from_secs(15), || async {
        let orders = query(
            s,
            "http_server_requests_seconds_count{uri=\"/api/orders\", method=\"POST\"}",
        )
        .await?;
        ensure(!orders.is_empty(), || "no /api/orders requests yet".into())?;
        ensure(
            orders
                .iter()
                .all(|x| x["metric"]["exported_application"].is_null()),
            || "exported_application".into(),
        )?;
        ensure(
            !query(s, "kafka_consumergroup_lag{topic=\"order-created\"}")
                .await?
                .is_empty(),
            || "no lag".into(),
        )?;
        ensure(
            !query(
                s,
                "container_cpu_usage_seconds_total{namespace=\"metacoding\"}",
            )
            .await?
            .is_empty(),
            || "no cAdvisor CPU".into(),
        )?;
        ensure(
            !query(s, "jvm_memory_used_bytes{area=\"heap\"}")
                .await?
                .is_empty(),
            || "no heap".into(),
        )
    })
    .await?;
    // Grafana: admin/admin logs in; the data source test passes; its proxy reaches Prometheus.
    let ds = datasources(s, "admin", "admin").await?;
    let prom = ds
        .iter()
        .find(|d| d["type"] == "prometheus")
        .ok_or("no Prometheus data source")?;
    ensure(prom["url"] == s.prometheus_url.as_str(), || {
        format!("data source URL {}", prom["url"])
    })?;
    let uid = prom["uid"].as_str().unwrap_or_default();
    let (st, _, body) = grafana(
        s,
        &format!("/api/datasources/uid/{uid}/health"),
        Some(("admin", "admin")),
        Duration::from_secs(10),
    )
    .await
    .map_err(|e| e.to_string())?;
    ensure(st == 200 && body.contains("\"OK\""), || {
        format!("data source test: HTTP {st} {body}")
    })?;
    let path = format!("/api/datasources/proxy/uid/{uid}/api/v1/query?query=up");
    let (st, _, body) = grafana(s, &path, Some(("admin", "admin")), Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    ensure(st == 200 && body.contains("kubernetes-pods"), || {
        format!("proxy: HTTP {st} {body:.300}")
    })?;
    let d = deployment(s, "order-service").await?;
    ensure(
        d["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true",
        || "order-service's template lacks the annotation".into(),
    )
}

/// Starts one stack per case at once, checks each, stops each; fails listing every case that
/// did not show.
async fn run_cases(backend: Backend, cases: &[Option<Fault>]) {
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for case in cases.iter().copied() {
        tasks.push(tokio::spawn(async move {
            let faults: Vec<Fault> = case.into_iter().collect();
            let stack = start_for_test_with(&faults, backend).await;
            let started = t0.elapsed();
            let result = match case {
                Some(f) => shows(f, &stack).await,
                None => healthy(&stack).await,
            };
            stack.shutdown().await;
            (started, result)
        }));
    }
    let mut failures = Vec::new();
    for (case, task) in cases.iter().zip(tasks) {
        let name = case.map_or("healthy", Fault::name);
        match task.await {
            Ok((started, Ok(()))) => eprintln!(
                "{backend:?} {name}: shown (stack up after {:.1}s)",
                started.as_secs_f64()
            ),
            Ok((_, Err(e))) => failures.push(format!("{name}: {e}")),
            Err(e) => failures.push(format!("{name}: panicked: {e}")),
        }
    }
    eprintln!(
        "{backend:?}: {} stacks checked in {:.1}s",
        cases.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "faults not shown by the stack:\n{}",
        failures.join("\n")
    );
}

const GRAFANA_FAULTS: [Fault; 9] = [
    Fault::NoPortForward,
    Fault::PortTaken,
    Fault::WrongPassword,
    Fault::PasswordChanged,
    Fault::NoDatasource,
    Fault::DatasourceWrongUrl,
    Fault::GrafanaHangs,
    Fault::Grafana500Html,
    Fault::Latency50ms,
];

const DISCOVERY_FAULTS: [Fault; 6] = [
    Fault::NoAnnotation,
    Fault::AnnotationOnDeployment,
    Fault::WrongPath,
    Fault::Scrape401,
    Fault::NothingListening,
    Fault::KubeForbidden,
];

const DATA_FAULTS: [Fault; 7] = [
    Fault::NoTraffic,
    Fault::StaleData,
    Fault::NoKafkaExporter,
    Fault::TopicMissing,
    Fault::UriMismatch,
    Fault::NoCadvisor,
    Fault::LabelCollision,
];

#[test]
fn every_fault_is_tested() {
    let mut tested: Vec<Fault> = GRAFANA_FAULTS
        .iter()
        .chain(&DISCOVERY_FAULTS)
        .chain(&DATA_FAULTS)
        .chain(&[Fault::SlowScrape])
        .copied()
        .collect();
    tested.sort();
    let mut all = Fault::ALL.to_vec();
    all.sort();
    assert_eq!(tested, all);
}

/// A 30 s interval puts the first scrape up to 30 s away: this test has its stacks to itself and
/// a name that sorts first, so that it starts at once and overlaps the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_scrape_shows_on_both_backends() {
    tokio::join!(
        run_cases(Backend::Prometheus, &[Some(Fault::SlowScrape)]),
        run_cases(Backend::VictoriaMetrics, &[Some(Fault::SlowScrape)]),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_faults_show() {
    let cases: Vec<Option<Fault>> = GRAFANA_FAULTS.iter().copied().map(Some).collect();
    run_cases(Backend::Prometheus, &cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_and_scrape_faults_show() {
    let cases: Vec<Option<Fault>> = DISCOVERY_FAULTS.iter().copied().map(Some).collect();
    run_cases(Backend::Prometheus, &cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_faults_show_and_the_healthy_stack_does_not() {
    let mut cases: Vec<Option<Fault>> = DATA_FAULTS.iter().copied().map(Some).collect();
    cases.push(None);
    run_cases(Backend::Prometheus, &cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn victoria_metrics_shows_the_scrape_faults() {
    let cases = [
        None,
        Some(Fault::NoAnnotation),
        Some(Fault::WrongPath),
        Some(Fault::NothingListening),
        Some(Fault::StaleData),
        Some(Fault::LabelCollision),
    ];
    run_cases(Backend::VictoriaMetrics, &cases).await;
}
