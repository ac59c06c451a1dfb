//! The emulated Grafana against what real Grafana answers: golden bodies from
//! `tests/fixtures/grafana/`, a tiny stand-in Prometheus for the data source, and each Grafana
//! fault of the practice stack.
// The practice stack runs Prometheus and manages process groups: Unix only.
#![cfg(all(unix, feature = "sandbox"))]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use msa_doctor::sandbox::faults::{Fault, FaultSet};
use msa_doctor::sandbox::grafana::{
    DATASOURCE_UID, GRAFANA_COMMIT, GRAFANA_VERSION, GrafanaOptions, GrafanaSim,
};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------------
// Helpers.

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A fixture with `{KEY}` placeholders replaced, parsed.
fn fixture(name: &str, vars: &[(&str, String)]) -> Value {
    let path = format!(
        "{}/tests/fixtures/grafana/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (k, v) in vars {
        text = text.replace(&format!("{{{k}}}"), v);
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    l.local_addr().expect("addr").port()
}

async fn start(opts: GrafanaOptions) -> GrafanaSim {
    init();
    GrafanaSim::start(opts).await.expect("grafana starts")
}

fn opts(datasource_url: &str) -> GrafanaOptions {
    GrafanaOptions {
        datasource_url: datasource_url.to_string(),
        upstream_timeout: Duration::from_secs(5),
        ..GrafanaOptions::default()
    }
}

fn with_faults(datasource_url: &str, faults: &[Fault]) -> GrafanaOptions {
    GrafanaOptions {
        faults: FaultSet::of(faults),
        ..opts(datasource_url)
    }
}

async fn body_json(resp: reqwest::Response) -> (StatusCode, String, Value) {
    let status = resp.status();
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, ct, value)
}

/// Logs in as admin and returns the `grafana_session` cookie pair.
async fn login(g: &GrafanaSim, password: &str) -> String {
    let resp = client()
        .post(format!("{}/login", g.url))
        .json(&json!({"user": "admin", "password": password}))
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), 200);
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("grafana_session="))
        .and_then(|c| c.split(';').next())
        .expect("session cookie")
        .to_string()
}

/// What the stand-in Prometheus received.
#[derive(Clone, Debug, Default)]
struct Seen {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: String,
}

