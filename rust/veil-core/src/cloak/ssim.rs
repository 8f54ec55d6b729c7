//! SSIM (Wang, Bovik, Sheikh & Simoncelli 2004) and its gradient.
//!
//! The standard settings: an 11-tap Gaussian window of sigma 1.5 px,
//! `C1 = (0.01 L)^2`, `C2 = (0.03 L)^2` with `L = 255`, each channel on its
//! own, and the mean over every pixel and channel. The window is
//! [`super::smooth`]'s renormalised Gaussian (radius `ceil(3 sigma) = 5`),
//! so the SSIM map covers the whole image, borders included.
//!
//! With `mu = G x`, `Exy = G (x y)`, `Eyy = G (y y)`, the map is
//! `S = A1 A2 / (B1 B2)`, `A1 = 2 mux muy + C1`, `A2 = 2 (Exy - mux muy) + C2`,
//! `B1 = mux^2 + muy^2 + C1`, `B2 = var x + Eyy - muy^2 + C2`, and
//! `d mean(S) / d y = (G^T dS/dmuy + x G^T dS/dExy + 2 y G^T dS/dEyy) / n`.

use super::check_len;
use super::smooth::{gaussian_f32, gaussian_f32_adjoint};
use crate::error::{Result, VeilError};

/// The window's standard deviation in pixels.
pub const WINDOW_SIGMA_PX: f64 = 1.5;
const C1: f64 = (0.01 * 255.0) * (0.01 * 255.0);
const C2: f64 = (0.03 * 255.0) * (0.03 * 255.0);

struct Stats {
    mux: Vec<f32>,
    muy: Vec<f32>,
    exx: Vec<f32>,
    exy: Vec<f32>,
    eyy: Vec<f32>,
}

fn check(x: &[f32], y: &[f32], width: usize, height: usize, channels: usize) -> Result<()> {
    check_len("original", x, width, height, channels)?;
    check_len("image", y, width, height, channels)?;
    if x.iter().chain(y).any(|v| !v.is_finite()) {
        return Err(VeilError::param("image", "values must be finite"));
    }
    Ok(())
}

fn stats(x: &[f32], y: &[f32], w: usize, h: usize, c: usize) -> Result<Stats> {
    let g = |d: &[f32]| gaussian_f32(d, w, h, c, WINDOW_SIGMA_PX);
    let sq = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| p * q).collect::<Vec<f32>>();
    let mux = g(x)?;
    let muy = g(y)?;
    Ok(Stats { mux, muy, exx: g(&sq(x, x))?, exy: g(&sq(x, y))?, eyy: g(&sq(y, y))? })
}

/// Mean SSIM of `y` against the reference `x` (same size, levels 0..255).
pub fn ssim(x: &[f32], y: &[f32], width: usize, height: usize, channels: usize) -> Result<f64> {
    check(x, y, width, height, channels)?;
    let s = stats(x, y, width, height, channels)?;
    let mut total = 0.0f64;
    for i in 0..x.len() {
        let (mx, my) = (s.mux[i] as f64, s.muy[i] as f64);
        let a1 = 2.0 * mx * my + C1;
        let a2 = 2.0 * (s.exy[i] as f64 - mx * my) + C2;
        let b1 = mx * mx + my * my + C1;
        let b2 = s.exx[i] as f64 - mx * mx + s.eyy[i] as f64 - my * my + C2;
        total += a1 * a2 / (b1 * b2);
    }
    Ok(total / x.len() as f64)
}

/// Mean SSIM of `y` against `x`, and its gradient with respect to `y`.
pub fn ssim_with_gradient(x: &[f32], y: &[f32], width: usize, height: usize, channels: usize) -> Result<(f64, Vec<f32>)> {
    check(x, y, width, height, channels)?;
    let s = stats(x, y, width, height, channels)?;
    let n = x.len();
    let inv_n = 1.0 / n as f64;
    let (mut d_muy, mut d_exy, mut d_eyy) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
    let mut total = 0.0f64;
    for i in 0..n {
        let (mx, my) = (s.mux[i] as f64, s.muy[i] as f64);
        let a1 = 2.0 * mx * my + C1;
        let a2 = 2.0 * (s.exy[i] as f64 - mx * my) + C2;
        let b1 = mx * mx + my * my + C1;
        let b2 = s.exx[i] as f64 - mx * mx + s.eyy[i] as f64 - my * my + C2;
        let den = b1 * b2;
        let map = a1 * a2 / den;
        total += map;
        d_muy[i] = ((2.0 * mx * (a2 - a1) / den - 2.0 * my * map / b1 + 2.0 * my * map / b2) * inv_n) as f32;
        d_exy[i] = ((2.0 * a1 / den) * inv_n) as f32;
        d_eyy[i] = ((-map / b2) * inv_n) as f32;
    }
    let gt = |d: &[f32]| gaussian_f32_adjoint(d, width, height, channels, WINDOW_SIGMA_PX);
    let (g_muy, g_exy, g_eyy) = (gt(&d_muy)?, gt(&d_exy)?, gt(&d_eyy)?);
    let grad = (0..n).map(|i| g_muy[i] + x[i] * g_exy[i] + 2.0 * y[i] * g_eyy[i]).collect();
    Ok((total * inv_n, grad))
}
