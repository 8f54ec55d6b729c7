//! veil-core for the browser, exported with `#[wasm_bindgen]`: the
//! `wasm-bindgen` CLI generates the JavaScript bindings
//! (`web/dist/veil_wasm_bindings.js`), and `web/src/veil-wasm.js` gives the
//! page its API over them.
//!
//! * Images stay in this module's memory as [`Image`]s: the kernels and the
//!   page's redraws work on a 12 MP photo (48 MB) without copying it in and
//!   out on every call. The page reads and writes the pixels through a view
//!   at [`Image::byte_offset`]; nothing else crosses as a pointer.
//! * Every other buffer (colours, regions, network inputs and outputs,
//!   faces) is a typed slice or vector that the bindings copy.
//! * Failures are thrown as a [`CoreError`] (a code and the core's message);
//!   [`CoreError::from`] is the one place a core error becomes a code.
//! * A Rust panic (a bug in veil) aborts the module (`panic = "abort"`); its
//!   message is kept for [`panic_message`].
//! * Faces cross as 15 `f32`s each: left, top, right, bottom, score, then the
//!   five landmarks as x, y pairs.
//! * Single-threaded: every kernel is called with `threads = 1`.

use std::cell::RefCell;

use wasm_bindgen::prelude::*;

use veil_core::blur::{box_blur, gaussian_blur};
use veil_core::detect::search::{self as core_search, Search, Settings};
use veil_core::fill::{add_noise, fill};
use veil_core::pixelate::pixelate;
use veil_core::region::{apply_to_regions, Method, Region, Shape};
use veil_core::{ImageMut, ImageRef, VeilError};

/// One thread in the browser: the page's heavy work is the kernels, and a
/// wasm module without shared memory cannot start threads.
const THREADS: usize = 1;

/// Floats per face in the vectors handed to JavaScript.
pub const FACE_FLOATS: usize = 15;

/// Floats per region: left, top, width, height, shape (0 rectangle,
/// 1 ellipse), feather_px.
pub const REGION_FLOATS: usize = 6;

/// Error codes; `web/src/veil-wasm.js` mirrors them in `ErrorCode`.
pub const INVALID_PARAMETER: u32 = 1;
pub const INVALID_IMAGE: u32 = 2;

thread_local! {
    static PANIC_MESSAGE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A failure of the core, thrown to JavaScript.
#[wasm_bindgen]
#[derive(Debug)]
pub struct CoreError {
    code: u32,
    message: String,
}

#[wasm_bindgen]
impl CoreError {
    /// [`INVALID_PARAMETER`] or [`INVALID_IMAGE`].
    #[wasm_bindgen(getter)]
    pub fn code(&self) -> u32 {
        self.code
    }

    /// The core's message, e.g. "block_px: must be at least 1".
    #[wasm_bindgen(getter)]
    pub fn message(&self) -> String {
        self.message.clone()
    }
}

impl From<VeilError> for CoreError {
    fn from(error: VeilError) -> Self {
        let code = match &error {
            VeilError::InvalidParameter { .. } => INVALID_PARAMETER,
            VeilError::InvalidImage(_) => INVALID_IMAGE,
        };
        CoreError { code, message: error.to_string() }
    }
}

type Result<T> = std::result::Result<T, CoreError>;

fn bad_image(message: impl Into<String>) -> VeilError {
    VeilError::InvalidImage(message.into())
}

/// Runs when the bindings load the module: keeps a panic's message for
/// [`panic_message`] (the module aborts right after).
#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| {
        PANIC_MESSAGE.with(|m| *m.borrow_mut() = format!("internal error in veil: {info}"))
    }));
}

/// The message of the panic that aborted the module, or "".
#[wasm_bindgen(js_name = panicMessage)]
pub fn panic_message() -> String {
    PANIC_MESSAGE.with(|m| m.borrow().clone())
}

// ----------------------------------------------------------------- image ----

/// An 8-bit interleaved image (1, 3 or 4 channels, rows packed) in the
/// module's memory. Its pixels never move while it lives.
#[wasm_bindgen]
pub struct Image {
    data: Vec<u8>,
    width: usize,
    height: usize,
    channels: usize,
}

