//! The emulated Kubernetes API server, and the HTTP service discovery bridge beside it.
//!
//! Owns the HTTP side of the cluster: discovery (`/version`, `/api`, `/api/v1`, `/apis`,
//! `/apis/apps/v1`) good enough for kubectl, list / get / watch of the objects in
//! `cluster.rs`'s [`Store`] (JSON only, the way the real API server encodes them: items of a
//! List without kind/apiVersion, `Status` bodies for errors, watch events one JSON object per
//! line with `410 Expired` for a compacted resourceVersion), the `kube-forbidden` fault, and
//! `/_sd/pods` / `/_sd/cadvisor`: the targets and `__meta_kubernetes_*` labels Prometheus'
//! pod role would discover, for a Prometheus built without Kubernetes discovery.
//!
//! Read-only: writes answer `405 MethodNotAllowed`. It holds no cluster logic of its own.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::cluster::{ResourceKind, Since, Store};
use super::faults::{Fault, FaultSet};

/// What the API server serves from.
#[derive(Debug)]
pub struct ApiState {
    /// The cluster's objects.
    pub store: Arc<Store>,
    /// The stack's faults (`kube-forbidden` is applied here).
    pub faults: FaultSet,
    /// `ip:port` of each kubelet's cAdvisor, for `/_sd/cadvisor`.
    pub cadvisor_targets: Vec<String>,
    /// The node the kubelet runs on.
    pub node_name: String,
    /// Turns true when the cluster stops: open watches end.
    pub shutdown: watch::Receiver<bool>,
    /// `host:port` of this server (discovery's `serverAddressByClientCIDRs`).
    pub server_address: String,
}

/// The router of the API server (every path goes through one dispatcher).
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

/// The identity the `kube-forbidden` fault denies.
pub const FORBIDDEN_USER: &str = "system:serviceaccount:default:msa-doctor";

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A `Status` failure body, as the API server writes it.
pub fn status_body(code: u16, reason: &str, message: &str, details: Value) -> Value {
    let mut s = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code
    });
    if !details.is_null() {
        s["details"] = details;
    }
    s
}

fn status_response(code: u16, reason: &str, message: &str, details: Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &status_body(code, reason, message, details))
}

fn not_found_path() -> Response {
    status_response(
        404,
        "NotFound",
        "the server could not find the requested resource",
        json!({}),
    )
}

