//! veil-core for the browser: plain `extern "C"` exports over WebAssembly
//! linear memory, wrapped by the hand-written `web/src/veil-wasm.js`.
//!
//! Conventions, shared with the JavaScript wrapper:
//! * Buffers live in this module's memory: JavaScript asks for them with
//!   [`veil_alloc`] and hands them back with [`veil_free`].
//! * Every fallible export returns a status: `0` for success or a positive
//!   [`Status`] code; counts are returned as `>= 0`, failures as `-code`.
//!   The message of the last failure is read with [`veil_last_error_ptr`] and
//!   [`veil_last_error_len`] (UTF-8). [`status_of`] is the one place a core
//!   error becomes a code.
//! * Faces cross as 15 `f32`s each: left, top, right, bottom, score, then the
//!   five landmarks as x, y pairs. Results are kept in a buffer that the next
//!   call overwrites ([`veil_faces_ptr`]).
//! * The face search is a handle from [`veil_search_new`], driven by the
//!   page's onnxruntime-web session exactly as `veil.detect` drives it with
//!   onnxruntime: `veil_search_next_input` / `veil_search_push_output` until
//!   the search is over, then `veil_search_finish`, then `veil_search_free`.
//! * Single-threaded: every kernel is called with `threads = 1`.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::{Cell, RefCell};

use veil_core::blur::{box_blur, gaussian_blur};
use veil_core::detect::search::{self as core_search, NetworkInput, Search, Settings};
use veil_core::detect::Face;
use veil_core::fill::{add_noise, fill};
use veil_core::pixelate::pixelate;
use veil_core::region::{apply_to_regions, Method, Region, Shape};
use veil_core::{ImageMut, ImageRef, VeilError};

/// One thread in the browser: the page's heavy work is the kernels, and a
/// wasm module without shared memory cannot start threads.
const THREADS: usize = 1;

/// Floats per face in the buffers exchanged with JavaScript.
pub const FACE_FLOATS: usize = 15;

/// Floats per region: left, top, width, height, shape (0 rectangle,
/// 1 ellipse), feather_px.
pub const REGION_FLOATS: usize = 6;

/// Alignment of every buffer handed out, enough for `f64` views.
const ALIGN: usize = 8;

/// Status codes; the JavaScript wrapper mirrors them in `ErrorCode`.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    InvalidParameter = 1,
    InvalidImage = 2,
    /// A Rust panic (a bug in veil): the message is the panic's. The module
    /// aborts after a panic, so the wrapper must load a fresh instance.
    Panic = 3,
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
    static FACES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static LAST_STATUS: Cell<i32> = const { Cell::new(0) };
}

fn set_last_error(message: String) {
    LAST_ERROR.with(|e| *e.borrow_mut() = message);
}

/// The one error-mapping helper: a core result becomes a status code, and a
/// failure's message is kept for [`veil_last_error_ptr`].
fn status_of(result: Result<(), VeilError>) -> Status {
    let status = match result {
        Ok(()) => {
            set_last_error(String::new());
            Status::Ok
        }
        Err(error) => {
            let status = match &error {
                VeilError::InvalidParameter { .. } => Status::InvalidParameter,
                VeilError::InvalidImage(_) => Status::InvalidImage,
            };
            set_last_error(error.to_string());
            status
        }
    };
    LAST_STATUS.with(|s| s.set(status as i32));
    status
}

/// The status of the last call (for calls that return a handle, null on
/// failure).
#[no_mangle]
pub extern "C" fn veil_last_status() -> i32 {
    LAST_STATUS.with(|s| s.get())
}

/// Like [`status_of`] for calls that return a count: the count, or `-code`.
fn count_of(result: Result<usize, VeilError>) -> i32 {
    match result {
        Ok(n) => {
            set_last_error(String::new());
            n.min(i32::MAX as usize) as i32
        }
        Err(error) => -(status_of(Err(error)) as i32),
    }
}

