//! Bindings for the face search (`FaceSearch`, driven by `veil.detect`
//! with onnxruntime), CenterFace decoding, non-maximum suppression and the
//! Pillow-exact resize the search uses.
//!
//! Faces cross the boundary as an `(N, 15)` float32 array, one row per face:
//! `left, top, right, bottom, score`, then the five landmarks as `x, y`
//! pairs. "No faces" is a `(0, 15)` array.

use numpy::{
    PyArray1, PyArray2, PyArray4, PyArrayDyn, PyArrayMethods, PyReadonlyArray2, PyReadonlyArray4,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use veil_core::detect::search::{self as core_search, BorderFill, Search, Settings};
use veil_core::detect::{self, resize, Face};
use veil_core::ImageRef;

use crate::convert::{detached, ImageArg};

/// Values per face row: box (4), score (1), landmarks (5 x 2).
const FACE_COLUMNS: usize = 15;

fn faces_to_rows(faces: &[Face]) -> Vec<f32> {
    let mut rows = Vec::with_capacity(faces.len() * FACE_COLUMNS);
    for f in faces {
        rows.extend_from_slice(&[f.left, f.top, f.right, f.bottom, f.score]);
        rows.extend(f.landmarks.iter().flatten());
    }
    rows
}

fn rows_to_faces(rows: &[f32]) -> Vec<Face> {
    rows.chunks_exact(FACE_COLUMNS)
        .map(|r| {
            let mut landmarks = [[0.0f32; 2]; 5];
            for (k, point) in landmarks.iter_mut().enumerate() {
                *point = [r[5 + 2 * k], r[6 + 2 * k]];
            }
            Face {
                left: r[0],
                top: r[1],
                right: r[2],
                bottom: r[3],
                score: r[4],
                landmarks,
            }
        })
        .collect()
}

fn to_array<'py>(py: Python<'py>, faces: &[Face]) -> PyResult<Bound<'py, PyArray2<f32>>> {
    PyArray1::from_vec(py, faces_to_rows(faces)).reshape([faces.len(), FACE_COLUMNS])
}

/// Borrows a `[1, channels, rows, cols]` C-contiguous float32 output as a
/// slice, naming the output in errors.
fn plane_slice<'a>(
    name: &str,
    array: &'a PyReadonlyArray4<'_, f32>,
    channels: usize,
    rows_cols: Option<(usize, usize)>,
) -> PyResult<&'a [f32]> {
    let shape = array.shape();
    let ok_shape = shape[0] == 1
        && shape[1] == channels
        && rows_cols.is_none_or(|(rows, cols)| shape[2] == rows && shape[3] == cols);
    if !ok_shape {
        let expected = match rows_cols {
            Some((rows, cols)) => format!("(1, {channels}, {rows}, {cols})"),
            None => format!("(1, {channels}, rows, cols)"),
        };
        return Err(PyValueError::new_err(format!(
            "{name} must have shape {expected}, got {shape:?}"
        )));
    }
    array
        .as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be a C-contiguous float32 array")))
}

/// decode_centerface(heatmap, scale, offset, landmarks, threshold, scale_x, scale_y)
/// --
///
/// Decodes CenterFace's four outputs (float32, shapes (1,1,h,w), (1,2,h,w),
/// (1,2,h,w), (1,10,h,w)) into the faces whose heatmap score is above
/// `threshold`, before suppression. `scale_x`/`scale_y` are original-image
/// pixels per network-input pixel. Returns an (N, 15) float32 array.
#[pyfunction]
#[pyo3(signature = (heatmap, scale, offset, landmarks, threshold, scale_x, scale_y))]
#[allow(clippy::too_many_arguments)]
fn decode_centerface<'py>(
    py: Python<'py>,
    heatmap: PyReadonlyArray4<'py, f32>,
    scale: PyReadonlyArray4<'py, f32>,
    offset: PyReadonlyArray4<'py, f32>,
    landmarks: PyReadonlyArray4<'py, f32>,
    threshold: f32,
    scale_x: f32,
    scale_y: f32,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let heat = plane_slice("heatmap", &heatmap, 1, None)?;
    let (rows, cols) = (heatmap.shape()[2], heatmap.shape()[3]);
    let size = Some((rows, cols));
    let scale = plane_slice("scale", &scale, 2, size)?;
    let offset = plane_slice("offset", &offset, 2, size)?;
    let landmarks = plane_slice("landmarks", &landmarks, 10, size)?;
    let faces = detached(py, || {
        detect::decode_centerface(
            heat, scale, offset, landmarks, rows, cols, threshold, scale_x, scale_y,
        )
    })?;
    to_array(py, &faces)
}