/// A tiny stand-in for Prometheus 2.42's HTTP API.
struct FakeProm {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for FakeProm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeProm {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn fake_prom() -> FakeProm {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .fallback(prom_handler)
        .with_state(seen.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FakeProm {
        url: format!("http://127.0.0.1:{port}"),
        seen,
        task,
    }
}

fn form_value(encoded: &str, key: &str) -> Option<String> {
    encoded.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| decode(v))
    })
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < b.len() => {
                let h = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap(), 16);
                out.push(h.unwrap());
                i += 3;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn prom_json(status: StatusCode, body: Value) -> Response {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Grafana's proxy must not pass this on.
    h.insert(
        header::SET_COOKIE,
        HeaderValue::from_static("upstream=1; Path=/"),
    );
    resp
}

async fn prom_handler(State(seen): State<Arc<Mutex<Vec<Seen>>>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let record = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    seen.lock().expect("lock").push(record.clone());
    let params = if record.method == "POST" {
        record.body.clone()
    } else {
        record.query.clone()
    };
    let expr = form_value(&params, "query").unwrap_or_default();
    let bad = || {
        prom_json(
            StatusCode::BAD_REQUEST,
            json!({"status": "error", "errorType": "bad_data",
                   "error": "invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis"}),
        )
    };
    match record.path.as_str() {
        "/api/v1/status/buildinfo" => prom_json(
            StatusCode::OK,
            json!({"status": "success", "data": {"version": "2.42.0",
                "revision": "225c61122d88b01d1f0eaaee0e05b6f3e0567ac0", "branch": "HEAD",
                "buildUser": "root@c67d48967507", "buildDate": "20230131-13:25:25",
                "goVersion": "go1.19.5"}}),
        ),
        "/api/v1/query" if expr == "1+1" => prom_json(
            StatusCode::OK,
            json!({"status": "success", "data": {"resultType": "scalar", "result": [4, "2"]}}),
        ),
        "/api/v1/query" | "/api/v1/query_range" if expr.contains("bad(") => bad(),
        "/api/v1/query" if expr.contains("nope") => prom_json(
            StatusCode::OK,
            json!({"status": "success", "data": {"resultType": "vector", "result": []}}),
        ),
        "/api/v1/query" => prom_json(
            StatusCode::OK,
            json!({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"__name__": "up", "instance": "127.0.0.1:9090", "job": "prometheus"},
                 "value": [1641889532.123, "1"]}]}}),
        ),
        "/api/v1/query_range" if expr.contains("nope") => prom_json(
            StatusCode::OK,
            json!({"status": "success", "data": {"resultType": "matrix", "result": []}}),
        ),
        "/api/v1/query_range" => prom_json(
            StatusCode::OK,
            json!({"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {"__name__": "prometheus_http_requests_total", "code": "200",
                            "handler": "/api/v1/query_range", "job": "prometheus"},
                 "values": [[1641889530.123, "21"], [1641889531.123, "32"], [1641889532.123, "43"]]},
                {"metric": {"__name__": "prometheus_http_requests_total", "code": "400",
                            "handler": "/api/v1/query_range", "job": "prometheus"},
                 "values": [[1641889529.123, "54"], [1641889532.123, "76"]]}]}}),
        ),
        _ => {
            let mut resp = Response::new(Body::from("404 page not found\n"));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            resp
        }
    }
}

/// A server that accepts connections and never answers.
async fn hanging_server() -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut sock, _)) = listener.accept().await {
            held.push(tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            }));
        }
    });
    (format!("http://127.0.0.1:{port}"), task)
}

fn ds_query_body(expr: &str) -> Value {
    json!({
        "queries": [{
            "refId": "A",
            "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
            "expr": expr, "range": true, "instant": false, "legendFormat": "",
            "intervalMs": 1000, "maxDataPoints": 1000
        }],
        "from": "1641889500000",
        "to": "1641889560000"
    })
}

// ---------------------------------------------------------------------------------------------
// Health and login.

#[tokio::test]
async fn health_answers_like_grafana_11() {
    let g = start(opts("http://127.0.0.1:9")).await;
    let resp = client()
        .get(format!("{}/api/health", g.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "application/json; charset=UTF-8"
    );
    let text = resp.text().await.unwrap();
    assert!(
        text.starts_with("{\n  \"database\": \"ok\",\n  \"version\""),
        "{text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    let golden = fixture(
        "api-health.json",
        &[
            ("VERSION", GRAFANA_VERSION.into()),
            ("COMMIT", GRAFANA_COMMIT.into()),
        ],
    );
    assert_eq!(v, golden);

    let head = client()
        .head(format!("{}/api/health", g.url))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.text().await.unwrap().is_empty());

    let healthz = client()
        .get(format!("{}/healthz", g.url))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
    assert_eq!(healthz.text().await.unwrap(), "Ok");
    g.shutdown().await;
}

