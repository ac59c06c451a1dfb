//! The HTTP transport every Grafana, Prometheus and `http`-check call goes through.
//!
//! - Each call has a deadline (the caller's) that covers connecting, the headers and the body.
//! - Bodies are streamed against two limits: [`MAX_BODY`] for one body and a byte budget for
//!   the whole run ([`RUN_BUDGET`]), shared by every body being read at the same time; an
//!   answer holds its share until it is dropped.
//! - Calls to one server are capped ([`PER_SERVER`] at once), and background calls (the
//!   dashboard scan, the explainer's batches) may use at most [`BACKGROUND`] of those slots, so
//!   the guide's chain is never queued behind them.
//! - Every text taken from an answer for a message is cleaned ([`super::redact::clean`]).
//! - Requests are counted per server, for the benchmarks ([`Transport::counts`]).

use super::error::{CallError, ErrorKind};
use super::redact;
use reqwest::header::HeaderMap;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The most one body may hold (a large cluster's `/api/v1/targets` runs to tens of MiB).
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// The most all bodies being read at once may hold.
pub const RUN_BUDGET: usize = 256 * 1024 * 1024;
/// Calls in flight to one server at most.
pub const PER_SERVER: usize = 8;
/// Of those, background calls at most.
pub const BACKGROUND: usize = 5;
/// The unit of the byte budget's semaphore.
const UNIT: usize = 1024;

/// How urgent a call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// The calls whose answer is a check's own subject (Grafana's health, the login, the data
    /// source test, Prometheus's `time()`): few, and never queued behind other calls.
    Critical,
    /// The checks' other calls, capped per server.
    Chain,
    /// The dashboard scan and explanations: the slots the chain leaves.
    Background,
}

struct Server {
    all: Arc<Semaphore>,
    background: Arc<Semaphore>,
}

/// The HTTP transport of a run. Cheap to clone.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    budget: Arc<Semaphore>,
    max_body: usize,
    servers: Mutex<HashMap<String, Arc<Server>>>,
    counts: Mutex<BTreeMap<String, u64>>,
}

/// An answer, its body read whole. Holds its share of the run's byte budget until dropped.
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
    _budget: Option<OwnedSemaphorePermit>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Answer({}, {} bytes)", self.status, self.body.len())
    }
}

impl Answer {
    /// An answer built in memory (tests).
    pub fn new(status: u16, headers: HeaderMap, body: Vec<u8>) -> Self {
        Answer {
            status,
            headers,
            body,
            _budget: None,
        }
    }

    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as text, cleaned (redacted, sanitised) for a message.
    pub fn text(&self) -> String {
        redact::clean(String::from_utf8_lossy(&self.body).trim())
    }

    /// The start of the body, cleaned, for a message.
    pub fn excerpt(&self, max: usize) -> String {
        let head = &self.body[..self.body.len().min(max * 4)];
        cut(&redact::clean(String::from_utf8_lossy(head).trim()), max)
    }

    /// Whether the body is an HTML page (by its type or its first bytes).
    pub fn is_html(&self) -> bool {
        let ct = self
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let head = String::from_utf8_lossy(&self.body[..self.body.len().min(256)])
            .trim_start()
            .to_ascii_lowercase();
        ct.contains("html") || head.starts_with("<!doctype") || head.starts_with("<html")
    }

    /// Grafana's `message` field, when the body is one of its JSON errors (cleaned).
    pub fn message(&self) -> Option<String> {
        self.json()?
            .get("message")?
            .as_str()
            .map(|s| cut(&redact::clean(s), 300))
    }

    /// The `Date` header.
    pub fn date(&self) -> Option<std::time::SystemTime> {
        self.headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok())
    }

    /// A status error for this answer (HTTP status, cleaned excerpt).
    pub fn status_error(&self, call: &str) -> CallError {
        CallError::new(
            call,
            ErrorKind::Status {
                status: self.status,
                excerpt: self.message().unwrap_or_else(|| self.excerpt(200)),
                html: self.is_html(),
            },
        )
    }
}

/// The time a call may take now: its per-call limit, or what is left before a deadline (at
/// least a millisecond, so the call fails by itself rather than never starts).
pub fn within(limit: Duration, deadline: Option<Instant>) -> Duration {
    match deadline {
        Some(d) => limit
            .min(d.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1)),
        None => limit,
    }
}

/// Cuts a text to at most `max` bytes on a character boundary, saying how much was cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &s[..end], s.len() - end)
}

impl Transport {
    /// The transport of a run: one connection pool, `timeout` as the default deadline.
    pub fn new(timeout: Duration) -> Self {
        Self::with_limits(timeout, MAX_BODY, RUN_BUDGET)
    }