/// non_max_suppression(faces, iou_threshold)
/// --
///
/// Greedy non-maximum suppression over an (N, 15) float32 face array: keeps
/// the best-scoring face of every group overlapping with IoU above
/// `iou_threshold`. Returns the kept rows sorted by score, highest first.
#[pyfunction]
#[pyo3(signature = (faces, iou_threshold))]
fn non_max_suppression<'py>(
    py: Python<'py>,
    faces: PyReadonlyArray2<'py, f32>,
    iou_threshold: f32,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    if faces.shape()[1] != FACE_COLUMNS {
        return Err(PyValueError::new_err(format!(
            "faces must have shape (N, {FACE_COLUMNS}), got {:?}",
            faces.shape()
        )));
    }
    let rows = faces
        .as_slice()
        .map_err(|_| PyValueError::new_err("faces must be a C-contiguous float32 array"))?;
    let kept = detached(py, || {
        Ok(detect::non_max_suppression(
            rows_to_faces(rows),
            iou_threshold,
        ))
    })?;
    to_array(py, &kept)
}

/// FaceSearch(image, threshold, max_side_px, tiles, rotations=True, border=None, border_fill=None, mirror=None, tile_gate=None)
/// --
///
/// The face search over one photo (uint8 HxW, HxWx1, HxWx3 or HxWx4,
/// C-contiguous; copied). Drive it with the network: `next_input()` gives a
/// (1, 3, H, W) float32 input or None when the search is over;
/// `push_output(heatmap, scale, offset, landmarks)` takes the network's four
/// outputs for it; `progress()` is `(done, total, label)`; `finish()` returns
/// the faces as an (N, 15) float32 array, best score first.
#[pyclass(module = "veil._veil")]
struct FaceSearch {
    search: Option<Search>,
}

impl FaceSearch {
    fn inner(&mut self) -> PyResult<&mut Search> {
        self.search
            .as_mut()
            .ok_or_else(|| PyRuntimeError::new_err("this FaceSearch is finished"))
    }
}

