//! `kafka.exporter`: a Kafka exporter runs, Prometheus scrapes it, it exports consumer lag,
//! and the guide's topic is among its topics. A missing exporter is a warning: the guide's
//! fallback panel (JVM heap) still works.

use super::prom::{api, call_failed};
use super::{BuildError, kube as kubeprobe};
use crate::engine::{CheckCtx, Outcome, Probe};
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeSet;
use std::time::Duration;

/// Whether a Kafka exporter was found: the lag panel skips without one.
#[derive(Debug, Clone)]
pub struct KafkaExporter {
    /// True when an exporter pod or its metrics exist.
    pub present: bool,
}

/// `kind = "kafka.exporter"`.
#[derive(Debug)]
pub struct ExporterCheck;

impl ExporterCheck {
    /// Takes no args.
    pub fn from_args(args: &toml::Table) -> Result<Self, BuildError> {
        super::no_args(args).map(|_| ExporterCheck)
    }
}

const EXPORTER_WORDS: &[&str] = &[
    "kafka-exporter",
    "kafka_exporter",
    "kafka-lag-exporter",
    "kminion",
    "burrow",
];

/// Exporter pods `(namespace, name, phase)` in the application and monitoring namespaces
/// (the lists are shared with the other checks; the whole cluster is never listed). `None`
/// when the cluster cannot tell.
async fn exporter_pods(cx: &CheckCtx) -> Option<Vec<(String, String, String)>> {
    let client = cx.kube().await.ok()?;
    let matches = |p: &&Pod| {
        let name = p.metadata.name.clone().unwrap_or_default();
        let images: Vec<String> = p
            .spec
            .as_ref()
            .map(|s| {
                s.containers
                    .iter()
                    .filter_map(|c| c.image.clone())
                    .collect()
            })
            .unwrap_or_default();
        EXPORTER_WORDS
            .iter()
            .any(|w| name.contains(w) || images.iter().any(|i| i.contains(w)))
    };
    let to_row = |p: &Pod| {
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        (
            p.metadata.namespace.clone().unwrap_or_default(),
            p.metadata.name.clone().unwrap_or_default(),
            phase,
        )
    };
    let mut namespaces = vec![cx.settings.namespace.clone()];
    if cx.settings.monitoring_namespace != cx.settings.namespace {
        namespaces.push(cx.settings.monitoring_namespace.clone());
    }
    let lists = futures::future::join_all(
        namespaces
            .iter()
            .map(|ns| cx.clients.kube_memo.pods(&client, ns, cx.timeout)),
    )
    .await;
    let mut out = Vec::new();
    let mut any = false;
    for l in lists.into_iter().flatten() {
        any = true;
        out.extend(l.iter().filter(matches).map(to_row));
    }
    any.then_some(out)
}

/// The workload of a pod named `<workload>-<replicaset hash>-<pod hash>`.
fn workload_of(pod: &str) -> String {
    let parts: Vec<&str> = pod.rsplitn(3, '-').collect();
    if parts.len() == 3 {
        parts[2].to_string()
    } else {
        pod.to_string()
    }
}

fn install_remedy(cx: &CheckCtx) -> String {
    format!(
        "# install a Kafka exporter where Prometheus scrapes it:\nhelm repo add prometheus-community https://prometheus-community.github.io/helm-charts\nhelm install kafka-exporter prometheus-community/prometheus-kafka-exporter -n {mon} \\\n  --set kafkaServer={{kafka.{ns}.svc.cluster.local:9092}} \\\n  --set-string 'podAnnotations.prometheus\\.io/scrape=true' \\\n  --set-string 'podAnnotations.prometheus\\.io/port=9308'\n# meanwhile the guide's fallback panel works without it:\nsum(jvm_memory_used_bytes{{area=\"heap\"}}) by (application)",
        mon = cx.settings.monitoring_namespace,
        ns = cx.settings.namespace
    )
}

#[async_trait::async_trait]
impl Probe for ExporterCheck {
    fn eager(&self) -> bool {
        true
    }

