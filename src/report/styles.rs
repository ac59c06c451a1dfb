//! Colours and glyphs of the human report; plain unless colour is on.
//!
//! This is the only place that names a colour: the renderers ask for a role (`fail`, `dim`, ...)
//! and get a plain `Style` when colour is off, so no ANSI code leaks into a pipe or a CI log.

use crate::engine::Status;
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
    /// The `fix:` label in front of a remedy.
    pub fix: Style,
}

impl Styles {
    /// Plain styles, coloured when `color` is true.
    pub fn new(color: bool) -> Self {
        let mut s = Styles::default();
        if color {
            s.colorize();
        }
        s
    }

    /// Colours on.
    pub fn colorize(&mut self) {
        self.pass = Style::new().green();
        self.warn = Style::new().yellow();
        self.fail = Style::new().red().bold();
        self.skip = Style::new().dimmed();
        self.error = Style::new().magenta().bold();
        self.header = Style::new().bold().underline();
        self.dim = Style::new().dimmed();
        self.fix = Style::new().cyan().bold();
    }

    /// The style of a status.
    pub fn status(&self, status: Status) -> Style {
        match status {
            Status::Pass => self.pass,
            Status::Warn => self.warn,
            Status::Fail => self.fail,
            Status::Skip => self.skip,
            Status::Error => self.error,
        }
    }
}

/// The mark in front of a check: `✔ ‼ ✖ ↷ ⁉`, or `[ok] [warn] [FAIL] [skip] [ERR]` without
/// Unicode. The ASCII marks are padded to one width so that titles line up.
pub fn glyph(status: Status, unicode: bool) -> &'static str {
    match (status, unicode) {
        (Status::Pass, true) => "✔",
        (Status::Warn, true) => "‼",
        (Status::Fail, true) => "✖",
        (Status::Skip, true) => "↷",
        (Status::Error, true) => "⁉",
        (Status::Pass, false) => "[ok]  ",
        (Status::Warn, false) => "[warn]",
        (Status::Fail, false) => "[FAIL]",
        (Status::Skip, false) => "[skip]",
        (Status::Error, false) => "[ERR] ",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyphs_are_distinct_and_ascii_ones_align() {
        for unicode in [true, false] {
            let all: std::collections::HashSet<_> =
                Status::ALL.iter().map(|s| glyph(*s, unicode)).collect();
            assert_eq!(all.len(), Status::ALL.len());
        }
        assert!(
            Status::ALL
                .iter()
                .all(|s| glyph(*s, false).is_ascii() && glyph(*s, false).len() == 6)
        );
    }

    #[test]
    fn plain_styles_add_no_escape_codes() {
        use owo_colors::OwoColorize;
        let plain = Styles::new(false);
        assert_eq!(format!("{}", "x".style(plain.fail)), "x");
        let coloured = Styles::new(true);
        assert!(format!("{}", "x".style(coloured.fail)).contains("\x1b["));
    }
}
