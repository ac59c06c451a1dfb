//! Waiting for warm data: a fresh stack's first scrape is not yet a usable graph. `rate()` over
//! `[1m]` needs two samples and the traffic generator needs a few seconds to place an order, so
//! the demo and the tests wait until the guide's panels could show something, or a deadline.

use super::faults::Fault;
use super::stack::Stack;
use crate::clients::{PromApi, Transport};
use std::time::{Duration, Instant};

/// The queries that must return something before the stack counts as warm, given its faults.
fn conditions(stack: &Stack) -> Vec<&'static str> {
    let f = &stack.faults;
    let mut c = vec!["count(up == 1)"];
    if !f.has(Fault::NoTraffic) && !f.has(Fault::StaleData) {
        c.push("sum(increase(http_server_requests_seconds_count{uri!~\"/actuator.*\"}[1m])) > 0");
        // Every service that has request series has a request inside the last minute (a
        // service's first request creates its series, which increase() cannot see).
        c.push("count(sum by (application) (increase(http_server_requests_seconds_count{uri!~\"/actuator.*\"}[1m])) > 0) >= count(count by (application) (http_server_requests_seconds_count{uri!~\"/actuator.*\"}))");
        // The guide's panel 1 (or its uri-mismatch twin) has a non-zero rate.
        c.push("sum(rate(http_server_requests_seconds_count{uri=~\"/api/orders|/orders\", method=\"POST\"}[1m])) > 0");
    }
    if !f.has(Fault::NoCadvisor) {
        c.push("count(rate(container_cpu_usage_seconds_total[1m]))");
    }
    if !f.has(Fault::NoKafkaExporter) && !f.has(Fault::TopicMissing) {
        c.push("count(kafka_consumergroup_lag)");
    }
    c
}

/// Polls the stack's database until every condition holds or `deadline` passes; returns how
/// long it waited and whether it got warm.
pub async fn wait_for_data(stack: &Stack, deadline: Duration) -> (Duration, bool) {
    let start = Instant::now();
    // The scale fixture's queries sum over thousands of series: give each more time.
    let per_query = if stack.scale.is_some() {
        Duration::from_secs(15)
    } else {
        Duration::from_secs(2)
    };
    let api = PromApi::direct(
        Transport::new(per_query),
        &stack.prometheus_url,
        per_query,
        Default::default(),
    );
    let conds = conditions(stack);
    loop {
        let mut all = true;
        for q in &conds {
            let ok = api
                .instant(q, None)
                .await
                .map(|v| v.iter().any(|s| s.value > 0.0))
                .unwrap_or(false);
            if !ok {
                all = false;
                break;
            }
        }
        // Every discovered target scraped at least once.
        if all {
            all = match api.targets().await {
                Ok(t) => t.active_targets.iter().all(|t| t.health != "unknown"),
                Err(_) => false,
            };
        }
        if all {
            return (start.elapsed(), true);
        }
        if start.elapsed() >= deadline {
            return (start.elapsed(), false);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
