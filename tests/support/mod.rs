//! Test support shared by several test files.
pub mod fake_prom;
pub mod tamper;
