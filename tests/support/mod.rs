//! Test support shared by several test files.
pub mod tamper;
