//! `kind = "grafana.dashboards"`: every panel of every dashboard (or of the listed ones)
//! shows data over its own time range; an empty panel is named with the explainer's reason.

use super::grafana::GrafanaSession;
use super::{BuildError, parse_args};
use crate::engine::{CheckCtx, Outcome, Probe};
use crate::explain::dashboard::{self, GrafanaApi, PanelStatus};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    /// Only these dashboards (by uid); every dashboard when empty.
    #[serde(default)]
    uids: Vec<String>,
    /// How far back "did it ever exist" looks.
    lookback: Option<String>,
}

/// The dashboard scan as a check.
#[derive(Debug)]
pub struct Dashboards {
    uids: Vec<String>,
    lookback: Duration,
}

impl Dashboards {
    /// From `args = { uids = ["msa-guide"], lookback = "24h" }` (both optional).
    pub fn from_args(args: &toml::Table) -> Result<Self, BuildError> {
        let a: Args = parse_args(args)?;
        let lookback = match a.lookback {
            Some(l) => crate::settings::parse_duration(&l).map_err(BuildError::Args)?,
            None => Duration::from_secs(6 * 3600),
        };
        Ok(Dashboards {
            uids: a.uids,
            lookback,
        })
    }
}

#[async_trait::async_trait]
impl Probe for Dashboards {
    fn eager(&self) -> bool {
        true
    }

    async fn run(&self, cx: &CheckCtx) -> Outcome {
        let session = cx.facts.wait::<GrafanaSession>().await;
        let g = GrafanaApi {
            http: cx.clients.http.clone(),
            base: cx.settings.grafana_url.clone(),
            session,
            timeout: cx.timeout,
        };
        let search = async {
            if self.uids.is_empty() {
                dashboard::dashboard_uids(&g).await
            } else {
                Ok(self.uids.clone())
            }
        };
        let (dss, uids) = tokio::join!(dashboard::datasources(&g), search);
        let dss = match dss {
            Ok(d) => d,
            Err(e) => return Outcome::error(e),
        };
        let uids = match uids {
            Ok(u) => u,
            Err(e) => return Outcome::error(e),
        };
        let reports = futures::future::join_all(
            uids.iter()
                .map(|u| dashboard::scan(&g, u, &dss, self.lookback)),
        )
        .await;
        let total: usize = reports.iter().map(|r| r.panels.len()).sum();
        let mut empty = Vec::new();
        let mut remedies = Vec::new();
        for r in &reports {
            if let Some(p) = &r.problem {
                empty.push(format!("{}: {p}", r.title));
            }
            for p in r.empty_panels() {
                empty.push(format!("{} / {}: {}", r.title, p.panel, p.detail));
                if p.status == PanelStatus::DatasourceUnresolved
                    && !remedies.iter().any(|x: &String| x.contains(&r.uid))
                {
                    remedies.push(format!(
                        "# dashboard {:?} was exported for sharing: its ${{DS_...}} inputs were never replaced.\n# Dashboards > New > Import > upload the JSON > pick the Prometheus data source, or:\ncurl -s -u admin {}/api/dashboards/uid/{} | sed 's/${{DS_PROMETHEUS}}/prometheus/g'    # then re-import",
                        r.title, cx.settings.grafana_url, r.uid
                    ));
                } else if let Some(rem) = p.explanation.as_ref().and_then(|e| e.remedy.clone())
                    && !remedies.contains(&rem)
                {
                    remedies.push(format!("# {} / {}:\n{rem}", r.title, p.panel));
                }
            }
        }
        let summary: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| {
                serde_json::json!({
                    "uid": r.uid, "title": r.title, "window": r.window,
                    "panels": r.panels.len(),
                    "empty": r.empty_panels().map(|p| format!("{} [{}]", p.panel, p.ref_id)).collect::<Vec<_>>(),
                })
            })
            .collect();
        if empty.is_empty() {
            return Outcome::pass(format!(
                "{} dashboards, {total} panel queries, all with data",
                reports.len()
            ))
            .evidence("dashboards", summary);
        }
        let more = remedies.len().saturating_sub(6);
        remedies.truncate(6);
        if more > 0 {
            remedies.push(format!(
                "# ... and {more} more: msa-doctor explain --all-dashboards"
            ));
        }
        Outcome::fail(format!(
            "{} of {total} panel queries show no data: {}",
            empty.len(),
            empty.join(" | ")
        ))
        .evidence("dashboards", summary)
        .remedy(remedies.join("\n"))
    }
}