#[pymethods]
impl FaceSearch {
    #[new]
    #[pyo3(signature = (image, threshold, max_side_px, tiles, rotations=true, border=None, border_fill=None, mirror=None, tile_gate=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        image: &Bound<'_, PyAny>,
        threshold: f32,
        max_side_px: usize,
        tiles: bool,
        rotations: bool,
        border: Option<f32>,
        border_fill: Option<&str>,
        mirror: Option<bool>,
        tile_gate: Option<f32>,
    ) -> PyResult<Self> {
        let defaults = Settings::default();
        let border_fill = match border_fill {
            None => defaults.border_fill,
            Some("zero") => BorderFill::Zero,
            Some("edge") => BorderFill::Edge,
            Some("mirror") => BorderFill::Mirror,
            Some(other) => {
                return Err(PyValueError::new_err(format!(
                    "border_fill: must be 'zero', 'edge' or 'mirror', got {other:?}"
                )))
            }
        };
        let arg = ImageArg::extract(image)?;
        let (data, w, h, c) = (arg.data(), arg.width, arg.height, arg.channels);
        let settings = Settings {
            threshold,
            max_side_px,
            tiles,
            rotations,
            border: border.unwrap_or(defaults.border),
            border_fill,
            mirror: mirror.unwrap_or(defaults.mirror),
            tile_gate: tile_gate.unwrap_or(defaults.tile_gate),
        };
        let search = detached(py, || Search::new(ImageRef::new(data, w, h, c)?, settings))?;
        Ok(FaceSearch { search: Some(search) })
    }

    fn next_input<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyArray4<f32>>>> {
        let search = self.inner()?;
        let Some(input) = detached(py, || search.next_input())? else {
            return Ok(None);
        };
        let (w, h) = (input.width, input.height);
        Ok(Some(PyArray1::from_vec(py, input.data).reshape([1, 3, h, w])?))
    }

    fn push_output(
        &mut self,
        py: Python<'_>,
        heatmap: PyReadonlyArray4<'_, f32>,
        scale: PyReadonlyArray4<'_, f32>,
        offset: PyReadonlyArray4<'_, f32>,
        landmarks: PyReadonlyArray4<'_, f32>,
    ) -> PyResult<()> {
        let heat = plane_slice("heatmap", &heatmap, 1, None)?;
        let (rows, cols) = (heatmap.shape()[2], heatmap.shape()[3]);
        let size = Some((rows, cols));
        let scale = plane_slice("scale", &scale, 2, size)?;
        let offset = plane_slice("offset", &offset, 2, size)?;
        let landmarks = plane_slice("landmarks", &landmarks, 10, size)?;
        let search = self.inner()?;
        detached(py, || search.push_output(heat, scale, offset, landmarks, rows, cols))
    }

    fn progress(&mut self) -> PyResult<(usize, usize, String)> {
        let p = self.inner()?.progress();
        Ok((p.done, p.total, p.label))
    }

    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let search = self
            .search
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this FaceSearch is finished"))?;
        let faces = detached(py, || search.finish())?;
        to_array(py, &faces)
    }
}

/// resize_bilinear(image, width, height)
/// --
///
/// `image` (uint8, 1, 3 or 4 channels) resized to `width x height` with the
/// very pixels of Pillow's `Image.resize((width, height), BILINEAR)`.
#[pyfunction]
#[pyo3(signature = (image, width, height))]
fn resize_bilinear<'py>(py: Python<'py>, image: &Bound<'py, PyAny>, width: usize, height: usize) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
    let arg = ImageArg::extract(image)?;
    let mut shape = arg.array.shape().to_vec();
    shape[0] = height;
    shape[1] = width;
    let n = shape.iter().product::<usize>();
    if width == 0 || height == 0 {
        return Err(PyValueError::new_err(format!("size: must be at least 1x1, got {width}x{height}")));
    }
    let (src, w, h, c) = (arg.data(), arg.width, arg.height, arg.channels);
    let mut out = vec![0u8; n];
    detached(py, || resize::resize_bilinear(ImageRef::new(src, w, h, c)?, &mut out, width, height))?;
    PyArray1::from_vec(py, out).reshape(shape)
}

/// The f64 with the f32's shortest decimal form (0.2, not 0.20000000298...),
/// which converts back to the same f32.
fn shortest_f64(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode_centerface, m)?)?;
    m.add_function(wrap_pyfunction!(non_max_suppression, m)?)?;
    m.add_function(wrap_pyfunction!(resize_bilinear, m)?)?;
    m.add_class::<FaceSearch>()?;
    m.add("DETECT_DEFAULT_THRESHOLD", shortest_f64(core_search::DEFAULT_THRESHOLD))?;
    m.add("DETECT_DEFAULT_MAX_SIDE_PX", core_search::DEFAULT_MAX_SIDE_PX)?;
    m.add("DETECT_INPUT_MULTIPLE_PX", core_search::INPUT_MULTIPLE_PX)?;
    m.add("DETECT_NMS_IOU_THRESHOLD", shortest_f64(core_search::NMS_IOU_THRESHOLD))?;
    m.add("DETECT_BORDER", shortest_f64(core_search::BORDER))?;
    Ok(())
}
