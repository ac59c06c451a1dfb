//! The junit report (being written).

use super::Report;

/// Renders the report.
pub fn render(report: &Report) -> String {
    format!("{:?}", report.summary())
}