    /// With other body limits (tests).
    pub fn with_limits(timeout: Duration, max_body: usize, run_budget: usize) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("msa-doctor/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("a TLS provider is installed before clients are built");
        Transport {
            inner: Arc::new(Inner {
                client,
                budget: Arc::new(Semaphore::new((run_budget / UNIT).max(1))),
                max_body,
                servers: Mutex::new(HashMap::new()),
                counts: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// The underlying client, to build requests with.
    pub fn client(&self) -> &reqwest::Client {
        &self.inner.client
    }

    /// The run's byte budget, for clients that read bodies themselves ([`Budgeted`]).
    pub fn budget(&self) -> Arc<Semaphore> {
        self.inner.budget.clone()
    }

    /// Counts a request sent by a client that does not go through [`Transport::send`] (the
    /// Kubernetes client), under `key`.
    pub fn count(&self, key: &str) {
        *self
            .inner
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_default() += 1;
    }

    /// Requests sent so far, per server (`host:port`).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.inner
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn server(&self, key: &str) -> Arc<Server> {
        let mut m = self.inner.servers.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(key.to_string())
            .or_insert_with(|| {
                Arc::new(Server {
                    all: Arc::new(Semaphore::new(PER_SERVER)),
                    background: Arc::new(Semaphore::new(BACKGROUND)),
                })
            })
            .clone()
    }

    /// Sends a request under `deadline` and reads its body whole. `call` names it in errors.
    pub async fn send(
        &self,
        call: &str,
        req: reqwest::RequestBuilder,
        deadline: Duration,
        lane: Lane,
    ) -> Result<Answer, CallError> {
        self.send_capped(call, req, deadline, lane, self.inner.max_body)
            .await
    }

    /// [`Transport::send`] with another cap on this one body (still within the run's budget):
    /// for the few answers that grow with the cluster, as `/api/v1/targets` does.
    pub async fn send_capped(
        &self,
        call: &str,
        req: reqwest::RequestBuilder,
        deadline: Duration,
        lane: Lane,
        max_body: usize,
    ) -> Result<Answer, CallError> {
        let started = Instant::now();
        let req = req.timeout(deadline);
        let (client, built) = req.build_split();
        let built = built.map_err(|e| {
            CallError::new(
                call,
                ErrorKind::Local(format!("a bad request: {}", clean_err(&e))),
            )
        })?;
        let key = server_key(built.url());
        let server = self.server(&key);
        let timed_out = || CallError::new(call, ErrorKind::TimedOut(deadline));
        // The slots: a background call takes one of its lane's first.
        let _bg = match lane {
            Lane::Background => Some(
                tokio::time::timeout(deadline, server.background.clone().acquire_owned())
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(|_| timed_out())?,
            ),
            Lane::Chain | Lane::Critical => None,
        };
        let left = deadline.saturating_sub(started.elapsed());
        let _slot = match lane {
            Lane::Critical => None,
            _ => Some(
                tokio::time::timeout(left, server.all.clone().acquire_owned())
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(|_| timed_out())?,
            ),
        };
        *self
            .inner
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default() += 1;
        let work = async {
            let resp = client
                .execute(built)
                .await
                .map_err(|e| request_error(call, &e, deadline))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let (body, permit) = self
                .read_body(call, resp, deadline, started, max_body)
                .await?;
            Ok(Answer {
                status,
                headers,
                body,
                _budget: permit,
            })
        };
        let left = deadline.saturating_sub(started.elapsed());
        tokio::time::timeout(left, work)
            .await
            .map_err(|_| timed_out())?
    }

    async fn read_body(
        &self,
        call: &str,
        mut resp: reqwest::Response,
        deadline: Duration,
        started: Instant,
        max: usize,
    ) -> Result<(Vec<u8>, Option<OwnedSemaphorePermit>), CallError> {
        let too_large = || {
            CallError::new(
                call,
                ErrorKind::TooLarge(format!(
                    "the answer is larger than {} MiB, the most msa-doctor reads of one answer",
                    max / (1024 * 1024)
                )),
            )
        };
        if resp.content_length().is_some_and(|n| n as usize > max) {
            return Err(too_large());
        }
        let hinted = resp.content_length().map(|n| n as usize).unwrap_or(0);
        let mut out: Vec<u8> = Vec::new();
        let mut permit: Option<OwnedSemaphorePermit> = None;
        let mut held = 0usize;
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => return Ok((out, permit)),
                Err(e) => {
                    let err = request_error(call, &e, deadline);
                    return Err(match err.kind {
                        ErrorKind::TimedOut(_) => err,
                        _ => CallError::new(
                            call,
                            ErrorKind::Undecodable(format!(
                                "the answer was cut short after {} bytes ({})",
                                out.len(),
                                err.reason()
                            )),
                        ),
                    });
                }
            };
            if out.len() + chunk.len() > max {
                return Err(too_large());
            }
            // The budget counts what the buffer holds (its capacity), taken before it grows:
            // a known length is reserved once, else the buffer doubles, up to the cap.
            let required = out.len() + chunk.len();
            let capacity = if required <= out.capacity() {
                out.capacity()
            } else if out.is_empty() && hinted >= required {
                hinted
            } else {
                (out.capacity() * 2).max(required).min(max)
            };
            let need = capacity.div_ceil(UNIT);
            if need > held {
                let more = (need - held) as u32;
                let left = deadline.saturating_sub(started.elapsed());
                let p = tokio::time::timeout(
                    left,
                    self.inner.budget.clone().acquire_many_owned(more),
                )
                .await
                .map_err(|_| {
                    CallError::new(
                        call,
                        ErrorKind::TooLarge(format!(
                            "the run's memory budget ({} MiB for all answers read at once) stayed spent by other answers",
                            self.inner.budget_total_mib()
                        )),
                    )
                })?
                .map_err(|_| too_large())?;
                match &mut permit {
                    Some(p0) => p0.merge(p),
                    None => permit = Some(p),
                }
                held = need;
            }
            if capacity > out.capacity() {
                out.reserve_exact(capacity - out.len());
            }
            out.extend_from_slice(&chunk);
        }
    }
}

impl Inner {
    fn budget_total_mib(&self) -> usize {
        RUN_BUDGET / (1024 * 1024)
    }
}

fn server_key(u: &reqwest::Url) -> String {
    format!(
        "{}:{}",
        u.host_str().unwrap_or(""),
        u.port_or_known_default().unwrap_or(0)
    )
}

fn clean_err(e: &dyn std::error::Error) -> String {
    redact::clean(&e.to_string())
}

/// The error of a request that got no (complete) answer, in the user's words.
pub fn request_error(call: &str, e: &reqwest::Error, deadline: Duration) -> CallError {
    if e.is_timeout() {
        return CallError::new(call, ErrorKind::TimedOut(deadline));
    }
    CallError::new(call, ErrorKind::Refused(describe_reqwest_error(e)))
}

/// Names the cause of a failed request the way a user would say it (cleaned).
pub fn describe_reqwest_error(e: &reqwest::Error) -> String {
    let mut chain = String::new();
    let mut src: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !chain.contains(&t) {
            if !chain.is_empty() {
                chain.push_str(": ");
            }
            chain.push_str(&t);
        }
        src = s.source();
    }
    let chain = redact::clean(&chain);
    let lower = chain.to_ascii_lowercase();
    if e.is_timeout() {
        "timed out".into()
    } else if lower.contains("connection refused") {
        "connection refused".into()
    } else if lower.contains("connection reset") {
        "connection reset".into()
    } else if lower.contains("dns error")
        || lower.contains("failed to lookup")
        || lower.contains("name or service not known")
    {
        format!("no such host ({chain})")
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        format!("TLS error ({chain})")
    } else {
        chain
    }
}

/// A response body that takes its bytes from the run's budget as they arrive (for clients
/// that read bodies themselves, as kube-rs does): when the budget is spent, the body ends with
/// an error instead of growing. The share is given back when the body is dropped.
pub struct Budgeted<B> {
    inner: std::pin::Pin<Box<B>>,
    budget: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
    units: usize,
    read: usize,
}

impl<B> Budgeted<B> {
    /// Wraps a body.
    pub fn new(inner: B, budget: Arc<Semaphore>) -> Self {
        Budgeted {
            inner: Box::pin(inner),
            budget,
            held: None,
            units: 0,
            read: 0,
        }
    }
}

impl<B> http_body::Body for Budgeted<B>
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.read += d.len();
                    let need = this.read.div_ceil(UNIT);
                    if need > this.units {
                        let more = u32::try_from(need - this.units).unwrap_or(u32::MAX);
                        match this.budget.clone().try_acquire_many_owned(more) {
                            Ok(p) => match &mut this.held {
                                Some(h) => h.merge(p),
                                None => this.held = Some(p),
                            },
                            Err(_) => {
                                return Poll::Ready(Some(Err(format!(
                                    "length limit exceeded: the run's memory budget ({} MiB for all answers read at once) is spent",
                                    RUN_BUDGET / (1024 * 1024)
                                )
                                .into())));
                            }
                        }
                        this.units = need;
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