fn bad_image(message: impl Into<String>) -> VeilError {
    VeilError::InvalidImage(message.into())
}

/// The byte length of a `width x height x channels` image, checked.
fn image_len(width: usize, height: usize, channels: usize) -> Result<usize, VeilError> {
    width
        .checked_mul(height)
        .and_then(|n| n.checked_mul(channels))
        .ok_or_else(|| bad_image("image dimensions overflow"))
}

/// Borrows `len` elements at `ptr`. Null is only accepted for `len == 0`.
///
/// # Safety
/// `ptr` must point to `len` initialised elements that outlive `'a` and that
/// no live `&mut` slice aliases (the wrapper owns the buffers).
unsafe fn slice<'a, T>(ptr: *const T, len: usize, what: &str) -> Result<&'a [T], VeilError> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() || !(ptr as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(bad_image(format!("{what}: null or misaligned buffer")));
    }
    Ok(std::slice::from_raw_parts(ptr, len))
}

/// # Safety
/// As [`slice`], and no other slice may alias it.
unsafe fn slice_mut<'a, T>(ptr: *mut T, len: usize, what: &str) -> Result<&'a mut [T], VeilError> {
    if len == 0 {
        return Ok(&mut []);
    }
    if ptr.is_null() || !(ptr as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(bad_image(format!("{what}: null or misaligned buffer")));
    }
    Ok(std::slice::from_raw_parts_mut(ptr, len))
}

/// Checks that two byte ranges do not overlap (a kernel reads `src` while it
/// writes `dst`).
fn check_disjoint(a: *const u8, b: *const u8, len: usize) -> Result<(), VeilError> {
    let (a, b) = (a as usize, b as usize);
    if len > 0 && a < b.saturating_add(len) && b < a.saturating_add(len) {
        return Err(VeilError::param("dst", "must not overlap src"));
    }
    Ok(())
}

// ---------------------------------------------------------------- memory ----

/// Allocates `len` bytes (8-byte aligned, zeroed); null when out of memory.
#[no_mangle]
pub extern "C" fn veil_alloc(len: usize) -> *mut u8 {
    let Ok(layout) = Layout::from_size_align(len.max(1), ALIGN) else {
        return std::ptr::null_mut();
    };
    // SAFETY: the layout has a non-zero size.
    unsafe { alloc_zeroed(layout) }
}

/// Frees a buffer from [`veil_alloc`]; `len` must be the length asked for.
///
/// # Safety
/// `ptr` must come from `veil_alloc(len)` and not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn veil_free(ptr: *mut u8, len: usize) {
    if ptr.is_null() {
        return;
    }
    if let Ok(layout) = Layout::from_size_align(len.max(1), ALIGN) {
        dealloc(ptr, layout);
    }
}

