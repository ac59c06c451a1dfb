//! The human report (being written).

use super::Report;

/// Renders the report.
pub fn render(report: &Report, _opts: super::RenderOptions) -> String {
    format!("{:?}", report.summary())
}
