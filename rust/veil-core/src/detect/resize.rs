//! The network's inputs: the photo resized for a pass, then a crop of it as
//! CenterFace takes it.
//!
//! * [`resize_bilinear`] gives exactly the pixels of Pillow's
//!   `Image.resize(size, BILINEAR)` for 8-bit images (libImaging/Resample.c):
//!   a triangle filter whose support widens by the shrink factor (so
//!   shrinking averages rather than aliases), coefficients in 22-bit fixed
//!   point, a horizontal pass rounded to 8 bits, then a vertical pass. Being
//!   Pillow-exact keeps veil's results those of the Pillow-based search it
//!   was tuned with, and lets tests check it against Pillow itself.
//! * [`network_input`]: a crop of the image, RGB, as planar float32 (NCHW,
//!   batch 1), zero-padded at the bottom and right up to multiples of 32.
//!   CenterFace takes raw 0-255 RGB: no mean, no scale.

use crate::{ImageRef, VeilError};

/// Pillow's `PRECISION_BITS` for 8-bit images: 32 - 8 bits of sample - 2 of headroom.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: the first input pixel and the fixed-point weights.
struct Coefficients {
    first: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear
/// (triangle) filter over the whole input (`box = (0, 0, in, in)`).
fn coefficients(in_size: usize, out_size: usize) -> Coefficients {
    let scale = in_size as f32 as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 1.0 * filterscale;
    let ss = 1.0 / filterscale;
    let mut first = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's `(int)` truncates toward zero, as `as` does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut k: Vec<f64> = (0..n)
            .map(|x| {
                let t = ((x + xmin) as f64 - center + 0.5) * ss;
                let t = t.abs();
                if t < 1.0 {
                    1.0 - t
                } else {
                    0.0
                }
            })
            .collect();
        let ww: f64 = k.iter().sum();
        if ww != 0.0 {
            for w in &mut k {
                *w /= ww;
            }
        }
        let one = (1u32 << PRECISION_BITS) as f64;
        let fixed = k
            .iter()
            .map(|&w| {
                if w < 0.0 {
                    (-0.5 + w * one) as i32
                } else {
                    (0.5 + w * one) as i32
                }
            })
            .collect();
        first.push(xmin);
        weights.push(fixed);
    }
    Coefficients { first, weights }
}