impl Image {
    fn view(&self) -> Result<ImageRef<'_>> {
        Ok(ImageRef::new(&self.data, self.width, self.height, self.channels)?)
    }

    fn view_mut(&mut self) -> Result<ImageMut<'_>> {
        Ok(ImageMut::new(&mut self.data, self.width, self.height, self.channels)?)
    }

    fn check_same_shape(&self, other: &Image) -> Result<()> {
        if (self.width, self.height, self.channels) != (other.width, other.height, other.channels) {
            return Err(bad_image(format!(
                "images differ in shape: {}x{}x{} and {}x{}x{}",
                self.width, self.height, self.channels, other.width, other.height, other.channels
            ))
            .into());
        }
        Ok(())
    }
}

#[wasm_bindgen]
impl Image {
    /// A zeroed image; fails (instead of aborting) when memory runs out.
    #[wasm_bindgen(constructor)]
    pub fn new(width: usize, height: usize, channels: usize) -> Result<Image> {
        let len = width
            .checked_mul(height)
            .and_then(|n| n.checked_mul(channels))
            .ok_or_else(|| bad_image("image dimensions overflow"))?;
        let mut data = Vec::new();
        data.try_reserve_exact(len)
            .map_err(|_| bad_image(format!("out of memory allocating {len} bytes")))?;
        data.resize(len, 0);
        let image = Image { data, width, height, channels };
        image.view()?; // the core's checks of the shape
        Ok(image)
    }

    #[wasm_bindgen(getter)]
    pub fn width(&self) -> usize {
        self.width
    }

    #[wasm_bindgen(getter)]
    pub fn height(&self) -> usize {
        self.height
    }

    #[wasm_bindgen(getter)]
    pub fn channels(&self) -> usize {
        self.channels
    }

    #[wasm_bindgen(getter, js_name = byteLength)]
    pub fn byte_length(&self) -> usize {
        self.data.len()
    }

    /// Where the pixels start in the module's memory, for a view over them.
    #[wasm_bindgen(getter, js_name = byteOffset)]
    pub fn byte_offset(&self) -> usize {
        self.data.as_ptr() as usize
    }

    /// Copies another image of the same shape into this one.
    #[wasm_bindgen(js_name = copyFrom)]
    pub fn copy_from(&mut self, other: &Image) -> Result<()> {
        self.check_same_shape(other)?;
        self.data.copy_from_slice(&other.data);
        Ok(())
    }
}

// --------------------------------------------------------------- kernels ----

/// Gaussian blur of the whole image, `src` to `dst` (same shape).
#[wasm_bindgen(js_name = gaussianBlur)]
pub fn gaussian_blur_image(src: &Image, dst: &mut Image, sigma_px: f64) -> Result<()> {
    src.check_same_shape(dst)?;
    Ok(gaussian_blur(src.view()?, &mut dst.data, sigma_px, THREADS)?)
}

/// Box blur (a `2 * radius_px + 1` square mean) of the whole image.
#[wasm_bindgen(js_name = boxBlur)]
pub fn box_blur_image(src: &Image, dst: &mut Image, radius_px: usize) -> Result<()> {
    src.check_same_shape(dst)?;
    Ok(box_blur(src.view()?, &mut dst.data, radius_px, THREADS)?)
}

/// Pixelation by block means, blocks aligned to `(origin_x, origin_y)`.
#[wasm_bindgen(js_name = pixelate)]
pub fn pixelate_image(src: &Image, dst: &mut Image, block_px: usize, origin_x: i32, origin_y: i32) -> Result<()> {
    src.check_same_shape(dst)?;
    Ok(pixelate(
        src.view()?,
        &mut dst.data,
        block_px,
        origin_x as i64,
        origin_y as i64,
        THREADS,
    )?)
}

/// Sets the colour channels of every pixel to `color` (1 value for grey,
/// 3 for RGB and RGBA). Alpha is kept.
#[wasm_bindgen(js_name = fill)]
pub fn fill_image(image: &mut Image, color: &[u8]) -> Result<()> {
    Ok(fill(image.view_mut()?, color)?)
}

