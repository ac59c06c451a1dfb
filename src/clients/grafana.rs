//! Grafana's HTTP API: the login session and JSON calls with it.

use super::error::{CallError, ErrorKind};
use super::http::{Answer, Lane, Transport};
use super::redact;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// How later calls authenticate to Grafana: a session cookie, a bearer token or basic auth.
/// Holds a secret; `Debug` hides it, and the secret is registered with the redactor.
#[derive(Clone)]
pub struct GrafanaSession {
    header: (HeaderName, HeaderValue),
}

impl std::fmt::Debug for GrafanaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GrafanaSession({} <redacted>)", self.header.0)
    }
}

impl GrafanaSession {
    fn new(name: HeaderName, value: &str) -> Option<Self> {
        let mut v = HeaderValue::from_str(value).ok()?;
        v.set_sensitive(true);
        Some(GrafanaSession { header: (name, v) })
    }

    /// A bearer token (a service-account token).
    pub fn bearer(token: &str) -> Option<Self> {
        redact::register(token);
        Self::new(reqwest::header::AUTHORIZATION, &format!("Bearer {token}"))
    }

    /// Basic authentication.
    pub fn basic(user: &str, password: &str) -> Option<Self> {
        use base64::Engine;
        redact::register_credentials(user, password);
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Self::new(reqwest::header::AUTHORIZATION, &format!("Basic {token}"))
    }

    /// The cookies of a login answer, when they hold a Grafana session.
    pub fn from_login(a: &Answer) -> Option<Self> {
        let cookies: Vec<String> = a
            .headers
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|c| c.split(';').next())
            .filter(|kv| kv.contains('='))
            .map(str::to_string)
            .collect();
        if !cookies.iter().any(|c| c.starts_with("grafana_session")) {
            return None;
        }
        for c in &cookies {
            if let Some((_, v)) = c.split_once('=') {
                redact::register(v);
            }
        }
        Self::new(reqwest::header::COOKIE, &cookies.join("; "))
    }

    /// Adds the credentials to a request.
    pub fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.header(self.header.0.clone(), self.header.1.clone())
    }
}

/// Grafana's API at a URL, with a session once logged in.
#[derive(Clone)]
pub struct Grafana {
    /// The transport of the run.
    pub transport: Transport,
    /// Grafana's URL, without a trailing slash.
    pub base: String,
    /// The login session, when there is one.
    pub session: Option<Arc<GrafanaSession>>,
    /// The deadline of each call.
    pub timeout: Duration,
    /// The lane of these calls.
    pub lane: Lane,
    /// When every call must have ended (a check's deadline), if anything.
    pub deadline: Option<std::time::Instant>,
}

impl Grafana {
    /// The URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request to a path (with the session, when there is one) and reads the answer,
    /// whatever its status.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, CallError> {
        let mut req = self
            .transport
            .client()
            .request(method.clone(), self.url(path));
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(s) = &self.session {
            req = s.apply(req);
        }
        let call = format!("{method} {path} on Grafana");
        self.transport
            .send(
                &call,
                req,
                super::http::within(self.timeout, self.deadline),
                self.lane,
            )
            .await
    }

    /// GETs a JSON document; any status but 200, or a body that is not JSON, is an error.
    pub async fn get_json(&self, path: &str) -> Result<Value, CallError> {
        let a = self.send(reqwest::Method::GET, path, None).await?;
        let call = format!("GET {path} on Grafana");
        if a.status == 401 || a.status == 403 {
            return Err(CallError::new(
                call,
                ErrorKind::Forbidden(format!(
                    "HTTP {} {}",
                    a.status,
                    a.message().unwrap_or_default()
                )),
            ));
        }
        if a.status != 200 {
            return Err(a.status_error(&call));
        }
        serde_json::from_slice(&a.body).map_err(|e| {
            CallError::new(
                call,
                ErrorKind::Undecodable(format!(
                    "not JSON ({e}){}",
                    if a.is_html() { ": an HTML page" } else { "" }
                )),
            )
        })
    }
}
