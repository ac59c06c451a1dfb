//! `kind = "panel.query"`: a dashboard query returns data over the window; when it does not,
//! the explainer (crate::explain) names the first reason.

use super::kafka::KafkaExporter;
use super::{BuildError, parse_args};
use crate::engine::{CheckCtx, Outcome, Probe, fill_template};
use crate::explain::{self, ExplainError, ExplainOptions, QueryResult, Verdict};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    /// The PromQL; `{namespace}` and `{topic}` are filled from the settings.
    expr: String,
    /// Skip (rather than fail) when `kafka.exporter` found no exporter.
    #[serde(default)]
    needs_kafka_exporter: bool,
    /// How far back "ever existed" looks (default 24h).
    lookback: Option<String>,
    /// Whether only zeros still count as data (a lag of 0 is a healthy backlog).
    #[serde(default)]
    zero_ok: bool,
}

/// A panel's query and how to judge it.
#[derive(Debug)]
pub struct PanelQuery {
    expr: String,
    needs_kafka_exporter: bool,
    lookback: Duration,
    zero_ok: bool,
}

impl PanelQuery {
    /// From `args = { expr = "...", needs_kafka_exporter = false }`.
    pub fn from_args(args: &toml::Table) -> Result<Self, BuildError> {
        let a: Args = parse_args(args)?;
        let probe = a
            .expr
            .replace("{namespace}", "metacoding")
            .replace("{topic}", "order-created");
        if let Err(e) = explain::parse(&probe) {
            return Err(BuildError::Args(format!("expr: {e}")));
        }
        let lookback = match a.lookback {
            Some(l) => crate::settings::parse_duration(&l).map_err(BuildError::Args)?,
            None => Duration::from_secs(24 * 3600),
        };
        Ok(PanelQuery {
            expr: a.expr,
            needs_kafka_exporter: a.needs_kafka_exporter,
            lookback,
            zero_ok: a.zero_ok,
        })
    }
}

#[async_trait::async_trait]
impl Probe for PanelQuery {
    fn eager(&self) -> bool {
        true
    }

    async fn run(&self, cx: &CheckCtx) -> Outcome {
        if self.needs_kafka_exporter && !cx.facts.wait::<KafkaExporter>().await.present {
            return Outcome::skip(
                "no Kafka exporter runs (see kafka.exporter); the guide's fallback panel is panel.jvm-heap",
            );
        }
        let api = super::prom::api(cx).await;
        let expr = fill_template(
            &self.expr,
            &serde_json::Value::Object(cx.settings.template_vars()),
        );
        let opts = ExplainOptions {
            window: cx.settings.window,
            lookback: self.lookback,
        };
        let ex = match explain::explain(&api, &expr, opts).await {
            Ok(e) => e,
            Err(ExplainError::Prom(e)) => {
                return super::prom::call_failed(cx, &e);
            }
            Err(e) => return Outcome::error(e.to_string()),
        };
        let window = ex.window.clone();
        let culprit = ex
            .selectors
            .iter()
            .find(|s| !matches!(s.verdict, Verdict::Present | Verdict::Zero));
        let o = match (ex.result, culprit) {
            (QueryResult::Data, None) => {
                Outcome::pass(format!("{expr} returns data over the last {window}"))
            }
            (QueryResult::Data, Some(c)) if c.verdict == Verdict::WindowTooShort => {
                Outcome::warn(format!("{expr} returns data, but {}", c.detail))
                    .remedy(ex.remedy.clone().unwrap_or_default())
            }
            (QueryResult::Data, Some(c)) => {
                Outcome::fail(format!("{expr} returns data, but {}", c.detail)).remedy(
                    ex.remedy
                        .clone()
                        .or_else(|| c.remedy.clone())
                        .unwrap_or_default(),
                )
            }
            (QueryResult::Zero, None) if self.zero_ok => Outcome::pass(format!(
                "{expr} returns data over the last {window} (all 0)"
            )),
            (QueryResult::Zero, _) => Outcome::warn(format!(
                "{expr} returns only 0 over the last {window}: {}",
                ex.root_cause.clone().unwrap_or_else(|| "no traffic".into())
            ))
            .remedy(ex.remedy.clone().unwrap_or_else(|| {
                "# send traffic (the guide's scenarios), then look again".into()
            })),
            (QueryResult::Empty, _) => {
                let why = ex.root_cause.clone().unwrap_or_else(|| "no series".into());
                Outcome::fail(format!(
                    "{expr} returns no data over the last {window}: {why}"
                ))
                .remedy(ex.remedy.clone().unwrap_or_default())
            }
        };
        o.evidence("query", &expr)
            .evidence("result", ex.result)
            .evidence("selectors", &ex.selectors)
    }
}
