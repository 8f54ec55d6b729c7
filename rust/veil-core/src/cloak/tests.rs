use super::*;
use proptest::prelude::*;

/// A deterministic pseudo-random vector (xorshift), values in [-1, 1).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

fn abs_dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (*x as f64 * *y as f64).abs()).sum()
}

fn assert_adjoint(ax_y: f64, x_aty: f64) {
    let rel = (ax_y - x_aty).abs() / ax_y.abs().max(x_aty.abs()).max(1e-12);
    assert!(rel < 1e-5, "<Ax,y> = {ax_y}, <x,A^T y> = {x_aty}, relative {rel}");
}

#[test]
fn similarity_recovers_a_known_transform() {
    let (s, th, tx, ty) = (1.7f64, 0.3f64, 12.5, -4.0);
    let src = [[30.0, 40.0], [70.0, 41.0], [50.0, 60.0], [35.0, 80.0], [66.0, 79.0]];
    let dst: Vec<[f64; 2]> = src
        .iter()
        .map(|p| [s * (th.cos() * p[0] - th.sin() * p[1]) + tx, s * (th.sin() * p[0] + th.cos() * p[1]) + ty])
        .collect();
    let m = similarity_transform(&src, &dst).unwrap();
    let want = [s * th.cos(), -s * th.sin(), tx, s * th.sin(), s * th.cos(), ty];
    for (a, b) in m.iter().zip(want) {
        assert!((a - b).abs() < 1e-9, "{m:?} vs {want:?}");
    }
    let inv = invert_affine(&m).unwrap();
    let back = invert_affine(&inv).unwrap();
    for (a, b) in m.iter().zip(back) {
        assert!((a - b).abs() < 1e-9);
    }
}

#[test]
fn similarity_rejects_bad_points() {
    assert!(similarity_transform(&[[1.0, 1.0]], &[[2.0, 2.0]]).is_err());
    assert!(similarity_transform(&[[1.0, 1.0], [1.0, 1.0]], &[[0.0, 0.0], [1.0, 0.0]]).is_err());
    assert!(similarity_transform(&[[f64::NAN, 1.0], [2.0, 1.0]], &[[0.0, 0.0], [1.0, 0.0]]).is_err());
    assert!(similarity_transform(&[[0.0, 1.0], [2.0, 1.0]], &[[0.0, 0.0]]).is_err());
    assert!(invert_affine(&[1.0, 2.0, 0.0, 2.0, 4.0, 0.0]).is_err());
}

fn check_warp_adjoint(w: &Warp, seed: u64) {
    let x = noise(w.src_width * w.src_height * w.channels, seed);
    let y = noise(w.out_width * w.out_height * w.channels, seed + 1);
    let ax = w.forward(&x).unwrap();
    let aty = w.adjoint(&y).unwrap();
    assert_adjoint(dot(&ax, &y), dot(&x, &aty));
}

#[test]
fn warp_adjoint_is_exact() {
    // Shrinking with rotation (a face crop from a big photo), enlarging, identity.
    let m = similarity_transform(
        &[[120.0, 150.0], [190.0, 148.0], [155.0, 190.0], [128.0, 230.0], [185.0, 231.0]],
        &[[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    )
    .unwrap();
    check_warp_adjoint(&Warp::new(300, 320, 112, 112, 3, &m).unwrap(), 1);
    check_warp_adjoint(&Warp::new(40, 30, 90, 70, 3, &[2.2, 0.3, -5.0, -0.3, 2.2, 4.0]).unwrap(), 2);
    check_warp_adjoint(&Warp::new(17, 9, 17, 9, 1, &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]).unwrap(), 3);
    check_warp_adjoint(&Warp::new(64, 64, 11, 7, 4, &[0.13, 0.0, 0.0, 0.0, 0.11, 0.0]).unwrap(), 4);
}

#[test]
fn warp_identity_and_constant() {
    let x = noise(13 * 11 * 3, 5);
    let id = Warp::new(13, 11, 13, 11, 3, &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]).unwrap();
    assert_eq!(id.forward(&x).unwrap(), x);
    // A constant image stays constant under any warp inside it (weights sum to 1).
    let ones = vec![1.0f32; 50 * 40];
    let w = Warp::new(50, 40, 20, 20, 1, &[0.37, 0.1, 3.0, -0.1, 0.37, 2.0]).unwrap();
    for v in w.forward(&ones).unwrap() {
        assert!((v - 1.0).abs() < 1e-5 || v == 0.0);
    }
    // Shrinking by 4 reaches every source pixel (no aliasing).
    let shrink = Warp::new(64, 64, 16, 16, 1, &[0.25, 0.0, 0.0, 0.0, 0.25, 0.0]).unwrap();
    let reach = shrink.adjoint(&vec![1.0; 256]).unwrap();
    assert!(reach.iter().all(|&v| v > 0.0));
}

