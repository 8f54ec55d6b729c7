//! Bindings for the image kernels. Each returns a new array, or writes into
//! the caller's `out` array (same shape, uint8, C-contiguous, not sharing
//! memory with the input) and returns it; the input is never modified.

use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use veil_core::region::{apply_to_regions as core_apply, Method, Region, Shape};
use veil_core::{blur, pixelate as core_pixelate, ImageMut, ImageRef};

use crate::convert::{detached, non_negative, threads, ImageArg};

/// Checks the caller's output array against the input.
fn check_out<'py>(arg: &ImageArg<'py>, out: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
    let typed = out
        .cast::<PyArrayDyn<u8>>()
        .map_err(|_| PyTypeError::new_err("out must be a numpy.ndarray of dtype uint8"))?
        .clone();
    if typed.shape() != arg.array.shape() {
        return Err(PyValueError::new_err(format!(
            "out has shape {:?}, the image has {:?}",
            typed.shape(),
            arg.array.shape()
        )));
    }
    if !typed.is_c_contiguous() {
        return Err(PyValueError::new_err("out must be C-contiguous"));
    }
    let src = arg.data().as_ptr_range();
    let dst_start = typed.data() as *const u8;
    let dst = dst_start..dst_start.wrapping_add(src.end as usize - src.start as usize);
    if dst.start < src.end && src.start < dst.end {
        return Err(PyValueError::new_err("out must not share memory with the image"));
    }
    Ok(typed)
}

/// Runs a source-to-destination kernel into `out`, or into a new array.
fn map_image<'py, F>(
    py: Python<'py>,
    image: &Bound<'py, PyAny>,
    out: Option<&Bound<'py, PyAny>>,
    kernel: F,
) -> PyResult<Bound<'py, PyArrayDyn<u8>>>
where
    F: FnOnce(ImageRef, &mut [u8]) -> veil_core::Result<()> + Send,
{
    let arg = ImageArg::extract(image)?;
    let out = match out {
        Some(o) => check_out(&arg, o)?,
        None => arg.new_out(py),
    };
    {
        let mut rw = out.readwrite();
        let dst = rw.as_slice_mut().expect("fresh array is contiguous");
        let (src, w, h, c) = (arg.data(), arg.width, arg.height, arg.channels);
        detached(py, || kernel(ImageRef::new(src, w, h, c)?, dst))?;
    }
    Ok(out)
}

/// Runs an in-place kernel on a copy of the image.
fn map_copy<'py, F>(py: Python<'py>, image: &Bound<'py, PyAny>, kernel: F) -> PyResult<Bound<'py, PyArrayDyn<u8>>>
where
    F: FnOnce(ImageMut) -> veil_core::Result<()> + Send,
{
    let arg = ImageArg::extract(image)?;
    let out = arg.copy_out(py);
    {
        let mut rw = out.readwrite();
        let dst = rw.as_slice_mut().expect("fresh array is contiguous");
        let (w, h, c) = (arg.width, arg.height, arg.channels);
        detached(py, || kernel(ImageMut::new(dst, w, h, c)?))?;
    }
    Ok(out)
}

#[pyfunction]
#[pyo3(signature = (image, sigma_px, threads=None, out=None))]
fn gaussian_blur<'py>(
    py: Python<'py>,
    image: &Bound<'py, PyAny>,
    sigma_px: f64,
    threads: Option<i64>,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
    let t = self::threads(threads)?;
    map_image(py, image, out, |src, dst| blur::gaussian_blur(src, dst, sigma_px, t))
}

#[pyfunction]
#[pyo3(signature = (image, radius_px, threads=None, out=None))]
fn box_blur<'py>(
    py: Python<'py>,
    image: &Bound<'py, PyAny>,
    radius_px: i64,
    threads: Option<i64>,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
    let (r, t) = (non_negative("radius_px", radius_px)?, self::threads(threads)?);
    map_image(py, image, out, |src, dst| blur::box_blur(src, dst, r, t))
}

#[pyfunction]
#[pyo3(signature = (image, block_px, origin_x=0, origin_y=0, threads=None, out=None))]
fn pixelate<'py>(
    py: Python<'py>,
    image: &Bound<'py, PyAny>,
    block_px: i64,
    origin_x: i64,
    origin_y: i64,
    threads: Option<i64>,
    out: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
    let (b, t) = (non_negative("block_px", block_px)?, self::threads(threads)?);
    map_image(py, image, out, |src, dst| core_pixelate::pixelate(src, dst, b, origin_x, origin_y, t))
}

fn parse_method(
    method: &str,
    sigma_px: Option<f64>,
    radius_px: Option<i64>,
    block_px: Option<i64>,
    color: Option<[u8; 3]>,
    amount: Option<u8>,
    seed: u64,
) -> PyResult<Method> {
    let need = |name: &str| PyValueError::new_err(format!("method {method:?} needs {name}"));
    Ok(match method {
        "gaussian_blur" => Method::GaussianBlur { sigma_px: sigma_px.ok_or_else(|| need("sigma_px"))? },
        "box_blur" => Method::BoxBlur { radius_px: non_negative("radius_px", radius_px.ok_or_else(|| need("radius_px"))?)? },
        "pixelate" => Method::Pixelate { block_px: non_negative("block_px", block_px.ok_or_else(|| need("block_px"))?)? },
        "fill" => Method::Fill { color: color.unwrap_or([0, 0, 0]) },
        "noise" => Method::Noise { amount: amount.ok_or_else(|| need("amount"))?, seed },
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown method {other:?}; choose gaussian_blur, box_blur, pixelate, fill or noise"
            )))
        }
    })
}

fn parse_shape(shape: &str) -> PyResult<Shape> {
    match shape {
        "ellipse" => Ok(Shape::Ellipse),
        "rectangle" => Ok(Shape::Rectangle),
        other => Err(PyValueError::new_err(format!("shape: must be \"ellipse\" or \"rectangle\", got {other:?}"))),
    }
}

/// Applies one method to regions `(left, top, width, height)` of the image.
#[pyfunction]
#[pyo3(signature = (image, method, regions, *, shape="ellipse", feather_px=0.0, sigma_px=None, radius_px=None, block_px=None, color=None, amount=None, seed=0, threads=None))]
#[allow(clippy::too_many_arguments)]
fn apply_to_regions<'py>(
    py: Python<'py>,
    image: &Bound<'py, PyAny>,
    method: &str,
    regions: Vec<(f64, f64, f64, f64)>,
    shape: &str,
    feather_px: f64,
    sigma_px: Option<f64>,
    radius_px: Option<i64>,
    block_px: Option<i64>,
    color: Option<[u8; 3]>,
    amount: Option<u8>,
    seed: u64,
    threads: Option<i64>,
) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
    let method = parse_method(method, sigma_px, radius_px, block_px, color, amount, seed)?;
    let shape = parse_shape(shape)?;
    let regions: Vec<Region> = regions.into_iter().map(|(l, t, w, h)| Region::new(l, t, w, h, shape, feather_px)).collect();
    let t = self::threads(threads)?;
    map_copy(py, image, |img| core_apply(img, &method, &regions, t))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(gaussian_blur, m)?)?;
    m.add_function(wrap_pyfunction!(box_blur, m)?)?;
    m.add_function(wrap_pyfunction!(pixelate, m)?)?;
    m.add_function(wrap_pyfunction!(apply_to_regions, m)?)?;
    Ok(())
}
