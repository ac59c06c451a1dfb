//! The emulated Grafana of the practice stack: answers like Grafana 10/11/12 on loopback.
//!
//! It owns the HTTP surface msa-doctor talks to (health, login, sessions, basic auth and a
//! service-account token, data sources, the data source health check, the data source proxy,
//! `/api/ds/query`, search and dashboards) and the Grafana-side faults (`no-port-forward`,
//! `port-taken`, `no-datasource`, `grafana-hangs`, `grafana-500-html`, `latency-50ms`; the
//! password faults only need the admin password the stack passes in). Status codes, bodies,
//! content types and error texts follow `reference/grafana-api.md` and Grafana's own sources.
//!
//! The data source is real: the health check, the proxy and `/api/ds/query` call the Prometheus
//! at `datasource_url` with a deadline, and error texts mimic what Grafana's Go HTTP client
//! prints. A data source URL whose host is `localhost` is taken as Grafana's own pod loopback,
//! where nothing listens: it is never dialled and answers "connection refused".
//!
//! It must not print anything, listen anywhere but 127.0.0.1, or put a secret (password, token,
//! session cookie) into any response body.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use super::faults::{Fault, FaultSet};

/// The uid of the provisioned Prometheus data source.
pub const DATASOURCE_UID: &str = "prometheus";
/// The name of the provisioned Prometheus data source.
pub const DATASOURCE_NAME: &str = "Prometheus";
/// The Grafana version the emulator reports.
pub const GRAFANA_VERSION: &str = "11.3.0";
/// The build commit the emulator reports (the emulator's own constant, not a Grafana commit).
pub const GRAFANA_COMMIT: &str = "5f1d6a2f0b2e4c7d9a8b3c1e0f4d2a6b8c9e7f10";
/// The admin login name.
pub const ADMIN_USER: &str = "admin";
/// The uid of the dashboard holding the guide's panels.
pub const GUIDE_DASHBOARD_UID: &str = "msa-guide";

/// Session lifetime, as Grafana's default `login_maximum_lifetime_duration` (30 days).
const SESSION_MAX_AGE_SECS: u64 = 30 * 24 * 3600;
/// The largest request body the emulator reads.
const MAX_REQUEST_BODY: usize = 16 * 1024 * 1024;
/// The largest upstream (Prometheus) body the emulator reads.
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;
/// Grafana's safe resolution: a range query never asks for more points than this.
const SAFE_RESOLUTION: i64 = 11_000;

/// The dashboards provisioned at start: (file name, JSON).
const BUILTIN_DASHBOARDS: [(&str, &str); 3] = [
    (
        "msa-monitoring.json",
        include_str!("dashboards/msa-monitoring.json"),
    ),
    (
        "spring-boot-observability.json",
        include_str!("dashboards/spring-boot-observability.json"),
    ),
    (
        "kafka-exporter-overview.json",
        include_str!("dashboards/kafka-exporter-overview.json"),
    ),
];

/// How to start the emulated Grafana.
#[derive(Clone)]
pub struct GrafanaOptions {
    /// The faults of the stack; the Grafana ones change this server.
    pub faults: FaultSet,
    /// The Prometheus URL as Grafana's pod reaches it, e.g. `http://127.0.0.1:9090`.
    pub datasource_url: String,
    /// The admin password Grafana accepts (user `admin`).
    pub admin_password: String,
    /// Dashboards provisioned after the built-in ones; one with a built-in uid replaces it.
    pub extra_dashboards: Vec<Value>,
    /// The data source's `jsonData.timeInterval` (the scrape interval, e.g. `"1s"`); omitted
    /// when `None`.
    pub scrape_interval: Option<String>,
    /// How long the data source calls (health check, proxy, queries) may take; real Grafana
    /// uses 30 s for the proxy and 60 s for queries.
    pub upstream_timeout: Duration,
    /// Count requests and serve the counts at `/_sandbox/requests` (the scale benchmark's).
    pub count_requests: bool,
}

impl Default for GrafanaOptions {
    fn default() -> Self {
        GrafanaOptions {
            faults: FaultSet::healthy(),
            datasource_url: "http://127.0.0.1:9090".to_string(),
            admin_password: "admin".to_string(),
            extra_dashboards: Vec::new(),
            scrape_interval: None,
            upstream_timeout: Duration::from_secs(10),
            count_requests: false,
        }
    }
}

impl fmt::Debug for GrafanaOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrafanaOptions")
            .field("faults", &self.faults)
            .field("datasource_url", &redact_url(&self.datasource_url))
            .field("admin_password", &"<redacted>")
            .field("extra_dashboards", &self.extra_dashboards.len())
            .field("scrape_interval", &self.scrape_interval)
            .field("upstream_timeout", &self.upstream_timeout)
            .field("count_requests", &self.count_requests)
            .finish()
    }
}

/// A running emulated Grafana. Dropping it stops it.
pub struct GrafanaSim {
    /// `http://127.0.0.1:PORT`, what the laptop's port-forward gives.
    pub url: String,
    /// The port of `url`.
    pub port: u16,
    /// A valid service-account token (`glsa_...`), for Bearer auth in tests.
    pub sa_token: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for GrafanaSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrafanaSim")
            .field("url", &self.url)
            .field("port", &self.port)
            .field("sa_token", &"<redacted>")
            .finish()
    }
}