#[test]
fn smoother_adjoint_is_exact_and_preserves_constants() {
    for (w, h, c, s) in [(31usize, 17usize, 3usize, 1.5f64), (5, 40, 1, 4.0), (1, 1, 2, 0.7), (60, 3, 3, 9.0)] {
        let x = noise(w * h * c, 11);
        let y = noise(w * h * c, 12);
        let ax = gaussian_f32(&x, w, h, c, s).unwrap();
        let aty = gaussian_f32_adjoint(&y, w, h, c, s).unwrap();
        assert_adjoint(dot(&ax, &y), dot(&x, &aty));
        let flat = gaussian_f32(&vec![7.0; w * h * c], w, h, c, s).unwrap();
        assert!(flat.iter().all(|v| (v - 7.0).abs() < 1e-4));
    }
}

#[test]
fn smoother_matches_a_direct_sum() {
    // Direct 2-D renormalised Gaussian, the obviously right reference.
    let (w, h, s) = (9usize, 7usize, 1.2f64);
    let x = noise(w * h, 21);
    let got = gaussian_f32(&x, w, h, 1, s).unwrap();
    let r = (3.0 * s).ceil() as i64;
    for yy in 0..h as i64 {
        for xx in 0..w as i64 {
            let (mut num, mut den) = (0.0f64, 0.0f64);
            let (mut dx, mut dy) = (0.0f64, 0.0f64);
            for k in -r..=r {
                let g = (-0.5 * (k as f64 / s).powi(2)).exp();
                if (0..w as i64).contains(&(xx + k)) {
                    dx += g;
                }
                if (0..h as i64).contains(&(yy + k)) {
                    dy += g;
                }
            }
            for j in -r..=r {
                for i in -r..=r {
                    let (px, py) = (xx + i, yy + j);
                    if (0..w as i64).contains(&px) && (0..h as i64).contains(&py) {
                        let g = (-0.5 * ((i * i + j * j) as f64) / (s * s)).exp();
                        num += g * x[(py as usize) * w + px as usize] as f64;
                        den += g;
                    }
                }
            }
            let _ = den;
            let want = num / (dx * dy);
            assert!((got[yy as usize * w + xx as usize] as f64 - want).abs() < 1e-5);
        }
    }
}

#[test]
fn ssim_is_one_for_identical_and_lower_for_noise() {
    let (w, h, c) = (24, 20, 3);
    let x: Vec<f32> = noise(w * h * c, 31).iter().map(|v| 128.0 + 60.0 * v).collect();
    assert!((ssim(&x, &x, w, h, c).unwrap() - 1.0).abs() < 1e-9);
    let y: Vec<f32> = x.iter().zip(noise(w * h * c, 32)).map(|(a, n)| a + 20.0 * n).collect();
    let s = ssim(&x, &y, w, h, c).unwrap();
    assert!(s < 0.95 && s > 0.0, "{s}");
    let (s2, g) = ssim_with_gradient(&x, &x, w, h, c).unwrap();
    assert!((s2 - 1.0).abs() < 1e-9);
    assert!(g.iter().all(|v| v.abs() < 1e-6), "SSIM is at its maximum: zero gradient");
}

