//! The named faults of the practice stack: each a small change to the healthy stack.

use std::collections::BTreeSet;

/// One way to break the practice stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Grafana not listening: the port-forward is down.
    NoPortForward,
    /// Another program (an HTML web app) answers on Grafana's port.
    PortTaken,
    /// msa-doctor is given a password Grafana refuses.
    WrongPassword,
    /// admin/admin no longer logs in (the healthy case for the security warning).
    PasswordChanged,
    /// Grafana has no Prometheus data source.
    NoDatasource,
    /// The data source URL points where no Prometheus answers (localhost inside a pod).
    DatasourceWrongUrl,
    /// One Deployment's pod template lacks `prometheus.io/scrape: "true"`.
    NoAnnotation,
    /// The annotation is on a Deployment's own metadata, not on its pod template.
    AnnotationOnDeployment,
    /// A pod is scraped at `/metrics` (no `prometheus.io/path`): 404.
    WrongPath,
    /// A security filter answers 401 on `/actuator/prometheus`.
    Scrape401,
    /// A pod with no web server listening on its port.
    NothingListening,
    /// Nobody sends requests to the services.
    NoTraffic,
    /// Scraping stopped well before the window: the newest samples are old.
    StaleData,
    /// No Kafka exporter is deployed.
    NoKafkaExporter,
    /// The exporter runs but the topic `order-created` does not exist.
    TopicMissing,
    /// order-service records `uri="/orders"`, not `/api/orders`.
    UriMismatch,
    /// No cAdvisor (kubelet) metrics are scraped.
    NoCadvisor,
    /// The Kubernetes API answers 403 on deployments.
    KubeForbidden,
    /// Grafana accepts connections but never answers.
    GrafanaHangs,
    /// Grafana answers 500 with an HTML page.
    Grafana500Html,
    /// A target label `application` collides with Micrometer's: series get `exported_application`.
    LabelCollision,
    /// A 30 s scrape interval under the guide's `[1m]` rate window.
    SlowScrape,
    /// Every emulated response is delayed by 50 ms (for benchmarks).
    Latency50ms,
}

impl Fault {
    /// Every fault, in `--list-faults` order.
    pub const ALL: [Fault; 23] = [
        Fault::NoPortForward,
        Fault::PortTaken,
        Fault::WrongPassword,
        Fault::PasswordChanged,
        Fault::NoDatasource,
        Fault::DatasourceWrongUrl,
        Fault::NoAnnotation,
        Fault::AnnotationOnDeployment,
        Fault::WrongPath,
        Fault::Scrape401,
        Fault::NothingListening,
        Fault::NoTraffic,
        Fault::StaleData,
        Fault::NoKafkaExporter,
        Fault::TopicMissing,
        Fault::UriMismatch,
        Fault::NoCadvisor,
        Fault::KubeForbidden,
        Fault::GrafanaHangs,
        Fault::Grafana500Html,
        Fault::LabelCollision,
        Fault::SlowScrape,
        Fault::Latency50ms,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Fault::NoPortForward => "no-port-forward",
            Fault::PortTaken => "port-taken",
            Fault::WrongPassword => "wrong-password",
            Fault::PasswordChanged => "password-changed",
            Fault::NoDatasource => "no-datasource",
            Fault::DatasourceWrongUrl => "datasource-wrong-url",
            Fault::NoAnnotation => "no-annotation",
            Fault::AnnotationOnDeployment => "annotation-on-deployment",
            Fault::WrongPath => "wrong-path",
            Fault::Scrape401 => "scrape-401",
            Fault::NothingListening => "nothing-listening",
            Fault::NoTraffic => "no-traffic",
            Fault::StaleData => "stale-data",
            Fault::NoKafkaExporter => "no-kafka-exporter",
            Fault::TopicMissing => "topic-missing",
            Fault::UriMismatch => "uri-mismatch",
            Fault::NoCadvisor => "no-cadvisor",
            Fault::KubeForbidden => "kube-forbidden",
            Fault::GrafanaHangs => "grafana-hangs",
            Fault::Grafana500Html => "grafana-500-html",
            Fault::LabelCollision => "label-collision",
            Fault::SlowScrape => "slow-scrape",
            Fault::Latency50ms => "latency-50ms",
        }
    }

    /// What it breaks, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Fault::NoPortForward => "Grafana is not listening: the kubectl port-forward is down",
            Fault::PortTaken => "another program (an HTML web app) answers on Grafana's port",
            Fault::WrongPassword => "msa-doctor is given a password Grafana refuses",
            Fault::PasswordChanged => {
                "admin/admin no longer logs in (the healthy case for the security warning)"
            }
            Fault::NoDatasource => "Grafana has no Prometheus data source",
            Fault::DatasourceWrongUrl => {
                "the data source URL is http://localhost:9090, where nothing answers inside Grafana's pod"
            }
            Fault::NoAnnotation => {
                "order-service's pod template lacks prometheus.io/scrape: \"true\""
            }
            Fault::AnnotationOnDeployment => {
                "order-service has the scrape annotations on the Deployment's metadata only"
            }
            Fault::WrongPath => {
                "delivery-service has no prometheus.io/path: scraped at /metrics, 404"
            }
            Fault::Scrape401 => {
                "user-service's security filter answers 401 on /actuator/prometheus"
            }
            Fault::NothingListening => "orchestrator-service's pod has no web server on its port",
            Fault::NoTraffic => "nobody sends requests to the services",
            Fault::StaleData => {
                "scraping of the services stopped well before the window: the newest samples are 47 minutes old"
            }
            Fault::NoKafkaExporter => "no Kafka exporter is deployed",
            Fault::TopicMissing => {
                "the Kafka exporter runs but the topic order-created does not exist"
            }
            Fault::UriMismatch => {
                "order-service records uri=\"/orders\" instead of \"/api/orders\""
            }
            Fault::NoCadvisor => "no cAdvisor (kubelet) metrics are scraped",
            Fault::KubeForbidden => "the Kubernetes API answers 403 on deployments",
            Fault::GrafanaHangs => "Grafana accepts connections but never answers",
            Fault::Grafana500Html => "Grafana answers 500 with an HTML error page",
            Fault::LabelCollision => {
                "a target label application collides with Micrometer's: series carry exported_application"
            }
            Fault::SlowScrape => "a 30 s scrape interval under the guide's [1m] rate window",
            Fault::Latency50ms => "every emulated response is delayed by 50 ms (for benchmarks)",
        }
    }

    /// From its command-line name.
    pub fn parse(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// The faults of one stack.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultSet(BTreeSet<Fault>);

impl FaultSet {
    /// The healthy stack.
    pub fn healthy() -> Self {
        FaultSet::default()
    }

    /// From a list of faults.
    pub fn of(faults: &[Fault]) -> Self {
        FaultSet(faults.iter().copied().collect())
    }

    /// Whether the stack has this fault.
    pub fn has(&self, f: Fault) -> bool {
        self.0.contains(&f)
    }

    /// The faults, in order.
    pub fn iter(&self) -> impl Iterator<Item = Fault> + '_ {
        self.0.iter().copied()
    }
}
