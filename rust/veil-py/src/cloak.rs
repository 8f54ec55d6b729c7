//! Bindings for the numeric steps of cloaking (`veil_core::cloak`).
//!
//! Images and gradients cross as C-contiguous float32 arrays `(H, W)` or
//! `(H, W, C)` in pixel levels; matrices as `(2, 3)` float64. In-place steps
//! (`adam_step`, `signed_step`, `project_perturbation`) write into the
//! arrays they are given. Every call releases the GIL.

use numpy::{PyArray1, PyArray2, PyArrayDyn, PyArrayMethods, PyReadonlyArray2, PyReadonlyArrayDyn, PyReadwriteArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use veil_core::cloak::{self, Adam, Affine, Warp};

use crate::convert::detached;

/// Shape of a float image array: (height, width, channels).
fn image_shape(name: &str, shape: &[usize]) -> PyResult<(usize, usize, usize)> {
    let (h, w, c) = match shape {
        [h, w] => (*h, *w, 1),
        [h, w, c] if *c >= 1 => (*h, *w, *c),
        _ => return Err(PyValueError::new_err(format!("{name} must have shape (H, W) or (H, W, C), got {shape:?}"))),
    };
    if h == 0 || w == 0 {
        return Err(PyValueError::new_err(format!("{name} is empty (shape {shape:?})")));
    }
    Ok((h, w, c))
}

fn slice<'a>(name: &str, a: &'a PyReadonlyArrayDyn<'_, f32>) -> PyResult<&'a [f32]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous (use numpy.ascontiguousarray)")))
}

fn matrix(name: &str, m: &PyReadonlyArray2<'_, f64>) -> PyResult<Affine> {
    if m.shape() != [2, 3] {
        return Err(PyValueError::new_err(format!("{name} must have shape (2, 3), got {:?}", m.shape())));
    }
    let a = m.as_array();
    Ok([a[[0, 0]], a[[0, 1]], a[[0, 2]], a[[1, 0]], a[[1, 1]], a[[1, 2]]])
}

fn image_out<'py>(py: Python<'py>, data: Vec<f32>, h: usize, w: usize, c: usize, flat: bool) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let arr = PyArray1::from_vec(py, data);
    if flat {
        arr.reshape(vec![h, w])
    } else {
        arr.reshape(vec![h, w, c])
    }
}

/// similarity_transform(src, dst) -> (2, 3) float64
///
/// The least-squares similarity transform (Umeyama) taking the points `src`
/// (N x 2) onto `dst` (N x 2).
#[pyfunction]
fn similarity_transform<'py>(py: Python<'py>, src: PyReadonlyArray2<'py, f64>, dst: PyReadonlyArray2<'py, f64>) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let points = |name: &str, a: &PyReadonlyArray2<'py, f64>| -> PyResult<Vec<[f64; 2]>> {
        if a.shape()[1] != 2 {
            return Err(PyValueError::new_err(format!("{name} must have shape (N, 2), got {:?}", a.shape())));
        }
        Ok(a.as_array().rows().into_iter().map(|r| [r[0], r[1]]).collect())
    };
    let (s, d) = (points("src", &src)?, points("dst", &dst)?);
    let m = detached(py, || cloak::similarity_transform(&s, &d))?;
    PyArray1::from_slice(py, &m).reshape([2, 3])
}

/// warp_affine(image, matrix, out_width, out_height) -> float32 (out_height, out_width[, C])
///
/// Anti-aliased bilinear warp; `matrix` maps image coordinates to output
/// coordinates (pixel k spans [k, k+1)).
#[pyfunction]
fn warp_affine<'py>(
    py: Python<'py>,
    image: PyReadonlyArrayDyn<'py, f32>,
    matrix: PyReadonlyArray2<'py, f64>,
    out_width: usize,
    out_height: usize,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let (h, w, c) = image_shape("image", image.shape())?;
    let m = self::matrix("matrix", &matrix)?;
    let src = slice("image", &image)?;
    let out = detached(py, || Warp::new(w, h, out_width, out_height, c, &m)?.forward(src))?;
    image_out(py, out, out_height, out_width, c, image.ndim() == 2)
}