/// Decodes `%XX` and `+` in a query component.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let h = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector` (equality, set-based and existence requirements).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e,!f,g in (h,i)`; an error message like the API server's otherwise.
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut parts = Vec::new();
        let mut depth = 0;
        let mut cur = String::new();
        for c in s.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(std::mem::take(&mut cur));
                    continue;
                }
                _ => {}
            }
            cur.push(c);
        }
        parts.push(cur);
        let mut reqs = Vec::new();
        for p in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            let bad = || {
                format!("unable to parse requirement: found '{p}', expected: valid label selector")
            };
            let req = if let Some(k) = p.strip_prefix('!') {
                Requirement::NotExists(k.trim().to_string())
            } else if let Some((k, v)) = p.split_once("!=") {
                Requirement::NotEq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = p.split_once("==") {
                Requirement::Eq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = p.split_once('=') {
                Requirement::Eq(k.trim().to_string(), v.trim().to_string())
            } else if p.contains('(') {
                let (head, rest) = p.split_once('(').ok_or_else(bad)?;
                let values: Vec<String> = rest
                    .trim_end()
                    .strip_suffix(')')
                    .ok_or_else(bad)?
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .collect();
                let mut words = head.split_whitespace();
                let key = words.next().ok_or_else(bad)?.to_string();
                match words.next() {
                    Some("in") => Requirement::In(key, values),
                    Some("notin") => Requirement::NotIn(key, values),
                    _ => return Err(bad()),
                }
            } else {
                Requirement::Exists(p.to_string())
            };
            let key = match &req {
                Requirement::Eq(k, _)
                | Requirement::NotEq(k, _)
                | Requirement::In(k, _)
                | Requirement::NotIn(k, _)
                | Requirement::Exists(k)
                | Requirement::NotExists(k) => k,
            };
            if !valid_key(key) {
                return Err(bad());
            }
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

/// Which objects a list or watch asks for.
#[derive(Clone, Debug)]
struct Filter {
    namespace: Option<String>,
    labels: LabelSelector,
    /// `metadata.name` / `metadata.namespace` from the fieldSelector (others are ignored).
    fields: Vec<(String, String, bool)>,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        let meta = &obj["metadata"];
        if let Some(ns) = &self.namespace
            && meta["namespace"].as_str() != Some(ns.as_str())
        {
            return false;
        }
        for (field, value, equal) in &self.fields {
            let actual = match field.as_str() {
                "metadata.name" => meta["name"].as_str(),
                "metadata.namespace" => meta["namespace"].as_str(),
                _ => continue,
            }
            .unwrap_or_default();
            if (actual == value) != *equal {
                return false;
            }
        }
        self.labels.matches(meta["labels"].as_object())
    }
}

fn parse_fields(s: &str) -> Vec<(String, String, bool)> {
    s.split(',')
        .filter_map(|p| {
            if let Some((k, v)) = p.split_once("!=") {
                Some((k.trim().to_string(), v.trim().to_string(), false))
            } else {
                let (k, v) = p.split_once("==").or_else(|| p.split_once('='))?;
                Some((k.trim().to_string(), v.trim().to_string(), true))
            }
        })
        .collect()
}

/// Strips what the API server leaves out of List items.
fn as_item(mut obj: Value) -> Value {
    if let Some(m) = obj.as_object_mut() {
        m.remove("kind");
        m.remove("apiVersion");
    }
    obj
}

async fn dispatch(State(st): State<Arc<ApiState>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query());
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if method != Method::GET && method != Method::HEAD {
        return status_response(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            json!({}),
        );
    }
    match segs.as_slice() {
        ["version"] => json_response(StatusCode::OK, &version()),
        ["healthz"] | ["livez"] | ["readyz"] => (StatusCode::OK, "ok").into_response(),
        ["api"] => json_response(
            StatusCode::OK,
            &json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": st.server_address}]
            }),
        ),
        ["api", "v1"] => json_response(StatusCode::OK, &resource_list("")),
        ["apis"] => json_response(
            StatusCode::OK,
            &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [apps_group()]}),
        ),
        ["apis", "apps"] => {
            let mut g = apps_group();
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            json_response(StatusCode::OK, &g)
        }
        ["apis", "apps", "v1"] => json_response(StatusCode::OK, &resource_list("apps")),
        ["_sd", "pods"] => json_response(StatusCode::OK, &sd_pods(&st.store)),
        ["_sd", "cadvisor"] => json_response(StatusCode::OK, &sd_cadvisor(&st)),
        ["api", "v1", rest @ ..] => resource(&st, "", rest, &query, &accept),
        ["apis", "apps", "v1", rest @ ..] => resource(&st, "apps", rest, &query, &accept),
        _ => not_found_path(),
    }
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.4",
        "gitCommit": "59526cd4867447956156ae3a602fcbac10a2c335",
        "gitTreeState": "clean",
        "buildDate": "2025-04-22T16:02:27Z",
        "goVersion": "go1.23.6",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

fn apps_group() -> Value {
    let v = json!({"groupVersion": "apps/v1", "version": "v1"});
    json!({"name": "apps", "versions": [v], "preferredVersion": v})
}

