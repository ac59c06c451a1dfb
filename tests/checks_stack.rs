//! The guide's checks against the practice stack: healthy gives every check `pass` (the
//! default-password warning aside), and each fault makes the check it breaks fail (or warn)
//! with the expected words, while no unrelated check fails.
// The practice stack runs Prometheus and manages process groups: Unix only.
#![cfg(all(unix, feature = "sandbox"))]

use msa_doctor::app::run_plan;
use msa_doctor::cli::Backend;
use msa_doctor::config;
use msa_doctor::engine::{CheckResult, Status};
use msa_doctor::sandbox::faults::Fault;
use msa_doctor::sandbox::stack::{Stack, start_for_test_with};
use msa_doctor::sandbox::warm::wait_for_data;
use std::sync::LazyLock;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Stacks running at once across the tests of this binary (each has its own Prometheus).
static STACKS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(4));

/// One expectation: the check, the statuses it may end in, and words its message or remedy holds.
struct Expect {
    id: &'static str,
    status: &'static [Status],
    words: &'static [&'static str],
}

const fn e(id: &'static str, status: &'static [Status], words: &'static [&'static str]) -> Expect {
    Expect { id, status, words }
}

const FAIL: &[Status] = &[Status::Fail];
const WARN: &[Status] = &[Status::Warn];
const ERROR: &[Status] = &[Status::Error];

/// Checks that may be other than `pass` whatever the fault: the healthy stack still has the
/// default password, and the imported community dashboards have panels for absent exporters.
const ALWAYS_ALLOWED: &[&str] = &["grafana.default-password", "grafana.dashboards"];

async fn run(faults: &[Fault], backend: Backend) -> (Stack, Vec<CheckResult>) {
    let _permit = STACKS.acquire().await.expect("semaphore");
    let stack = start_for_test_with(faults, backend).await;
    // A 30 s scrape interval takes up to 30 s to its first scrape of each target.
    let deadline = if faults.contains(&Fault::SlowScrape) {
        45
    } else {
        25
    };
    let (_, _warm) = wait_for_data(&stack, Duration::from_secs(deadline)).await;
    if faults.contains(&Fault::SlowScrape) {
        // Where the targets API has no scrape interval (VictoriaMetrics), it is measured from
        // a target's last two samples: wait until the targets have two.
        two_samples_each(&stack, Duration::from_secs(75)).await;
    }
    let plan = config::load(&[]).expect("the built-in checklist loads");
    let mut settings = stack.settings();
    settings.timeout = Duration::from_secs(5);
    let report = run_plan(settings, plan).await;
    (stack, report.checks)
}