/// warp_affine_adjoint(grad, matrix, src_width, src_height) -> float32 (src_height, src_width[, C])
///
/// The exact adjoint of `warp_affine(., matrix, W, H)` for a (H, W[, C]) gradient.
#[pyfunction]
fn warp_affine_adjoint<'py>(
    py: Python<'py>,
    grad: PyReadonlyArrayDyn<'py, f32>,
    matrix: PyReadonlyArray2<'py, f64>,
    src_width: usize,
    src_height: usize,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let (oh, ow, c) = image_shape("grad", grad.shape())?;
    let m = self::matrix("matrix", &matrix)?;
    let g = slice("grad", &grad)?;
    let out = detached(py, || Warp::new(src_width, src_height, ow, oh, c, &m)?.adjoint(g))?;
    image_out(py, out, src_height, src_width, c, grad.ndim() == 2)
}

/// gaussian_f32(image, sigma_px, adjoint=False) -> float32, same shape
#[pyfunction]
#[pyo3(signature = (image, sigma_px, adjoint=false))]
fn gaussian_f32<'py>(py: Python<'py>, image: PyReadonlyArrayDyn<'py, f32>, sigma_px: f64, adjoint: bool) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let (h, w, c) = image_shape("image", image.shape())?;
    let src = slice("image", &image)?;
    let out = detached(py, || {
        if adjoint {
            cloak::gaussian_f32_adjoint(src, w, h, c, sigma_px)
        } else {
            cloak::gaussian_f32(src, w, h, c, sigma_px)
        }
    })?;
    image_out(py, out, h, w, c, image.ndim() == 2)
}

/// Two same-shape images as slices, with their width, height and channels.
type ImagePair<'a> = (&'a [f32], &'a [f32], usize, usize, usize);

fn pair<'a>(x: &'a PyReadonlyArrayDyn<'_, f32>, y: &'a PyReadonlyArrayDyn<'_, f32>) -> PyResult<ImagePair<'a>> {
    let (h, w, c) = image_shape("original", x.shape())?;
    if x.shape() != y.shape() {
        return Err(PyValueError::new_err(format!(
            "original and image must have the same shape, got {:?} and {:?}",
            x.shape(),
            y.shape()
        )));
    }
    Ok((slice("original", x)?, slice("image", y)?, w, h, c))
}

/// ssim(original, image) -> float: mean SSIM (11-tap Gaussian window, sigma 1.5, L = 255).
#[pyfunction]
fn ssim(py: Python<'_>, original: PyReadonlyArrayDyn<'_, f32>, image: PyReadonlyArrayDyn<'_, f32>) -> PyResult<f64> {
    let (x, y, w, h, c) = pair(&original, &image)?;
    detached(py, || cloak::ssim(x, y, w, h, c))
}

/// ssim_gradient(original, image) -> (ssim, d ssim / d image)
#[pyfunction]
fn ssim_gradient<'py>(
    py: Python<'py>,
    original: PyReadonlyArrayDyn<'py, f32>,
    image: PyReadonlyArrayDyn<'py, f32>,
) -> PyResult<(f64, Bound<'py, PyArrayDyn<f32>>)> {
    let (x, y, w, h, c) = pair(&original, &image)?;
    let (value, grad) = detached(py, || cloak::ssim_with_gradient(x, y, w, h, c))?;
    Ok((value, PyArray1::from_vec(py, grad).reshape(image.shape().to_vec())?))
}

fn rw_slice<'a>(name: &str, a: &'a mut PyReadwriteArrayDyn<'_, f32>) -> PyResult<&'a mut [f32]> {
    a.as_slice_mut()
        .map_err(|_| PyValueError::new_err(format!("{name} must be a C-contiguous float32 array")))
}