    async fn run(&self, cx: &CheckCtx) -> Outcome {
        let api = api(cx).await;
        let topic = cx.settings.topic.clone();
        let budget = cx
            .timeout
            .saturating_sub(Duration::from_millis(300))
            .max(Duration::from_millis(100));
        let queries = [
            "max(kafka_brokers)".to_string(),
            "count by (topic, consumergroup) (kafka_consumergroup_lag)".to_string(),
            "count by (topic) (kafka_topic_partitions)".to_string(),
        ];
        let (answers, pods) = tokio::join!(
            api.instant_batch(&queries),
            tokio::time::timeout(budget, exporter_pods(cx))
        );
        // One request; every answer is needed: a failed one is never read as "no topic".
        let mut answers = match answers {
            Ok(a) => a.into_iter(),
            Err(e) => return call_failed(cx, &e),
        };
        let (brokers, lag, partitions) = (
            answers.next().unwrap_or_default().first().map(|s| s.value),
            answers.next().unwrap_or_default(),
            answers.next().unwrap_or_default(),
        );
        let pods = pods.ok().flatten();
        let topics: BTreeSet<String> = partitions
            .into_iter()
            .filter_map(|s| s.metric.get("topic").cloned())
            .collect();
        let pod_names: Vec<String> = pods
            .as_ref()
            .map(|p| {
                p.iter()
                    .map(|(ns, n, phase)| format!("{ns}/{n} ({phase})"))
                    .collect()
            })
            .unwrap_or_default();
        let Some(brokers) = brokers else {
            let present = pods.as_ref().is_some_and(|p| !p.is_empty());
            cx.facts.put(KafkaExporter { present });
            if present {
                return Outcome::fail(format!(
                    "a Kafka exporter runs ({}) but Prometheus has no kafka_brokers: its pod is not scraped, or its scrape fails",
                    pod_names.join(", ")
                ))
                .evidence("exporter_pods", &pod_names)
                .remedy({
                    let (ens, epod) = pods
                        .as_ref()
                        .and_then(|p| p.first())
                        .map(|(n, p, _)| (n.clone(), workload_of(p)))
                        .unwrap_or_default();
                    format!("# the exporter's pod template needs the scrape annotations (port 9308, path /metrics):\nkubectl -n {ens} patch deployment {} --type merge -p '{{\"spec\":{{\"template\":{{\"metadata\":{{\"annotations\":{{\"prometheus.io/scrape\":\"true\",\"prometheus.io/port\":\"9308\",\"prometheus.io/path\":\"/metrics\"}}}}}}}}}}'\nmsa-doctor --only prometheus.targets", epod)
                });
            }
            return Outcome::warn(format!(
                "no Kafka exporter runs{}: the lag panel (kafka_consumergroup_lag) cannot have data",
                if pods.is_some() { " (no pod named or built from kafka-exporter, kafka_exporter, kafka-lag-exporter in any namespace)" } else { "" }
            ))
            .evidence("exporter_pods", &pod_names)
            .remedy(install_remedy(cx));
        };
        cx.facts.put(KafkaExporter { present: true });
        if brokers < 1.0 {
            return Outcome::fail("the Kafka exporter runs but sees 0 brokers: it cannot reach Kafka")
                .evidence("kafka_brokers", brokers)
                .remedy(format!(
                    "kubectl -n {ns} get svc | grep -i kafka    # the broker's Service and port\n# then point the exporter at it: --kafka.server=kafka.{ns}.svc.cluster.local:9092",
                    ns = cx.settings.namespace
                ));
        }
        let lag_topics: BTreeSet<String> = lag
            .iter()
            .filter_map(|s| s.metric.get("topic").cloned())
            .collect();
        let groups: BTreeSet<String> = lag
            .iter()
            .filter(|s| s.metric.get("topic") == Some(&topic))
            .filter_map(|s| s.metric.get("consumergroup").cloned())
            .collect();
        let seen: Vec<String> = topics
            .iter()
            .filter(|t| !t.starts_with("__"))
            .cloned()
            .collect();
        let base = |o: Outcome| {
            o.evidence("kafka_brokers", brokers)
                .evidence("topics", &seen)
                .evidence("exporter_pods", &pod_names)
        };
        if !groups.is_empty() {
            return base(Outcome::pass(format!(
                "the Kafka exporter sees {} broker(s) and consumer lag of {} on {topic}",
                brokers,
                groups.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        if !topics.contains(&topic) && !lag_topics.contains(&topic) {
            let near = kubeprobe::nearest(&topic, seen.iter());
            return base(Outcome::fail(format!(
                "the topic {topic:?} does not exist; the exporter sees: {}",
                if seen.is_empty() { "no topic".to_string() } else { seen.join(", ") }
            )))
            .remedy(format!(
                "# check the topic name the services use (spring.kafka..., @KafkaListener(topics = ...)){}\nkubectl -n {ns} exec deploy/kafka -- kafka-topics.sh --bootstrap-server localhost:9092 --list\n# or name the topic msa-doctor should look for:\nmsa-doctor --topic <topic>",
                near.first().map(|n| format!("; nearest: {n}")).unwrap_or_default(),
                ns = cx.settings.namespace
            ));
        }
        base(Outcome::fail(format!(
            "the topic {topic:?} exists but no consumer group reads it, so kafka_consumergroup_lag has no series for it"
        )))
        .remedy(format!(
            "kubectl -n {ns} logs deploy/delivery-service --tail=50    # is the consumer running and subscribed?\nkubectl -n {ns} exec deploy/kafka -- kafka-consumer-groups.sh --bootstrap-server localhost:9092 --list",
            ns = cx.settings.namespace
        ))
    }
}