async fn two_samples_each(stack: &Stack, deadline: Duration) {
    let api = msa_doctor::clients::PromApi::direct(
        msa_doctor::clients::Transport::new(Duration::from_secs(2)),
        &stack.prometheus_url,
        Duration::from_secs(2),
        Default::default(),
    );
    let start = std::time::Instant::now();
    while start.elapsed() < deadline {
        let q = "min(count_over_time(up{job=\"kubernetes-pods\"}[5m]))";
        if api
            .instant(q, None)
            .await
            .ok()
            .and_then(|v| v.first().map(|s| s.value))
            .unwrap_or(0.0)
            >= 2.0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn show(checks: &[CheckResult]) -> String {
    checks
        .iter()
        .map(|c| format!("{:>6} {}: {}", c.status.as_str(), c.id, c.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts the expectations; every other check passes or is skipped because of one of them.
fn verify(checks: &[CheckResult], expect: &[Expect], also_allowed: &[&str]) {
    let all = show(checks);
    for x in expect {
        let c = checks
            .iter()
            .find(|c| c.id == x.id)
            .unwrap_or_else(|| panic!("no check {}\n{all}", x.id));
        assert!(
            x.status.contains(&c.status),
            "{} is {} (want {:?})\n{all}",
            x.id,
            c.status,
            x.status
        );
        let text = format!("{} {}", c.message, c.remedy.clone().unwrap_or_default());
        for w in x.words {
            assert!(
                text.contains(w),
                "{} does not say {w:?}: {text}\n{all}",
                x.id
            );
        }
    }
    for c in checks {
        if expect.iter().any(|x| x.id == c.id)
            || ALWAYS_ALLOWED.contains(&c.id.as_str())
            || also_allowed.contains(&c.id.as_str())
        {
            continue;
        }
        match c.status {
            Status::Pass => {}
            Status::Skip => {
                let why = c.skipped_because.clone().unwrap_or_default();
                assert!(
                    checks
                        .iter()
                        .any(|o| why.contains(&o.id) && o.status != Status::Pass),
                    "{} skipped for an unexpected reason: {why}\n{all}",
                    c.id
                );
            }
            s => panic!("unrelated check {} is {s}: {}\n{all}", c.id, c.message),
        }
    }
}

async fn case(faults: &[Fault], expect: &[Expect], also_allowed: &[&str]) {
    for backend in [Backend::Prometheus, Backend::VictoriaMetrics] {
        let (stack, checks) = run(faults, backend).await;
        verify(&checks, expect, also_allowed);
        // The password given to the checks never shows in what they report.
        let text = serde_json::to_string(
            &checks
                .iter()
                .map(|c| (&c.message, &c.remedy, &c.evidence))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert!(!text.contains("s3cure-pass"), "a password leaked: {text}");
        stack.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_stack_passes() {
    case(
        &[],
        &[e("grafana.default-password", WARN, &["admin/admin"])],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_changed_passes_the_security_warning() {
    case(
        &[Fault::PasswordChanged],
        &[e("grafana.default-password", &[Status::Pass], &[])],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_50ms_is_still_healthy() {
    case(&[Fault::Latency50ms], &[], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_port_forward() {
    case(
        &[Fault::NoPortForward],
        &[e(
            "access.grafana",
            FAIL,
            &[
                "connection refused",
                "kubectl port-forward svc/grafana -n monitoring",
            ],
        )],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_taken() {
    case(
        &[Fault::PortTaken],
        &[e(
            "access.grafana",
            FAIL,
            &["taken by another program", "ss -ltnp"],
        )],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password() {
    case(
        &[Fault::WrongPassword],
        &[
            e("grafana.login", FAIL, &["refused", "admin-password"]),
            e("grafana.default-password", &[Status::Pass], &[]),
        ],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_datasource() {
    case(
        &[Fault::NoDatasource],
        &[e(
            "grafana.datasource",
            FAIL,
            &["no Prometheus data source", "grafana_datasource"],
        )],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datasource_wrong_url() {
    case(
        &[Fault::DatasourceWrongUrl],
        &[e(
            "grafana.datasource",
            FAIL,
            &["localhost", "svc.cluster.local"],
        )],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_annotation() {
    case(
        &[Fault::NoAnnotation],
        &[
            e(
                "k8s.scrape-annotations",
                FAIL,
                &[
                    "order-service",
                    "kubectl -n metacoding patch deployment order-service",
                ],
            ),
            e("prometheus.targets", FAIL, &["order-service", "dropped"]),
        ],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotation_on_deployment() {
    case(
        &[Fault::AnnotationOnDeployment],
        &[
            e(
                "k8s.scrape-annotations",
                FAIL,
                &["Deployment's metadata", "spec.template.metadata"],
            ),
            e("prometheus.targets", FAIL, &["order-service", "dropped"]),
        ],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_path() {
    case(
        &[Fault::WrongPath],
        &[
            e(
                "k8s.scrape-annotations",
                FAIL,
                &["delivery-service", "/actuator/prometheus"],
            ),
            e("prometheus.targets", FAIL, &["delivery-service", "404"]),
        ],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_401() {
    case(
        &[Fault::Scrape401],
        &[e(
            "prometheus.targets",
            FAIL,
            &["user-service", "security filter", "/actuator/**"],
        )],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening() {
    case(
        &[Fault::NothingListening],
        &[e(
            "prometheus.targets",
            FAIL,
            &["orchestrator-service", "connection refused"],
        )],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_traffic() {
    case(
        &[Fault::NoTraffic],
        &[e(
            "data.traffic",
            FAIL,
            &["no user request", "log in five times"],
        )],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_data() {
    case(
        &[Fault::StaleData],
        &[
            e("data.time-range", FAIL, &["data stopped", "min ago"]),
            e("prometheus.targets", FAIL, &["no pod"]),
        ],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_kafka_exporter() {
    case(
        &[Fault::NoKafkaExporter],
        &[
            e(
                "kafka.exporter",
                WARN,
                &["no Kafka exporter", "helm install kafka-exporter"],
            ),
            e("panel.kafka-lag", &[Status::Skip], &[]),
        ],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_missing() {
    case(
        &[Fault::TopicMissing],
        &[e(
            "kafka.exporter",
            FAIL,
            &["order-created", "does not exist"],
        )],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_mismatch() {
    case(
        &[Fault::UriMismatch],
        &[e("panel.orders", FAIL, &["/api/orders", "uri=\"/orders\""])],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cadvisor() {
    case(
        &[Fault::NoCadvisor],
        &[e(
            "panel.cpu",
            FAIL,
            &["container_cpu_usage_seconds_total", "cadvisor"],
        )],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_forbidden() {
    case(
        &[Fault::KubeForbidden],
        &[e(
            "k8s.scrape-annotations",
            ERROR,
            &["permission", "rolebinding"],
        )],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_hangs() {
    let start = std::time::Instant::now();
    case(
        &[Fault::GrafanaHangs],
        &[e("access.grafana", FAIL, &["did not answer"])],
        &[],
    )
    .await;
    assert!(start.elapsed() < Duration::from_secs(120));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_500_html() {
    case(
        &[Fault::Grafana500Html],
        &[e("access.grafana", FAIL, &["HTTP 500", "HTML"])],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_collision() {
    case(
        &[Fault::LabelCollision],
        &[e(
            "panel.jvm-heap",
            FAIL,
            &["exported_application", "honor_labels"],
        )],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_scrape() {
    case(
        &[Fault::SlowScrape],
        &[e("data.time-range", WARN, &["[1m]", "30s"])],
        // A 30 s scrape leaves the [1m] panels empty or gappy while the stack is young.
        &[
            "panel.orders",
            "panel.cpu",
            "panel.kafka-lag",
            "panel.jvm-heap",
            "data.traffic",
        ],
    )
    .await;
}
