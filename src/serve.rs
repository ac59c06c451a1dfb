//! `msa-doctor serve`: re-runs the checklist on the engine every `--interval` and serves the
//! last run's metrics at `/metrics` (CONTRACT.md v1.1, "Metrics") and its health at `/healthz`,
//! so that a cluster's own Prometheus scrapes it and Alertmanager alerts on it. It adds no
//! server of its own beyond this one listener, and talks to the world only through the engine.

use crate::app;
use crate::cli::{Format, ServeArgs};
use crate::config::ConfigError;
use crate::engine::Status;
use crate::exit_code;
use crate::report::{Report, human::count_phrases, prometheus};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// What the handlers read: the last run's exposition and when it ended.
#[derive(Default)]
struct Last {
    metrics: Option<String>,
    ended: Option<Instant>,
    runs: u64,
}

#[derive(Clone)]
struct Shared {
    last: Arc<RwLock<Last>>,
    interval: Duration,
}

/// Resolves `--listen`: `:9464` (every interface), `host:port`, `[::1]:9464`.
pub async fn listen_addr(listen: &str) -> Result<SocketAddr, ConfigError> {
    let spec = if listen.starts_with(':') {
        format!("0.0.0.0{listen}")
    } else {
        listen.to_string()
    };
    let bad = |why: String| ConfigError::Usage(format!("invalid --listen {listen:?}: {why}"));
    let mut addrs = tokio::net::lookup_host(&spec)
        .await
        .map_err(|e| bad(format!("{e} (try :9464 or 127.0.0.1:9464)")))?;
    addrs
        .next()
        .ok_or_else(|| bad("the host resolves to no address".into()))
}

/// The router: `/metrics`, `/healthz`, and a short index at `/`.
fn router(shared: Shared) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/", get(index))
        .with_state(shared)
}

async fn index() -> &'static str {
    "msa-doctor serve: /metrics (Prometheus text format), /healthz\n"
}

async fn metrics(State(s): State<Shared>) -> Response {
    let last = s.last.read().unwrap_or_else(|e| e.into_inner());
    match &last.metrics {
        Some(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)],
            text.clone(),
        )
            .into_response(),
        // A scrape before the first run ends is a failed scrape (`up` 0), not an empty
        // answer that an alert on `absent()` would have to guess about.
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the first run has not finished yet\n",
        )
            .into_response(),
    }
}

async fn healthz(State(s): State<Shared>) -> Response {
    let last = s.last.read().unwrap_or_else(|e| e.into_inner());
    // Healthy while the loop keeps going: before the first run, and while the last one ended
    // less than three intervals (and at least two minutes) ago.
    let stale_after = (s.interval * 3).max(Duration::from_secs(120));
    match last.ended {
        None => (
            StatusCode::OK,
            "starting: the first run is under way\n".to_string(),
        ),
        Some(t) if t.elapsed() <= stale_after => (
            StatusCode::OK,
            format!(
                "ok: {} runs, the last ended {}s ago\n",
                last.runs,
                t.elapsed().as_secs()
            ),
        ),
        Some(t) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "stuck: the last run ended {}s ago, the interval is {}s\n",
                t.elapsed().as_secs(),
                s.interval.as_secs()
            ),
        ),
    }
    .into_response()
}

/// One line per run on stderr: what a container log shows.
fn log_line(n: u64, report: &Report) -> String {
    let counts: Vec<String> = count_phrases(&report.summary())
        .into_iter()
        .filter(|(status, c, _)| *c > 0 || *status == Status::Fail)
        .map(|(_, _, text)| text)
        .collect();
    format!(
        "msa-doctor serve: run {n}: {} in {:.1}s",
        counts.join(", "),
        report.duration.as_secs_f64()
    )
}

/// Waits for Ctrl-C, or SIGTERM where there is one (a container's stop).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// `msa-doctor serve`; returns the exit code when stopped.
pub async fn run(args: ServeArgs) -> Result<i32, ConfigError> {
    let (settings, plan) = app::prepare(&args.check)?;
    if let Some(o) = args.check.report.output {
        o.supported_by("serve", &[Format::Prometheus])
            .map_err(ConfigError::Usage)?;
    }
    let addr = listen_addr(&args.listen).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ConfigError::Usage(format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().unwrap_or(addr);
    eprintln!(
        "msa-doctor serve: listening on http://{local} (/metrics, /healthz), a run every {}",
        humantime::format_duration(args.interval)
    );
    let shared = Shared {
        last: Arc::default(),
        interval: args.interval,
    };
    let runs = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(args.interval);
            // A run longer than the interval delays the next one instead of bunching them.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let report = app::run_plan(settings.clone(), plan.clone()).await;
                let text = prometheus::render(&report);
                let n = {
                    let mut last = shared.last.write().unwrap_or_else(|e| e.into_inner());
                    last.metrics = Some(text);
                    last.ended = Some(Instant::now());
                    last.runs += 1;
                    last.runs
                };
                eprintln!("{}", log_line(n, &report));
            }
        })
    };
    let served = axum::serve(listener, router(shared))
        .with_graceful_shutdown(shutdown_signal())
        .await;
    runs.abort();
    match served {
        Ok(()) => Ok(exit_code::OK),
        Err(e) => {
            eprintln!("msa-doctor serve: {e}");
            Ok(exit_code::ERROR)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listen_addresses() {
        assert_eq!(
            listen_addr(":9464").await.unwrap(),
            "0.0.0.0:9464".parse().unwrap()
        );
        assert_eq!(
            listen_addr("127.0.0.1:0").await.unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(
            listen_addr("[::1]:9464").await.unwrap(),
            "[::1]:9464".parse().unwrap()
        );
        let e = listen_addr("9464").await.unwrap_err().to_string();
        assert!(e.contains("--listen") && e.contains(":9464"), "{e}");
    }
}