/// The `APIResourceList` of a group version (kubectl's discovery, short names included).
fn resource_list(group: &str) -> Value {
    let resources: Vec<Value> = ResourceKind::ALL
        .into_iter()
        .filter(|k| k.group() == group)
        .map(|k| {
            let mut r = json!({
                "name": k.plural(),
                "singularName": k.singular(),
                "namespaced": k.namespaced(),
                "kind": k.kind(),
                "verbs": ["get", "list", "watch"],
                "shortNames": k.short_names(),
            });
            if matches!(
                k,
                ResourceKind::Pod
                    | ResourceKind::Service
                    | ResourceKind::Deployment
                    | ResourceKind::ReplicaSet
            ) {
                r["categories"] = json!(["all"]);
            }
            r
        })
        .collect();
    let gv = if group.is_empty() {
        "v1".to_string()
    } else {
        format!("{group}/v1")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

/// The resource-qualified name in messages (`pods`, `deployments.apps`).
fn qualified(kind: ResourceKind) -> String {
    if kind.group().is_empty() {
        kind.plural().to_string()
    } else {
        format!("{}.{}", kind.plural(), kind.group())
    }
}

fn forbidden(
    kind: ResourceKind,
    verb: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Response {
    let scope = match namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let subject = match name {
        Some(n) => format!("{} \"{n}\"", qualified(kind)),
        None => qualified(kind),
    };
    let message = format!(
        "{subject} is forbidden: User \"{FORBIDDEN_USER}\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}",
        kind.plural(),
        kind.group()
    );
    let mut details = json!({"group": kind.group(), "kind": kind.plural()});
    if let Some(n) = name {
        details["name"] = json!(n);
    }
    status_response(403, "Forbidden", &message, details)
}

fn resource(
    st: &ApiState,
    group: &str,
    rest: &[&str],
    query: &[(String, String)],
    accept: &str,
) -> Response {
    // (kind, namespace, name)
    let (kind, namespace, name) = match rest {
        [plural] => match ResourceKind::from_plural(group, plural) {
            Some(k) => (k, None, None),
            None => return not_found_path(),
        },
        [plural, name] => match ResourceKind::from_plural(group, plural) {
            Some(k) if !k.namespaced() => (k, None, Some(*name)),
            _ => return not_found_path(),
        },
        ["namespaces", ns, plural] => match ResourceKind::from_plural(group, plural) {
            Some(k) if k.namespaced() => (k, Some(*ns), None),
            _ => return not_found_path(),
        },
        ["namespaces", ns, plural, name] => match ResourceKind::from_plural(group, plural) {
            Some(k) if k.namespaced() => (k, Some(*ns), Some(*name)),
            _ => return not_found_path(),
        },
        _ => return not_found_path(),
    };
    let watching = matches!(param(query, "watch"), Some("1" | "true"));
    let verb = match (name, watching) {
        (_, true) => "watch",
        (Some(_), false) => "get",
        (None, false) => "list",
    };
    if kind == ResourceKind::Deployment && st.faults.has(Fault::KubeForbidden) {
        return forbidden(kind, verb, namespace, name);
    }
    if let Some(name) = name {
        if watching {
            // A watch of one object is a list watch narrowed to its name.
            let filter = Filter {
                namespace: namespace.map(str::to_string),
                labels: LabelSelector::default(),
                fields: vec![("metadata.name".into(), name.to_string(), true)],
            };
            return watch_response(st, kind, filter, query, wants_table(accept));
        }
        return match st.store.get(kind, namespace.unwrap_or_default(), name) {
            Some(obj) if wants_table(accept) => json_response(
                StatusCode::OK,
                &table(kind, &[obj], st.store.resource_version()),
            ),
            Some(obj) => json_response(StatusCode::OK, &obj),
            None => {
                let mut details = json!({"name": name, "kind": kind.plural()});
                if !kind.group().is_empty() {
                    details["group"] = json!(kind.group());
                }
                status_response(
                    404,
                    "NotFound",
                    &format!("{} \"{name}\" not found", qualified(kind)),
                    details,
                )
            }
        };
    }
    let labels = match LabelSelector::parse(param(query, "labelSelector").unwrap_or_default()) {
        Ok(l) => l,
        Err(message) => return status_response(400, "BadRequest", &message, Value::Null),
    };
    let filter = Filter {
        namespace: namespace.map(str::to_string),
        labels,
        fields: parse_fields(param(query, "fieldSelector").unwrap_or_default()),
    };
    if watching {
        return watch_response(st, kind, filter, query, wants_table(accept));
    }
    let (items, rv) = st.store.list(kind, filter.namespace.as_deref());
    let items: Vec<Value> = items.into_iter().filter(|o| filter.matches(o)).collect();
    if wants_table(accept) {
        return json_response(StatusCode::OK, &table(kind, &items, rv));
    }
    json_response(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", kind.kind()),
            "apiVersion": kind.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items.into_iter().map(as_item).collect::<Vec<_>>()
        }),
    )
}

/// Whether the client asks for server-side printing (kubectl's human-readable output).
fn wants_table(accept: &str) -> bool {
    accept.contains("as=Table")
}

/// kubectl's `HumanDuration` (the AGE column).
fn human_age(age: Duration) -> String {
    let s = age.as_secs();
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        },
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 => match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        },
        _ if h < 48 => format!("{h}h"),
        _ if h < 24 * 8 => match h % 24 {
            0 => format!("{d}d"),
            r => format!("{d}d{r}h"),
        },
        _ if d < 365 * 2 => format!("{d}d"),
        _ => format!("{}y", d / 365),
    }
}

