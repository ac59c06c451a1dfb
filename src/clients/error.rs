//! The typed error of every call to the world: which call, and what went wrong. Never an empty
//! default: a caller that lacks an answer knows it, and says which call failed.

use std::time::Duration;

/// A failed call: what was asked (in words a user can repeat) and why it failed.
#[derive(Debug, Clone, PartialEq)]
pub struct CallError {
    /// The call, e.g. "GET /api/v1/targets through Grafana's proxy to data source \"Prometheus\"".
    pub call: String,
    /// What went wrong.
    pub kind: ErrorKind,
}

/// What went wrong with a call.
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorKind {
    /// Nothing answered: connection refused, reset before an answer, no such host, TLS.
    Refused(String),
    /// No complete answer within the deadline.
    TimedOut(Duration),
    /// An HTTP status that is not the expected answer; the excerpt is cleaned and cut short.
    Status {
        /// The status code.
        status: u16,
        /// The start of the body, redacted and sanitised.
        excerpt: String,
        /// The body is an HTML page (a proxy or another program), not an API's answer.
        html: bool,
    },
    /// Permission refused (HTTP 401/403 from Kubernetes, a Forbidden status).
    Forbidden(String),
    /// An answer came but could not be read: cut short, not JSON, or not the expected shape.
    Undecodable(String),
    /// The body is larger than a body may be, or the run's memory budget is spent.
    TooLarge(String),
    /// The server's own error envelope (Prometheus `status: error`).
    Api {
        /// `bad_data`, `execution`, `timeout`, ...
        error_type: String,
        /// Its message.
        error: String,
    },
    /// A local program the call depends on failed (a kubeconfig exec plugin).
    Local(String),
}

impl CallError {
    /// A new error for a call.
    pub fn new(call: impl Into<String>, kind: ErrorKind) -> Self {
        CallError {
            call: call.into(),
            kind,
        }
    }

    /// The reason alone, without the call.
    pub fn reason(&self) -> String {
        match &self.kind {
            ErrorKind::Refused(s) => s.clone(),
            ErrorKind::TimedOut(d) => format!(
                "no complete answer within {}",
                humantime::format_duration(Duration::from_millis(d.as_millis() as u64))
            ),
            ErrorKind::Status {
                status,
                excerpt,
                html,
            } => {
                let what = if *html { " (an HTML page)" } else { "" };
                if excerpt.is_empty() {
                    format!("HTTP {status}{what} with an empty body")
                } else {
                    format!("HTTP {status}{what}: {excerpt}")
                }
            }
            ErrorKind::Forbidden(s) => format!("forbidden: {s}"),
            ErrorKind::Undecodable(s) => format!("the answer could not be read: {s}"),
            ErrorKind::TooLarge(s) => s.clone(),
            ErrorKind::Api { error_type, error } => format!("{error_type}: {error}"),
            ErrorKind::Local(s) => s.clone(),
        }
    }

    /// True when no answer came at all (refused or timed out).
    pub fn is_unreachable(&self) -> bool {
        matches!(self.kind, ErrorKind::Refused(_) | ErrorKind::TimedOut(_))
    }

    /// The HTTP status, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            ErrorKind::Status { status, .. } => Some(status),
            _ => None,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.call, self.reason())
    }
}

impl std::error::Error for CallError {}
