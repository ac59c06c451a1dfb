//! Every kind of check, bound by its `kind = "..."` name: the general kinds (`tcp`, `http`,
//! `exec`) and the guide's own. [`build`] validates a kind's `args` and binds them.

use crate::engine::Probe;
use std::path::Path;
use std::sync::Arc;

pub mod exec;
pub mod http;
pub mod net;

/// Why a check definition's kind could not be bound.
#[derive(Debug)]
pub enum BuildError {
    /// No such kind.
    UnknownKind,
    /// The kind exists but its `args` are invalid (the message says which and why).
    Args(String),
}

/// Every kind name, for `list` and error messages.
pub const KINDS: &[&str] = &["tcp", "http", "exec"];

/// Binds a kind to its arguments. `base` is the folder of the check file, against which
/// relative paths (an exec plugin) resolve.
pub fn build(kind: &str, args: &toml::Table, base: Option<&Path>) -> Result<Arc<dyn Probe>, BuildError> {
    match kind {
        "tcp" => Ok(Arc::new(net::Tcp::from_args(args)?)),
        "http" => Ok(Arc::new(http::Http::from_args(args)?)),
        "exec" => Ok(Arc::new(exec::Exec::from_args(args, base)?)),
        _ => Err(BuildError::UnknownKind),
    }
}

/// Deserialises a kind's `args` table into its own struct (unknown keys refused).
pub fn parse_args<T: serde::de::DeserializeOwned>(args: &toml::Table) -> Result<T, BuildError> {
    toml::Value::Table(args.clone())
        .try_into::<T>()
        .map_err(|e| BuildError::Args(e.message().trim().to_string()))
}

/// Cuts a text to at most `max` bytes on a character boundary, saying how much was cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &s[..end], s.len() - end)
}