fn age_of(obj: &Value) -> String {
    obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .map(human_age)
        .unwrap_or_else(|| "<unknown>".into())
}

/// kubectl's server-side printing (`Accept: ...;as=Table`): a few columns per kind.
fn table(kind: ResourceKind, items: &[Value], rv: u64) -> Value {
    let col = |name: &str, ty: &str, format: &str| json!({"name": name, "type": ty, "format": format, "description": "", "priority": 0});
    let mut columns = vec![col("Name", "string", "name")];
    let extra: Vec<(&str, &str)> = match kind {
        ResourceKind::Pod => vec![
            ("Ready", "string"),
            ("Status", "string"),
            ("Restarts", "string"),
            ("IP", "string"),
        ],
        ResourceKind::Deployment => vec![
            ("Ready", "string"),
            ("Up-to-date", "integer"),
            ("Available", "integer"),
        ],
        ResourceKind::ReplicaSet => vec![
            ("Desired", "integer"),
            ("Current", "integer"),
            ("Ready", "integer"),
        ],
        ResourceKind::Service => vec![
            ("Type", "string"),
            ("Cluster-IP", "string"),
            ("Port(s)", "string"),
        ],
        ResourceKind::Endpoints => vec![("Endpoints", "string")],
        ResourceKind::Namespace => vec![("Status", "string")],
        ResourceKind::Node => vec![("Status", "string"), ("Version", "string")],
    };
    for (n, t) in &extra {
        columns.push(col(n, t, ""));
    }
    columns.push(col("Age", "string", ""));
    let num = |v: &Value| v.as_i64().unwrap_or(0);
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            let s = &o["status"];
            let mut cells = vec![json!(name)];
            match kind {
                ResourceKind::Pod => {
                    let cs = s["containerStatuses"].as_array().cloned().unwrap_or_default();
                    let ready = cs.iter().filter(|c| c["ready"] == json!(true)).count();
                    let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
                    let restarts: i64 = cs.iter().map(|c| num(&c["restartCount"])).sum();
                    cells.extend([
                        json!(format!("{ready}/{total}")),
                        s["phase"].clone(),
                        json!(restarts.to_string()),
                        s["podIP"].clone(),
                    ]);
                }
                ResourceKind::Deployment => {
                    let want = num(&o["spec"]["replicas"]);
                    cells.extend([
                        json!(format!("{}/{want}", num(&s["readyReplicas"]))),
                        json!(num(&s["updatedReplicas"])),
                        json!(num(&s["availableReplicas"])),
                    ]);
                }
                ResourceKind::ReplicaSet => cells.extend([
                    json!(num(&o["spec"]["replicas"])),
                    json!(num(&s["replicas"])),
                    json!(num(&s["readyReplicas"])),
                ]),
                ResourceKind::Service => {
                    let ports: Vec<String> = o["spec"]["ports"]
                        .as_array()
                        .map(|ps| ps.iter().map(|p| format!("{}/{}", num(&p["port"]), p["protocol"].as_str().unwrap_or("TCP"))).collect())
                        .unwrap_or_default();
                    cells.extend([o["spec"]["type"].clone(), o["spec"]["clusterIP"].clone(), json!(ports.join(","))]);
                }
                ResourceKind::Endpoints => {
                    let mut eps = Vec::new();
                    for sub in o["subsets"].as_array().into_iter().flatten() {
                        for a in sub["addresses"].as_array().into_iter().flatten() {
                            for p in sub["ports"].as_array().into_iter().flatten() {
                                eps.push(format!("{}:{}", a["ip"].as_str().unwrap_or_default(), num(&p["port"])));
                            }
                        }
                    }
                    cells.push(json!(if eps.is_empty() { "<none>".to_string() } else { eps.join(",") }));
                }
                ResourceKind::Namespace => cells.push(s["phase"].clone()),
                ResourceKind::Node => cells.extend([json!("Ready"), s["nodeInfo"]["kubeletVersion"].clone()]),
            }
            cells.push(json!(age_of(o)));
            let mut meta = o["metadata"].clone();
            if let Some(m) = meta.as_object_mut() {
                m.remove("managedFields");
            }
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": columns,
        "rows": rows
    })
}

