//! Why a plugin call or load failed.

/// Why a plugin failed, with a stable code per kind (see [`PluginError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    #[error("fuel exhausted: the call used its whole budget of {budget} units")]
    FuelExhausted { budget: u64 },
    #[error("deadline exceeded: the call ran longer than {ms} ms")]
    DeadlineExceeded { ms: u64 },
    #[error("memory limit reached: linear memory may not grow beyond {mib} MiB")]
    MemoryLimit { mib: u64 },
    #[error("trap: {message}")]
    Trap { message: String, backtrace: String },
    #[error("invalid output: {field}: {message}")]
    InvalidOutput { field: String, message: String },
    #[error("plugin error {code}{}: {message}", field.as_deref().map(|f| format!(" at {f}")).unwrap_or_default())]
    Plugin { code: String, field: Option<String>, message: String },
    #[error("incompatible interface: {0}")]
    IncompatibleInterface(String),
    #[error("too large: {0}")]
    TooLarge(String),
}

impl PluginError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            PluginError::FuelExhausted { .. } => "fuel-exhausted",
            PluginError::DeadlineExceeded { .. } => "deadline-exceeded",
            PluginError::MemoryLimit { .. } => "memory-limit",
            PluginError::Trap { .. } => "trap",
            PluginError::InvalidOutput { .. } => "invalid-output",
            PluginError::Plugin { .. } => "plugin-error",
            PluginError::IncompatibleInterface(_) => "incompatible-interface",
            PluginError::TooLarge(_) => "too-large",
        }
    }
}
