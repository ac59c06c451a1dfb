//! `kind = "http"`: a request (method, URL, headers) whose answer must have an expected status
//! and, optionally, a body containing a text or a JSON value at a pointer.

use super::{BuildError, cut, parse_args};
use crate::clients::{CallError, ErrorKind, Lane};
use crate::engine::{CheckCtx, Outcome, Probe, fill_template};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    url: String,
    #[serde(default = "get")]
    method: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// One status or a list; 200 by default.
    #[serde(default)]
    expect_status: Option<toml::Value>,
    body_contains: Option<String>,
    json_pointer: Option<String>,
    json_equals: Option<toml::Value>,
    body: Option<String>,
}

fn get() -> String {
    "GET".into()
}

/// An HTTP request and what its answer must hold.
#[derive(Debug)]
pub struct Http {
    url: String,
    method: reqwest::Method,
    headers: BTreeMap<String, String>,
    expect_status: Vec<u16>,
    body_contains: Option<String>,
    json_pointer: Option<String>,
    json_equals: Option<serde_json::Value>,
    body: Option<String>,
}

impl Http {
    /// From `args = { url = "...", method = "GET", headers = {...}, expect_status = 200, ... }`.
    pub fn from_args(args: &toml::Table) -> Result<Self, BuildError> {
        let a: Args = parse_args(args)?;
        let method = reqwest::Method::from_bytes(a.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| {
                BuildError::Args(format!("method {:?} is not an HTTP method", a.method))
            })?;
        if !a.url.contains('{') {
            match reqwest::Url::parse(&a.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => {
                    return Err(BuildError::Args(format!(
                        "url {:?} is not an http(s) URL",
                        a.url
                    )));
                }
            }
        }
        let expect_status = match a.expect_status {
            None => vec![200],
            Some(toml::Value::Integer(n)) => vec![status_code(n)?],
            Some(toml::Value::Array(list)) => list
                .iter()
                .map(|v| match v {
                    toml::Value::Integer(n) => status_code(*n),
                    _ => Err(BuildError::Args("expect_status must list integers".into())),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(BuildError::Args(
                    "expect_status must be an integer or a list of integers".into(),
                ));
            }
        };
        if a.json_equals.is_some() && a.json_pointer.is_none() {
            return Err(BuildError::Args("json_equals needs json_pointer".into()));
        }
        if let Some(p) = &a.json_pointer
            && !(p.is_empty() || p.starts_with('/'))
        {
            return Err(BuildError::Args(format!(
                "json_pointer {p:?} must start with '/' (RFC 6901, e.g. \"/database\")"
            )));
        }
        let json_equals = a
            .json_equals
            .map(|v| serde_json::to_value(v).map_err(|e| BuildError::Args(e.to_string())))
            .transpose()?;
        Ok(Http {
            url: a.url,
            method,
            headers: a.headers,
            expect_status,
            body_contains: a.body_contains,
            json_pointer: a.json_pointer,
            json_equals,
            body: a.body,
        })
    }
}

fn status_code(n: i64) -> Result<u16, BuildError> {
    u16::try_from(n)
        .ok()
        .filter(|n| (100..=599).contains(n))
        .ok_or_else(|| BuildError::Args(format!("expect_status {n} is not an HTTP status")))
}

pub use crate::clients::http::describe_reqwest_error;

#[async_trait::async_trait]
impl Probe for Http {
    async fn run(&self, cx: &CheckCtx) -> Outcome {
        let vars = serde_json::Value::Object(cx.settings.template_vars());
        let url = fill_template(&self.url, &vars);
        let mut req = cx.clients.http.client().request(self.method.clone(), &url);
        for (k, v) in &self.headers {
            req = req.header(k, fill_template(v, &vars));
        }
        if let Some(b) = &self.body {
            req = req.body(b.clone());
        }
        let call = format!("{} {url}", self.method);
        let a = match cx
            .clients
            .http
            .send(&call, req, cx.timeout, Lane::Chain)
            .await
        {
            Ok(a) => a,
            // A body too large or cut short is not this check's finding: it could not read it.
            Err(
                e @ CallError {
                    kind: ErrorKind::TooLarge(_) | ErrorKind::Undecodable(_),
                    ..
                },
            ) => return Outcome::error(e.to_string()).evidence("url", &url),
            Err(e) => {
                let why = match &e.kind {
                    ErrorKind::TimedOut(_) => format!(
                        "no answer within {}",
                        humantime::format_duration(cx.timeout)
                    ),
                    ErrorKind::Refused(s) => s.clone(),
                    _ => e.reason(),
                };
                return Outcome::fail(format!("{} {url}: {why}", self.method))
                    .evidence("url", &url);
            }
        };
        let status = a.status;
        let content_type = a
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("no content type")
            .to_string();
        let body = a.body;
        let text = crate::clients::redact::clean(&String::from_utf8_lossy(&body));
        let base = |o: Outcome| o.evidence("url", &url).evidence("status", status);
        if !self.expect_status.contains(&status) {
            return base(Outcome::fail(format!(
                "{url} answered HTTP {status}, expected {}",
                self.expect_status
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )))
            .evidence("body", cut(text.trim(), 500));
        }
        if let Some(needle) = &self.body_contains
            && !text.contains(needle.as_str())
        {
            return base(Outcome::fail(format!(
                "{url}: the body does not contain {needle:?}"
            )))
            .evidence("body", cut(text.trim(), 500));
        }
        if let Some(pointer) = &self.json_pointer {
            let json: serde_json::Value = match serde_json::from_slice(&body) {
                Ok(j) => j,
                Err(e) => {
                    return base(Outcome::fail(format!(
                        "{url}: the body is not JSON ({content_type}; {e})"
                    )))
                    .evidence("body", cut(text.trim(), 500));
                }
            };
            let found = json.pointer(pointer);
            match (&self.json_equals, found) {
                (_, None) => {
                    return base(Outcome::fail(format!("{url}: no JSON value at {pointer}")));
                }
                (Some(want), Some(got)) if want != got => {
                    return base(Outcome::fail(format!(
                        "{url}: {pointer} is {got}, expected {want}"
                    )));
                }
                _ => {}
            }
        }
        base(Outcome::pass(format!("{url} answered HTTP {status}")))
    }
}
