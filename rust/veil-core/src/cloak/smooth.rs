//! A separable Gaussian smoother for `f32` images, and its adjoint.
//!
//! Near the border the kernel is cut to the pixels inside and renormalised
//! (a weighted mean of what is there: no darkened or reflected edge). Along
//! one axis that is `F = N C`, `C` the zero-padded correlation with the
//! symmetric kernel (self-adjoint) and `N` the diagonal of the
//! renormalisation factors, so the adjoint is `F^T = C N`.
//! (`crate::blur::gaussian_blur` is the fast kernel for 8-bit photos; this
//! one works on perturbations and gradients, which are real-valued.)

use super::check_len;
use crate::error::{check_range, Result};

/// Largest sigma accepted, in pixels.
pub const MAX_SIGMA_PX: f64 = 64.0;

/// The kernel's half-width: 3 sigma holds 99.7% of its mass.
fn kernel(sigma_px: f64) -> Vec<f32> {
    let radius = (3.0 * sigma_px).ceil().max(1.0) as usize;
    let k: Vec<f64> = (0..=radius).map(|i| (-0.5 * (i as f64 / sigma_px).powi(2)).exp()).collect();
    k.iter().map(|&v| v as f32).collect()
}

/// `1 / (sum of the kernel taps inside 0..len)` at each position.
fn norms(k: &[f32], len: usize) -> Vec<f32> {
    let r = k.len() - 1;
    (0..len)
        .map(|i| {
            let lo = i.saturating_sub(r);
            let hi = (i + r).min(len - 1);
            let s: f64 = (lo..=hi).map(|j| k[i.abs_diff(j)] as f64).sum();
            (1.0 / s) as f32
        })
        .collect()
}

/// Along x: each row of `width` pixels of `channels` values is correlated
/// with the kernel (zero-padded), `pre`/`post` scaling by position.
fn pass_x(data: &[f32], width: usize, channels: usize, k: &[f32], pre: Option<&[f32]>, post: Option<&[f32]>) -> Vec<f32> {
    let r = k.len() - 1;
    let row_len = width * channels;
    let mut out = vec![0.0f32; data.len()];
    let mut line = vec![0.0f32; row_len];
    let mut acc = vec![0.0f32; channels];
    for (src, dst) in data.chunks_exact(row_len).zip(out.chunks_exact_mut(row_len)) {
        match pre {
            Some(n) => {
                for (i, (l, s)) in line.chunks_exact_mut(channels).zip(src.chunks_exact(channels)).enumerate() {
                    l.iter_mut().zip(s).for_each(|(l, s)| *l = s * n[i]);
                }
            }
            None => line.copy_from_slice(src),
        }
        for i in 0..width {
            let lo = i.saturating_sub(r);
            let hi = (i + r).min(width - 1);
            acc.iter_mut().for_each(|a| *a = 0.0);
            for j in lo..=hi {
                let w = k[i.abs_diff(j)];
                for (a, v) in acc.iter_mut().zip(&line[j * channels..(j + 1) * channels]) {
                    *a += w * v;
                }
            }
            let scale = post.map_or(1.0, |n| n[i]);
            for (d, a) in dst[i * channels..(i + 1) * channels].iter_mut().zip(&acc) {
                *d = a * scale;
            }
        }
    }
    out
}

/// Along y: whole rows are accumulated (cache-friendly), zero-padded.
fn pass_y(data: &[f32], height: usize, row_len: usize, k: &[f32], pre: Option<&[f32]>, post: Option<&[f32]>) -> Vec<f32> {
    let r = k.len() - 1;
    let scaled;
    let src: &[f32] = match pre {
        Some(n) => {
            scaled = data
                .chunks_exact(row_len)
                .enumerate()
                .flat_map(|(y, row)| row.iter().map(move |v| v * n[y]))
                .collect::<Vec<f32>>();
            &scaled
        }
        None => data,
    };
    let mut out = vec![0.0f32; data.len()];
    for (i, dst) in out.chunks_exact_mut(row_len).enumerate() {
        let lo = i.saturating_sub(r);
        let hi = (i + r).min(height - 1);
        for j in lo..=hi {
            let w = k[i.abs_diff(j)];
            for (d, v) in dst.iter_mut().zip(&src[j * row_len..(j + 1) * row_len]) {
                *d += w * v;
            }
        }
        if let Some(n) = post {
            dst.iter_mut().for_each(|d| *d *= n[i]);
        }
    }
    out
}

fn run(data: &[f32], width: usize, height: usize, channels: usize, sigma_px: f64, adjoint: bool) -> Result<Vec<f32>> {
    check_len("image", data, width, height, channels)?;
    check_range("sigma_px", sigma_px, 0.0, MAX_SIGMA_PX)?;
    if sigma_px == 0.0 {
        return Ok(data.to_vec());
    }
    let k = kernel(sigma_px);
    let (nx, ny) = (norms(&k, width), norms(&k, height));
    // Forward: F = N C along each axis; adjoint: F^T = C N.
    let (pre_x, post_x) = if adjoint { (Some(&nx[..]), None) } else { (None, Some(&nx[..])) };
    let (pre_y, post_y) = if adjoint { (Some(&ny[..]), None) } else { (None, Some(&ny[..])) };
    let horizontal = pass_x(data, width, channels, &k, pre_x, post_x);
    Ok(pass_y(&horizontal, height, width * channels, &k, pre_y, post_y))
}

/// Gaussian smoothing of an interleaved `height x width x channels` image,
/// each channel on its own; `sigma_px` 0 returns a copy.
pub fn gaussian_f32(data: &[f32], width: usize, height: usize, channels: usize, sigma_px: f64) -> Result<Vec<f32>> {
    run(data, width, height, channels, sigma_px, false)
}

/// The adjoint of [`gaussian_f32`] (carries a gradient on the smoothed
/// image back to the image).
pub fn gaussian_f32_adjoint(grad: &[f32], width: usize, height: usize, channels: usize, sigma_px: f64) -> Result<Vec<f32>> {
    run(grad, width, height, channels, sigma_px, true)
}
