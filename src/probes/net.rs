//! `kind = "tcp"`: something accepts connections at an address within the deadline.

use super::{BuildError, parse_args};
use crate::engine::fill_template;
use crate::engine::{CheckCtx, Outcome, Probe};
use serde::Deserialize;
use std::time::Instant;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    /// `host:port`; `{grafana_url}`-style settings may be used, e.g. "{grafana_host}".
    address: String,
}

/// Connects to `address`.
#[derive(Debug)]
pub struct Tcp {
    address: String,
}

impl Tcp {
    /// From `args = { address = "host:port" }`.
    pub fn from_args(args: &toml::Table) -> Result<Self, BuildError> {
        let a: Args = parse_args(args)?;
        if !a.address.contains('{')
            && a.address
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
        {
            return Err(BuildError::Args(format!(
                "address {:?} is not host:port",
                a.address
            )));
        }
        Ok(Tcp { address: a.address })
    }
}

#[async_trait::async_trait]
impl Probe for Tcp {
    async fn run(&self, cx: &CheckCtx) -> Outcome {
        let address = fill_template(
            &self.address,
            &serde_json::Value::Object(cx.settings.template_vars()),
        );
        let start = Instant::now();
        match tokio::time::timeout(cx.timeout, tokio::net::TcpStream::connect(&address)).await {
            Ok(Ok(_)) => Outcome::pass(format!(
                "{address} accepts connections ({} ms)",
                start.elapsed().as_millis()
            )),
            Ok(Err(e)) => {
                let why = match e.kind() {
                    std::io::ErrorKind::ConnectionRefused => {
                        "connection refused: nothing listens there".to_string()
                    }
                    _ => e.to_string(),
                };
                Outcome::fail(format!("cannot connect to {address}: {why}"))
                    .evidence("address", &address)
            }
            Err(_) => Outcome::fail(format!(
                "no answer from {address} within {}",
                humantime::format_duration(cx.timeout)
            ))
            .evidence("address", &address),
        }
    }
}
