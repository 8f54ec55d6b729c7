//! The numeric steps of cloaking (Fawkes/LowKey-style adversarial
//! perturbations against face recognizers), as plain functions over `f32`
//! slices. Python runs the recognizers in onnxruntime and drives the loop;
//! everything between the photo and the recognizer's input, and back, is here:
//!
//! * [`align`]: the 5-point similarity transform onto a template (Umeyama
//!   1991, least squares, no reflection).
//! * [`warp`]: an anti-aliased bilinear warp (full-resolution photo ->
//!   aligned crop) and its exact adjoint (crop gradient -> photo gradient),
//!   so the perturbation is optimised at the photo's own resolution rather
//!   than on a 112 px crop pasted back (the source of Fawkes' visible
//!   artifacts).
//! * [`smooth`]: a Gaussian smoother for `f32` planes and its adjoint (the
//!   LowKey input smoothing, and smoothing of the perturbation).
//! * [`ssim`]: SSIM (Wang et al. 2004) and its gradient, the perceptual
//!   budget (DSSIM = (1 - SSIM) / 2, as Fawkes defines it).
//! * [`masking`]: a contrast-masking map (local luminance contrast -> the
//!   share of the L-infinity budget each pixel may take), and the per-pixel
//!   projection onto it.
//! * [`optim`]: Adam and signed-gradient steps, and the projection onto the
//!   L-infinity ball and the valid pixel range.
//!
//! Images are interleaved `height x width x channels` `f32` buffers in pixel
//! levels (0..255). Everything is single-threaded and deterministic: the same
//! inputs give bit-identical outputs on every machine with IEEE `f32`.

pub mod align;
pub mod masking;
pub mod optim;
pub mod smooth;
pub mod ssim;
pub mod warp;

pub use align::{invert_affine, similarity_transform, Affine};
pub use masking::{masking_map, project_map};
pub use optim::{adam_step, project, signed_step, Adam};
pub use smooth::{gaussian_f32, gaussian_f32_adjoint};
pub use ssim::{ssim, ssim_with_gradient};
pub use warp::Warp;

use crate::error::{Result, VeilError};

/// Checks that `data` holds `width x height x channels` values.
pub(crate) fn check_len(name: &'static str, data: &[f32], width: usize, height: usize, channels: usize) -> Result<()> {
    if width == 0 || height == 0 || channels == 0 {
        return Err(VeilError::param(name, format!("must not be empty (got {width}x{height}x{channels})")));
    }
    let expected = width
        .checked_mul(height)
        .and_then(|n| n.checked_mul(channels))
        .ok_or_else(|| VeilError::param(name, "image is too large"))?;
    if data.len() != expected {
        return Err(VeilError::param(
            name,
            format!("expected {width}x{height}x{channels} = {expected} values, got {}", data.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