#[test]
fn ssim_gradient_matches_finite_differences() {
    let (w, h, c) = (14, 12, 2);
    let x: Vec<f64> = noise(w * h * c, 41).iter().map(|v| 128.0 + 80.0 * *v as f64).collect();
    let y: Vec<f64> = x.iter().zip(noise(w * h * c, 42)).map(|(a, n)| a + 15.0 * n as f64).collect();
    let xf: Vec<f32> = x.iter().map(|v| *v as f32).collect();
    let yf: Vec<f32> = y.iter().map(|v| *v as f32).collect();
    let (_, g) = ssim_with_gradient(&xf, &yf, w, h, c).unwrap();
    // Directional derivative along a random direction, central differences.
    let d = noise(w * h * c, 43);
    let eps = 0.05f32;
    let plus: Vec<f32> = yf.iter().zip(&d).map(|(a, b)| a + eps * b).collect();
    let minus: Vec<f32> = yf.iter().zip(&d).map(|(a, b)| a - eps * b).collect();
    let fd = (ssim(&xf, &plus, w, h, c).unwrap() - ssim(&xf, &minus, w, h, c).unwrap()) / (2.0 * eps as f64);
    let an = dot(&g, &d);
    assert!((fd - an).abs() <= 2e-3 * an.abs().max(1e-6), "finite differences {fd}, analytic {an}");
    // And a few single coordinates, corners included.
    for &i in &[0usize, 5, w * c + 3, w * h * c - 1] {
        let mut p = yf.clone();
        let mut m = yf.clone();
        p[i] += 0.25;
        m[i] -= 0.25;
        let fd = (ssim(&xf, &p, w, h, c).unwrap() - ssim(&xf, &m, w, h, c).unwrap()) / 0.5;
        assert!((fd - g[i] as f64).abs() <= 2e-2 * (g[i] as f64).abs() + 1e-7, "pixel {i}: {fd} vs {}", g[i]);
    }
}

