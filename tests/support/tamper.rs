//! A tampering HTTP proxy for tests: it forwards every request to an upstream and, for the
//! requests a rule matches, answers with a failure instead (or corrupts the real answer), as a
//! flaky network or an odd server would. It can also echo every request's headers and URL
//! back in an error body, as servers that repeat credentials do.

#![allow(dead_code)]

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How a matched answer fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// HTTP 500 with a JSON error body.
    Json500,
    /// HTTP 502 with an HTML page (a proxy in the way).
    Html502,
    /// No answer at all until the client gives up.
    Hang,
    /// The real status and headers, half the body, then the connection is reset.
    ResetMidBody,
    /// HTTP 200 with the first half of the real body (a clean close: truncated JSON).
    Truncated,
    /// HTTP 200 with JSON of another shape.
    WrongShape,
    /// HTTP 200 with a 100 MB body.
    Huge,
}

impl Failure {
    /// Every failure.
    pub const ALL: [Failure; 7] = [
        Failure::Json500,
        Failure::Html502,
        Failure::Hang,
        Failure::ResetMidBody,
        Failure::Truncated,
        Failure::WrongShape,
        Failure::Huge,
    ];
}

/// Which requests a rule matches: the path contains `path`, and the URL's query (decoded)
/// contains `query` when given, and does not contain `not_query` when given.
#[derive(Clone, Debug)]
pub struct Matcher {
    /// A part of the path.
    pub path: &'static str,
    /// A part of the decoded query string that must be there.
    pub query: Option<&'static str>,
    /// A part of the decoded query string that must not be there.
    pub not_query: Option<&'static str>,
    /// The path must end with this.
    pub end: Option<&'static str>,
}

impl Matcher {
    /// Matches a path part.
    pub const fn path(path: &'static str) -> Self {
        Matcher {
            path,
            query: None,
            not_query: None,
            end: None,
        }
    }

    /// Matches a path ending.
    pub const fn ends(path: &'static str) -> Self {
        Matcher {
            path,
            query: None,
            not_query: None,
            end: Some(path),
        }
    }

    fn matches(&self, path: &str, query: &str) -> bool {
        path.contains(self.path)
            && self.end.is_none_or(|e| path.ends_with(e))
            && self.query.is_none_or(|q| query.contains(q))
            && self.not_query.is_none_or(|q| !query.contains(q))
    }
}

/// What the proxy does.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Forwards everything.
    Pass,
    /// Fails what the matcher matches.
    Fail(Matcher, Failure),
    /// Answers every request with HTTP 500 and a body repeating its URL and headers; a
    /// `/login` gets 200 and a session cookie with this value first.
    Echo {
        /// The session cookie's value.
        cookie: &'static str,
    },
}

struct Inner {
    upstream: String,
    mode: Mode,
    client: reqwest::Client,
    hits: AtomicU64,
}

/// A running proxy; dropped, it stops.
pub struct Tamper {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tamper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Tamper {
    /// Starts a proxy in front of `upstream` (`http://host:port`).
    pub async fn start(upstream: &str, mode: Mode) -> Tamper {
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_string(),
            mode,
            client: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a client"),
            hits: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Tamper {
            url: format!("http://{addr}"),
            inner,
            task,
        }
    }

