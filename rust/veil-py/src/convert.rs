//! Argument conversion shared by every binding: images in and out, errors,
//! and the one place that releases the GIL and stops panics.

use std::panic::{catch_unwind, AssertUnwindSafe};

use numpy::{PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use veil_core::VeilError;

/// Maps every core error to its Python exception.
pub fn to_py_err(e: VeilError) -> PyErr {
    match e {
        VeilError::InvalidParameter { .. } | VeilError::InvalidImage(_) => PyValueError::new_err(e.to_string()),
    }
}

/// Runs `work` with the GIL released. A panic inside becomes a RuntimeError
/// instead of tearing through the interpreter.
pub fn detached<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> Result<T, VeilError> + Send,
{
    match py.detach(|| catch_unwind(AssertUnwindSafe(work))) {
        Ok(result) => result.map_err(to_py_err),
        Err(_) => Err(PyRuntimeError::new_err("internal error in veil's Rust core (please report it)")),
    }
}

/// A validated uint8 image array: HxW, HxWx1, HxWx3 or HxWx4, C-contiguous.
pub struct ImageArg<'py> {
    pub array: PyReadonlyArrayDyn<'py, u8>,
    pub width: usize,
    pub height: usize,
    pub channels: usize,
}

impl<'py> ImageArg<'py> {
    pub fn extract(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        let untyped = obj.cast::<PyUntypedArray>().map_err(|_| {
            PyTypeError::new_err(format!(
                "image must be a numpy.ndarray of dtype uint8, got {}",
                obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "an unknown type".into())
            ))
        })?;
        let dtype = untyped.dtype();
        let typed = obj.cast::<PyArrayDyn<u8>>().map_err(|_| {
            PyTypeError::new_err(format!("image must have dtype uint8, got {dtype}"))
        })?;
        let shape = untyped.shape().to_vec();
        let (height, width, channels) = match shape[..] {
            [h, w] => (h, w, 1),
            [h, w, c] if matches!(c, 1 | 3 | 4) => (h, w, c),
            _ => {
                return Err(PyValueError::new_err(format!(
                    "image must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {shape:?}"
                )))
            }
        };
        if width == 0 || height == 0 {
            return Err(PyValueError::new_err(format!("image is empty (shape {shape:?})")));
        }
        if !untyped.is_c_contiguous() {
            return Err(PyValueError::new_err(
                "image must be C-contiguous (use numpy.ascontiguousarray(image) first)",
            ));
        }
        let array = typed.try_readonly().map_err(|e| PyValueError::new_err(format!("image is not readable: {e}")))?;
        Ok(Self { array, width, height, channels })
    }

    pub fn data(&self) -> &[u8] {
        self.array.as_slice().expect("checked C-contiguous")
    }

    /// A new array of the same shape, filled with a copy of the input.
    pub fn copy_out(&self, py: Python<'py>) -> Bound<'py, PyArrayDyn<u8>> {
        let out = PyArrayDyn::<u8>::zeros(py, self.array.shape(), false);
        {
            let mut rw = out.readwrite();
            rw.as_slice_mut().expect("fresh array is contiguous").copy_from_slice(self.data());
        }
        out
    }

    /// A new array of the same shape, for a kernel to write every value of.
    pub fn new_out(&self, py: Python<'py>) -> Bound<'py, PyArrayDyn<u8>> {
        PyArrayDyn::<u8>::zeros(py, self.array.shape(), false)
    }
}

/// A non-negative integer parameter, with an error that names it.
pub fn non_negative(name: &str, value: i64) -> PyResult<usize> {
    usize::try_from(value).map_err(|_| PyValueError::new_err(format!("{name}: must be >= 0, got {value}")))
}

/// Threads to use: `None` or 0 means all cores.
pub fn threads(value: Option<i64>) -> PyResult<usize> {
    match value {
        None | Some(0) => Ok(veil_core::parallel::default_threads()),
        Some(n) if n > 0 && n <= 1024 => Ok(n as usize),
        Some(n) => Err(PyValueError::new_err(format!("threads: must be between 1 and 1024, got {n}"))),
    }
}