impl GrafanaSim {
    /// Starts the emulator on a free loopback port, shaped by the Grafana faults of `opts`.
    pub async fn start(opts: GrafanaOptions) -> io::Result<GrafanaSim> {
        // reqwest needs a process-wide rustls provider; another part may have installed it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sa_token = new_sa_token();
        let faults = opts.faults.clone();

        if faults.has(Fault::NoPortForward) {
            // Reserve a free port and close it again: nothing listens there.
            let port = {
                let probe = std::net::TcpListener::bind(("127.0.0.1", 0))?;
                probe.local_addr()?.port()
            };
            return Ok(GrafanaSim {
                url: format!("http://127.0.0.1:{port}"),
                port,
                sa_token,
                stop: None,
                task: None,
            });
        }

        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let latency = faults.has(Fault::Latency50ms);

        let task = if faults.has(Fault::GrafanaHangs) {
            tokio::spawn(hang_forever(listener, stop_rx))
        } else {
            let router = if faults.has(Fault::PortTaken) {
                Router::new().fallback(web_app_entry).with_state(latency)
            } else if faults.has(Fault::Grafana500Html) {
                Router::new()
                    .fallback(broken_proxy_entry)
                    .with_state(latency)
            } else {
                let shared = Arc::new(Shared::new(&opts, sa_token.clone())?);
                Router::new().fallback(grafana_entry).with_state(shared)
            };
            let router = if opts.count_requests {
                router.layer(axum::middleware::from_fn_with_state(
                    Arc::new(crate::sandbox::scale::RequestCounter::default()),
                    crate::sandbox::scale::count_grafana,
                ))
            } else {
                router
            };
            tokio::spawn(async move {
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    })
                    .await;
            })
        };

        Ok(GrafanaSim {
            url: format!("http://127.0.0.1:{port}"),
            port,
            sa_token,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// Stops the emulator: lets in-flight requests finish for up to a second, then stops hard.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(1), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for GrafanaSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Faults that replace Grafana.

/// `grafana-hangs`: accepts connections and reads requests but never answers.
async fn hang_forever(listener: TcpListener, mut stop: oneshot::Receiver<()>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                if let Ok((mut sock, _)) = accepted {
                    conns.spawn(async move {
                        let mut buf = [0u8; 4096];
                        // Read until the client gives up; never write a byte.
                        while let Ok(n) = sock.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                        }
                    });
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    // Dropping the set aborts every held connection.
}

/// `port-taken`: a web app's dev server (Express) answers on Grafana's port.
async fn web_app_entry(State(latency): State<bool>, req: Request) -> Response {
    if latency {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if (method == Method::GET || method == Method::HEAD) && path == "/" {
        let page = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>Shop</title>\n<script type=\"module\" src=\"/src/main.jsx\"></script>\n</head>\n\
<body>\n<div id=\"root\"></div>\n</body>\n</html>\n";
        let mut resp = text_response(StatusCode::OK, "text/html; charset=utf-8", page);
        resp.headers_mut()
            .insert("x-powered-by", HeaderValue::from_static("Express"));
        return resp;
    }
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Error</title>\n\
</head>\n<body>\n<pre>Cannot {} {}</pre>\n</body>\n</html>\n",
        html_escape(method.as_str()),
        html_escape(&path)
    );
    let mut resp = text_response(StatusCode::NOT_FOUND, "text/html; charset=utf-8", &page);
    let h = resp.headers_mut();
    h.insert("x-powered-by", HeaderValue::from_static("Express"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// `grafana-500-html`: a broken reverse proxy in front of Grafana answers 500 to everything.
async fn broken_proxy_entry(State(latency): State<bool>) -> Response {
    if latency {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page = "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n<body>\r\n\
<center><h1>500 Internal Server Error</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
    let mut resp = text_response(StatusCode::INTERNAL_SERVER_ERROR, "text/html", page);
    resp.headers_mut()
        .insert(header::SERVER, HeaderValue::from_static("nginx"));
    resp
}

// ---------------------------------------------------------------------------------------------
// Grafana's state.

/// One provisioned data source.
#[derive(Clone, Debug)]
struct DataSource {
    id: i64,
    uid: String,
    name: String,
    url: String,
    json_data: Value,
}

/// One provisioned dashboard.
#[derive(Clone, Debug)]
struct Dashboard {
    id: i64,
    uid: String,
    title: String,
    slug: String,
    tags: Vec<String>,
    model: Value,
    external_id: String,
}

/// Who a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Identity {
    /// The admin user (session or basic auth).
    Admin,
    /// The service account behind the token.
    ServiceAccount,
}

/// Everything the Grafana handlers share.
struct Shared {
    latency: bool,
    admin_password: String,
    sa_token: String,
    datasources: Vec<DataSource>,
    dashboards: Vec<Dashboard>,
    sessions: Mutex<HashMap<String, u64>>,
    client: reqwest::Client,
    started_at: String,
}

impl Shared {
    fn new(opts: &GrafanaOptions, sa_token: String) -> io::Result<Shared> {
        let mut json_data = Map::new();
        json_data.insert("httpMethod".into(), json!("POST"));
        if let Some(interval) = &opts.scrape_interval {
            json_data.insert("timeInterval".into(), json!(interval));
        }
        let datasources = if opts.faults.has(Fault::NoDatasource) {
            Vec::new()
        } else {
            vec![DataSource {
                id: 1,
                uid: DATASOURCE_UID.to_string(),
                name: DATASOURCE_NAME.to_string(),
                url: opts.datasource_url.clone(),
                json_data: Value::Object(json_data),
            }]
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(opts.upstream_timeout.min(Duration::from_secs(5)))
            .timeout(opts.upstream_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(format!("Grafana/{GRAFANA_VERSION}"))
            .build()
            .map_err(io::Error::other)?;
        Ok(Shared {
            latency: opts.faults.has(Fault::Latency50ms),
            admin_password: opts.admin_password.clone(),
            sa_token,
            datasources,
            dashboards: load_dashboards(&opts.extra_dashboards)?,
            sessions: Mutex::new(HashMap::new()),
            client,
            started_at: rfc3339(unix_now_secs()),
        })
    }

    fn datasource_by_uid(&self, uid: &str) -> Option<&DataSource> {
        self.datasources.iter().find(|d| d.uid == uid)
    }

    fn datasource_by_id(&self, id: &str) -> Option<&DataSource> {
        let id: i64 = id.parse().ok()?;
        self.datasources.iter().find(|d| d.id == id)
    }
}

/// Parses the built-in and extra dashboards into provisioned entries.
fn load_dashboards(extra: &[Value]) -> io::Result<Vec<Dashboard>> {
    let mut models: Vec<(String, Value)> = Vec::new();
    for (file, text) in BUILTIN_DASHBOARDS {
        let model: Value = serde_json::from_str(text).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("dashboard {file}: {e}"))
        })?;
        models.push((file.to_string(), model));
    }
    for (i, model) in extra.iter().enumerate() {
        if !model.is_object() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("extra dashboard {i} is not a JSON object"),
            ));
        }
        let uid = model.get("uid").and_then(Value::as_str).unwrap_or("");
        let file = if uid.is_empty() {
            format!("extra-{}.json", i + 1)
        } else {
            format!("{uid}.json")
        };
        let same_uid = models.iter().position(|(_, m)| {
            !uid.is_empty() && m.get("uid").and_then(Value::as_str) == Some(uid)
        });
        match same_uid {
            Some(pos) => models[pos] = (file, model.clone()),
            None => models.push((file, model.clone())),
        }
    }
    let mut out = Vec::new();
    for (i, (file, mut model)) in models.into_iter().enumerate() {
        let id = i as i64 + 1;
        let uid = match model.get("uid").and_then(Value::as_str) {
            Some(u) if !u.is_empty() => u.to_string(),
            _ => format!("extra{id:08}"),
        };
        let title = model
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("Untitled")
            .to_string();
        let tags = model
            .get("tags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        // Grafana stores the JSON as given but answers with its own id, uid and version.
        if let Some(obj) = model.as_object_mut() {
            obj.insert("id".into(), json!(id));
            obj.insert("uid".into(), json!(uid));
            obj.insert("version".into(), json!(1));
        }
        out.push(Dashboard {
            id,
            slug: slugify(&title),
            uid,
            title,
            tags,
            model,
            external_id: file,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Routing.

/// Every request to the emulated Grafana.
async fn grafana_entry(State(st): State<Arc<Shared>>, req: Request) -> Response {
    if st.latency {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut resp = route(&st, req).await;
    let h = resp.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("deny"));
    h.insert(
        "x-xss-protection",
        HeaderValue::from_static("1; mode=block"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The API routes, matched before authentication (an unknown route is 404 for anyone).
#[derive(Debug)]
enum ApiRoute {
    LoginPing,
    User,
    Org,
    FrontendSettings,
    DatasourceList,
    DatasourceByUid(String),
    DatasourceByName(String),
    DatasourceById(String),
    DatasourceIdByName(String),
    HealthByUid(String),
    HealthById(String),
    ProxyByUid { uid: String, rest: String },
    ProxyById { id: String, rest: String },
    DsQuery,
    Search,
    DashboardByUid(String),
}

fn match_api(method: &Method, path: &str) -> Option<ApiRoute> {
    // The proxy routes take any method and keep the rest of the path verbatim.
    for (prefix, by_uid) in [
        ("/api/datasources/proxy/uid/", true),
        ("/api/datasources/proxy/", false),
    ] {
        if let Some(tail) = path.strip_prefix(prefix) {
            if !by_uid && tail.starts_with("uid/") {
                continue;
            }
            let (key, rest) = match tail.split_once('/') {
                Some((k, r)) => (k, r),
                None => (tail, ""),
            };
            if key.is_empty() {
                return None;
            }
            let key = percent_decode(key, false);
            let rest = rest.to_string();
            return Some(if by_uid {
                ApiRoute::ProxyByUid { uid: key, rest }
            } else {
                ApiRoute::ProxyById { id: key, rest }
            });
        }
    }
    let trimmed = path.trim_end_matches('/');
    let segs: Vec<&str> = trimmed.split('/').skip(1).collect();
    let get = *method == Method::GET || *method == Method::HEAD;
    let post = *method == Method::POST;
    let dec = |s: &str| percent_decode(s, false);
    match segs.as_slice() {
        ["api", "login", "ping"] if get => Some(ApiRoute::LoginPing),
        ["api", "user"] if get => Some(ApiRoute::User),
        ["api", "org"] if get => Some(ApiRoute::Org),
        ["api", "frontend", "settings"] if get => Some(ApiRoute::FrontendSettings),
        ["api", "datasources"] if get => Some(ApiRoute::DatasourceList),
        ["api", "datasources", "uid", uid] if get => Some(ApiRoute::DatasourceByUid(dec(uid))),
        ["api", "datasources", "uid", uid, "health"] if get => {
            Some(ApiRoute::HealthByUid(dec(uid)))
        }
        ["api", "datasources", "name", name] if get => Some(ApiRoute::DatasourceByName(dec(name))),
        ["api", "datasources", "id", name] if get => Some(ApiRoute::DatasourceIdByName(dec(name))),
        ["api", "datasources", id, "health"] if get => Some(ApiRoute::HealthById(dec(id))),
        ["api", "datasources", id] if get => Some(ApiRoute::DatasourceById(dec(id))),
        ["api", "ds", "query"] if post => Some(ApiRoute::DsQuery),
        ["api", "search"] if get => Some(ApiRoute::Search),
        ["api", "dashboards", "uid", uid] if get => Some(ApiRoute::DashboardByUid(dec(uid))),
        _ => None,
    }
}

async fn route(st: &Arc<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let headers = parts.headers;
    let get = method == Method::GET || method == Method::HEAD;

    match path.as_str() {
        "/api/health" if get => return health_response(),
        "/healthz" if get => {
            return text_response(StatusCode::OK, "text/plain; charset=utf-8", "Ok");
        }
        "/login" if method == Method::POST => {
            let body = match axum::body::to_bytes(body, MAX_REQUEST_BODY).await {
                Ok(b) => b,
                Err(_) => return msg_error(StatusCode::BAD_REQUEST, "bad login data"),
            };
            return login(st, &headers, &body);
        }
        "/login" | "/login/" if get => return html_page(StatusCode::OK, "Grafana"),
        "/logout" if get => {
            if let Some(token) = session_cookie(&headers) {
                lock_sessions(st).remove(&token);
            }
            let mut resp = redirect("/login");
            append_cookie(
                &mut resp,
                "grafana_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax",
            );
            return resp;
        }
        "/" if get => {
            return match authenticate(st, &headers) {
                Ok(_) => html_page(StatusCode::OK, "Home - Dashboards - Grafana"),
                Err(_) => {
                    let mut resp = redirect("/login");
                    append_cookie(&mut resp, "redirect_to=%2F; Path=/; HttpOnly; SameSite=Lax");
                    resp
                }
            };
        }
        _ => {}
    }

    let Some(api) = match_api(&method, &path) else {
        if path == "/api" || path.starts_with("/api/") {
            return msg_error(StatusCode::NOT_FOUND, "Not found");
        }
        return html_page(StatusCode::NOT_FOUND, "Grafana");
    };

    let identity = match authenticate(st, &headers) {
        Ok(id) => id,
        Err(resp) => return resp,
    };

    match api {
        ApiRoute::LoginPing => json_response(StatusCode::OK, &json!({"message": "Logged in"})),
        ApiRoute::User => user_profile(st, identity),
        ApiRoute::Org => json_response(
            StatusCode::OK,
            &json!({"id": 1, "name": "Main Org.", "address": {"address1": "", "address2": "", "city": "", "zipCode": "", "state": "", "country": ""}}),
        ),
        ApiRoute::FrontendSettings => frontend_settings(st),
        ApiRoute::DatasourceList => {
            let mut list: Vec<&DataSource> = st.datasources.iter().collect();
            list.sort_by_key(|a| a.name.to_lowercase());
            let items: Vec<Value> = list.iter().map(|d| datasource_list_item(d)).collect();
            json_response(StatusCode::OK, &Value::Array(items))
        }
        ApiRoute::DatasourceByUid(uid) => match st.datasource_by_uid(&uid) {
            Some(ds) => json_response(StatusCode::OK, &datasource_dto(ds)),
            None => msg_error(StatusCode::NOT_FOUND, "Data source not found"),
        },
        ApiRoute::DatasourceByName(name) => match st.datasources.iter().find(|d| d.name == name) {
            Some(ds) => json_response(StatusCode::OK, &datasource_dto(ds)),
            None => msg_error(StatusCode::NOT_FOUND, "Data source not found"),
        },
        ApiRoute::DatasourceById(id) => {
            if id.parse::<i64>().is_err() {
                return msg_error(StatusCode::BAD_REQUEST, "id is invalid");
            }
            match st.datasource_by_id(&id) {
                Some(ds) => json_response(StatusCode::OK, &datasource_dto(ds)),
                None => msg_error(StatusCode::NOT_FOUND, "Data source not found"),
            }
        }
        ApiRoute::DatasourceIdByName(name) => {
            match st.datasources.iter().find(|d| d.name == name) {
                Some(ds) => json_response(StatusCode::OK, &json!({"id": ds.id})),
                None => msg_error(StatusCode::NOT_FOUND, "Data source not found"),
            }
        }
        ApiRoute::HealthByUid(uid) => {
            if !is_valid_uid(&uid) {
                return msg_error(StatusCode::BAD_REQUEST, "UID is invalid");
            }
            match st.datasource_by_uid(&uid) {
                Some(ds) => datasource_health(st, ds).await,
                None => msg_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Unable to load datasource metadata",
                ),
            }
        }
        ApiRoute::HealthById(id) => {
            if id.parse::<i64>().is_err() {
                return msg_error(StatusCode::BAD_REQUEST, "id is invalid");
            }
            match st.datasource_by_id(&id) {
                Some(ds) => datasource_health(st, ds).await,
                None => msg_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Unable to load datasource metadata",
                ),
            }
        }
        ApiRoute::ProxyByUid { uid, rest } => {
            if !is_valid_uid(&uid) {
                return msg_error(StatusCode::BAD_REQUEST, "UID is invalid");
            }
            let Some(ds) = st.datasource_by_uid(&uid) else {
                return msg_error(StatusCode::NOT_FOUND, "Unable to find datasource");
            };
            proxy(st, ds, &method, &rest, query.as_deref(), &headers, body).await
        }
        ApiRoute::ProxyById { id, rest } => {
            if id.parse::<i64>().is_err() {
                return msg_error(StatusCode::BAD_REQUEST, "id is invalid");
            }
            let Some(ds) = st.datasource_by_id(&id) else {
                return msg_error(StatusCode::NOT_FOUND, "Unable to find datasource");
            };
            proxy(st, ds, &method, &rest, query.as_deref(), &headers, body).await
        }
        ApiRoute::DsQuery => {
            let body = match axum::body::to_bytes(body, MAX_REQUEST_BODY).await {
                Ok(b) => b,
                Err(_) => return msg_error(StatusCode::BAD_REQUEST, "bad request data"),
            };
            ds_query(st, &body).await
        }
        ApiRoute::Search => search(st, query.as_deref().unwrap_or("")),
        ApiRoute::DashboardByUid(uid) => match st.dashboards.iter().find(|d| d.uid == uid) {
            Some(d) => json_response(StatusCode::OK, &dashboard_with_meta(st, d)),
            None => msg_error(StatusCode::NOT_FOUND, "Dashboard not found"),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Health, login and authentication.

/// `GET /api/health`: pretty-printed, struct order (Grafana 10+).
fn health_response() -> Response {
    let body = format!(
        "{{\n  \"database\": \"ok\",\n  \"version\": \"{GRAFANA_VERSION}\",\n  \"commit\": \"{GRAFANA_COMMIT}\"\n}}"
    );
    text_response(StatusCode::OK, "application/json; charset=UTF-8", &body)
}

/// The login form fields.
#[derive(serde::Deserialize)]
struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
}

/// `POST /login`.
fn login(st: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    let form: LoginForm = match serde_json::from_slice(body) {
        Ok(f) => f,
        Err(_) => {
            let is_form = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
            if !is_form {
                return msg_error(StatusCode::BAD_REQUEST, "bad login data");
            }
            let pairs = parse_urlencoded(&String::from_utf8_lossy(body));
            let find = |k: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            LoginForm {
                user: find("user"),
                password: find("password"),
            }
        }
    };
    if form.password.is_empty() {
        return errutil(
            StatusCode::UNAUTHORIZED,
            "password-auth.empty",
            "Invalid username or password",
        );
    }
    if !check_password(st, &form.user, &form.password) {
        return errutil(
            StatusCode::UNAUTHORIZED,
            "password-auth.failed",
            "Invalid username or password",
        );
    }
    let token = random_hex(16);
    lock_sessions(st).insert(token.clone(), unix_now_secs());
    let mut resp = json_response(
        StatusCode::OK,
        &json!({"message": "Logged in", "redirectUrl": "/"}),
    );
    append_cookie(
        &mut resp,
        &format!(
            "grafana_session={token}; Path=/; Max-Age={SESSION_MAX_AGE_SECS}; HttpOnly; SameSite=Lax"
        ),
    );
    append_cookie(
        &mut resp,
        &format!(
            "grafana_session_expiry={}; Path=/; Max-Age={SESSION_MAX_AGE_SECS}; SameSite=Lax",
            unix_now_secs() + 600
        ),
    );
    resp
}

fn check_password(st: &Shared, user: &str, password: &str) -> bool {
    (user == ADMIN_USER || user == "admin@localhost") && password == st.admin_password
}

fn lock_sessions(st: &Shared) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
    // A poisoned lock only means another request panicked mid-insert; the map is still usable.
    st.sessions.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `grafana_session` cookie of a request, if any.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == "grafana_session")
        .map(|(_, v)| v.trim().to_string())
}

/// Who the request is, or the 401 Grafana answers.
#[allow(clippy::result_large_err)]
fn authenticate(st: &Shared, headers: &HeaderMap) -> Result<Identity, Response> {
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let auth = auth.trim();
        let (scheme, value) = auth.split_once(' ').unwrap_or((auth, ""));
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            if !value.is_empty() && value == st.sa_token {
                return Ok(Identity::ServiceAccount);
            }
            return Err(errutil(
                StatusCode::UNAUTHORIZED,
                "api-key.invalid",
                "Invalid API key",
            ));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64_decode(value).map(|b| String::from_utf8_lossy(&b).into_owned());
            let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                return Err(errutil(
                    StatusCode::UNAUTHORIZED,
                    "basic-auth.invalid",
                    "Invalid username or password",
                ));
            };
            if password.is_empty() {
                return Err(errutil(
                    StatusCode::UNAUTHORIZED,
                    "password-auth.empty",
                    "Invalid username or password",
                ));
            }
            if check_password(st, user, password) {
                return Ok(Identity::Admin);
            }
            return Err(errutil(
                StatusCode::UNAUTHORIZED,
                "password-auth.failed",
                "Invalid username or password",
            ));
        }
    }
    if let Some(token) = session_cookie(headers) {
        if lock_sessions(st).contains_key(&token) {
            return Ok(Identity::Admin);
        }
        // Grafana clears a session cookie it does not know.
        let mut resp = unauthorized();
        append_cookie(
            &mut resp,
            "grafana_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax",
        );
        return Err(resp);
    }
    Err(unauthorized())
}

fn unauthorized() -> Response {
    errutil(
        StatusCode::UNAUTHORIZED,
        "auth.unauthorized",
        "Unauthorized",
    )
}

fn user_profile(st: &Shared, identity: Identity) -> Response {
    match identity {
        Identity::Admin => json_response(
            StatusCode::OK,
            &json!({
                "id": 1, "uid": "efs48r6smhse8e", "email": "admin@localhost", "name": "",
                "login": ADMIN_USER, "theme": "", "orgId": 1, "isGrafanaAdmin": true,
                "isDisabled": false, "isExternal": false, "isExternallySynced": false,
                "isGrafanaAdminExternallySynced": false, "authLabels": [],
                "updatedAt": st.started_at, "createdAt": st.started_at,
                "avatarUrl": "/avatar/46d229b033af06a191ff2267bca9ae56"
            }),
        ),
        // Grafana 11+ answers a reduced profile for service accounts.
        Identity::ServiceAccount => json_response(
            StatusCode::OK,
            &json!({
                "isGrafanaAdmin": false, "orgId": 1, "uid": "ae5ku2nqhsvlsa",
                "name": "msa-doctor", "email": "sa-1-msa-doctor", "login": "sa-1-msa-doctor"
            }),
        ),
    }
}

fn frontend_settings(st: &Shared) -> Response {
    let mut datasources = Map::new();
    for ds in &st.datasources {
        datasources.insert(
            ds.name.clone(),
            json!({
                "type": "prometheus", "name": ds.name, "uid": ds.uid, "id": ds.id,
                "url": format!("/api/datasources/proxy/uid/{}", ds.uid), "isDefault": true,
                "access": "proxy", "jsonData": ds.json_data, "readOnly": true,
                "meta": {"id": "prometheus", "type": "datasource", "name": "Prometheus", "backend": true}
            }),
        );
    }
    let default_ds = st
        .datasources
        .first()
        .map(|d| d.name.clone())
        .unwrap_or_default();
    json_response(
        StatusCode::OK,
        &json!({
            "appUrl": "http://localhost:3000/", "appSubUrl": "",
            "authProxyEnabled": false, "ldapEnabled": false, "disableLoginForm": false,
            "anonymousEnabled": false, "defaultDatasource": default_ds,
            "datasources": datasources,
            "buildInfo": {
                "version": GRAFANA_VERSION, "commit": GRAFANA_COMMIT, "env": "production",
                "edition": "Open Source", "latestVersion": "", "hasUpdate": false,
                "hideVersion": false, "buildstamp": 0
            }
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// Data sources.

fn datasource_list_item(ds: &DataSource) -> Value {
    json!({
        "id": ds.id, "uid": ds.uid, "orgId": 1, "name": ds.name, "type": "prometheus",
        "typeName": "Prometheus",
        "typeLogoUrl": "public/plugins/prometheus/img/prometheus_logo.svg",
        "access": "proxy", "url": ds.url, "user": "", "database": "", "basicAuth": false,
        "isDefault": true, "jsonData": ds.json_data, "readOnly": true
    })
}

fn datasource_dto(ds: &DataSource) -> Value {
    json!({
        "id": ds.id, "uid": ds.uid, "orgId": 1, "name": ds.name, "type": "prometheus",
        "typeLogoUrl": "public/plugins/prometheus/img/prometheus_logo.svg",
        "access": "proxy", "url": ds.url, "user": "", "database": "", "basicAuth": false,
        "basicAuthUser": "", "withCredentials": false, "isDefault": true,
        "jsonData": ds.json_data, "secureJsonFields": {}, "version": 1, "readOnly": true,
        "apiVersion": "",
        "accessControl": {
            "datasources.id:read": true, "datasources:delete": true, "datasources:query": true,
            "datasources:read": true, "datasources:write": true
        }
    })
}

/// Grafana's `util.IsValidShortUID`.
fn is_valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 40
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `GET /api/datasources/uid/:uid/health`: Prometheus's `CheckHealth` (instant `1+1` over
/// 1s-4s, then the build info heuristics).
async fn datasource_health(st: &Shared, ds: &DataSource) -> Response {
    let form = vec![
        ("query".to_string(), "1+1".to_string()),
        ("time".to_string(), "4".to_string()),
    ];
    let error = match prom_call(st, ds, "api/v1/query", form).await {
        Err(e) => Some(e.message),
        Ok(up) if up.status != StatusCode::OK => Some(status_line(up.status)),
        Ok(up) => match serde_json::from_slice::<Value>(&up.body) {
            Err(_) => Some(jsoniter_error(&up.body)),
            Ok(v) if v.get("status").and_then(Value::as_str) == Some("error") => {
                Some(prom_error_text(&v))
            }
            Ok(_) => None,
        },
    };
    let details = heuristics(st, ds).await;
    let mut body = Map::new();
    if let Some(d) = details {
        body.insert("details".into(), d);
    }
    match error {
        None => {
            body.insert(
                "message".into(),
                json!("Successfully queried the Prometheus API."),
            );
            body.insert("status".into(), json!("OK"));
            json_response(StatusCode::OK, &Value::Object(body))
        }
        Some(e) => {
            body.insert(
                "message".into(),
                json!(format!(
                    "{e} - There was an error returned querying the Prometheus API."
                )),
            );
            body.insert("status".into(), json!("ERROR"));
            json_response(StatusCode::BAD_REQUEST, &Value::Object(body))
        }
    }
}

/// promlib's `getHeuristics`: the build info decides Prometheus versus Mimir.
async fn heuristics(st: &Shared, ds: &DataSource) -> Option<Value> {
    let up = upstream(
        st,
        ds,
        Method::GET,
        "api/v1/status/buildinfo",
        None,
        None,
        &HeaderMap::new(),
    )
    .await
    .ok()?;
    if up.status != StatusCode::OK {
        return None;
    }
    let v: Value = serde_json::from_slice(&up.body).ok()?;
    let features = v
        .pointer("/data/features")
        .and_then(Value::as_object)
        .map(|m| m.len())
        .unwrap_or(0);
    Some(if features == 0 {
        json!({"application": "Prometheus", "features": {"rulerApiEnabled": false}})
    } else {
        json!({"application": "Mimir", "features": {"rulerApiEnabled": true}})
    })
}

/// What came back from the data source.
struct Upstream {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Bytes,
}

/// Why the data source call failed, in Go's words.
struct UpstreamError {
    /// The text Go's `http.Client` would give, e.g. `Post "...": dial tcp ...: connect: ...`.
    message: String,
    /// Whether it was a timeout (the proxy answers 504 instead of 502).
    timeout: bool,
}

/// Calls the data source: `rest` is appended to its URL path.
async fn upstream(
    st: &Shared,
    ds: &DataSource,
    method: Method,
    rest: &str,
    raw_query: Option<&str>,
    body: Option<Bytes>,
    forward: &HeaderMap,
) -> Result<Upstream, UpstreamError> {
    let op = go_op(&method);
    let mut url = match reqwest::Url::parse(&ds.url) {
        Ok(u) => u,
        Err(e) => {
            return Err(UpstreamError {
                message: format!("parse {:?}: {e}", redact_url(&ds.url)),
                timeout: false,
            });
        }
    };
    let base_path = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{base_path}/{}", rest.trim_start_matches('/')));
    url.set_query(raw_query.filter(|q| !q.is_empty()));
    let shown = redact_url(url.as_str());
    let port = url.port_or_known_default().unwrap_or(80);

    // Inside Grafana's pod, localhost is the pod itself: nothing listens there.
    if url.host_str() == Some("localhost") {
        return Err(UpstreamError {
            message: format!(
                "{op} \"{shown}\": dial tcp [::1]:{port}: connect: connection refused"
            ),
            timeout: false,
        });
    }

    let mut req = st.client.request(method, url.clone());
    for (name, value) in forward {
        req = req.header(name, value);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            return Err(UpstreamError {
                message: format!("{op} \"{shown}\": {}", go_error_text(&e, &url).await),
                timeout: e.is_timeout(),
            });
        }
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    match read_limited(resp, MAX_UPSTREAM_BODY).await {
        Ok(body) => Ok(Upstream {
            status,
            headers,
            body,
        }),
        Err(e) => Err(UpstreamError {
            message: format!("{op} \"{shown}\": {}", go_error_text(&e, &url).await),
            timeout: e.is_timeout(),
        }),
    }
}

/// Reads a response body up to `limit` bytes (the rest is dropped).
async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Bytes, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Ok(Bytes::from(out))
}

/// A Prometheus API call the way promlib makes it: a form POST (or GET, per `httpMethod`).
async fn prom_call(
    st: &Shared,
    ds: &DataSource,
    endpoint: &str,
    form: Vec<(String, String)>,
) -> Result<Upstream, UpstreamError> {
    let method = ds
        .json_data
        .get("httpMethod")
        .and_then(Value::as_str)
        .unwrap_or("POST")
        .to_ascii_uppercase();
    // Go's url.Values.Encode sorts by key.
    let mut form = form;
    form.sort_by(|a, b| a.0.cmp(&b.0));
    let encoded = encode_form(&form);
    if method == "GET" {
        upstream(
            st,
            ds,
            Method::GET,
            endpoint,
            Some(&encoded),
            None,
            &HeaderMap::new(),
        )
        .await
    } else {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        upstream(
            st,
            ds,
            Method::POST,
            endpoint,
            None,
            Some(Bytes::from(encoded)),
            &headers,
        )
        .await
    }
}

/// Go's `urlErrorOp`: `POST` -> `Post`.
fn go_op(method: &Method) -> String {
    let m = method.as_str();
    let mut out = String::with_capacity(m.len());
    for (i, c) in m.chars().enumerate() {
        if i == 0 {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The part after `Post "<url>": ` that Go's HTTP client would print for this failure.
async fn go_error_text(err: &reqwest::Error, url: &reqwest::Url) -> String {
    let io_kind = io_error_kind(err);
    if err.is_connect() || io_kind == Some(io::ErrorKind::ConnectionRefused) {
        let addr = match dial_addr(url).await {
            Ok(a) => a,
            Err(lookup) => return lookup,
        };
        if err.is_timeout() {
            return format!("dial tcp {addr}: i/o timeout");
        }
        let what = match io_kind {
            Some(io::ErrorKind::ConnectionRefused) => "connection refused",
            Some(io::ErrorKind::HostUnreachable) => "no route to host",
            Some(io::ErrorKind::NetworkUnreachable) => "network is unreachable",
            Some(io::ErrorKind::AddrNotAvailable) => "cannot assign requested address",
            Some(io::ErrorKind::PermissionDenied) => "permission denied",
            _ => "connection refused",
        };
        return format!("dial tcp {addr}: connect: {what}");
    }
    if err.is_timeout() {
        return "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            .to_string();
    }
    match io_kind {
        Some(io::ErrorKind::ConnectionReset) => "read: connection reset by peer".to_string(),
        Some(io::ErrorKind::BrokenPipe) => "write: broken pipe".to_string(),
        // hyper's "connection closed before message completed" is Go's EOF.
        _ => "EOF".to_string(),
    }
}

/// The first `io::Error` kind in an error's source chain.
fn io_error_kind(err: &reqwest::Error) -> Option<io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        source = e.source();
    }
    None
}

/// The address Go would print after `dial tcp`, or the whole lookup failure text.
async fn dial_addr(url: &reqwest::Url) -> Result<String, String> {
    let port = url.port_or_known_default().unwrap_or(80);
    let host = url
        .host_str()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(std::net::SocketAddr::new(ip, port).to_string());
    }
    match url.host_str() {
        Some(name) if !name.is_empty() => {
            let lookup = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::lookup_host((name.to_string(), port)),
            )
            .await;
            match lookup {
                Ok(Ok(mut addrs)) => match addrs.next() {
                    Some(a) => Ok(a.to_string()),
                    None => Err(format!("dial tcp: lookup {name}: no such host")),
                },
                _ => Err(format!("dial tcp: lookup {name}: no such host")),
            }
        }
        _ => Err("dial tcp: missing address".to_string()),
    }
}

/// Go's `resp.Status`, e.g. `404 Not Found`.
fn status_line(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// promlib's text for a Prometheus `status: error` body.
fn prom_error_text(v: &Value) -> String {
    let kind = v.get("errorType").and_then(Value::as_str).unwrap_or("");
    let msg = v.get("error").and_then(Value::as_str).unwrap_or("");
    format!("{kind}: {msg}")
}

/// What json-iterator says when a body is not a JSON object (e.g. an HTML 404 page).
fn jsoniter_error(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let first = text
        .chars()
        .next()
        .map(|c| c.to_string())
        .unwrap_or_default();
    let near: String = text.chars().take(10).collect();
    let wide: String = text.chars().take(50).collect();
    if text.is_empty() {
        return "ReadObject: expect { or n, but found \u{0}, error found in #0 byte of ...||..., bigger context ...||...".to_string();
    }
    format!(
        "ReadObject: expect {{ or , or }} or n, but found {first}, error found in #1 byte of ...|{near}|..., bigger context ...|{wide}|..."
    )
}

/// The data source proxy: forwards to `<url>/<rest>` and returns the answer unchanged.
async fn proxy(
    st: &Shared,
    ds: &DataSource,
    method: &Method,
    rest: &str,
    raw_query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    // Grafana's validateRequest for Prometheus: only the plugin's POST routes pass.
    let allowed_post = ["api/v1/query", "api/v1/series", "api/v1/labels"];
    let denied = match *method {
        Method::DELETE => Some("DELETEs"),
        Method::PUT => Some("PUTs"),
        Method::POST if !allowed_post.iter().any(|p| rest.starts_with(p)) => Some("POSTs"),
        _ => None,
    };
    if let Some(what) = denied {
        return msg_error(
            StatusCode::FORBIDDEN,
            &format!("non allow-listed {what} not allowed on proxied Prometheus datasource"),
        );
    }
    let body = match axum::body::to_bytes(body, MAX_REQUEST_BODY).await {
        Ok(b) => b,
        Err(_) => return empty_response(StatusCode::BAD_REQUEST),
    };
    let mut forward = HeaderMap::new();
    for name in [
        header::CONTENT_TYPE,
        header::ACCEPT,
        header::ACCEPT_ENCODING,
    ] {
        for value in headers.get_all(&name) {
            forward.append(name.clone(), value.clone());
        }
    }
    let body = if body.is_empty() && (*method == Method::GET || *method == Method::HEAD) {
        None
    } else {
        Some(body)
    };
    match upstream(st, ds, method.clone(), rest, raw_query, body, &forward).await {
        Ok(up) => {
            let mut resp = Response::new(Body::from(up.body));
            *resp.status_mut() = up.status;
            let out = resp.headers_mut();
            for (name, value) in &up.headers {
                if is_hop_by_hop(name) || *name == header::SET_COOKIE {
                    continue;
                }
                out.append(name.clone(), value.clone());
            }
            resp
        }
        // Grafana's reverse proxy error handler writes a status and no body.
        Err(e) if e.timeout => empty_response(StatusCode::GATEWAY_TIMEOUT),
        Err(_) => empty_response(StatusCode::BAD_GATEWAY),
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    )
}

// ---------------------------------------------------------------------------------------------
// `/api/ds/query`.

/// One Prometheus query, parsed the way promlib's `models.Parse` does.
#[derive(Clone, Debug)]
struct PromQuery {
    ref_id: String,
    expr: String,
    legend: String,
    step_ms: i64,
    start_ms: i64,
    end_ms: i64,
    instant: bool,
    range: bool,
}

/// One refId's answer: frames, an error, a status.
#[derive(Default)]
struct DataResponse {
    frames: Vec<Value>,
    error: Option<String>,
    status: u16,
}

impl DataResponse {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "status".into(),
            json!(if self.status == 0 { 200 } else { self.status }),
        );
        if let Some(e) = &self.error {
            m.insert("error".into(), json!(e));
            m.insert("errorSource".into(), json!("downstream"));
        }
        if !self.frames.is_empty() || self.error.is_none() {
            m.insert("frames".into(), Value::Array(self.frames.clone()));
        }
        Value::Object(m)
    }
}

async fn ds_query(st: &Shared, body: &[u8]) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return msg_error(StatusCode::BAD_REQUEST, "bad request data");
    };
    let queries = req
        .get("queries")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if queries.is_empty() {
        return errutil(
            StatusCode::BAD_REQUEST,
            "query.noQueries",
            "No queries found",
        );
    }
    let now = unix_now_ms();
    let from = req.get("from").map(value_as_string).unwrap_or_default();
    let to = req.get("to").map(value_as_string).unwrap_or_default();
    let from_ms = parse_time(if from.is_empty() { "now-6h" } else { &from }, now);
    let to_ms = parse_time(if to.is_empty() { "now" } else { &to }, now);
    let (Some(from_ms), Some(to_ms)) = (from_ms, to_ms) else {
        return msg_error(StatusCode::BAD_REQUEST, "Invalid time range");
    };

    let mut jobs = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        let ref_id = q
            .get("refId")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| if i == 0 { "A".into() } else { format!("{}", i) });
        let uid = q
            .get("datasource")
            .and_then(|d| d.get("uid"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let ds_id = q.get("datasourceId").and_then(Value::as_i64).unwrap_or(0);
        let ds = if !uid.is_empty() {
            st.datasource_by_uid(uid)
        } else if ds_id > 0 {
            st.datasources.iter().find(|d| d.id == ds_id)
        } else {
            return errutil(
                StatusCode::BAD_REQUEST,
                "query.missingDataSourceInfo",
                &format!("Query {ref_id} is missing datasource information"),
            );
        };
        let Some(ds) = ds else {
            return msg_error(StatusCode::NOT_FOUND, "Data source not found");
        };
        let spec = parse_prom_query(q, &ref_id, from_ms, to_ms, &ds.json_data);
        jobs.push((ref_id, ds, spec));
    }

    let runs = jobs.into_iter().map(|(ref_id, ds, spec)| async move {
        let resp = match spec {
            Ok(spec) => run_prom_query(st, ds, &spec).await,
            Err(e) => DataResponse {
                error: Some(e),
                status: 400,
                ..Default::default()
            },
        };
        (ref_id, resp)
    });
    let results = futures::future::join_all(runs).await;
    let mut any_error = false;
    let mut out = Map::new();
    for (ref_id, resp) in results {
        any_error |= resp.error.is_some();
        out.insert(ref_id, resp.to_json());
    }
    let status = if any_error {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    json_response(status, &json!({ "results": out }))
}

fn value_as_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// promlib's `models.Parse`: step, variables, range/instant.
fn parse_prom_query(
    q: &Value,
    ref_id: &str,
    from_ms: i64,
    to_ms: i64,
    json_data: &Value,
) -> Result<PromQuery, String> {
    let expr = q
        .get("expr")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let legend = q
        .get("legendFormat")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut instant = q.get("instant").and_then(Value::as_bool).unwrap_or(false);
    let mut range = q.get("range").and_then(Value::as_bool).unwrap_or(false);
    if !instant && !range {
        // Older dashboards set neither; promlib runs them as range queries.
        range = true;
    }
    if q.get("format").and_then(Value::as_str) == Some("table") && !range {
        instant = true;
    }
    let interval = q.get("interval").and_then(Value::as_str).unwrap_or("");
    let interval_ms = q.get("intervalMs").and_then(Value::as_f64).unwrap_or(0.0) as i64;
    let max_points = q
        .get("maxDataPoints")
        .and_then(Value::as_i64)
        .unwrap_or(100);
    let factor = q.get("intervalFactor").and_then(Value::as_i64).unwrap_or(0);
    let scrape = json_data
        .get("timeInterval")
        .and_then(Value::as_str)
        .unwrap_or("");

    let is_var = matches!(
        interval,
        "$__interval"
            | "$__interval_ms"
            | "$__rate_interval"
            | "$__rate_interval_ms"
            | "${__interval}"
            | "${__interval_ms}"
            | "${__rate_interval}"
            | "${__rate_interval_ms}"
    );
    let query_interval = if is_var || interval == "0s" {
        ""
    } else {
        interval
    };
    // gtime.GetIntervalFrom.
    let min_interval = if query_interval.is_empty() && interval_ms != 0 {
        interval_ms
    } else {
        let chosen = if query_interval.is_empty() {
            scrape
        } else {
            query_interval
        };
        if chosen.is_empty() {
            15_000
        } else {
            parse_interval_ms(chosen).ok_or_else(|| format!("invalid interval {chosen:?}"))?
        }
    };
    let span = (to_ms - from_ms).max(0);
    let resolution = if max_points <= 0 { 1500 } else { max_points };
    let calculated = {
        let c = span / resolution;
        if c < min_interval {
            min_interval
        } else {
            round_interval_ms(c)
        }
    };
    let safe = round_interval_ms(span / SAFE_RESOLUTION);
    let adjusted = calculated.max(safe).max(1);
    let step_ms = if interval == "$__rate_interval" || interval == "${__rate_interval}" {
        rate_interval_ms(adjusted, scrape)
    } else {
        adjusted * factor.max(1)
    };

    // interpolateVariables.
    let request_interval_ms = q
        .get("intervalMs")
        .and_then(Value::as_f64)
        .unwrap_or(1000.0) as i64;
    let rate_ms = if interval == "$__rate_interval" || interval == "${__rate_interval}" {
        step_ms
    } else {
        let mut min_step = interval.to_string();
        if interval == "$__interval" || interval == "${__interval}" {
            min_step = go_duration(step_ms);
        }
        if min_step.is_empty() {
            min_step = scrape.to_string();
        }
        rate_interval_ms(request_interval_ms, &min_step)
    };
    let range_ms = span;
    let range_s = (range_ms as f64 / 1000.0).round() as i64;
    let mut e = expr;
    let subs: [(&str, String); 14] = [
        ("$__interval_ms", step_ms.to_string()),
        ("$__interval", format_interval(step_ms)),
        ("$__range_ms", range_ms.to_string()),
        ("$__range_s", range_s.to_string()),
        ("$__range", format!("{range_s}s")),
        ("$__rate_interval_ms", rate_ms.to_string()),
        ("$__rate_interval", go_duration(rate_ms)),
        ("${__interval_ms}", step_ms.to_string()),
        ("${__interval}", format_interval(step_ms)),
        ("${__range_ms}", range_ms.to_string()),
        ("${__range_s}", range_s.to_string()),
        ("${__range}", format!("{range_s}s")),
        ("${__rate_interval_ms}", rate_ms.to_string()),
        ("${__rate_interval}", go_duration(rate_ms)),
    ];
    for (var, value) in subs {
        e = e.replace(var, &value);
    }

    Ok(PromQuery {
        ref_id: ref_id.to_string(),
        expr: e,
        legend,
        step_ms,
        start_ms: from_ms,
        end_ms: to_ms,
        instant,
        range,
    })
}

/// promlib's `calculateRateInterval`: max(interval + scrape, 4 * scrape).
fn rate_interval_ms(query_interval_ms: i64, min_step: &str) -> i64 {
    let scrape = if min_step.is_empty() { "15s" } else { min_step };
    match parse_interval_ms(scrape) {
        Some(s) => (query_interval_ms + s).max(4 * s),
        None => 0,
    }
}

/// Runs one query (instant and/or range) against the data source and frames the answer.
async fn run_prom_query(st: &Shared, ds: &DataSource, q: &PromQuery) -> DataResponse {
    let mut out = DataResponse::default();
    let mut parts = Vec::new();
    if q.instant {
        let form = vec![
            ("query".to_string(), q.expr.clone()),
            ("time".to_string(), format_seconds(q.end_ms)),
        ];
        parts.push(("api/v1/query", form));
    }
    if q.range {
        let start = align(q.start_ms, q.step_ms);
        let end = align(q.end_ms, q.step_ms);
        let form = vec![
            ("query".to_string(), q.expr.clone()),
            ("start".to_string(), format_seconds(start)),
            ("end".to_string(), format_seconds(end)),
            ("step".to_string(), format_seconds(q.step_ms)),
        ];
        parts.push(("api/v1/query_range", form));
    }
    for (endpoint, form) in parts {
        let part = match prom_call(st, ds, endpoint, form).await {
            Err(e) => DataResponse {
                error: Some(e.message),
                status: 502,
                ..Default::default()
            },
            Ok(up) => frames_from_response(q, up.status.as_u16(), &up.body),
        };
        if let Some(err) = part.error {
            out.error = Some(match out.error.take() {
                Some(prev) => format!("{prev} {err}"),
                None => err,
            });
            out.status = part.status;
        }
        out.frames.extend(part.frames);
    }
    if out.status == 0 {
        out.status = 200;
    }
    out
}

/// promlib's `parseResponse`: converter, then metadata, executed query string and refId.
fn frames_from_response(q: &PromQuery, status: u16, body: &[u8]) -> DataResponse {
    let mut resp = DataResponse {
        status,
        ..Default::default()
    };
    let mut frames: Vec<Frame> = Vec::new();
    match serde_json::from_slice::<Value>(body) {
        Err(_) => resp.error = Some(jsoniter_error(body)),
        Ok(v) => match convert_prometheus(&v) {
            Ok(f) => frames = f,
            Err(e) => resp.error = Some(e),
        },
    }
    if frames.is_empty() {
        // "Add frame to attach metadata".
        frames.push(Frame::default());
    }
    for (i, frame) in frames.iter_mut().enumerate() {
        frame.add_metadata(q);
        if i == 0 {
            frame.meta.insert(
                "executedQueryString".into(),
                json!(format!(
                    "Expr: {}\nStep: {}",
                    q.expr,
                    go_duration(q.step_ms)
                )),
            );
        }
    }
    resp.frames = frames.iter().map(|f| f.to_json(&q.ref_id)).collect();
    resp
}

/// One data frame: a time field and a value field (or none, for the metadata-only frame).
#[derive(Default, Debug)]
struct Frame {
    name: String,
    meta: Map<String, Value>,
    fields: Vec<FrameField>,
}

#[derive(Debug)]
struct FrameField {
    name: String,
    values: FieldValues,
    labels: BTreeMap<String, String>,
    config: Option<Value>,
}

#[derive(Debug)]
enum FieldValues {
    Time(Vec<i64>),
    Number(Vec<f64>),
    Text(Vec<String>),
}

impl Frame {
    fn series(result_type: &str, frame_type: &str, dataplane: bool) -> Frame {
        let mut meta = Map::new();
        meta.insert("type".into(), json!(frame_type));
        if dataplane {
            meta.insert("typeVersion".into(), json!([0, 1]));
        }
        meta.insert("custom".into(), json!({"resultType": result_type}));
        Frame {
            name: String::new(),
            meta,
            fields: Vec::new(),
        }
    }

    /// promlib's `addMetadataToMultiFrame` (dataplane on).
    fn add_metadata(&mut self, q: &PromQuery) {
        if self.fields.len() < 2 {
            return;
        }
        self.fields[0].config = Some(json!({"interval": q.step_ms}));
        let name = display_name(q, &self.fields[1].labels);
        if !name.is_empty() {
            self.fields[1].config = Some(json!({"displayNameFromDS": name}));
        }
        if let Some(metric) = self.fields[1].labels.get("__name__") {
            self.fields[1].name = metric.clone();
        }
    }

    fn to_json(&self, ref_id: &str) -> Value {
        let mut schema = Map::new();
        if !self.name.is_empty() {
            schema.insert("name".into(), json!(self.name));
        }
        schema.insert("refId".into(), json!(ref_id));
        let mut meta = self.meta.clone();
        meta.entry("typeVersion").or_insert(json!([0, 0]));
        schema.insert("meta".into(), Value::Object(meta));
        let mut fields = Vec::new();
        let mut values = Vec::new();
        let mut entities = Vec::new();
        let mut any_entity = false;
        for f in &self.fields {
            let mut field = Map::new();
            field.insert("name".into(), json!(f.name));
            let (kind, frame_type) = match f.values {
                FieldValues::Time(_) => ("time", "time.Time"),
                FieldValues::Number(_) => ("number", "float64"),
                FieldValues::Text(_) => ("string", "string"),
            };
            field.insert("type".into(), json!(kind));
            field.insert("typeInfo".into(), json!({"frame": frame_type}));
            if !f.labels.is_empty() {
                field.insert("labels".into(), json!(f.labels));
            }
            if let Some(c) = &f.config {
                field.insert("config".into(), c.clone());
            }
            fields.push(Value::Object(field));
            match &f.values {
                FieldValues::Time(ts) => {
                    values.push(json!(ts));
                    entities.push(Value::Null);
                }
                FieldValues::Text(ss) => {
                    values.push(json!(ss));
                    entities.push(Value::Null);
                }
                FieldValues::Number(ns) => {
                    let (vals, ent) = number_column(ns);
                    values.push(Value::Array(vals));
                    any_entity |= !ent.is_null();
                    entities.push(ent);
                }
            }
        }
        schema.insert("fields".into(), Value::Array(fields));
        let mut data = Map::new();
        data.insert("values".into(), Value::Array(values));
        if any_entity {
            data.insert("entities".into(), Value::Array(entities));
        }
        json!({"schema": schema, "data": data})
    }
}

/// Numbers as Go writes them (integers without `.0`); NaN and infinities become `null` plus an
/// entity entry, as the Grafana data frame JSON does.
fn number_column(ns: &[f64]) -> (Vec<Value>, Value) {
    let mut nan = Vec::new();
    let mut inf = Vec::new();
    let mut neg_inf = Vec::new();
    let mut vals = Vec::with_capacity(ns.len());
    for (i, v) in ns.iter().enumerate() {
        if v.is_nan() {
            nan.push(i);
            vals.push(Value::Null);
        } else if v.is_infinite() {
            if *v > 0.0 {
                inf.push(i);
            } else {
                neg_inf.push(i);
            }
            vals.push(Value::Null);
        } else {
            vals.push(go_number(*v));
        }
    }
    if nan.is_empty() && inf.is_empty() && neg_inf.is_empty() {
        return (vals, Value::Null);
    }
    let mut ent = Map::new();
    if !nan.is_empty() {
        ent.insert("NaN".into(), json!(nan));
    }
    if !inf.is_empty() {
        ent.insert("Inf".into(), json!(inf));
    }
    if !neg_inf.is_empty() {
        ent.insert("NegInf".into(), json!(neg_inf));
    }
    (vals, Value::Object(ent))
}

fn go_number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

/// promlib's `getName`: the legend, or the series' `metric{labels}` text.
fn display_name(q: &PromQuery, labels: &BTreeMap<String, String>) -> String {
    let mut legend = metric_name_from_labels(labels);
    if q.legend == "__auto" {
        if !labels.is_empty() {
            legend = String::new();
        }
    } else if !q.legend.is_empty() {
        legend = apply_legend(&q.legend, labels);
    }
    if legend == "{}" {
        return q.expr.clone();
    }
    legend
}

fn metric_name_from_labels(labels: &BTreeMap<String, String>) -> String {
    let name = labels.get("__name__").cloned().unwrap_or_default();
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    if rest.is_empty() {
        if labels.contains_key("__name__") {
            return name;
        }
        return "{}".to_string();
    }
    format!("{name}{{{}}}", rest.join(", "))
}

/// Replaces `{{ label }}` with the label's value (empty when missing).
fn apply_legend(format: &str, labels: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = format;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + 2 + len].trim();
        if inner.is_empty() {
            out.push_str(&rest[..start + 2 + len + 2]);
            rest = &rest[start + 2 + len + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        if let Some(v) = labels.get(inner) {
            out.push_str(v);
        }
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    out
}

/// Go's `%q` for ordinary label values.
fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// promlib's converter (`ReadPrometheusStyleResult`, dataplane on).
fn convert_prometheus(v: &Value) -> Result<Vec<Frame>, String> {
    if v.get("status").and_then(Value::as_str) == Some("error") {
        return Err(prom_error_text(v));
    }
    let mut frames = Vec::new();
    if let Some(data) = v.get("data") {
        let Some(result_type) = data.get("resultType").and_then(Value::as_str) else {
            return Err("no resultType found".to_string());
        };
        let result = data.get("result").cloned().unwrap_or(Value::Null);
        match result_type {
            "matrix" | "vector" => {
                for series in result.as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    frames.push(series_frame(result_type, series)?);
                }
            }
            "scalar" | "string" => {
                let (t, val) = time_value_pair(&result)?;
                let mut frame = if result_type == "scalar" {
                    Frame::series("scalar", "numeric-multi", true)
                } else {
                    let mut f = Frame::series("string", "timeseries-multi", false);
                    f.meta.remove("typeVersion");
                    f
                };
                frame.fields.push(FrameField {
                    name: "Time".into(),
                    values: FieldValues::Time(vec![t]),
                    labels: BTreeMap::new(),
                    config: None,
                });
                let values = if result_type == "scalar" {
                    FieldValues::Number(vec![parse_prom_float(&val)?])
                } else {
                    FieldValues::Text(vec![val])
                };
                frame.fields.push(FrameField {
                    name: "Value".into(),
                    values,
                    labels: BTreeMap::new(),
                    config: None,
                });
                frames.push(frame);
            }
            other => return Err(format!("unknown result type: {other}")),
        }
    }
    let mut notices = Vec::new();
    for (key, severity) in [("warnings", "warning"), ("infos", "info")] {
        for w in v
            .get(key)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            if let Some(text) = w.as_str() {
                notices.push(json!({"severity": severity, "text": text}));
            }
        }
    }
    if !notices.is_empty() {
        if frames.is_empty() {
            frames.push(Frame {
                name: "Warnings".into(),
                ..Default::default()
            });
        }
        for f in &mut frames {
            f.meta
                .insert("notices".into(), Value::Array(notices.clone()));
        }
    }
    Ok(frames)
}

fn series_frame(result_type: &str, series: &Value) -> Result<Frame, String> {
    let frame_type = if result_type == "vector" {
        "numeric-multi"
    } else {
        "timeseries-multi"
    };
    let mut frame = Frame::series(result_type, frame_type, true);
    let labels: BTreeMap<String, String> = series
        .get("metric")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let mut times = Vec::new();
    let mut values = Vec::new();
    let mut push = |pair: &Value| -> Result<(), String> {
        let (t, v) = time_value_pair(pair)?;
        times.push(t);
        values.push(parse_prom_float(&v)?);
        Ok(())
    };
    if let Some(pair) = series.get("value") {
        push(pair)?;
    }
    if let Some(pairs) = series.get("values").and_then(Value::as_array) {
        for pair in pairs {
            push(pair)?;
        }
    }
    frame.fields.push(FrameField {
        name: "Time".into(),
        values: FieldValues::Time(times),
        labels: BTreeMap::new(),
        config: None,
    });
    frame.fields.push(FrameField {
        name: "Value".into(),
        values: FieldValues::Number(values),
        labels,
        config: None,
    });
    Ok(frame)
}

/// `[1641889530.123, "21"]` -> (epoch ms, "21").
fn time_value_pair(v: &Value) -> Result<(i64, String), String> {
    let arr = v
        .as_array()
        .filter(|a| a.len() == 2)
        .ok_or_else(|| "ReadArray: expect [ or , or ] or n".to_string())?;
    let t = arr[0]
        .as_f64()
        .ok_or_else(|| "ReadFloat64: unexpected character".to_string())?;
    let val = arr[1]
        .as_str()
        .ok_or_else(|| "ReadString: expects \" or n".to_string())?;
    Ok(((t * 1000.0) as i64, val.to_string()))
}

/// Go's `strconv.ParseFloat` on Prometheus sample strings (`NaN`, `+Inf`, `-Inf` included).
fn parse_prom_float(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse::<f64>().map_err(|_| {
            format!(
                "strconv.ParseFloat: parsing {}: invalid syntax",
                go_quote(s)
            )
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Search and dashboards.

fn search(st: &Shared, raw_query: &str) -> Response {
    let params = parse_urlencoded(raw_query);
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let all = |k: &str| -> Vec<&str> {
        params
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let kind = get("type").unwrap_or("");
    if kind == "dash-folder" {
        return json_response(StatusCode::OK, &json!([]));
    }
    let needle = get("query").unwrap_or("").to_lowercase();
    let tags = all("tag");
    let uids = all("dashboardUIDs");
    let limit = get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(1000)
        .min(5000);
    let page = get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(1);
    let mut hits: Vec<&Dashboard> = st
        .dashboards
        .iter()
        .filter(|d| needle.is_empty() || d.title.to_lowercase().contains(&needle))
        .filter(|d| tags.iter().all(|t| d.tags.iter().any(|dt| dt == t)))
        .filter(|d| uids.is_empty() || uids.contains(&d.uid.as_str()))
        .collect();
    hits.sort_by_key(|a| a.title.to_lowercase());
    let out: Vec<Value> = hits
        .into_iter()
        .skip((page - 1).saturating_mul(limit))
        .take(limit)
        .map(|d| {
            json!({
                "id": d.id, "uid": d.uid, "title": d.title,
                "uri": format!("db/{}", d.slug), "url": format!("/d/{}/{}", d.uid, d.slug),
                "slug": "", "type": "dash-db", "tags": d.tags, "isStarred": false,
                "sortMeta": 0
            })
        })
        .collect();
    json_response(StatusCode::OK, &Value::Array(out))
}

fn dashboard_with_meta(st: &Shared, d: &Dashboard) -> Value {
    json!({
        "dashboard": d.model,
        "meta": {
            "type": "db", "canSave": true, "canEdit": true, "canAdmin": true, "canStar": true,
            "canDelete": true, "slug": d.slug, "url": format!("/d/{}/{}", d.uid, d.slug),
            "expires": "0001-01-01T00:00:00Z", "created": st.started_at,
            "updated": st.started_at, "updatedBy": "Anonymous", "createdBy": "Anonymous",
            "version": 1, "hasAcl": false, "isFolder": false, "folderId": 0, "folderUid": "",
            "folderTitle": "General", "folderUrl": "", "provisioned": true,
            "provisionedExternalId": d.external_id,
            "annotationsPermissions": {
                "dashboard": {"canAdd": true, "canEdit": true, "canDelete": true},
                "organization": {"canAdd": true, "canEdit": true, "canDelete": true}
            },
            "publicDashboardEnabled": false
        }
    })
}

/// Grafana's slugify for ASCII titles: lowercase words joined by `-`.
fn slugify(title: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in title.chars() {
        if c.is_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.extend(c.to_lowercase());
        } else {
            dash = true;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Responses.

fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn text_response(status: StatusCode, content_type: &'static str, body: &str) -> Response {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn empty_response(status: StatusCode) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

/// `{"message": ...}`: Grafana's plain API error.
fn msg_error(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "message": message }))
}

/// Grafana's `errutil` public error body.
fn errutil(status: StatusCode, message_id: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({
            "message": message, "messageId": message_id,
            "statusCode": status.as_u16(), "traceID": ""
        }),
    )
}

fn redirect(location: &'static str) -> Response {
    let mut resp = empty_response(StatusCode::FOUND);
    resp.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(location));
    resp
}

fn append_cookie(resp: &mut Response, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Grafana's single-page app shell.
fn html_page(status: StatusCode, title: &str) -> Response {
    let page = format!(
        "<!doctype html>\n<html lang=\"en-US\">\n<head>\n<meta charset=\"utf-8\" />\n\
<meta name=\"viewport\" content=\"width=device-width\" />\n<meta name=\"theme-color\" content=\"#000\" />\n\
<title>{}</title>\n<base href=\"/\" />\n</head>\n<body class=\"theme-dark app-grafana\">\n\
<div id=\"reactRoot\"></div>\n<script nonce=\"\">window.grafanaBootData = {{ settings: {{ buildInfo: {{ version: \"{GRAFANA_VERSION}\" }} }} }};</script>\n\
</body>\n</html>\n",
        html_escape(title)
    );
    text_response(status, "text/html; charset=UTF-8", &page)
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Small helpers: time, intervals, encodings, randomness.

fn unix_now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `2024-04-12T21:07:14Z` from Unix seconds.
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// `now`, `now-15m`, `now+1h` or epoch milliseconds.
fn parse_time(s: &str, now_ms: i64) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let rest = s.strip_prefix("now")?;
    // Rounding (`now/d`) is not emulated: the unrounded instant is used.
    let rest = rest.split('/').next().unwrap_or("");
    if rest.is_empty() {
        return Some(now_ms);
    }
    let (sign, amount) = match rest.as_bytes().first() {
        Some(b'-') => (-1, &rest[1..]),
        Some(b'+') => (1, &rest[1..]),
        _ => return None,
    };
    Some(now_ms + sign * parse_interval_ms(amount)?)
}

/// Grafana's `gtime.ParseIntervalStringToTimeDuration`: `15s`, `1m30s`, `>10s`, `2d`, `1w`,
/// `1M`, `1y`, or a bare number of seconds.
fn parse_interval_ms(s: &str) -> Option<i64> {
    let s = s.trim().trim_start_matches(['<', '>']).trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Some((secs * 1000.0) as i64);
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total = 0f64;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let num: f64 = s[start..i].parse().ok()?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit_ms = match &s[ustart..i] {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            "w" => 604_800_000.0,
            "M" => 2_592_000_000.0,
            "y" => 31_536_000_000.0,
            _ => return None,
        };
        total += num * unit_ms;
    }
    Some(total as i64)
}

/// Grafana's `gtime.RoundInterval`, in milliseconds.
fn round_interval_ms(ms: i64) -> i64 {
    const TABLE: [(i64, i64); 28] = [
        (10, 1),
        (15, 10),
        (35, 20),
        (75, 50),
        (150, 100),
        (350, 200),
        (750, 500),
        (1_500, 1_000),
        (3_500, 2_000),
        (7_500, 5_000),
        (12_500, 10_000),
        (17_500, 15_000),
        (25_000, 20_000),
        (45_000, 30_000),
        (90_000, 60_000),
        (210_000, 120_000),
        (450_000, 300_000),
        (750_000, 600_000),
        (1_050_000, 900_000),
        (1_500_000, 1_200_000),
        (2_700_000, 1_800_000),
        (5_400_000, 3_600_000),
        (9_000_000, 7_200_000),
        (16_200_000, 10_800_000),
        (24_300_000, 21_600_000),
        (64_800_000, 43_200_000),
        (604_800_000, 86_400_000),
        (1_814_400_000, 604_800_000),
    ];
    for (limit, value) in TABLE {
        if ms <= limit {
            return value;
        }
    }
    if ms < 3_628_800_000 {
        2_592_000_000
    } else {
        31_536_000_000
    }
}

/// Grafana's `gtime.FormatInterval`: `15s`, `1m`, `2h`, `1d`, `100ms`.
fn format_interval(ms: i64) -> String {
    const YEAR: i64 = 31_536_000_000;
    const DAY: i64 = 86_400_000;
    if ms >= YEAR {
        format!("{}y", ms / YEAR)
    } else if ms >= DAY {
        format!("{}d", ms / DAY)
    } else if ms >= 3_600_000 {
        format!("{}h", ms / 3_600_000)
    } else if ms >= 60_000 {
        format!("{}m", ms / 60_000)
    } else if ms >= 1000 {
        format!("{}s", ms / 1000)
    } else if ms >= 1 {
        format!("{ms}ms")
    } else {
        "1ms".to_string()
    }
}

/// Go's `time.Duration.String` for whole milliseconds: `15s`, `1m0s`, `1h0m0s`, `1.5s`.
fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    if ms < 1000 {
        return format!("{sign}{ms}ms");
    }
    let secs = ms / 1000;
    let frac = ms % 1000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let s_text = if frac > 0 {
        let f = format!("{frac:03}");
        format!("{s}.{}", f.trim_end_matches('0'))
    } else {
        s.to_string()
    };
    if h > 0 {
        format!("{sign}{h}h{m}m{s_text}s")
    } else if m > 0 {
        format!("{sign}{m}m{s_text}s")
    } else {
        format!("{sign}{s_text}s")
    }
}

/// promlib's `AlignTimeRange` (offset 0): floor to a multiple of the step.
fn align(t_ms: i64, step_ms: i64) -> i64 {
    if step_ms <= 0 {
        return t_ms;
    }
    t_ms.div_euclid(step_ms) * step_ms
}

/// Go's `strconv.FormatFloat(seconds, 'f', -1, 64)` for a millisecond value.
fn format_seconds(ms: i64) -> String {
    let whole = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    if frac == 0 {
        whole.to_string()
    } else {
        let f = format!("{frac:03}");
        format!("{whole}.{}", f.trim_end_matches('0'))
    }
}

/// `application/x-www-form-urlencoded`, as Go's `url.Values.Encode`.
fn encode_form(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn parse_urlencoded(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

fn percent_decode(s: &str, plus_as_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Standard base64 (padding optional); `None` on a foreign character.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in s.trim().bytes() {
        if c == b'=' {
            break;
        }
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A URL with its password replaced by `***`, as Go prints it in errors.
fn redact_url(raw: &str) -> String {
    match reqwest::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => raw.to_string(),
    }
}

/// 64 unpredictable bits: std's randomly keyed SipHash over a counter and the clock.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

fn random_hex(n_bytes: usize) -> String {
    let mut out = String::with_capacity(n_bytes * 2);
    while out.len() < n_bytes * 2 {
        out.push_str(&format!("{:016x}", random_u64()));
    }
    out.truncate(n_bytes * 2);
    out
}

/// A service-account token shaped like Grafana's: `glsa_<32 alphanumerics>_<8 hex>`.
fn new_sa_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut secret = String::with_capacity(32);
    while secret.len() < 32 {
        let mut r = random_u64();
        for _ in 0..8 {
            if secret.len() == 32 {
                break;
            }
            secret.push(ALPHABET[(r % ALPHABET.len() as u64) as usize] as char);
            r /= ALPHABET.len() as u64;
        }
    }
    format!("glsa_{secret}_{}", random_hex(4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_match_go() {
        assert_eq!(go_duration(1000), "1s");
        assert_eq!(go_duration(15_000), "15s");
        assert_eq!(go_duration(60_000), "1m0s");
        assert_eq!(go_duration(90_000), "1m30s");
        assert_eq!(go_duration(3_600_000), "1h0m0s");
        assert_eq!(go_duration(1_500), "1.5s");
        assert_eq!(go_duration(500), "500ms");
    }

    #[test]
    fn intervals_parse_and_round() {
        assert_eq!(parse_interval_ms("15s"), Some(15_000));
        assert_eq!(parse_interval_ms("1m30s"), Some(90_000));
        assert_eq!(parse_interval_ms(">10s"), Some(10_000));
        assert_eq!(parse_interval_ms("30"), Some(30_000));
        assert_eq!(parse_interval_ms("1x"), None);
        assert_eq!(round_interval_ms(9_000), 10_000);
        assert_eq!(round_interval_ms(81), 100);
        assert_eq!(round_interval_ms(0), 1);
        assert_eq!(format_interval(15_000), "15s");
        assert_eq!(format_interval(120_000), "2m");
    }

    #[test]
    fn relative_and_absolute_times() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_time("now", now), Some(now));
        assert_eq!(parse_time("now-15m", now), Some(now - 900_000));
        assert_eq!(parse_time("1641889530123", now), Some(1_641_889_530_123));
        assert_eq!(parse_time("yesterday", now), None);
    }

    #[test]
    fn step_follows_promlib() {
        let q = json!({"expr": "up", "refId": "A", "intervalMs": 15000, "maxDataPoints": 1000});
        let spec = parse_prom_query(&q, "A", 0, 900_000, &json!({})).unwrap();
        assert_eq!(spec.step_ms, 15_000);
        assert!(spec.range && !spec.instant);
        let q = json!({"expr": "rate(x[$__rate_interval])", "intervalMs": 15000});
        let spec = parse_prom_query(&q, "A", 0, 900_000, &json!({"timeInterval": "1s"})).unwrap();
        assert_eq!(spec.expr, "rate(x[16s])");
    }

    #[test]
    fn legends_and_names() {
        let mut labels = BTreeMap::new();
        labels.insert("pod".to_string(), "user-service-1".to_string());
        labels.insert("namespace".to_string(), "metacoding".to_string());
        assert_eq!(apply_legend("{{pod}}", &labels), "user-service-1");
        assert_eq!(
            apply_legend("{{ pod }} x {{nope}}", &labels),
            "user-service-1 x "
        );
        assert_eq!(
            metric_name_from_labels(&labels),
            "{namespace=\"metacoding\", pod=\"user-service-1\"}"
        );
        assert_eq!(metric_name_from_labels(&BTreeMap::new()), "{}");
    }

    #[test]
    fn encodings() {
        assert_eq!(
            base64_decode("YWRtaW46YWRtaW4="),
            Some(b"admin:admin".to_vec())
        );
        assert_eq!(
            base64_decode("YWRtaW46YWRtaW4"),
            Some(b"admin:admin".to_vec())
        );
        assert_eq!(base64_decode("!!"), None);
        assert_eq!(percent_decode("a%2Fb+c", true), "a/b c");
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(query_escape("1+1"), "1%2B1");
        assert_eq!(format_seconds(4_000), "4");
        assert_eq!(format_seconds(1_700_000_000_123), "1700000000.123");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_712_956_034), "2024-04-12T21:07:14Z");
        assert_eq!(redact_url("http://u:pw@h:1/x"), "http://u:***@h:1/x");
        assert_eq!(slugify("MSA Monitoring"), "msa-monitoring");
        assert_eq!(
            slugify("Kafka Exporter Overview"),
            "kafka-exporter-overview"
        );
    }

    #[test]
    fn tokens_look_like_grafana() {
        let t = new_sa_token();
        assert!(t.starts_with("glsa_"));
        assert_eq!(t.len(), 5 + 32 + 1 + 8);
        assert_ne!(t, new_sa_token());
        assert_eq!(random_hex(16).len(), 32);
    }

    #[test]
    fn builtin_dashboards_parse() {
        let d = load_dashboards(&[]).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].uid, GUIDE_DASHBOARD_UID);
    }
}
