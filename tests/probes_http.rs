//! `kind = "http"` against a small axum server started in each test (status, body, JSON
//! pointer, HTML where JSON was expected, a hang, a huge body, a refused connection), and
//! `kind = "tcp"` against an open and a closed port.
#![cfg(feature = "sandbox")]

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use msa_doctor::engine::{CheckCtx, Clients, Facts, Outcome, Probe, Status};
use msa_doctor::probes::http::Http;
use msa_doctor::probes::net::Tcp;
use msa_doctor::settings::Settings;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"database":"ok","version":"10.4.1","nested":{"n":3,"list":[1,2]}}"#,
    )
}

async fn html() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html")],
        "<!doctype html><html><body>Please log in</body></html>",
    )
}

async fn hang() -> &'static str {
    tokio::time::sleep(Duration::from_secs(60)).await;
    "too late"
}

/// 80 MiB in 64 KiB chunks, streamed (the server does not hold it either).
async fn huge() -> Body {
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let chunks = (0..1280).map(move |_| Ok::<_, Infallible>(chunk.clone()));
    Body::from_stream(futures::stream::iter(chunks))
}

async fn created(headers: HeaderMap, body: String) -> impl IntoResponse {
    let token = headers
        .get("x-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_string();
    (StatusCode::CREATED, format!("token={token} body={body}"))
}

/// Starts the test server on a free loopback port; returns its base URL.
async fn server() -> String {
    let app = Router::new()
        .route("/ok", get(|| async { "UP and running" }))
        .route("/json", get(json))
        .route("/html", get(html))
        .route(
            "/down",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "maintenance") }),
        )
        .route("/hang", get(hang))
        .route("/huge", get(huge))
        .route("/post", post(created));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn context(timeout: Duration, grafana_url: &str) -> CheckCtx {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut settings = Settings::defaults();
    settings.grafana_url = grafana_url.to_string();
    settings.timeout = timeout;
    let settings = Arc::new(settings);
    CheckCtx::new(
        settings.clone(),
        Arc::new(Clients::new(&settings)),
        Arc::new(Facts::default()),
        timeout,
    )
}

fn table(text: &str) -> toml::Table {
    text.parse().expect("valid TOML in the test")
}

/// Builds an http probe from TOML args and runs it with a deadline.
async fn http(args: &str, base: &str, timeout: Duration) -> Outcome {
    let probe = Http::from_args(&table(args)).expect("valid http args");
    probe.run(&context(timeout, base)).await
}

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn expected_status_passes_and_another_fails() {
    let base = server().await;
    let o = http(&format!("url = \"{base}/ok\""), &base, T).await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert_eq!(o.message, format!("{base}/ok answered HTTP 200"));
    assert_eq!(o.evidence["status"], 200);

    let o = http(&format!("url = \"{base}/down\""), &base, T).await;
    assert_eq!(o.status, Status::Fail, "{o:?}");
    assert_eq!(
        o.message,
        format!("{base}/down answered HTTP 503, expected 200")
    );
    assert_eq!(o.evidence["body"], "maintenance");

    let o = http(
        &format!("url = \"{base}/down\"\nexpect_status = [200, 503]"),
        &base,
        T,
    )
    .await;
    assert_eq!(o.status, Status::Pass, "{o:?}");

    let o = http(
        &format!("url = \"{base}/nowhere\"\nexpect_status = [200, 204]"),
        &base,
        T,
    )
    .await;
    assert_eq!(
        o.message,
        format!("{base}/nowhere answered HTTP 404, expected 200 or 204")
    );
}

#[tokio::test]
async fn body_contains() {
    let base = server().await;
    let o = http(
        &format!("url = \"{base}/ok\"\nbody_contains = \"UP\""),
        &base,
        T,
    )
    .await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    let o = http(
        &format!("url = \"{base}/ok\"\nbody_contains = \"DOWN\""),
        &base,
        T,
    )
    .await;
    assert_eq!(o.status, Status::Fail, "{o:?}");
    assert_eq!(
        o.message,
        format!("{base}/ok: the body does not contain \"DOWN\"")
    );
    assert_eq!(o.evidence["body"], "UP and running");
}

