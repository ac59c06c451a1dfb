//! The process exit codes of CONTRACT.md, in one place.

/// No check failed (warnings allowed unless `--strict`).
pub const OK: i32 = 0;
/// At least one check failed.
pub const FAILED: i32 = 1;
/// Usage or configuration error: stderr names the file, line and why; stdout stays empty.
pub const USAGE: i32 = 2;
/// No check failed, but at least one could not run (`error`).
pub const ERROR: i32 = 3;