/// Adds seeded uniform noise in `-amount..=amount` to the colour channels;
/// `(origin_x, origin_y)` is the image's top-left pixel in the whole photo.
#[wasm_bindgen(js_name = addNoise)]
pub fn add_noise_image(image: &mut Image, amount: u32, seed: f64, origin_x: usize, origin_y: usize) -> Result<()> {
    let amount = u8::try_from(amount)
        .map_err(|_| VeilError::param("amount", format!("must be between 0 and 255, got {amount}")))?;
    let seed = whole("seed", seed, MAX_SAFE_INTEGER)? as u64;
    Ok(add_noise(image.view_mut()?, amount, seed, (origin_x, origin_y))?)
}

/// The largest whole number a JavaScript number holds exactly (2^53 - 1).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Integer parameters arrive as f64 (JavaScript numbers): reject what would
/// not convert exactly instead of truncating silently.
fn whole(name: &'static str, v: f64, max: f64) -> std::result::Result<f64, VeilError> {
    if v.is_finite() && v >= 0.0 && v <= max && v.fract() == 0.0 {
        Ok(v)
    } else {
        Err(VeilError::param(
            name,
            format!("must be a whole number between 0 and {max}, got {v}"),
        ))
    }
}

/// Method codes for [`apply_regions`], mirrored by the JavaScript API.
fn method_of(kind: u32, p0: f64, p1: f64, p2: f64) -> std::result::Result<Method, VeilError> {
    Ok(match kind {
        0 => Method::GaussianBlur { sigma_px: p0 },
        1 => Method::BoxBlur {
            radius_px: whole("radius_px", p0, u32::MAX as f64)? as usize,
        },
        2 => Method::Pixelate {
            block_px: whole("block_px", p0, u32::MAX as f64)? as usize,
        },
        3 => Method::Fill {
            color: [
                whole("color", p0, 255.0)? as u8,
                whole("color", p1, 255.0)? as u8,
                whole("color", p2, 255.0)? as u8,
            ],
        },
        4 => Method::Noise {
            amount: whole("amount", p0, 255.0)? as u8,
            seed: whole("seed", p1, MAX_SAFE_INTEGER)? as u64,
        },
        other => return Err(VeilError::param("method", format!("unknown method code {other}"))),
    })
}

fn regions_of(values: &[f64]) -> std::result::Result<Vec<Region>, VeilError> {
    if !values.len().is_multiple_of(REGION_FLOATS) {
        return Err(VeilError::param(
            "regions",
            format!("must hold {REGION_FLOATS} numbers per region, got {}", values.len()),
        ));
    }
    values
        .chunks_exact(REGION_FLOATS)
        .map(|r| {
            // Exact codes only: `as` would turn NaN or 0.7 into a shape.
            let shape = match r[4] {
                0.0 => Shape::Rectangle,
                1.0 => Shape::Ellipse,
                _ => return Err(VeilError::param("shape", format!("unknown shape code {}", r[4]))),
            };
            Ok(Region {
                left: r[0],
                top: r[1],
                width: r[2],
                height: r[3],
                shape,
                feather_px: r[5],
            })
        })
        .collect()
}

/// Hides regions of `image` in place with one method.
///
/// `kind`: 0 Gaussian blur (`p0` = sigma_px), 1 box blur (`p0` = radius_px),
/// 2 pixelate (`p0` = block_px), 3 fill (`p0..p2` = red, green, blue),
/// 4 noise (`p0` = amount, `p1` = seed). `regions` holds
/// [`REGION_FLOATS`] numbers per region.
#[wasm_bindgen(js_name = applyRegions)]
pub fn apply_regions(image: &mut Image, kind: u32, p0: f64, p1: f64, p2: f64, regions: &[f64]) -> Result<()> {
    let regions = regions_of(regions)?;
    let method = method_of(kind, p0, p1, p2)?;
    Ok(apply_to_regions(image.view_mut()?, &method, &regions, THREADS)?)
}

// ------------------------------------------------------------- detection ----

