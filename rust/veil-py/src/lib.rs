//! Thin PyO3 skin over veil-core: each function converts arguments, releases
//! the GIL around the work, and maps core errors to Python exceptions.

use pyo3::prelude::*;

mod cloak;
mod convert;
mod detect;
mod kernels;

#[pymodule]
fn _veil(m: &Bound<'_, PyModule>) -> PyResult<()> {
    kernels::register(m)?;
    detect::register(m)?;
    cloak::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