#[no_mangle]
pub extern "C" fn veil_last_error_ptr() -> *const u8 {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

#[no_mangle]
pub extern "C" fn veil_last_error_len() -> usize {
    LAST_ERROR.with(|e| e.borrow().len())
}

/// Installs a panic hook that keeps the panic message for the wrapper (the
/// module aborts right after). Called once by the wrapper after loading.
#[no_mangle]
pub extern "C" fn veil_init() {
    std::panic::set_hook(Box::new(|info| {
        set_last_error(format!("internal error in veil: {info}"))
    }));
}

// --------------------------------------------------------------- kernels ----

/// Gaussian blur of the whole image, `src` to `dst` (same shape, disjoint).
///
/// # Safety
/// `src` and `dst` must each hold `width * height * channels` bytes.
#[no_mangle]
pub unsafe extern "C" fn veil_gaussian_blur(
    src: *const u8,
    dst: *mut u8,
    width: usize,
    height: usize,
    channels: usize,
    sigma_px: f64,
) -> Status {
    status_of((|| {
        let len = image_len(width, height, channels)?;
        check_disjoint(src, dst, len)?;
        let src = ImageRef::new(slice(src, len, "src")?, width, height, channels)?;
        gaussian_blur(src, slice_mut(dst, len, "dst")?, sigma_px, THREADS)
    })())
}

/// Box blur (a `2 * radius_px + 1` square mean) of the whole image.
///
/// # Safety
/// As [`veil_gaussian_blur`].
#[no_mangle]
pub unsafe extern "C" fn veil_box_blur(
    src: *const u8,
    dst: *mut u8,
    width: usize,
    height: usize,
    channels: usize,
    radius_px: usize,
) -> Status {
    status_of((|| {
        let len = image_len(width, height, channels)?;
        check_disjoint(src, dst, len)?;
        let src = ImageRef::new(slice(src, len, "src")?, width, height, channels)?;
        box_blur(src, slice_mut(dst, len, "dst")?, radius_px, THREADS)
    })())
}

/// Pixelation by block means, blocks aligned to `(origin_x, origin_y)`.
///
/// # Safety
/// As [`veil_gaussian_blur`].
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn veil_pixelate(
    src: *const u8,
    dst: *mut u8,
    width: usize,
    height: usize,
    channels: usize,
    block_px: usize,
    origin_x: i32,
    origin_y: i32,
) -> Status {
    status_of((|| {
        let len = image_len(width, height, channels)?;
        check_disjoint(src, dst, len)?;
        let src = ImageRef::new(slice(src, len, "src")?, width, height, channels)?;
        pixelate(
            src,
            slice_mut(dst, len, "dst")?,
            block_px,
            origin_x as i64,
            origin_y as i64,
            THREADS,
        )
    })())
}

/// Sets the colour channels of every pixel of `image` to `color`
/// (`color_len` values: 1 for grey, 3 for RGB and RGBA). Alpha is kept.
///
/// # Safety
/// `image` must hold `width * height * channels` bytes, `color` `color_len`.
#[no_mangle]
pub unsafe extern "C" fn veil_fill(
    image: *mut u8,
    width: usize,
    height: usize,
    channels: usize,
    color: *const u8,
    color_len: usize,
) -> Status {
    status_of((|| {
        let len = image_len(width, height, channels)?;
        let color = slice(color, color_len, "color")?.to_vec();
        fill(
            ImageMut::new(slice_mut(image, len, "image")?, width, height, channels)?,
            &color,
        )
    })())
}

/// Adds seeded uniform noise in `-amount..=amount` to the colour channels;
/// `(origin_x, origin_y)` is the buffer's top-left pixel in the whole photo.
///
/// # Safety
/// `image` must hold `width * height * channels` bytes.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn veil_add_noise(
    image: *mut u8,
    width: usize,
    height: usize,
    channels: usize,
    amount: u32,
    seed: f64,
    origin_x: usize,
    origin_y: usize,
) -> Status {
    status_of((|| {
        let amount = u8::try_from(amount)
            .map_err(|_| VeilError::param("amount", format!("must be between 0 and 255, got {amount}")))?;
        if !(seed.is_finite() && seed >= 0.0 && seed.fract() == 0.0 && seed <= 9_007_199_254_740_991.0) {
            return Err(VeilError::param(
                "seed",
                format!("must be a whole number between 0 and 2^53 - 1, got {seed}"),
            ));
        }
        let len = image_len(width, height, channels)?;
        let image = ImageMut::new(slice_mut(image, len, "image")?, width, height, channels)?;
        add_noise(image, amount, seed as u64, (origin_x, origin_y))
    })())
}