/// The default score threshold of the face search.
#[wasm_bindgen(js_name = defaultThreshold)]
pub fn default_threshold() -> f32 {
    core_search::DEFAULT_THRESHOLD
}

/// The default cap on the longer side of the whole-photo pass.
#[wasm_bindgen(js_name = defaultMaxSidePx)]
pub fn default_max_side_px() -> u32 {
    core_search::DEFAULT_MAX_SIDE_PX as u32
}

/// A face search over one photo (veil-core `detect::search`), driven by the
/// page's onnxruntime-web session exactly as `veil.detect` drives it with
/// onnxruntime: `nextInput` / `pushOutput` until the search is over, then
/// `finish`.
#[wasm_bindgen]
pub struct FaceSearch {
    /// `None` once finished.
    search: Option<Search>,
    input_width: usize,
    input_height: usize,
}

impl FaceSearch {
    fn live(&mut self) -> Result<&mut Search> {
        Ok(self
            .search
            .as_mut()
            .ok_or_else(|| VeilError::param("search", "this search is finished"))?)
    }
}

#[wasm_bindgen]
impl FaceSearch {
    /// Starts the search of `image` (copied: it can be freed right after).
    #[wasm_bindgen(constructor)]
    pub fn new(image: &Image, threshold: f32, max_side_px: u32, tiles: bool, rotations: bool) -> Result<FaceSearch> {
        let settings = Settings {
            threshold,
            max_side_px: max_side_px as usize,
            tiles,
            rotations,
            ..Settings::default()
        };
        Ok(FaceSearch {
            search: Some(Search::new(image.view()?, settings)?),
            input_width: 0,
            input_height: 0,
        })
    }

    /// The next network input, `3 x inputHeight x inputWidth` floats
    /// (NCHW, batch 1), or `undefined` when the search is over.
    #[wasm_bindgen(js_name = nextInput)]
    pub fn next_input(&mut self) -> Result<Option<Vec<f32>>> {
        let input = self.live()?.next_input()?;
        let (width, height) = input.as_ref().map_or((0, 0), |i| (i.width, i.height));
        self.input_width = width;
        self.input_height = height;
        Ok(input.map(|i| i.data))
    }

    #[wasm_bindgen(getter, js_name = inputWidth)]
    pub fn input_width(&self) -> usize {
        self.input_width
    }

    #[wasm_bindgen(getter, js_name = inputHeight)]
    pub fn input_height(&self) -> usize {
        self.input_height
    }

    /// CenterFace's four outputs for the last input (planes of
    /// `rows x cols`: the input's size / 4).
    #[wasm_bindgen(js_name = pushOutput)]
    pub fn push_output(
        &mut self,
        heatmap: &[f32],
        scale: &[f32],
        offset: &[f32],
        landmarks: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        Ok(self.live()?.push_output(heatmap, scale, offset, landmarks, rows, cols)?)
    }

    /// Network runs done so far.
    #[wasm_bindgen(getter)]
    pub fn done(&self) -> usize {
        self.search.as_ref().map_or(0, |s| s.progress().done)
    }

    /// Network runs in all.
    #[wasm_bindgen(getter)]
    pub fn total(&self) -> usize {
        self.search.as_ref().map_or(0, |s| s.progress().total)
    }

    /// What the next network run is ("whole photo", "tile 2 of 6", "done").
    #[wasm_bindgen(getter)]
    pub fn label(&self) -> String {
        self.search.as_ref().map_or_else(|| "done".into(), |s| s.progress().label)
    }

    /// Ends the search: the faces, best score first, boxes clamped to the
    /// photo, [`FACE_FLOATS`] numbers each.
    pub fn finish(&mut self) -> Result<Vec<f32>> {
        let search = self
            .search
            .take()
            .ok_or_else(|| VeilError::param("search", "this search is finished"))?;
        let faces = search.finish()?;
        let mut out = Vec::with_capacity(faces.len() * FACE_FLOATS);
        for f in &faces {
            out.extend_from_slice(&[f.left, f.top, f.right, f.bottom, f.score]);
            for p in &f.landmarks {
                out.extend_from_slice(p);
            }
        }
        Ok(out)
    }
}
