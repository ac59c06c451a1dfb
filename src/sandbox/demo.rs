//! `msa-doctor demo` (being written).

use crate::cli::DemoArgs;
use crate::config::ConfigError;

/// Starts the practice stack and runs the checklist against it.
pub async fn run(_args: DemoArgs) -> Result<i32, ConfigError> {
    Err(ConfigError::Usage("the practice stack is being built".into()))
}