/// Where an open watch stands.
struct WatchCursor {
    store: Arc<Store>,
    kind: ResourceKind,
    filter: Filter,
    since: u64,
    deadline: tokio::time::Instant,
    shutdown: watch::Receiver<bool>,
    changes: watch::Receiver<u64>,
    pending: VecDeque<Bytes>,
    /// Events carry one-row Tables (kubectl `get -w`) instead of the objects.
    table: bool,
    done: bool,
    bookmarks: bool,
    next_bookmark: tokio::time::Instant,
}

/// How often an idle watch that allows them gets a BOOKMARK.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);
/// A watch without `timeoutSeconds` ends after this long (the API server picks 30-60 min).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": event_type, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn expired_line(requested: u64, oldest: u64) -> Bytes {
    event_line(
        "ERROR",
        &status_body(
            410,
            "Expired",
            &format!("too old resource version: {requested} ({oldest})"),
            Value::Null,
        ),
    )
}

enum Wake {
    Changed,
    End,
    Bookmark,
}

impl WatchCursor {
    async fn next_chunk(mut self) -> Option<(Result<Bytes, Infallible>, WatchCursor)> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some((Ok(b), self));
            }
            if self.done {
                return None;
            }
            match self.store.since(self.kind, self.since) {
                Since::Expired { oldest } => {
                    self.pending.push_back(expired_line(self.since, oldest));
                    self.done = true;
                    continue;
                }
                Since::Events(events) => {
                    let mut sent = false;
                    for e in events {
                        self.since = e.rv;
                        if self.filter.matches(&e.object) {
                            let line = if self.table {
                                event_line(e.event_type, &table(self.kind, &[e.object], e.rv))
                            } else {
                                event_line(e.event_type, &e.object)
                            };
                            self.pending.push_back(line);
                            sent = true;
                        }
                    }
                    if sent {
                        continue;
                    }
                }
            }
            let bookmarks = self.bookmarks;
            let next_bookmark = self.next_bookmark;
            let deadline = self.deadline;
            let wake = tokio::select! {
                r = self.changes.changed() => if r.is_ok() { Wake::Changed } else { Wake::End },
                _ = tokio::time::sleep_until(deadline) => Wake::End,
                _ = self.shutdown.wait_for(|stop| *stop) => Wake::End,
                _ = tokio::time::sleep_until(next_bookmark), if bookmarks => Wake::Bookmark,
            };
            match wake {
                Wake::Changed => {}
                Wake::End => self.done = true,
                Wake::Bookmark => {
                    // Only advance to a version with no undelivered change of this kind.
                    let current = self.store.resource_version();
                    if let Since::Events(e) = self.store.since(self.kind, self.since)
                        && e.is_empty()
                    {
                        self.since = self.since.max(current);
                        let obj = json!({
                            "kind": self.kind.kind(),
                            "apiVersion": self.kind.api_version(),
                            "metadata": {"resourceVersion": self.since.to_string()}
                        });
                        self.pending.push_back(event_line("BOOKMARK", &obj));
                    }
                    self.next_bookmark = tokio::time::Instant::now() + BOOKMARK_EVERY;
                }
            }
        }
    }
}

