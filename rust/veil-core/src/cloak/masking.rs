//! A contrast-masking map: how much of the perturbation budget each pixel
//! may take.
//!
//! The eye sees a change of brightness on a smooth surface (skin, a clear
//! sky, an out-of-focus background) long before the same change inside
//! texture, edges or hair: local contrast masks it (Legge & Foley 1980; the
//! texture-masking term of just-noticeable-difference models such as Chou &
//! Li 1995). The map is the local standard deviation of the luminance in a
//! Gaussian window, relative to a reference contrast and saturating at 1,
//! lifted to at least `floor`:
//!
//! `m = floor + (1 - floor) * min(1, std / reference)`
//!
//! and then smoothed with the same window, so that the bound itself never
//! changes abruptly (a sharp step in the bound would draw the outline of a
//! region). The cloak multiplies its L-infinity bound by `m` pixel by pixel.

use super::check_len;
use super::smooth::gaussian_f32;
use crate::error::{check_range, Result, VeilError};

/// The masking map of an interleaved `height x width x channels` image in
/// levels (0..255): one value per pixel in `floor..=1`.
///
/// `sigma_px` is the window's Gaussian sigma in pixels, `reference` the
/// local standard deviation (levels) at and above which the full budget
/// applies.
pub fn masking_map(
    image: &[f32],
    width: usize,
    height: usize,
    channels: usize,
    sigma_px: f64,
    reference: f32,
    floor: f32,
) -> Result<Vec<f32>> {
    check_len("image", image, width, height, channels)?;
    check_range("sigma_px", sigma_px, 0.1, super::smooth::MAX_SIGMA_PX)?;
    check_range("reference", reference as f64, 1e-3, 255.0)?;
    check_range("floor", floor as f64, 0.0, 1.0)?;
    // Luminance: BT.601 weights for colour, the value itself for grey.
    let luma: Vec<f32> = if channels >= 3 {
        image.chunks_exact(channels).map(|p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]).collect()
    } else {
        image.chunks_exact(channels).map(|p| p[0]).collect()
    };
    if luma.iter().any(|v| !v.is_finite()) {
        return Err(VeilError::param("image", "must hold finite values"));
    }
    // Centred on the image mean, so that E[y^2] - E[y]^2 does not cancel
    // away float32's precision on bright flat areas.
    let centre = (luma.iter().map(|&v| v as f64).sum::<f64>() / luma.len() as f64) as f32;
    let luma: Vec<f32> = luma.iter().map(|v| v - centre).collect();
    let sq: Vec<f32> = luma.iter().map(|v| v * v).collect();
    let mean = gaussian_f32(&luma, width, height, 1, sigma_px)?;
    let mean_sq = gaussian_f32(&sq, width, height, 1, sigma_px)?;
    let raw: Vec<f32> = mean
        .iter()
        .zip(&mean_sq)
        .map(|(&m, &s)| {
            let std = (s - m * m).max(0.0).sqrt();
            floor + (1.0 - floor) * (std / reference).min(1.0)
        })
        .collect();
    let mut out = gaussian_f32(&raw, width, height, 1, sigma_px)?;
    // Smoothing a map within floor..=1 keeps it there, but for rounding.
    out.iter_mut().for_each(|v| *v = v.clamp(floor, 1.0));
    Ok(out)
}

/// Projects `delta` (interleaved, `channels` values per pixel) so that
/// `|delta| <= bound[pixel]` and `original + delta` lies in `0..=255`, in
/// place: the per-pixel form of [`super::project`].
pub fn project_map(delta: &mut [f32], original: &[f32], bound: &[f32], channels: usize) -> Result<()> {
    if original.len() != delta.len() {
        return Err(VeilError::param("original", format!("has {} values, expected {}", original.len(), delta.len())));
    }
    if channels == 0 || bound.len().checked_mul(channels) != Some(delta.len()) {
        return Err(VeilError::param(
            "bound",
            format!("has {} values, expected one per pixel ({} / {channels})", bound.len(), delta.len()),
        ));
    }
    if bound.iter().any(|b| !(b.is_finite() && (0.0..=255.0).contains(b))) {
        return Err(VeilError::param("bound", "values must be between 0 and 255"));
    }
    for ((d, o), &b) in delta.chunks_exact_mut(channels).zip(original.chunks_exact(channels)).zip(bound) {
        for (d, &o) in d.iter_mut().zip(o) {
            let lo = (-b).max(0.0 - o);
            let hi = b.min(255.0 - o);
            *d = if d.is_nan() { 0.0 } else { d.clamp(lo.min(hi), hi.max(lo)) };
        }
    }
    Ok(())
}