/// adam_step(param, grad, m, v, step, learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-8)
///
/// One Adam step descending `grad`, in place on `param`, `m`, `v` (`step` from 1).
#[pyfunction]
#[pyo3(signature = (param, grad, m, v, step, learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-8))]
#[allow(clippy::too_many_arguments)]
fn adam_step(
    py: Python<'_>,
    mut param: PyReadwriteArrayDyn<'_, f32>,
    grad: PyReadonlyArrayDyn<'_, f32>,
    mut m: PyReadwriteArrayDyn<'_, f32>,
    mut v: PyReadwriteArrayDyn<'_, f32>,
    step: u32,
    learning_rate: f32,
    beta1: f32,
    beta2: f32,
    epsilon: f32,
) -> PyResult<()> {
    let g = slice("grad", &grad)?;
    let (p, m, v) = (rw_slice("param", &mut param)?, rw_slice("m", &mut m)?, rw_slice("v", &mut v)?);
    let adam = Adam { learning_rate, beta1, beta2, epsilon };
    detached(py, || cloak::adam_step(p, g, m, v, step, &adam))
}

/// signed_step(param, grad, step_size): `param -= step_size * sign(grad)`, in place.
#[pyfunction]
fn signed_step(py: Python<'_>, mut param: PyReadwriteArrayDyn<'_, f32>, grad: PyReadonlyArrayDyn<'_, f32>, step_size: f32) -> PyResult<()> {
    let g = slice("grad", &grad)?;
    let p = rw_slice("param", &mut param)?;
    detached(py, || cloak::signed_step(p, g, step_size))
}

/// project_perturbation(delta, original, linf): clamp `delta` to
/// [-linf, linf] and `original + delta` to [0, 255], in place.
#[pyfunction]
fn project_perturbation(py: Python<'_>, mut delta: PyReadwriteArrayDyn<'_, f32>, original: PyReadonlyArrayDyn<'_, f32>, linf: f32) -> PyResult<()> {
    let o = slice("original", &original)?;
    let d = rw_slice("delta", &mut delta)?;
    detached(py, || cloak::project(d, o, linf))
}

/// masking_map(image, sigma_px, reference, floor) -> float32 H x W
///
/// The contrast-masking map: per pixel, the share (floor..1) of the
/// L-infinity budget it may take, from the local luminance contrast.
#[pyfunction]
fn masking_map<'py>(py: Python<'py>, image: PyReadonlyArrayDyn<'py, f32>, sigma_px: f64, reference: f32, floor: f32) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let (h, w, c) = image_shape("image", image.shape())?;
    let src = slice("image", &image)?;
    let out = detached(py, || cloak::masking_map(src, w, h, c, sigma_px, reference, floor))?;
    image_out(py, out, h, w, 1, true)
}

/// project_perturbation_map(delta, original, bound): clamp `delta` to
/// [-bound, bound] per pixel (bound: H x W) and `original + delta` to [0, 255], in place.
#[pyfunction]
fn project_perturbation_map(
    py: Python<'_>,
    mut delta: PyReadwriteArrayDyn<'_, f32>,
    original: PyReadonlyArrayDyn<'_, f32>,
    bound: PyReadonlyArrayDyn<'_, f32>,
) -> PyResult<()> {
    let (h, w, c) = image_shape("delta", delta.shape())?;
    if original.shape() != delta.shape() {
        return Err(PyValueError::new_err(format!(
            "original and delta must have the same shape, got {:?} and {:?}",
            original.shape(),
            delta.shape()
        )));
    }
    if bound.shape() != [h, w] {
        return Err(PyValueError::new_err(format!("bound must have shape {:?}, got {:?}", [h, w], bound.shape())));
    }
    let o = slice("original", &original)?;
    let b = slice("bound", &bound)?;
    let d = rw_slice("delta", &mut delta)?;
    detached(py, || cloak::project_map(d, o, b, c))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(similarity_transform, m)?)?;
    m.add_function(wrap_pyfunction!(warp_affine, m)?)?;
    m.add_function(wrap_pyfunction!(warp_affine_adjoint, m)?)?;
    m.add_function(wrap_pyfunction!(gaussian_f32, m)?)?;
    m.add_function(wrap_pyfunction!(ssim, m)?)?;
    m.add_function(wrap_pyfunction!(ssim_gradient, m)?)?;
    m.add_function(wrap_pyfunction!(adam_step, m)?)?;
    m.add_function(wrap_pyfunction!(signed_step, m)?)?;
    m.add_function(wrap_pyfunction!(project_perturbation, m)?)?;
    m.add_function(wrap_pyfunction!(masking_map, m)?)?;
    m.add_function(wrap_pyfunction!(project_perturbation_map, m)?)?;
    Ok(())
}