/// Method codes for [`veil_apply_regions`], mirrored by the wrapper.
fn method_of(kind: u32, p0: f64, p1: f64, p2: f64) -> Result<Method, VeilError> {
    // Integer parameters arrive as f64 (JavaScript numbers); reject what would
    // not convert exactly instead of truncating silently.
    let whole = |name: &'static str, v: f64, max: f64| -> Result<f64, VeilError> {
        if v.is_finite() && v >= 0.0 && v <= max && v.fract() == 0.0 {
            Ok(v)
        } else {
            Err(VeilError::param(
                name,
                format!("must be a whole number between 0 and {max}, got {v}"),
            ))
        }
    };
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
            seed: whole("seed", p1, 9_007_199_254_740_991.0)? as u64,
        },
        other => return Err(VeilError::param("method", format!("unknown method code {other}"))),
    })
}

fn regions_of(values: &[f64]) -> Result<Vec<Region>, VeilError> {
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

/// Hides `n_regions` regions of `image` in place with one method.
///
/// `kind`: 0 Gaussian blur (`p0` = sigma_px), 1 box blur (`p0` = radius_px),
/// 2 pixelate (`p0` = block_px), 3 fill (`p0..p2` = red, green, blue),
/// 4 noise (`p0` = amount, `p1` = seed). `regions` holds
/// [`REGION_FLOATS`] `f64`s per region.
///
/// # Safety
/// `image` must hold `width * height * channels` bytes and `regions`
/// `n_regions * 6` `f64`s.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn veil_apply_regions(
    image: *mut u8,
    width: usize,
    height: usize,
    channels: usize,
    kind: u32,
    p0: f64,
    p1: f64,
    p2: f64,
    regions: *const f64,
    n_regions: usize,
) -> Status {
    status_of((|| {
        let len = image_len(width, height, channels)?;
        let n = n_regions
            .checked_mul(REGION_FLOATS)
            .ok_or_else(|| VeilError::param("regions", "too many regions"))?;
        let regions = regions_of(slice(regions, n, "regions")?)?;
        let method = method_of(kind, p0, p1, p2)?;
        let image = ImageMut::new(slice_mut(image, len, "image")?, width, height, channels)?;
        apply_to_regions(image, &method, &regions, THREADS)
    })())
}

// ------------------------------------------------------------- detection ----

fn store_faces(faces: &[Face]) -> usize {
    FACES.with(|out| {
        let mut out = out.borrow_mut();
        out.clear();
        for f in faces {
            out.extend_from_slice(&[f.left, f.top, f.right, f.bottom, f.score]);
            for p in &f.landmarks {
                out.extend_from_slice(p);
            }
        }
    });
    faces.len()
}

/// The faces of the last [`veil_search_finish`] call, [`FACE_FLOATS`]
/// `f32`s each; valid until the next such call.
#[no_mangle]
pub extern "C" fn veil_faces_ptr() -> *const f32 {
    FACES.with(|out| out.borrow().as_ptr())
}

/// The default score threshold of the face search.
#[no_mangle]
pub extern "C" fn veil_detect_default_threshold() -> f32 {
    core_search::DEFAULT_THRESHOLD
}

/// The default cap on the longer side of the whole-photo pass.
#[no_mangle]
pub extern "C" fn veil_detect_default_max_side_px() -> u32 {
    core_search::DEFAULT_MAX_SIDE_PX as u32
}

/// A face search in progress, with the buffers it shares with JavaScript.
pub struct WasmSearch {
    /// `None` once finished.
    search: Option<Search>,
    /// The last network input handed out.
    input: NetworkInput,
    /// Where JavaScript writes the network's outputs: heatmap, scale,
    /// offset, landmarks planes, one after the other (15 per cell).
    output: Vec<f32>,
    label: String,
}

/// # Safety
/// `handle` must come from [`veil_search_new`] and not be freed.
unsafe fn search_of<'a>(handle: *mut WasmSearch) -> Result<&'a mut WasmSearch, VeilError> {
    if handle.is_null() {
        return Err(VeilError::param("search", "null handle"));
    }
    Ok(&mut *handle)
}

fn live(s: &mut WasmSearch) -> Result<&mut Search, VeilError> {
    s.search
        .as_mut()
        .ok_or_else(|| VeilError::param("search", "this search is finished"))
}