#[tokio::test]
async fn json_pointer_and_json_equals() {
    let base = server().await;
    let run = |extra: &str| {
        let args = format!("url = \"{base}/json\"\n{extra}");
        let base = base.clone();
        async move { http(&args, &base, T).await }
    };
    let o = run("json_pointer = \"/database\"\njson_equals = \"ok\"").await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    let o = run("json_pointer = \"/nested/n\"\njson_equals = 3").await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    let o = run("json_pointer = \"/nested/list\"\njson_equals = [1, 2]").await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    // A pointer alone asks only that the value exists.
    let o = run("json_pointer = \"/version\"").await;
    assert_eq!(o.status, Status::Pass, "{o:?}");

    let o = run("json_pointer = \"/database\"\njson_equals = \"failing\"").await;
    assert_eq!(o.status, Status::Fail, "{o:?}");
    assert_eq!(
        o.message,
        format!("{base}/json: /database is \"ok\", expected \"failing\"")
    );
    let o = run("json_pointer = \"/nested/missing\"").await;
    assert_eq!(o.status, Status::Fail, "{o:?}");
    assert_eq!(
        o.message,
        format!("{base}/json: no JSON value at /nested/missing")
    );
}

#[tokio::test]
async fn html_where_json_was_expected() {
    let base = server().await;
    let o = http(
        &format!("url = \"{base}/html\"\njson_pointer = \"/database\""),
        &base,
        T,
    )
    .await;
    assert_eq!(o.status, Status::Fail, "{o:?}");
    assert!(
        o.message
            .starts_with(&format!("{base}/html: the body is not JSON (text/html")),
        "{}",
        o.message
    );
    assert!(
        o.evidence["body"]
            .as_str()
            .unwrap()
            .contains("Please log in")
    );
}

#[tokio::test]
async fn method_headers_body_and_templates() {
    let base = server().await;
    let o = http(
        "url = \"{grafana_url}/post\"\nmethod = \"post\"\nexpect_status = 201\n\
         body = \"hello\"\nbody_contains = \"token=ns-metacoding body=hello\"\n\
         headers = { x-token = \"ns-{namespace}\" }",
        &base,
        T,
    )
    .await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert_eq!(o.evidence["url"], format!("{base}/post"));
}

#[tokio::test]
async fn a_hang_times_out_at_the_deadline() {
    let base = server().await;
    let start = Instant::now();
    let o = http(
        &format!("url = \"{base}/hang\""),
        &base,
        Duration::from_millis(500),
    )
    .await;
    let took = start.elapsed();
    assert_eq!(o.status, Status::Fail, "{o:?}");
    assert_eq!(
        o.message,
        format!("GET {base}/hang: no answer within 500ms")
    );
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(1500),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_huge_body_is_an_error_not_a_memory_blow_up() {
    let base = server().await;
    let o = http(
        &format!("url = \"{base}/huge\"\nbody_contains = \"y\""),
        &base,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(o.status, Status::Error, "{o:?}");
    assert_eq!(
        o.message,
        format!(
            "GET {base}/huge failed: the answer is larger than 64 MiB, the most msa-doctor reads of one answer"
        )
    );
}

/// A loopback port nothing listens on.
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
    // `l` is dropped here: the port is closed.
}

#[tokio::test]
async fn connection_refused() {
    let port = closed_port().await;
    let url = format!("http://127.0.0.1:{port}/api/health");
    let o = http(&format!("url = \"{url}\""), "http://127.0.0.1:1", T).await;
    assert_eq!(o.status, Status::Fail, "{o:?}");
    assert_eq!(o.message, format!("GET {url}: connection refused"));
}

async fn tcp(address: &str) -> Outcome {
    let probe = Tcp::from_args(&table(&format!("address = \"{address}\""))).unwrap();
    probe
        .run(&context(Duration::from_secs(2), "http://127.0.0.1:3000"))
        .await
}

#[tokio::test]
async fn tcp_open_port_passes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let o = tcp(&addr.to_string()).await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert!(
        o.message
            .starts_with(&format!("{addr} accepts connections")),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn tcp_closed_port_fails_with_connection_refused() {
    let port = closed_port().await;
    let o = tcp(&format!("127.0.0.1:{port}")).await;
    assert_eq!(o.status, Status::Fail, "{o:?}");
    assert_eq!(
        o.message,
        format!("cannot connect to 127.0.0.1:{port}: connection refused: nothing listens there")
    );
    assert_eq!(o.evidence["address"], format!("127.0.0.1:{port}"));
}

#[tokio::test]
async fn tcp_address_from_the_settings() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let probe = Tcp::from_args(&table("address = \"{grafana_host}\"")).unwrap();
    let o = probe
        .run(&context(Duration::from_secs(2), &format!("http://{addr}")))
        .await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
}
