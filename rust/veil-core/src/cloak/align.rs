//! Face alignment: the similarity transform (rotation, uniform scale,
//! translation) that best takes detected landmarks onto a template.

use crate::error::{Result, VeilError};

/// A 2x3 affine map, row-major: `x' = m[0] x + m[1] y + m[2]`,
/// `y' = m[3] x + m[4] y + m[5]`.
pub type Affine = [f64; 6];

/// The least-squares similarity transform taking `src` points onto `dst`
/// (Umeyama 1991, "Least-squares estimation of transformation parameters
/// between two point patterns", restricted to proper rotations).
///
/// In 2-D the optimum has a closed form: with both point sets centred,
/// the linear part is `[[a, -b], [b, a]]` with `a = sum(p . q) / sum(|p|^2)`
/// and `b = sum(p x q) / sum(|p|^2)`; this is exactly Umeyama's rotation
/// and scale (including his reflection correction, which only ever selects
/// the proper rotation that this form is restricted to).
pub fn similarity_transform(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Result<Affine> {
    if src.len() != dst.len() {
        return Err(VeilError::param(
            "landmarks",
            format!("need as many points as the template has ({} vs {})", src.len(), dst.len()),
        ));
    }
    if src.len() < 2 {
        return Err(VeilError::param("landmarks", format!("need at least 2 points, got {}", src.len())));
    }
    if src.iter().chain(dst).flatten().any(|v| !v.is_finite()) {
        return Err(VeilError::param("landmarks", "points must be finite numbers"));
    }
    let n = src.len() as f64;
    let mean = |pts: &[[f64; 2]]| {
        let (sx, sy) = pts.iter().fold((0.0, 0.0), |(sx, sy), p| (sx + p[0], sy + p[1]));
        [sx / n, sy / n]
    };
    let (ms, md) = (mean(src), mean(dst));
    let (mut dot, mut cross, mut norm) = (0.0, 0.0, 0.0);
    for (s, d) in src.iter().zip(dst) {
        let (px, py) = (s[0] - ms[0], s[1] - ms[1]);
        let (qx, qy) = (d[0] - md[0], d[1] - md[1]);
        dot += px * qx + py * qy;
        cross += px * qy - py * qx;
        norm += px * px + py * py;
    }
    // Points all (nearly) at one place: no scale or rotation is defined.
    let spread = src.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs())).max(1.0);
    if norm <= 1e-12 * spread * spread * n {
        return Err(VeilError::param("landmarks", "points coincide: no alignment is defined"));
    }
    let (a, b) = (dot / norm, cross / norm);
    if a == 0.0 && b == 0.0 {
        return Err(VeilError::param("landmarks", "degenerate points: the fitted scale is zero"));
    }
    Ok([a, -b, md[0] - (a * ms[0] - b * ms[1]), b, a, md[1] - (b * ms[0] + a * ms[1])])
}

/// The inverse of an affine map; an error if it is singular or not finite.
pub fn invert_affine(m: &Affine) -> Result<Affine> {
    if m.iter().any(|v| !v.is_finite()) {
        return Err(VeilError::param("matrix", "must hold finite numbers"));
    }
    let det = m[0] * m[4] - m[1] * m[3];
    let scale = m[0].abs().max(m[1].abs()).max(m[3].abs()).max(m[4].abs());
    if det == 0.0 || det.abs() <= 1e-12 * scale * scale {
        return Err(VeilError::param("matrix", "is singular (it collapses the image)"));
    }
    let (ia, ib, ic, id) = (m[4] / det, -m[1] / det, -m[3] / det, m[0] / det);
    Ok([ia, ib, -(ia * m[2] + ib * m[5]), ic, id, -(ic * m[2] + id * m[5])])
}