#[tokio::test]
async fn login_ok_sets_the_session_cookie_and_bad_password_is_401() {
    let g = start(opts("http://127.0.0.1:9")).await;
    let resp = client()
        .post(format!("{}/login", g.url))
        .json(&json!({"user": "admin", "password": "admin"}))
        .send()
        .await
        .unwrap();
    let cookies: Vec<String> = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let (status, ct, v) = body_json(resp).await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/json");
    assert_eq!(v, fixture("login-200.json", &[]));
    let session = cookies
        .iter()
        .find(|c| c.starts_with("grafana_session="))
        .expect("grafana_session cookie");
    let value = session
        .trim_start_matches("grafana_session=")
        .split(';')
        .next()
        .unwrap();
    assert_eq!(value.len(), 32);
    assert!(value.bytes().all(|b| b.is_ascii_hexdigit()));
    for attr in ["Path=/", "Max-Age=2592000", "HttpOnly", "SameSite=Lax"] {
        assert!(session.contains(attr), "{session} lacks {attr}");
    }
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("grafana_session_expiry="))
    );

    // The cookie signs in.
    let cookie = format!("grafana_session={value}");
    let (status, _, user) = body_json(
        client()
            .get(format!("{}/api/user", g.url))
            .header(header::COOKIE, &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(user["login"], "admin");
    let (status, _, ping) = body_json(
        client()
            .get(format!("{}/api/login/ping", g.url))
            .header(header::COOKIE, &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, ping),
        (StatusCode::OK, json!({"message": "Logged in"}))
    );

    // A bad password.
    let (status, ct, v) = body_json(
        client()
            .post(format!("{}/login", g.url))
            .json(&json!({"user": "admin", "password": "wrong"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(ct, "application/json");
    assert_eq!(v, fixture("login-401.json", &[]));

    // A session Grafana does not know.
    let resp = client()
        .get(format!("{}/api/org", g.url))
        .header(
            header::COOKIE,
            "grafana_session=0123456789abcdef0123456789abcdef",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    g.shutdown().await;
}

#[tokio::test]
async fn basic_auth_and_service_account_tokens() {
    let g = start(opts("http://127.0.0.1:9")).await;
    let url = format!("{}/api/org", g.url);

    let (status, _, org) = body_json(
        client()
            .get(&url)
            .basic_auth("admin", Some("admin"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(org["name"], "Main Org.");

    let (status, _, v) = body_json(
        client()
            .get(&url)
            .basic_auth("admin", Some("nope"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(v, fixture("login-401.json", &[]));

    assert!(g.sa_token.starts_with("glsa_"));
    let (status, _, org) = body_json(
        client()
            .get(&url)
            .bearer_auth(&g.sa_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(org["id"], 1);

    let (status, _, v) = body_json(
        client()
            .get(&url)
            .bearer_auth("glsa_notARealTokenAtAll0000000000000_deadbeef")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(v, fixture("invalid-api-key.json", &[]));

    let (status, _, v) = body_json(client().get(&url).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(v, fixture("unauthorized.json", &[]));

    // Health needs no credentials; unknown API routes are 404 for anyone.
    let resp = client()
        .get(format!("{}/api/nothing-here", g.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    g.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Data sources and their health check.

#[tokio::test]
async fn datasource_list_and_lookup() {
    let prom = fake_prom().await;
    let g = start(GrafanaOptions {
        scrape_interval: Some("1s".into()),
        ..opts(&prom.url)
    })
    .await;
    let (status, _, list) = body_json(
        client()
            .get(format!("{}/api/datasources", g.url))
            .bearer_auth(&g.sa_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        list,
        fixture("datasources.json", &[("PROM", prom.url.clone())])
    );

    for path in ["uid/prometheus", "name/Prometheus", "1"] {
        let (status, _, ds) = body_json(
            client()
                .get(format!("{}/api/datasources/{path}", g.url))
                .bearer_auth(&g.sa_token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(ds["uid"], DATASOURCE_UID);
        assert_eq!(ds["url"], prom.url.as_str());
        assert_eq!(ds["readOnly"], true);
        assert_eq!(ds["jsonData"]["timeInterval"], "1s");
    }
    let (status, _, v) = body_json(
        client()
            .get(format!("{}/api/datasources/uid/nope", g.url))
            .bearer_auth(&g.sa_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(v, fixture("datasource-not-found.json", &[]));
    g.shutdown().await;
}

#[tokio::test]
async fn health_check_runs_one_plus_one_against_prometheus() {
    let prom = fake_prom().await;
    let g = start(opts(&prom.url)).await;
    let (status, ct, v) = body_json(
        client()
            .get(format!("{}/api/datasources/uid/prometheus/health", g.url))
            .basic_auth("admin", Some("admin"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/json");
    assert_eq!(v, fixture("ds-health-ok.json", &[]));

    let seen = prom.seen();
    let query = seen
        .iter()
        .find(|s| s.path == "/api/v1/query")
        .expect("an instant query");
    assert_eq!(query.method, "POST");
    assert_eq!(query.content_type, "application/x-www-form-urlencoded");
    assert_eq!(query.body, "query=1%2B1&time=4");
    assert!(seen.iter().any(|s| s.path == "/api/v1/status/buildinfo"));

    // Unknown uid: 500 like Grafana 9/10/11; an invalid uid: 400.
    let resp = client()
        .get(format!("{}/api/datasources/uid/other/health", g.url))
        .basic_auth("admin", Some("admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let resp = client()
        .get(format!("{}/api/datasources/uid/$%7BDS%7D/health", g.url))
        .basic_auth("admin", Some("admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    g.shutdown().await;
}

#[tokio::test]
async fn health_check_reports_connection_refused_in_go_words() {
    let port = closed_port();
    let g = start(opts(&format!("http://127.0.0.1:{port}"))).await;
    let (status, _, v) = body_json(
        client()
            .get(format!("{}/api/datasources/uid/prometheus/health", g.url))
            .basic_auth("admin", Some("admin"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        v,
        fixture("ds-health-refused.json", &[("PORT", port.to_string())])
    );
    g.shutdown().await;
}

#[tokio::test]
async fn health_check_reports_http_errors_and_timeouts() {
    // A web server without the Prometheus API: Grafana prints the status line.
    let prom = fake_prom().await;
    let g = start(opts(&format!("{}/prefix", prom.url))).await;
    let (status, _, v) = body_json(
        client()
            .get(format!("{}/api/datasources/uid/prometheus/health", g.url))
            .basic_auth("admin", Some("admin"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        v["message"],
        "404 Not Found - There was an error returned querying the Prometheus API."
    );
    assert!(prom.seen().iter().any(|s| s.path == "/prefix/api/v1/query"));
    g.shutdown().await;

    let (hang_url, hang) = hanging_server().await;
    let g = start(GrafanaOptions {
        upstream_timeout: Duration::from_millis(300),
        ..opts(&hang_url)
    })
    .await;
    let (status, _, v) = body_json(
        client()
            .get(format!("{}/api/datasources/uid/prometheus/health", g.url))
            .basic_auth("admin", Some("admin"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!("Post \"{hang_url}/api/v1/query\": ")),
        "{msg}"
    );
    assert!(msg.contains("Client.Timeout exceeded"), "{msg}");
    g.shutdown().await;
    hang.abort();
}

// ---------------------------------------------------------------------------------------------
// The data source proxy.

#[tokio::test]
async fn proxy_needs_a_signed_in_user() {
    let prom = fake_prom().await;
    let g = start(opts(&prom.url)).await;
    let (status, _, v) = body_json(
        client()
            .get(format!(
                "{}/api/datasources/proxy/uid/prometheus/api/v1/query?query=up",
                g.url
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(v, fixture("unauthorized.json", &[]));
    assert!(prom.seen().is_empty(), "nothing reached Prometheus");
    g.shutdown().await;
}

#[tokio::test]
async fn proxy_forwards_to_prometheus_unchanged() {
    let prom = fake_prom().await;
    let g = start(opts(&prom.url)).await;
    let cookie = login(&g, "admin").await;

    let resp = client()
        .get(format!(
            "{}/api/datasources/proxy/uid/prometheus/api/v1/query?query=up&time=1641889532",
            g.url
        ))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    assert!(resp.headers().get(header::SET_COOKIE).is_none());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(v["data"]["result"][0]["metric"]["__name__"], "up");
    let last = prom.seen().pop().unwrap();
    assert_eq!(
        (
            last.method.as_str(),
            last.path.as_str(),
            last.query.as_str()
        ),
        ("GET", "/api/v1/query", "query=up&time=1641889532")
    );

    // POST with a form body, the legacy numeric route, and Prometheus's own error envelope.
    let resp = client()
        .post(format!("{}/api/datasources/proxy/1/api/v1/query", g.url))
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("query=sum(bad(")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["errorType"], "bad_data");
    let last = prom.seen().pop().unwrap();
    assert_eq!(last.method, "POST");
    assert_eq!(last.content_type, "application/x-www-form-urlencoded");
    assert_eq!(last.body, "query=sum(bad(");

    // Grafana refuses POSTs outside the Prometheus plugin's routes.
    let resp = client()
        .post(format!(
            "{}/api/datasources/proxy/uid/prometheus/api/v1/admin/tsdb/delete_series",
            g.url
        ))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // Prometheus's own 404 comes back as is.
    let resp = client()
        .get(format!(
            "{}/api/datasources/proxy/uid/prometheus/metrics-nowhere",
            g.url
        ))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.text().await.unwrap(), "404 page not found\n");

    let resp = client()
        .get(format!(
            "{}/api/datasources/proxy/uid/other/api/v1/query?query=up",
            g.url
        ))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    g.shutdown().await;
}

#[tokio::test]
async fn proxy_answers_502_and_504_without_a_body() {
    let port = closed_port();
    let g = start(opts(&format!("http://127.0.0.1:{port}"))).await;
    let resp = client()
        .get(format!(
            "{}/api/datasources/proxy/uid/prometheus/api/v1/query?query=up",
            g.url
        ))
        .bearer_auth(&g.sa_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert!(resp.text().await.unwrap().is_empty());
    g.shutdown().await;

    let (hang_url, hang) = hanging_server().await;
    let g = start(GrafanaOptions {
        upstream_timeout: Duration::from_millis(300),
        ..opts(&hang_url)
    })
    .await;
    let started = Instant::now();
    let resp = client()
        .get(format!(
            "{}/api/datasources/proxy/uid/prometheus/api/v1/query?query=up",
            g.url
        ))
        .bearer_auth(&g.sa_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    assert!(resp.text().await.unwrap().is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
    g.shutdown().await;
    hang.abort();
}

// ---------------------------------------------------------------------------------------------
// /api/ds/query.

#[tokio::test]
async fn ds_query_turns_a_matrix_into_frames() {
    let prom = fake_prom().await;
    let g = start(opts(&prom.url)).await;
    let (status, ct, v) = body_json(
        client()
            .post(format!("{}/api/ds/query", g.url))
            .bearer_auth(&g.sa_token)
            .json(&ds_query_body("prometheus_http_requests_total"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/json");
    assert_eq!(v, fixture("ds-query-matrix.json", &[]));

    let last = prom.seen().pop().unwrap();
    assert_eq!(last.path, "/api/v1/query_range");
    assert_eq!(
        last.body,
        "end=1641889560&query=prometheus_http_requests_total&start=1641889500&step=1"
    );
    g.shutdown().await;
}

#[tokio::test]
async fn ds_query_empty_result_and_errors() {
    let prom = fake_prom().await;
    let g = start(opts(&prom.url)).await;
    let (status, _, v) = body_json(
        client()
            .post(format!("{}/api/ds/query", g.url))
            .bearer_auth(&g.sa_token)
            .json(&ds_query_body("up{job=\"nope\"}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v, fixture("ds-query-empty.json", &[]));

    let (status, _, v) = body_json(
        client()
            .post(format!("{}/api/ds/query", g.url))
            .bearer_auth(&g.sa_token)
            .json(&ds_query_body("sum(bad("))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(v, fixture("ds-query-error.json", &[]));

    // An instant query becomes one numeric frame per series.
    let body = json!({
        "queries": [{"refId": "B", "datasource": {"uid": DATASOURCE_UID}, "expr": "up",
                     "instant": true, "range": false, "legendFormat": "{{job}}"}],
        "from": "now-15m", "to": "now"
    });
    let (status, _, v) = body_json(
        client()
            .post(format!("{}/api/ds/query", g.url))
            .bearer_auth(&g.sa_token)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let frame = &v["results"]["B"]["frames"][0];
    assert_eq!(frame["schema"]["meta"]["type"], "numeric-multi");
    assert_eq!(frame["schema"]["fields"][1]["name"], "up");
    assert_eq!(
        frame["schema"]["fields"][1]["config"]["displayNameFromDS"],
        "prometheus"
    );
    assert_eq!(frame["data"]["values"][1], json!([1]));

    // A data source that does not exist (the unresolved `${DS_...}` of an export).
    let mut body = ds_query_body("up");
    body["queries"][0]["datasource"]["uid"] = json!("${DS_PROMETHEUS_WH211}");
    let (status, _, v) = body_json(
        client()
            .post(format!("{}/api/ds/query", g.url))
            .bearer_auth(&g.sa_token)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(v, fixture("datasource-not-found.json", &[]));
    g.shutdown().await;
}

#[tokio::test]
async fn ds_query_against_an_unreachable_prometheus() {
    let port = closed_port();
    let g = start(opts(&format!("http://127.0.0.1:{port}"))).await;
    let (status, _, v) = body_json(
        client()
            .post(format!("{}/api/ds/query", g.url))
            .bearer_auth(&g.sa_token)
            .json(&ds_query_body("up"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(v["results"]["A"]["status"], 502);
    assert_eq!(
        v["results"]["A"]["error"],
        format!(
            "Post \"http://127.0.0.1:{port}/api/v1/query_range\": dial tcp 127.0.0.1:{port}: connect: connection refused"
        )
    );
    g.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Dashboards.

#[tokio::test]
async fn search_and_dashboards() {
    let extra = json!({"uid": "extra-one", "title": "Extra Board", "tags": ["x"], "panels": []});
    let g = start(GrafanaOptions {
        extra_dashboards: vec![extra],
        ..opts("http://127.0.0.1:9")
    })
    .await;
    let (status, _, hits) = body_json(
        client()
            .get(format!("{}/api/search?type=dash-db", g.url))
            .bearer_auth(&g.sa_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let titles: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "Extra Board",
            "Kafka Exporter Overview",
            "MSA Monitoring",
            "Spring Boot Observability"
        ]
    );
    let msa = hits
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["uid"] == "msa-guide")
        .unwrap();
    assert_eq!(msa["type"], "dash-db");
    assert_eq!(msa["url"], "/d/msa-guide/msa-monitoring");

    let (_, _, hits) = body_json(
        client()
            .get(format!("{}/api/search?type=dash-db&query=msa", g.url))
            .bearer_auth(&g.sa_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(hits.as_array().unwrap().len(), 1);

    let (status, _, d) = body_json(
        client()
            .get(format!("{}/api/dashboards/uid/msa-guide", g.url))
            .bearer_auth(&g.sa_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(d["meta"]["provisioned"], true);
    let dash = &d["dashboard"];
    assert_eq!(dash["refresh"], "5s");
    assert_eq!(dash["time"], json!({"from": "now-15m", "to": "now"}));
    let exprs: Vec<&str> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(
                p["datasource"],
                json!({"type": "prometheus", "uid": "prometheus"})
            );
            p["targets"][0]["expr"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        exprs,
        [
            "rate(http_server_requests_seconds_count{uri=\"/api/orders\", method=\"POST\"}[1m]) * 60",
            "kafka_consumergroup_lag{topic=\"order-created\"}",
            "rate(container_cpu_usage_seconds_total{namespace=\"metacoding\", image!=\"\"}[1m])",
            "sum(jvm_memory_used_bytes{area=\"heap\"}) by (application)",
        ]
    );
    assert_eq!(dash["panels"][2]["targets"][0]["legendFormat"], "{{pod}}");

    let (_, _, d) = body_json(
        client()
            .get(format!("{}/api/dashboards/uid/jwPKIsniz", g.url))
            .bearer_auth(&g.sa_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        d["dashboard"]["panels"][0]["datasource"],
        "${DS_PROMETHEUS_WH211}"
    );
    assert!(d["dashboard"]["__inputs"].is_array());

    let (status, _, v) = body_json(
        client()
            .get(format!("{}/api/dashboards/uid/nope", g.url))
            .bearer_auth(&g.sa_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(v, fixture("dashboard-not-found.json", &[]));
    g.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Faults.

#[tokio::test]
async fn fault_no_port_forward_leaves_nothing_listening() {
    let g = start(with_faults("http://127.0.0.1:9", &[Fault::NoPortForward])).await;
    let err = tokio::net::TcpStream::connect(("127.0.0.1", g.port))
        .await
        .expect_err("nothing listens");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(g.url, format!("http://127.0.0.1:{}", g.port));
}

#[tokio::test]
async fn fault_port_taken_serves_a_web_app() {
    let g = start(with_faults("http://127.0.0.1:9", &[Fault::PortTaken])).await;
    let resp = client().get(format!("{}/", g.url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let resp = client()
        .get(format!("{}/api/health", g.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(
        resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("Cannot GET /api/health")
    );
    g.shutdown().await;
}

#[tokio::test]
async fn fault_wrong_password_and_password_changed() {
    for fault in [Fault::WrongPassword, Fault::PasswordChanged] {
        let g = start(GrafanaOptions {
            admin_password: "n3w-Passw0rd".into(),
            ..with_faults("http://127.0.0.1:9", &[fault])
        })
        .await;
        let resp = client()
            .post(format!("{}/login", g.url))
            .json(&json!({"user": "admin", "password": "admin"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{fault:?}");
        let _cookie = login(&g, "n3w-Passw0rd").await;
        g.shutdown().await;
    }
}

#[tokio::test]
async fn fault_no_datasource() {
    let prom = fake_prom().await;
    let g = start(with_faults(&prom.url, &[Fault::NoDatasource])).await;
    let auth = |r: reqwest::RequestBuilder| r.bearer_auth(&g.sa_token);
    let (status, _, v) = body_json(
        auth(client().get(format!("{}/api/datasources", g.url)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, v), (StatusCode::OK, json!([])));
    let resp = auth(client().get(format!("{}/api/datasources/uid/prometheus", g.url)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let (status, _, v) = body_json(
        auth(client().get(format!("{}/api/datasources/uid/prometheus/health", g.url)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(v, json!({"message": "Unable to load datasource metadata"}));
    let resp = auth(client().post(format!("{}/api/ds/query", g.url)))
        .json(&ds_query_body("up"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(prom.seen().is_empty());
    g.shutdown().await;
}

#[tokio::test]
async fn fault_datasource_wrong_url_is_refused_inside_the_pod() {
    let g = start(with_faults(
        "http://localhost:9090",
        &[Fault::DatasourceWrongUrl],
    ))
    .await;
    let (status, _, v) = body_json(
        client()
            .get(format!("{}/api/datasources/uid/prometheus/health", g.url))
            .bearer_auth(&g.sa_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(v, fixture("ds-health-localhost.json", &[]));

    let resp = client()
        .get(format!(
            "{}/api/datasources/proxy/uid/prometheus/api/v1/query?query=up",
            g.url
        ))
        .bearer_auth(&g.sa_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert!(resp.text().await.unwrap().is_empty());

    let (status, _, v) = body_json(
        client()
            .post(format!("{}/api/ds/query", g.url))
            .bearer_auth(&g.sa_token)
            .json(&ds_query_body("up"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        v["results"]["A"]["error"],
        "Post \"http://localhost:9090/api/v1/query_range\": dial tcp [::1]:9090: connect: connection refused"
    );
    g.shutdown().await;
}

#[tokio::test]
async fn fault_grafana_hangs_accepts_but_never_answers() {
    let g = start(with_faults("http://127.0.0.1:9", &[Fault::GrafanaHangs])).await;
    let _conn = tokio::net::TcpStream::connect(("127.0.0.1", g.port))
        .await
        .expect("the port accepts connections");
    let quick = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = quick
        .get(format!("{}/api/health", g.url))
        .send()
        .await
        .expect_err("no answer");
    assert!(err.is_timeout(), "{err}");
    g.shutdown().await;
}

#[tokio::test]
async fn fault_grafana_500_html() {
    let g = start(with_faults("http://127.0.0.1:9", &[Fault::Grafana500Html])).await;
    for path in ["/api/health", "/login", "/api/datasources"] {
        let resp = client()
            .get(format!("{}{path}", g.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 500, "{path}");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/html");
        let text = resp.text().await.unwrap();
        assert!(text.contains("<title>500 Internal Server Error</title>"));
        assert!(text.contains("nginx"));
    }
    g.shutdown().await;
}

#[tokio::test]
async fn fault_latency_50ms_delays_every_response() {
    let g = start(with_faults("http://127.0.0.1:9", &[Fault::Latency50ms])).await;
    let c = client();
    for path in ["/api/health", "/api/org"] {
        let started = Instant::now();
        let resp = c.get(format!("{}{path}", g.url)).send().await.unwrap();
        assert!(resp.status() == 200 || resp.status() == 401);
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "{path}: {:?}",
            started.elapsed()
        );
    }
    g.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Secrets.

#[tokio::test]
async fn no_secret_in_any_error_body() {
    let port = closed_port();
    let password = "Sup3r-Secret-Pw";
    let ds_password = "pr0m-Secret";
    let g = start(GrafanaOptions {
        admin_password: password.into(),
        ..opts(&format!("http://promuser:{ds_password}@127.0.0.1:{port}"))
    })
    .await;
    let cookie = login(&g, password).await;
    let c = client();
    let mut bodies = Vec::new();
    let requests = vec![
        c.post(format!("{}/login", g.url))
            .json(&json!({"user": "admin", "password": format!("{password}x")})),
        c.get(format!("{}/api/org", g.url))
            .basic_auth("admin", Some(format!("{password}x"))),
        c.get(format!("{}/api/org", g.url))
            .bearer_auth(format!("{}x", g.sa_token)),
        c.get(format!("{}/api/datasources/uid/prometheus/health", g.url))
            .header(header::COOKIE, &cookie),
        c.post(format!("{}/api/ds/query", g.url))
            .header(header::COOKIE, &cookie)
            .json(&ds_query_body("up")),
        c.get(format!(
            "{}/api/datasources/proxy/uid/prometheus/api/v1/query?query=up",
            g.url
        ))
        .header(header::COOKIE, &cookie),
        c.get(format!("{}/api/datasources/uid/nope", g.url))
            .header(header::COOKIE, &cookie),
    ];
    for req in requests {
        let resp = req.send().await.unwrap();
        assert!(resp.status().is_client_error() || resp.status().is_server_error());
        bodies.push(resp.text().await.unwrap());
    }
    let session = cookie.trim_start_matches("grafana_session=");
    for body in &bodies {
        for secret in [password, ds_password, g.sa_token.as_str(), session] {
            assert!(!body.contains(secret), "a secret leaked into {body}");
        }
    }
    // The health error names the URL as Go does: password masked.
    assert!(
        bodies[3].contains("promuser:***@127.0.0.1"),
        "{}",
        bodies[3]
    );
    assert!(!format!("{g:?}").contains(&g.sa_token));
    g.shutdown().await;
}