    /// How many requests the rule matched.
    pub fn hits(&self) -> u64 {
        self.inner.hits.load(Ordering::Relaxed)
    }
}

fn decoded_query(q: &str) -> String {
    url_decode(q)
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    out.push(b);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

const HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
    "upgrade",
    "te",
    "trailer",
];

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    // A POSTed form counts as the query too.
    let full_query = format!(
        "{}&{}",
        decoded_query(&query),
        url_decode(&String::from_utf8_lossy(&body))
    );
    if let Mode::Echo { cookie } = &inner.mode {
        return echo(
            &parts.method,
            &parts.uri.to_string(),
            &parts.headers,
            cookie,
            &path,
        );
    }
    let matched = match &inner.mode {
        Mode::Fail(m, f) if m.matches(&path, &full_query) => Some(*f),
        _ => None,
    };
    if let Some(f) = matched {
        inner.hits.fetch_add(1, Ordering::Relaxed);
        match f {
            Failure::Json500 => {
                return text(
                    500,
                    "application/json",
                    r#"{"message":"internal server error","status":"error","error":"boom"}"#,
                );
            }
            Failure::Html502 => {
                return text(
                    502,
                    "text/html",
                    "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>",
                );
            }
            Failure::Hang => {
                tokio::time::sleep(Duration::from_secs(120)).await;
                return text(504, "text/plain", "late");
            }
            Failure::WrongShape => {
                let b = if path.contains("/api/v1/") {
                    r#"{"status":"success","data":{"unexpected":[1,2,3]}}"#
                } else if path.starts_with("/api/") && !path.starts_with("/api/v1") {
                    r#"{"unexpected":{"shape":true},"items":"nope"}"#
                } else {
                    r#"{"kind":"Unexpected","items":"nope","metadata":7}"#
                };
                return text(200, "application/json", b);
            }
            Failure::Huge => {
                let chunk = axum::body::Bytes::from(vec![b' '; 1024 * 1024]);
                let stream = futures::stream::iter(
                    std::iter::once(Ok::<_, std::io::Error>(axum::body::Bytes::from_static(
                        b"{\"status\":\"success\",\"data\":",
                    )))
                    .chain((0..100).map(move |_| Ok(chunk.clone()))),
                );
                return Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(Body::from_stream(stream))
                    .expect("a response");
            }
            Failure::ResetMidBody | Failure::Truncated => {}
        }
    }
    // Forward.
    let url = format!(
        "{}{}",
        inner.upstream,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut fwd = inner
        .client
        .request(parts.method.clone(), &url)
        .body(body.to_vec());
    for (k, v) in parts.headers.iter() {
        if !HOP.contains(&k.as_str()) {
            fwd = fwd.header(k, v);
        }
    }
    let resp = match fwd.send().await {
        Ok(r) => r,
        Err(e) => return text(502, "text/plain", &format!("tamper: upstream: {e}")),
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let real = resp.bytes().await.unwrap_or_default();
    let mut b = Response::builder().status(status);
    for (k, v) in headers.iter() {
        if !HOP.contains(&k.as_str()) {
            b = b.header(k, v);
        }
    }
    match matched {
        Some(Failure::Truncated) => {
            let half = real.slice(..real.len() / 2);
            b.body(Body::from(half)).expect("a response")
        }
        Some(Failure::ResetMidBody) => {
            let half = real.slice(..real.len() / 2);
            let stream = futures::stream::iter(vec![
                Ok(half),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "tamper: reset",
                )),
            ]);
            b.header("content-length", real.len().to_string())
                .body(Body::from_stream(stream))
                .expect("a response")
        }
        _ => b.body(Body::from(real)).expect("a response"),
    }
}

fn text(status: u16, ct: &str, body: &str) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("a status"))
        .header("content-type", ct)
        .body(Body::from(body.to_string()))
        .expect("a response")
}

fn echo(
    method: &axum::http::Method,
    uri: &str,
    headers: &HeaderMap,
    cookie: &str,
    path: &str,
) -> Response {
    let mut lines = vec![format!("{method} {uri}")];
    for (k, v) in headers {
        lines.push(format!("{k}: {}", v.to_str().unwrap_or("?")));
    }
    let all = lines.join("\n");
    if path == "/login" && method == axum::http::Method::POST {
        let mut r = text(200, "application/json", r#"{"message":"Logged in"}"#);
        r.headers_mut().insert(
            HeaderName::from_static("set-cookie"),
            HeaderValue::from_str(&format!("grafana_session={cookie}; Path=/; HttpOnly"))
                .expect("a cookie"),
        );
        return r;
    }
    let body = serde_json::json!({
        "message": format!("you sent: {all}"),
        "status": "error",
        "errorType": "echo",
        "error": all,
        "kind": "Status",
        "code": 500,
        "reason": all,
    });
    text(500, "application/json", &body.to_string())
}
