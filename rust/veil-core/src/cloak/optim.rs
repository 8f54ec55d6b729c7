//! Optimizer steps and projections on a perturbation `delta` (pixel levels).
//! Both steps *descend*: they lower the loss whose gradient they are given.

use crate::error::{check_range, Result, VeilError};

/// Adam's settings (Kingma & Ba 2015).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    pub learning_rate: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
}

impl Default for Adam {
    fn default() -> Self {
        Self { learning_rate: 1.0, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 }
    }
}

fn same_len(name: &'static str, a: usize, b: usize) -> Result<()> {
    if a != b {
        return Err(VeilError::param(name, format!("has {b} values, expected {a} (as many as the parameters)")));
    }
    Ok(())
}

/// One Adam step (step `t`, counted from 1) on `param`, updating the moment
/// estimates `m` and `v` in place.
pub fn adam_step(param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], t: u32, adam: &Adam) -> Result<()> {
    same_len("grad", param.len(), grad.len())?;
    same_len("m", param.len(), m.len())?;
    same_len("v", param.len(), v.len())?;
    if t == 0 {
        return Err(VeilError::param("step", "counts from 1"));
    }
    check_range("learning_rate", adam.learning_rate as f64, 0.0, 1e6)?;
    check_range("beta1", adam.beta1 as f64, 0.0, 0.999_999)?;
    check_range("beta2", adam.beta2 as f64, 0.0, 0.999_999_9)?;
    check_range("epsilon", adam.epsilon as f64, 1e-30, 1.0)?;
    let c1 = 1.0 - (adam.beta1 as f64).powi(t.min(1 << 20) as i32);
    let c2 = 1.0 - (adam.beta2 as f64).powi(t.min(1 << 20) as i32);
    // Bias corrections folded into the step size, as in the paper's
    // "efficient version" (section 2).
    let step = (adam.learning_rate as f64 * c2.sqrt() / c1) as f32;
    let eps = adam.epsilon * c2.sqrt() as f32;
    let (b1, b2) = (adam.beta1, adam.beta2);
    for i in 0..param.len() {
        let g = if grad[i].is_finite() { grad[i] } else { 0.0 };
        m[i] = b1 * m[i] + (1.0 - b1) * g;
        v[i] = b2 * v[i] + (1.0 - b2) * g * g;
        param[i] -= step * m[i] / (v[i].sqrt() + eps);
    }
    Ok(())
}

/// One signed-gradient step (the L-infinity steepest descent of FGSM/PGD):
/// `param -= step_size * sign(grad)`; a zero or non-finite gradient does not move.
pub fn signed_step(param: &mut [f32], grad: &[f32], step_size: f32) -> Result<()> {
    same_len("grad", param.len(), grad.len())?;
    check_range("step_size", step_size as f64, 0.0, 255.0)?;
    for (p, &g) in param.iter_mut().zip(grad) {
        if g > 0.0 {
            *p -= step_size;
        } else if g < 0.0 {
            *p += step_size;
        }
    }
    Ok(())
}

/// Projects `delta` so that `|delta| <= linf` and `original + delta` lies in
/// `0..=255`, in place (the L-infinity ball and the box intersect in a box,
/// so clamping to both is the exact Euclidean projection).
pub fn project(delta: &mut [f32], original: &[f32], linf: f32) -> Result<()> {
    same_len("original", delta.len(), original.len())?;
    check_range("linf", linf as f64, 0.0, 255.0)?;
    for (d, &o) in delta.iter_mut().zip(original) {
        let lo = (-linf).max(0.0 - o);
        let hi = linf.min(255.0 - o);
        *d = if d.is_nan() { 0.0 } else { d.clamp(lo.min(hi), hi.max(lo)) };
    }
    Ok(())
}
