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
    // Not eager: the scan starts only once the checks it needs have passed, so its many
    // queries never compete with the guide's chain.

    async fn run(&self, cx: &CheckCtx) -> Outcome {
        let session = cx.facts.wait::<GrafanaSession>().await;
        let g = GrafanaApi::new(
            cx.clients.clone(),
            &cx.settings.grafana_url,
            session,
            cx.timeout,
            Some(cx.deadline),
        );
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
            // One entry per dashboard: a broken data source reference once, else its first
            // panels' reasons.
            let panels: Vec<_> = r.empty_panels().collect();
            if !panels.is_empty() {
                let count = panels.len();
                if panels
                    .iter()
                    .all(|p| p.status == PanelStatus::DatasourceUnresolved)
                {
                    empty.push(format!(
                        "{}: {count} panels use an unreplaced data source input ({})",
                        r.title,
                        panels[0].detail.split(',').next().unwrap_or_default()
                    ));
                } else {
                    let first: Vec<String> = panels
                        .iter()
                        .take(2)
                        .map(|p| format!("{} ({})", p.panel, p.detail))
                        .collect();
                    let more = if count > 2 {
                        format!(" and {} more", count - 2)
                    } else {
                        String::new()
                    };
                    empty.push(format!("{}: {}{more}", r.title, first.join("; ")));
                }
            }
            for p in panels {
                if p.status == PanelStatus::DatasourceUnresolved
                    && !remedies.iter().any(|x: &String| x.contains(&r.uid))
                {
                    // The input's own name, e.g. ${DS_PROMETHEUS_WH211}.
                    let input = p
                        .detail
                        .find("${")
                        .and_then(|i| {
                            p.detail[i..]
                                .find('}')
                                .map(|j| p.detail[i..i + j + 1].to_string())
                        })
                        .unwrap_or_else(|| "${DS_PROMETHEUS}".into());
                    let uid = dss
                        .iter()
                        .find(|d| d.is_default && d.kind == "prometheus")
                        .or_else(|| dss.iter().find(|d| d.kind == "prometheus"))
                        .map(|d| d.uid.clone())
                        .unwrap_or_else(|| "<the Prometheus data source uid>".into());
                    let g = &cx.settings.grafana_url;
                    remedies.push(format!(
                        "# dashboard {:?} was exported for sharing: its {input} input was never replaced.\n# Dashboards > New > Import > upload the JSON > pick the Prometheus data source, or in place:\ncurl -s -u admin {g}/api/dashboards/uid/{} | sed 's/{input}/{uid}/g' | jq '{{dashboard: (.dashboard | .id = null), overwrite: true}}' | curl -s -u admin -H 'Content-Type: application/json' -X POST {g}/api/dashboards/db -d @-",
                        r.title, r.uid
                    ));
                } else if let Some(rem) = p.explanation.as_ref().and_then(|e| e.remedy.clone())
                    && !remedies.iter().any(|x| x.ends_with(rem.as_str()))
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
        // An answer that never came is not a finding: a dashboard that could not be read, or a
        // panel query that could not run, makes the scan incomplete, and the check says so.
        let unread: Vec<String> = reports
            .iter()
            .filter_map(|r| r.problem.as_ref().map(|p| format!("{}: {p}", r.title)))
            .collect();
        let failed: Vec<String> = reports
            .iter()
            .flat_map(|r| {
                r.panels
                    .iter()
                    .filter(|p| p.status == PanelStatus::Error)
                    .map(move |p| format!("{} / {}: {}", r.title, p.panel, p.detail))
            })
            .collect();
        if !unread.is_empty() || !failed.is_empty() {
            let mut parts = Vec::new();
            if !unread.is_empty() {
                parts.push(format!(
                    "{} of {} dashboards could not be read ({})",
                    unread.len(),
                    reports.len(),
                    unread.join("; ")
                ));
            }
            if !failed.is_empty() {
                parts.push(format!(
                    "{} of {total} panel queries could not run ({})",
                    failed.len(),
                    failed
                        .iter()
                        .take(3)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
            return Outcome::error(format!(
                "the dashboard scan is incomplete: {}",
                parts.join("; ")
            ))
            .evidence("dashboards", summary)
            .evidence("not_read", &unread)
            .evidence("queries_failed", &failed);
        }
        // Partial results: what the deadline left unasked is counted, not guessed.
        let not_reached: usize = reports
            .iter()
            .map(|r| {
                r.panels
                    .iter()
                    .filter(|p| p.status == PanelStatus::NotReached)
                    .count()
            })
            .sum();
        let partial = if not_reached > 0 {
            format!(
                "; {not_reached} of {total} panel queries not reached within --timeout {} (run `msa-doctor explain --all-dashboards` for all)",
                humantime::format_duration(cx.timeout)
            )
        } else {
            String::new()
        };
        if empty.is_empty() {
            let o = if not_reached > 0 {
                Outcome::warn(format!(
                    "{} dashboards: the panel queries asked have data{partial}",
                    reports.len()
                ))
            } else {
                Outcome::pass(format!(
                    "{} dashboards, {total} panel queries, all with data",
                    reports.len()
                ))
            };
            return o
                .evidence("dashboards", summary)
                .evidence("not_reached", not_reached);
        }
        let more = remedies.len().saturating_sub(6);
        remedies.truncate(6);
        if more > 0 {
            remedies.push(format!(
                "# ... and {more} more: msa-doctor explain --all-dashboards"
            ));
        }
        let n_empty: usize = reports.iter().map(|r| r.empty_panels().count()).sum();
        Outcome::fail(format!(
            "{n_empty} of {total} panel queries show no data: {}{partial}",
            empty.join(" | ")
        ))
        .evidence("dashboards", summary)
        .remedy(remedies.join("\n"))
    }
}