fn watch_response(
    st: &ApiState,
    kind: ResourceKind,
    filter: Filter,
    query: &[(String, String)],
    as_table: bool,
) -> Response {
    let requested: u64 = param(query, "resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout = param(query, "timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_WATCH_TIMEOUT);
    let mut pending = VecDeque::new();
    // Subscribe before reading the store so no change falls between the two.
    let changes = st.store.subscribe();
    let since = if requested == 0 {
        // "0" or absent: the current state as ADDED events, then the changes.
        let (items, rv) = st.store.list(kind, filter.namespace.as_deref());
        for obj in items.iter().filter(|o| filter.matches(o)) {
            let line = if as_table {
                event_line("ADDED", &table(kind, std::slice::from_ref(obj), rv))
            } else {
                event_line("ADDED", obj)
            };
            pending.push_back(line);
        }
        rv
    } else {
        requested
    };
    let cursor = WatchCursor {
        store: st.store.clone(),
        kind,
        filter,
        since,
        deadline: tokio::time::Instant::now() + timeout,
        shutdown: st.shutdown.clone(),
        changes,
        pending,
        table: as_table,
        done: false,
        bookmarks: matches!(param(query, "allowWatchBookmarks"), Some("true" | "1")),
        next_bookmark: tokio::time::Instant::now() + BOOKMARK_EVERY,
    };
    let stream = futures::stream::unfold(cursor, WatchCursor::next_chunk);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache, private"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Prometheus' label-name sanitising: every character outside `[a-zA-Z0-9_]` becomes `_`.
pub fn sanitize_label_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The HTTP SD answer for the pods: what Prometheus' `kubernetes_sd_configs` role `pod`
/// discovers (one target per declared container port, one port-less target per container
/// without ports), with the same `__meta_kubernetes_*` labels. Pods without an IP give none.
pub fn sd_pods(store: &Store) -> Value {
    let (pods, _) = store.list(ResourceKind::Pod, None);
    let mut groups = Vec::new();
    for pod in &pods {
        let meta = &pod["metadata"];
        let status = &pod["status"];
        let Some(ip) = status["podIP"].as_str().filter(|ip| !ip.is_empty()) else {
            continue;
        };
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let mut common = Map::new();
        let mut put = |k: &str, v: String| {
            common.insert(format!("__meta_kubernetes_{k}"), Value::String(v));
        };
        put("namespace", s(&meta["namespace"]));
        put("pod_name", s(&meta["name"]));
        put("pod_ip", ip.to_string());
        let ready = status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .map(|c| match c["status"].as_str() {
                Some("True") => "true",
                Some("False") => "false",
                _ => "unknown",
            })
            .unwrap_or("unknown");
        put("pod_ready", ready.to_string());
        put("pod_phase", s(&status["phase"]));
        put("pod_node_name", s(&pod["spec"]["nodeName"]));
        put("pod_host_ip", s(&status["hostIP"]));
        put("pod_uid", s(&meta["uid"]));
        for (what, field) in [("label", "labels"), ("annotation", "annotations")] {
            for (k, v) in meta[field].as_object().into_iter().flatten() {
                let k = sanitize_label_name(k);
                put(&format!("pod_{what}_{k}"), s(v));
                put(&format!("pod_{what}present_{k}"), "true".into());
            }
        }
        if let Some(owner) = meta["ownerReferences"]
            .as_array()
            .and_then(|os| os.iter().find(|o| o["controller"] == json!(true)))
        {
            put("pod_controller_kind", s(&owner["kind"]));
            put("pod_controller_name", s(&owner["name"]));
        }
        let spec = &pod["spec"];
        let containers = spec["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| (c, false))
            .chain(
                spec["initContainers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| (c, true)),
            );
        for (c, init) in containers {
            let mut base = common.clone();
            base.insert(
                "__meta_kubernetes_pod_container_name".into(),
                Value::String(s(&c["name"])),
            );
            base.insert(
                "__meta_kubernetes_pod_container_image".into(),
                Value::String(s(&c["image"])),
            );
            base.insert(
                "__meta_kubernetes_pod_container_init".into(),
                Value::String(init.to_string()),
            );
            let ports = c["ports"].as_array().cloned().unwrap_or_default();
            if ports.is_empty() {
                groups.push(json!({"targets": [ip], "labels": base}));
                continue;
            }
            for p in ports {
                let number = p["containerPort"].as_i64().unwrap_or_default().to_string();
                let mut labels = base.clone();
                labels.insert(
                    "__meta_kubernetes_pod_container_port_name".into(),
                    Value::String(s(&p["name"])),
                );
                labels.insert(
                    "__meta_kubernetes_pod_container_port_number".into(),
                    Value::String(number.clone()),
                );
                labels.insert(
                    "__meta_kubernetes_pod_container_port_protocol".into(),
                    Value::String(p["protocol"].as_str().unwrap_or("TCP").to_string()),
                );
                groups.push(json!({"targets": [format!("{ip}:{number}")], "labels": labels}));
            }
        }
    }
    Value::Array(groups)
}

/// The HTTP SD answer for the kubelets' cAdvisor (`[]` when there is none).
fn sd_cadvisor(st: &ApiState) -> Value {
    Value::Array(
        st.cadvisor_targets
            .iter()
            .map(|t| {
                let ip = t.rsplit_once(':').map(|(h, _)| h).unwrap_or(t);
                json!({"targets": [t], "labels": {
                    "__metrics_path__": "/metrics/cadvisor",
                    "__meta_kubernetes_node_name": st.node_name,
                    "__meta_kubernetes_node_address_InternalIP": ip,
                }})
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_and_match() {
        let labels = json!({"app": "order-service", "tier": "backend"});
        let l = labels.as_object();
        let m = |s: &str| LabelSelector::parse(s).map(|sel| sel.matches(l));
        assert_eq!(m("app=order-service"), Ok(true));
        assert_eq!(m("app==order-service,tier=backend"), Ok(true));
        assert_eq!(m("app=user-service"), Ok(false));
        assert_eq!(m("app!=user-service"), Ok(true));
        assert_eq!(m("tier"), Ok(true));
        assert_eq!(m("!tier"), Ok(false));
        assert_eq!(m("app in (user-service, order-service)"), Ok(true));
        assert_eq!(m("app notin (order-service)"), Ok(false));
        assert_eq!(m(""), Ok(true));
        assert!(LabelSelector::parse("app in user").is_err());
        assert!(LabelSelector::parse("a b=c").is_err());
    }

    #[test]
    fn queries_decode() {
        let q = parse_query(Some("&labelSelector=app%3Dorder-service%2Ctier+x&watch=1"));
        assert_eq!(param(&q, "labelSelector"), Some("app=order-service,tier x"));
        assert_eq!(param(&q, "watch"), Some("1"));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn ages_read_like_kubectl() {
        let h = |s| human_age(Duration::from_secs(s));
        assert_eq!(h(8), "8s");
        assert_eq!(h(185), "3m5s");
        assert_eq!(h(1200), "20m");
        assert_eq!(h(3 * 3600 + 60), "3h1m");
        assert_eq!(h(26 * 3600), "26h");
        assert_eq!(h(3 * 86400 + 7200), "3d2h");
    }

    #[test]
    fn label_names_are_sanitised() {
        assert_eq!(
            sanitize_label_name("prometheus.io/scrape"),
            "prometheus_io_scrape"
        );
        assert_eq!(
            sanitize_label_name("pod-template-hash"),
            "pod_template_hash"
        );
    }
}
