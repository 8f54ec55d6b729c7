//! The one error type of the core. Bindings map each variant to their own
//! exception class (Python) or error value (WebAssembly), exhaustively.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum VeilError {
    /// A parameter is out of range, NaN, or otherwise unusable.
    /// `name` is the parameter as the user wrote it (`sigma_px`, `block_px`, ...).
    InvalidParameter { name: &'static str, message: String },
    /// The pixel buffer does not describe an image veil can process.
    InvalidImage(String),
}

impl VeilError {
    pub fn param(name: &'static str, message: impl Into<String>) -> Self {
        VeilError::InvalidParameter { name, message: message.into() }
    }
}

impl fmt::Display for VeilError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VeilError::InvalidParameter { name, message } => write!(f, "{name}: {message}"),
            VeilError::InvalidImage(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for VeilError {}

pub type Result<T> = std::result::Result<T, VeilError>;

/// Checks a float parameter is finite and within `[min, max]`.
pub fn check_range(name: &'static str, value: f64, min: f64, max: f64) -> Result<()> {
    if !value.is_finite() {
        return Err(VeilError::param(name, format!("must be a finite number, got {value}")));
    }
    if value < min || value > max {
        return Err(VeilError::param(name, format!("must be between {min} and {max}, got {value}")));
    }
    Ok(())
}