#[test]
fn optimizer_steps_descend_and_project() {
    let mut p = vec![0.0f32, 0.0, 0.0];
    signed_step(&mut p, &[1.0, -2.0, 0.0], 0.5).unwrap();
    assert_eq!(p, vec![-0.5, 0.5, 0.0]);
    let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
    let mut q = vec![0.0f32; 3];
    adam_step(&mut q, &[3.0, -0.001, 0.0], &mut m, &mut v, 1, &Adam { learning_rate: 0.1, ..Adam::default() }).unwrap();
    // First Adam step moves each coordinate by about the learning rate, against the gradient.
    assert!((q[0] + 0.1).abs() < 1e-4 && (q[1] - 0.1).abs() < 1e-3 && q[2] == 0.0, "{q:?}");
    let mut d = vec![10.0f32, -10.0, 3.0, f32::NAN];
    project(&mut d, &[250.0, 5.0, 100.0, 100.0], 8.0).unwrap();
    assert_eq!(d, vec![5.0, -5.0, 3.0, 0.0]);
    assert!(adam_step(&mut q, &[0.0; 3], &mut m, &mut v, 0, &Adam::default()).is_err());
    assert!(signed_step(&mut p, &[0.0; 2], 1.0).is_err());
    assert!(project(&mut d, &[0.0; 4], -1.0).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn warp_never_panics_and_stays_adjoint(
        sw in 1usize..40, sh in 1usize..40, ow in 1usize..30, oh in 1usize..30, c in 1usize..5,
        a in -3.0f64..3.0, b in -3.0f64..3.0, tx in -50.0f64..50.0, ty in -50.0f64..50.0,
        seed in 0u64..1000,
    ) {
        let m = [a, -b, tx, b, a, ty];
        if let Ok(w) = Warp::new(sw, sh, ow, oh, c, &m) {
            let x = noise(sw * sh * c, seed);
            let y = noise(ow * oh * c, seed + 7);
            let ax = w.forward(&x).unwrap();
            let aty = w.adjoint(&y).unwrap();
            prop_assert!(ax.iter().all(|v| v.is_finite() && v.abs() <= 1.0 + 1e-5));
            let (l, r) = (dot(&ax, &y), dot(&x, &aty));
            // Relative to the terms' magnitude, not the sums': the sums can
            // cancel to near zero while each float32 term keeps its rounding.
            let magnitude = abs_dot(&ax, &y).max(abs_dot(&x, &aty));
            prop_assert!((l - r).abs() <= 1e-5 * magnitude.max(1e-3), "{l} vs {r} (terms {magnitude})");
            prop_assert!(w.forward(&x[1..]).is_err());
        }
    }

    #[test]
    fn smoother_and_ssim_never_panic(
        w in 1usize..30, h in 1usize..30, c in 1usize..4, sigma in 0.0f64..12.0, seed in 0u64..1000,
    ) {
        let x: Vec<f32> = noise(w * h * c, seed).iter().map(|v| 128.0 + 127.0 * v).collect();
        let y: Vec<f32> = noise(w * h * c, seed + 1).iter().map(|v| 128.0 + 127.0 * v).collect();
        let s = gaussian_f32(&x, w, h, c, sigma).unwrap();
        prop_assert!(s.iter().all(|v| *v >= 0.0 && *v <= 255.01));
        let _ = gaussian_f32_adjoint(&y, w, h, c, sigma).unwrap();
        let (v, g) = ssim_with_gradient(&x, &y, w, h, c).unwrap();
        prop_assert!(v.is_finite() && v <= 1.0 + 1e-9 && v >= -1.0 - 1e-9);
        prop_assert!(g.iter().all(|v| v.is_finite()));
        prop_assert!(gaussian_f32(&x, w, h, c, -1.0).is_err());
        prop_assert!(ssim(&x, &y[1..], w, h, c).is_err());
    }
}

#[test]
fn masking_map_is_low_on_flat_and_high_on_texture() {
    // Left half flat grey, right half a checkerboard of +-40 levels.
    let (w, h) = (64usize, 32usize);
    let mut img = vec![0.0f32; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let v = if x < w / 2 { 128.0 } else if (x + y) % 2 == 0 { 168.0 } else { 88.0 };
            img[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[v, v, v]);
        }
    }
    let m = masking_map(&img, w, h, 3, 2.0, 12.0, 0.25).unwrap();
    assert_eq!(m.len(), w * h);
    assert!(m.iter().all(|v| (0.25..=1.0).contains(v)));
    let at = |x: usize, y: usize| m[y * w + x];
    assert!((at(2, 16) - 0.25).abs() < 1e-3, "flat: {}", at(2, 16));
    assert!(at(60, 16) > 0.99, "texture: {}", at(60, 16));
    // The bound changes gradually across the border, never in one step.
    for x in 1..w {
        assert!((at(x, 16) - at(x - 1, 16)).abs() < 0.3);
    }
    assert!(masking_map(&img, w, h, 3, 2.0, 0.0, 0.25).is_err());
    assert!(masking_map(&img, w, h, 3, 2.0, 12.0, 1.5).is_err());
    assert!(masking_map(&img[1..], w, h, 3, 2.0, 12.0, 0.25).is_err());
}

#[test]
fn project_map_clamps_per_pixel() {
    let original = vec![250.0f32, 10.0, 100.0, 100.0, 100.0, 100.0];
    let mut delta = vec![20.0f32, -20.0, 20.0, -20.0, 20.0, f32::NAN];
    project_map(&mut delta, &original, &[8.0, 3.0], 3).unwrap();
    assert_eq!(delta[..3], [5.0, -8.0, 8.0]);
    assert_eq!(delta[3..], [-3.0, 3.0, 0.0]);
    assert!(project_map(&mut delta, &original, &[8.0], 3).is_err());
    assert!(project_map(&mut delta, &original, &[8.0, -1.0], 3).is_err());
}
