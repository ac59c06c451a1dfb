//! What `msa-doctor version` says: the version, and the commit, build date and target that
//! build.rs recorded.

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit the binary was built from (12 hex digits), or `unknown` outside a git checkout.
pub const COMMIT: &str = env!("MSA_DOCTOR_COMMIT");
/// The build date, `YYYY-MM-DD` (UTC, or from `SOURCE_DATE_EPOCH`).
pub const BUILD_DATE: &str = env!("MSA_DOCTOR_BUILD_DATE");
/// The target triple, e.g. `x86_64-unknown-linux-gnu`.
pub const TARGET: &str = env!("MSA_DOCTOR_TARGET");

/// What `--version` prints after the name: the version and the build facts, as `version` does.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MSA_DOCTOR_COMMIT"),
    ", built ",
    env!("MSA_DOCTOR_BUILD_DATE"),
    ", ",
    env!("MSA_DOCTOR_TARGET"),
    ")"
);

/// `msa-doctor 0.1.0 (commit 0123456789ab, built 2026-11-29, x86_64-unknown-linux-gnu)`.
pub fn long() -> String {
    format!("msa-doctor {LONG_VERSION}\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_commit_date_and_target() {
        let v = super::long();
        assert!(v.starts_with(&format!("msa-doctor {} (commit ", super::VERSION)));
        assert!(super::COMMIT == "unknown" || super::COMMIT.chars().all(|c| c.is_ascii_hexdigit()));
        let d = super::BUILD_DATE;
        assert_eq!(d.len(), 10, "{d}");
        assert!(
            d.starts_with("20") && &d[4..5] == "-" && &d[7..8] == "-",
            "{d}"
        );
        assert!(super::TARGET.contains('-'), "{}", super::TARGET);
    }
}
