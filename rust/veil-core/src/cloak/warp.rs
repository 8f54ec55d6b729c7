//! An anti-aliased bilinear warp and its exact adjoint.
//!
//! Coordinates are continuous with pixel `k` covering `[k, k + 1)` (its
//! centre at `k + 0.5`), the convention of Pillow's `Image.transform`, with
//! which veil's recognizers were measured. Output pixel `(u, v)` reads the
//! source around `out_to_src(u + 0.5, v + 0.5)`.
//!
//! The filter is a tent (the bilinear kernel) of radius
//! `r = max(1, s)` source pixels, `s` being the warp's scale (source pixels
//! per output pixel, `sqrt |det|`): plain bilinear interpolation when
//! enlarging, and a triangle filter wide enough to average every source
//! pixel when shrinking (as Pillow's resize does), so the crop does not alias
//! and the gradient reaches every pixel of the photo, not one in `s`.
//! Weights are normalised over the taps inside the source (the border is
//! extended, not darkened); an output pixel none of whose taps land inside
//! reads 0.
//!
//! The warp is linear, `out = A src`; [`Warp::adjoint`] computes `A^T g`
//! with the very same weights, so `<A x, y> = <x, A^T y>` holds to rounding.

use super::align::{invert_affine, Affine};
use super::check_len;
use crate::error::{Result, VeilError};

/// The largest shrinking factor accepted: beyond it a warp reads thousands
/// of taps per output pixel; shrink the source first.
pub const MAX_SCALE: f64 = 64.0;

/// A warp from a `src_width x src_height` image to an `out_width x
/// out_height` one, both with `channels` interleaved channels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Warp {
    pub src_width: usize,
    pub src_height: usize,
    pub out_width: usize,
    pub out_height: usize,
    pub channels: usize,
    /// Output coordinates -> source coordinates.
    pub out_to_src: Affine,
    radius: f64,
}

/// Taps along one axis: (index, normalised weight).
type Taps = Vec<(usize, f32)>;

impl Warp {
    /// A warp given the map from source to output coordinates (e.g. the
    /// alignment from [`super::similarity_transform`], photo -> crop).
    pub fn new(
        src_width: usize,
        src_height: usize,
        out_width: usize,
        out_height: usize,
        channels: usize,
        src_to_out: &Affine,
    ) -> Result<Self> {
        Self::from_inverse(src_width, src_height, out_width, out_height, channels, &invert_affine(src_to_out)?)
    }

    /// A warp given the map from output to source coordinates.
    pub fn from_inverse(
        src_width: usize,
        src_height: usize,
        out_width: usize,
        out_height: usize,
        channels: usize,
        out_to_src: &Affine,
    ) -> Result<Self> {
        if src_width == 0 || src_height == 0 || out_width == 0 || out_height == 0 || channels == 0 {
            return Err(VeilError::param(
                "size",
                format!("sizes must be > 0 (source {src_width}x{src_height}, output {out_width}x{out_height}, {channels} channels)"),
            ));
        }
        if out_to_src.iter().any(|v| !v.is_finite()) {
            return Err(VeilError::param("matrix", "must hold finite numbers"));
        }
        let det = (out_to_src[0] * out_to_src[4] - out_to_src[1] * out_to_src[3]).abs();
        let scale = det.sqrt();
        if scale.is_nan() || scale <= 0.0 {
            return Err(VeilError::param("matrix", "is singular (it collapses the image)"));
        }
        if scale > MAX_SCALE {
            return Err(VeilError::param(
                "matrix",
                format!("shrinks by {scale:.1}x, more than {MAX_SCALE}x: shrink the source first"),
            ));
        }
        Ok(Self { src_width, src_height, out_width, out_height, channels, out_to_src: *out_to_src, radius: scale.max(1.0) })
    }

    /// The tent filter's radius in source pixels.
    pub fn radius(&self) -> f64 {
        self.radius
    }

    /// Tent taps around `centre` (index coordinates) inside `0..len`,
    /// normalised to sum 1; empty if none lands inside.
    fn taps(&self, centre: f64, len: usize, taps: &mut Taps) {
        taps.clear();
        let r = self.radius;
        if !(centre > -r && centre < len as f64 - 1.0 + r) {
            return; // also rejects NaN
        }
        let first = (centre - r).floor().max(0.0) as usize;
        let last = ((centre + r).ceil() as usize).min(len - 1);
        let mut sum = 0.0f64;
        for k in first..=last {
            let w = 1.0 - (k as f64 - centre).abs() / r;
            if w > 0.0 {
                taps.push((k, w as f32));
                sum += w;
            }
        }
        if sum > 0.0 {
            let inv = (1.0 / sum) as f32;
            taps.iter_mut().for_each(|t| t.1 *= inv);
        } else {
            taps.clear();
        }
    }

    /// Calls `f(output offset, xs, ys)` for every output pixel with its taps.
    fn for_each_pixel(&self, mut f: impl FnMut(usize, &Taps, &Taps)) {
        let m = &self.out_to_src;
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for v in 0..self.out_height {
            let cv = v as f64 + 0.5;
            for u in 0..self.out_width {
                let cu = u as f64 + 0.5;
                // Source continuous coordinates, then index coordinates (centres at k).
                let sx = m[0] * cu + m[1] * cv + m[2] - 0.5;
                let sy = m[3] * cu + m[4] * cv + m[5] - 0.5;
                self.taps(sx, self.src_width, &mut xs);
                if xs.is_empty() {
                    continue;
                }
                self.taps(sy, self.src_height, &mut ys);
                if ys.is_empty() {
                    continue;
                }
                f((v * self.out_width + u) * self.channels, &xs, &ys);
            }
        }
    }

    /// `A src`: the warped image, `out_height x out_width x channels`.
    pub fn forward(&self, src: &[f32]) -> Result<Vec<f32>> {
        check_len("source", src, self.src_width, self.src_height, self.channels)?;
        let c = self.channels;
        let row = self.src_width * c;
        let mut out = vec![0.0f32; self.out_width * self.out_height * c];
        let mut acc = vec![0.0f32; c];
        self.for_each_pixel(|o, xs, ys| {
            acc.iter_mut().for_each(|a| *a = 0.0);
            for &(y, wy) in ys {
                let line = &src[y * row..(y + 1) * row];
                for &(x, wx) in xs {
                    let w = wy * wx;
                    for (a, s) in acc.iter_mut().zip(&line[x * c..x * c + c]) {
                        *a += w * s;
                    }
                }
            }
            out[o..o + c].copy_from_slice(&acc);
        });
        Ok(out)
    }

    /// `A^T grad`: a gradient on the output carried back to the source,
    /// `src_height x src_width x channels`.
    pub fn adjoint(&self, grad: &[f32]) -> Result<Vec<f32>> {
        check_len("grad", grad, self.out_width, self.out_height, self.channels)?;
        let c = self.channels;
        let row = self.src_width * c;
        let mut out = vec![0.0f32; self.src_width * self.src_height * c];
        self.for_each_pixel(|o, xs, ys| {
            let g = &grad[o..o + c];
            if g.iter().all(|v| *v == 0.0) {
                return;
            }
            for &(y, wy) in ys {
                let line = &mut out[y * row..(y + 1) * row];
                for &(x, wx) in xs {
                    let w = wy * wx;
                    for (d, s) in line[x * c..x * c + c].iter_mut().zip(g) {
                        *d += w * s;
                    }
                }
            }
        });
        Ok(out)
    }
}