#[inline]
fn clip8(v: i32) -> u8 {
    if v >= (1 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Resizes `src` (1, 3 or 4 channels; every channel is filtered alike, as
/// Pillow does for RGB) to `out_w x out_h` into `dst`.
pub fn resize_bilinear(src: ImageRef, dst: &mut [u8], out_w: usize, out_h: usize) -> Result<(), VeilError> {
    let c = src.channels;
    if out_w == 0 || out_h == 0 {
        return Err(VeilError::param(
            "size",
            format!("must be at least 1x1, got {out_w}x{out_h}"),
        ));
    }
    if dst.len() != out_w * out_h * c {
        return Err(VeilError::InvalidImage(format!(
            "output buffer holds {} bytes, a {out_w}x{out_h}x{c} image needs {}",
            dst.len(),
            out_w * out_h * c
        )));
    }
    let (in_w, in_h) = (src.width, src.height);
    if (in_w, in_h) == (out_w, out_h) {
        dst.copy_from_slice(src.data);
        return Ok(());
    }
    let horiz = coefficients(in_w, out_w);
    let vert = coefficients(in_h, out_h);
    let half = 1i32 << (PRECISION_BITS - 1);

    // Horizontal pass over the input rows the vertical pass will read.
    let need_h = out_w != in_w;
    let row_first = vert.first[0];
    let row_last = vert.first[out_h - 1] + vert.weights[out_h - 1].len();
    let temp_rows = row_last - row_first;
    let (temp, temp_w, temp_y0): (std::borrow::Cow<[u8]>, usize, usize) = if need_h {
        let mut t = vec![0u8; out_w * temp_rows * c];
        for y in 0..temp_rows {
            let row = src.row(y + row_first);
            let out = &mut t[y * out_w * c..(y + 1) * out_w * c];
            for xx in 0..out_w {
                let (x0, k) = (horiz.first[xx], &horiz.weights[xx]);
                for ch in 0..c {
                    let mut ss = half;
                    for (i, &w) in k.iter().enumerate() {
                        ss = ss.wrapping_add(row[(x0 + i) * c + ch] as i32 * w);
                    }
                    out[xx * c + ch] = clip8(ss);
                }
            }
        }
        (std::borrow::Cow::Owned(t), out_w, row_first)
    } else {
        (std::borrow::Cow::Borrowed(src.data), in_w, 0)
    };

    let stride = temp_w * c;
    if out_h == in_h {
        // Pillow skips the vertical pass when the height is unchanged.
        dst.copy_from_slice(&temp[..out_h * stride]);
        return Ok(());
    }
    for yy in 0..out_h {
        let (y0, k) = (vert.first[yy] - temp_y0, &vert.weights[yy]);
        let out = &mut dst[yy * stride..(yy + 1) * stride];
        for (x, o) in out.iter_mut().enumerate() {
            let mut ss = half;
            for (i, &w) in k.iter().enumerate() {
                ss = ss.wrapping_add(temp[(y0 + i) * stride + x] as i32 * w);
            }
            *o = clip8(ss);
        }
    }
    Ok(())
}

/// Rounds `n` up to a multiple of 32 (CenterFace's five stride-2 stages).
pub fn padded(n: usize) -> usize {
    n.div_ceil(32) * 32
}

/// Writes the crop `(x0, y0, w, h)` of `src` as float32 RGB planes into
/// `out`, which holds `3 * padded(h) * padded(w)` floats; the padding is 0.
/// Grey images give three equal planes; alpha is ignored.
pub fn network_input(
    src: ImageRef,
    x0: usize,
    y0: usize,
    w: usize,
    h: usize,
    out: &mut [f32],
) -> Result<(), VeilError> {
    if w == 0
        || h == 0
        || x0.checked_add(w).is_none_or(|e| e > src.width)
        || y0.checked_add(h).is_none_or(|e| e > src.height)
    {
        return Err(VeilError::param(
            "crop",
            format!(
                "({x0}, {y0}, {w}x{h}) is empty or outside the {}x{} image",
                src.width, src.height
            ),
        ));
    }
    let (pw, ph) = (padded(w), padded(h));
    if out.len() != 3 * pw * ph {
        return Err(VeilError::InvalidImage(format!(
            "network input holds {} floats, needs {}",
            out.len(),
            3 * pw * ph
        )));
    }
    out.fill(0.0);
    let c = src.channels;
    let plane = pw * ph;
    for y in 0..h {
        let row = &src.row(y0 + y)[x0 * c..(x0 + w) * c];
        for (x, px) in row.chunks_exact(c).enumerate() {
            let at = y * pw + x;
            let (r, g, b) = if c == 1 {
                (px[0], px[0], px[0])
            } else {
                (px[0], px[1], px[2])
            };
            out[at] = r as f32;
            out[plane + at] = g as f32;
            out[2 * plane + at] = b as f32;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_a_copy() {
        let data: Vec<u8> = (0..5 * 4 * 3).map(|i| i as u8).collect();
        let mut out = vec![0; data.len()];
        resize_bilinear(ImageRef::new(&data, 5, 4, 3).unwrap(), &mut out, 5, 4).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn halving_matches_pillow() {
        // Shrinking by 2: a triangle of support 2, weights 1/8, 3/8, 3/8, 1/8
        // inside, renormalised at the borders. Expected values from Pillow 13.
        let data = [0u8, 0, 80, 80, 160, 160, 240, 240];
        let mut out = [0u8; 4];
        resize_bilinear(ImageRef::new(&data, 8, 1, 1).unwrap(), &mut out, 4, 1).unwrap();
        assert_eq!(out, [11, 80, 160, 229]);
    }

    #[test]
    fn network_input_pads_with_zero() {
        let data = [10u8, 20, 30, 255, 40, 50, 60, 255];
        let img = ImageRef::new(&data, 2, 1, 4).unwrap();
        let mut out = vec![1.0; 3 * 32 * 32];
        network_input(img, 1, 0, 1, 1, &mut out).unwrap();
        assert_eq!((out[0], out[1024], out[2048]), (40.0, 50.0, 60.0));
        assert_eq!(out.iter().filter(|&&v| v != 0.0).count(), 3);
    }
}
