//! Facts of the domain that the checks and the explainer share (neither imports the other's
//! internals): what is not user traffic, how an age reads.

/// Prometheus's own scrapes and health probes are not traffic.
pub fn is_probe_uri(uri: &str) -> bool {
    uri.starts_with("/actuator")
        || uri == "/health"
        || uri == "/metrics"
        || uri == "/prometheus"
        || uri.starts_with("/healthz")
}

/// "47 min ago" style ages.
pub fn age(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min", s / 60)
    } else {
        format!("{:.1} h", s as f64 / 3600.0)
    }
}
