//! Colours and glyphs of the human report; plain unless colour is on.

use owo_colors::Style;

/// The styles of the human report.
#[derive(Clone, Copy, Debug, Default)]
pub struct Styles {
    /// Passing checks.
    pub pass: Style,
    /// Warnings.
    pub warn: Style,
    /// Failures.
    pub fail: Style,
    /// Skipped checks.
    pub skip: Style,
    /// Errors.
    pub error: Style,
    /// Category headers.
    pub header: Style,
    /// Secondary text (durations, evidence).
    pub dim: Style,
}

impl Styles {
    /// Colours on.
    pub fn colorize(&mut self) {
        self.pass = Style::new().green();
        self.warn = Style::new().yellow();
        self.fail = Style::new().red().bold();
        self.skip = Style::new().dimmed();
        self.error = Style::new().magenta().bold();
        self.header = Style::new().bold().underline();
        self.dim = Style::new().dimmed();
    }
}