/// Starts the search of an image (1, 3 or 4 channels; copied, so `src` can
/// be freed right after); `tiles` and `rotations` are 0 or 1. Returns a handle, or null on failure (the status
/// is at [`veil_last_status`], the message at [`veil_last_error_ptr`]).
///
/// # Safety
/// `src` must hold `width * height * channels` bytes.
#[no_mangle]
pub unsafe extern "C" fn veil_search_new(
    src: *const u8,
    width: usize,
    height: usize,
    channels: usize,
    threshold: f32,
    max_side_px: u32,
    tiles: u32,
    rotations: u32,
) -> *mut WasmSearch {
    let mut made = None;
    status_of((|| {
        let len = image_len(width, height, channels)?;
        let image = ImageRef::new(slice(src, len, "src")?, width, height, channels)?;
        let settings = Settings {
            threshold,
            max_side_px: max_side_px as usize,
            tiles: tiles != 0,
            rotations: rotations != 0,
            ..Settings::default()
        };
        made = Some(Search::new(image, settings)?);
        Ok(())
    })());
    match made {
        Some(search) => Box::into_raw(Box::new(WasmSearch {
            search: Some(search),
            input: NetworkInput { data: Vec::new(), width: 0, height: 0 },
            output: Vec::new(),
            label: String::new(),
        })),
        None => std::ptr::null_mut(),
    }
}

/// Makes the next network input: returns 1 when one is ready (read it at
/// [`veil_search_input_ptr`], `3 x height x width` floats), 0 when the
/// search is over, or `-code`.
///
/// # Safety
/// `handle` must come from [`veil_search_new`] and not be freed.
#[no_mangle]
pub unsafe extern "C" fn veil_search_next_input(handle: *mut WasmSearch) -> i32 {
    count_of((|| {
        let s = search_of(handle)?;
        match live(s)?.next_input()? {
            Some(input) => {
                s.input = input;
                Ok(1)
            }
            None => {
                s.input = NetworkInput { data: Vec::new(), width: 0, height: 0 };
                Ok(0)
            }
        }
    })())
}

/// # Safety
/// `handle` must come from [`veil_search_new`] and not be freed.
#[no_mangle]
pub unsafe extern "C" fn veil_search_input_ptr(handle: *mut WasmSearch) -> *const f32 {
    search_of(handle).map_or(std::ptr::null(), |s| s.input.data.as_ptr())
}

/// # Safety
/// `handle` must come from [`veil_search_new`] and not be freed.
#[no_mangle]
pub unsafe extern "C" fn veil_search_input_width(handle: *mut WasmSearch) -> usize {
    search_of(handle).map_or(0, |s| s.input.width)
}

/// # Safety
/// `handle` must come from [`veil_search_new`] and not be freed.
#[no_mangle]
pub unsafe extern "C" fn veil_search_input_height(handle: *mut WasmSearch) -> usize {
    search_of(handle).map_or(0, |s| s.input.height)
}

/// A buffer of `15 * rows * cols` floats for the network's outputs (heatmap,
/// scale, offset, landmarks planes in that order), valid until the next call
/// on this search; null on failure.
///
/// # Safety
/// `handle` must come from [`veil_search_new`] and not be freed.
#[no_mangle]
pub unsafe extern "C" fn veil_search_output_ptr(handle: *mut WasmSearch, rows: usize, cols: usize) -> *mut f32 {
    let mut ptr = std::ptr::null_mut();
    status_of((|| {
        let s = search_of(handle)?;
        let n = rows
            .checked_mul(cols)
            .and_then(|n| n.checked_mul(15))
            .filter(|&n| n <= 1 << 28)
            .ok_or_else(|| bad_image(format!("feature map {rows}x{cols} is too large")))?;
        s.output.clear();
        s.output.resize(n, 0.0);
        ptr = s.output.as_mut_ptr();
        Ok(())
    })());
    ptr
}

/// Takes the network's outputs for the last input, from the buffer of
/// [`veil_search_output_ptr`] (same `rows`, `cols`).
///
/// # Safety
/// `handle` must come from [`veil_search_new`] and not be freed.
#[no_mangle]
pub unsafe extern "C" fn veil_search_push_output(handle: *mut WasmSearch, rows: usize, cols: usize) -> Status {
    status_of((|| {
        let s = search_of(handle)?;
        let n = rows.checked_mul(cols).filter(|&n| n.checked_mul(15) == Some(s.output.len()));
        let Some(n) = n else {
            return Err(bad_image(format!(
                "output buffer holds {} floats, a {rows}x{cols} map needs 15 per cell",
                s.output.len()
            )));
        };
        let output = std::mem::take(&mut s.output);
        let (heat, rest) = output.split_at(n);
        let (scale, rest) = rest.split_at(2 * n);
        let (offset, landmarks) = rest.split_at(2 * n);
        let result = live(s)?.push_output(heat, scale, offset, landmarks, rows, cols);
        s.output = output;
        result
    })())
}

/// Network runs done so far.
///
/// # Safety
/// `handle` must come from [`veil_search_new`] and not be freed.
#[no_mangle]
pub unsafe extern "C" fn veil_search_done(handle: *mut WasmSearch) -> usize {
    search_of(handle)
        .ok()
        .and_then(|s| s.search.as_ref().map(|x| x.progress().done))
        .unwrap_or(0)
}

/// Network runs in all.
///
/// # Safety
/// `handle` must come from [`veil_search_new`] and not be freed.
#[no_mangle]
pub unsafe extern "C" fn veil_search_total(handle: *mut WasmSearch) -> usize {
    search_of(handle)
        .ok()
        .and_then(|s| s.search.as_ref().map(|x| x.progress().total))
        .unwrap_or(0)
}

/// What the next network run is ("whole photo", "tile 2 of 6", "done"),
/// UTF-8, `veil_search_label_len` bytes; valid until the next call.
///
/// # Safety
/// `handle` must come from [`veil_search_new`] and not be freed.
#[no_mangle]
pub unsafe extern "C" fn veil_search_label_ptr(handle: *mut WasmSearch) -> *const u8 {
    match search_of(handle) {
        Ok(s) => {
            s.label = s.search.as_ref().map_or_else(|| "done".into(), |x| x.progress().label);
            s.label.as_ptr()
        }
        Err(_) => std::ptr::null(),
    }
}

/// # Safety
/// `handle` must come from [`veil_search_new`] and not be freed.
#[no_mangle]
pub unsafe extern "C" fn veil_search_label_len(handle: *mut WasmSearch) -> usize {
    search_of(handle).map_or(0, |s| s.label.len())
}

/// Ends the search: returns the number of faces (read them at
/// [`veil_faces_ptr`]) or `-code`. The handle must still be freed.
///
/// # Safety
/// `handle` must come from [`veil_search_new`] and not be freed.
#[no_mangle]
pub unsafe extern "C" fn veil_search_finish(handle: *mut WasmSearch) -> i32 {
    count_of((|| {
        let s = search_of(handle)?;
        let search = s
            .search
            .take()
            .ok_or_else(|| VeilError::param("search", "this search is finished"))?;
        s.input = NetworkInput { data: Vec::new(), width: 0, height: 0 };
        s.output = Vec::new();
        Ok(store_faces(&search.finish()?))
    })())
}

/// Frees a search and its buffers.
///
/// # Safety
/// `handle` must come from [`veil_search_new`] (or be null) and not be used
/// afterwards.
#[no_mangle]
pub unsafe extern "C" fn veil_search_free(handle: *mut WasmSearch) {
    if !handle.is_null() {
        drop(Box::from_raw(handle));
    }
}
