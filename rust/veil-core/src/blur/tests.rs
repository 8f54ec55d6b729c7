use super::*;
use crate::image::Image;
use proptest::prelude::*;

/// Exact separable Gaussian in f64 with the nearest border rule and the
/// same sampled, 4-sigma kernel (what scipy.ndimage.gaussian_filter does).
fn exact_gaussian(src: &Image, sigma: f64) -> Vec<f64> {
    let radius = (4.0 * sigma + 0.5) as isize;
    let mut k: Vec<f64> = (-radius..=radius).map(|x| (-0.5 * (x * x) as f64 / (sigma * sigma)).exp()).collect();
    let s: f64 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    let (w, h, c) = (src.width as isize, src.height as isize, src.channels as isize);
    let at = |x: isize, y: isize, ch: isize| src.data[((y.clamp(0, h - 1) * w + x.clamp(0, w - 1)) * c + ch) as usize] as f64;
    let mut tmp = vec![0f64; src.data.len()];
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                tmp[((y * w + x) * c + ch) as usize] = (-radius..=radius).map(|j| k[(j + radius) as usize] * at(x + j, y, ch)).sum();
            }
        }
    }
    let tat = |x: isize, y: isize, ch: isize| tmp[((y.clamp(0, h - 1) * w + x) * c + ch) as usize];
    let mut out = vec![0f64; src.data.len()];
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                out[((y * w + x) * c + ch) as usize] = (-radius..=radius).map(|j| k[(j + radius) as usize] * tat(x, y + j, ch)).sum();
            }
        }
    }
    out
}

fn max_error(out: &[u8], exact: &[f64]) -> f64 {
    out.iter().zip(exact).map(|(&o, &e)| (o as f64 - e).abs()).fold(0.0, f64::max)
}

fn blur(src: &Image, sigma: f64, threads: usize) -> Vec<u8> {
    let mut dst = vec![0u8; src.data.len()];
    gaussian_blur(src.view(), &mut dst, sigma, threads).unwrap();
    dst
}

/// A black/white step, across x (`vertical_edge`) or across y.
fn step(len: usize, across: usize, vertical_edge: bool) -> Image {
    let (w, h) = if vertical_edge { (len, across) } else { (across, len) };
    let mut img = Image::new(w, h, 1).unwrap();
    for y in 0..h {
        for x in 0..w {
            let t = if vertical_edge { x } else { y };
            img.data[y * w + x] = if t >= len / 2 { 255 } else { 0 };
        }
    }
    img
}

#[test]
fn gaussian_within_3_lsb_of_exact_on_step_edges() {
    // A geometric sweep of 0.5..250 px, with the edge at varying phases
    // relative to the reduction blocks (len/2 changes with sigma).
    let sigmas = (0..=90).map(|i| 0.5 * (500f64).powf(i as f64 / 90.0));
    let mut worst = 0.0f64;
    for sigma in sigmas {
        let len = ((sigma * 10.0) as usize).max(40) + (sigma * 7.0) as usize % 13;
        for vertical_edge in [true, false] {
            let img = step(len, 3, vertical_edge);
            let err = max_error(&blur(&img, sigma, 1), &exact_gaussian(&img, sigma));
            assert!(err <= 3.0, "sigma {sigma}: step-edge error {err:.2} LSB");
            worst = worst.max(err);
        }
    }
    eprintln!("worst step-edge error over all sigmas: {worst:.2} LSB");
}

/// Four quadrants, black and white crossed: edges in both directions and
/// corners, where the errors of the two passes add up.
#[test]
fn gaussian_within_3_lsb_of_exact_at_corners() {
    // Every phase of the corner against the reduction blocks (up to k = 4).
    let cases = (0..=24).flat_map(|i| (0..4).map(move |shift| (0.5 * (200f64).powf(i as f64 / 24.0), shift)));
    let mut worst = 0.0f64;
    for (sigma, shift) in cases {
        let size = ((sigma * 8.0) as usize).max(30) + shift;
        let mut img = Image::new(size, size, 1).unwrap();
        let edge = size / 2 + shift;
        for y in 0..size {
            for x in 0..size {
                let white = (x >= edge) != (y >= edge);
                img.data[y * size + x] = if white { 255 } else { 0 };
            }
        }
        let err = max_error(&blur(&img, sigma, 1), &exact_gaussian(&img, sigma));
        if err > 2.3 { eprintln!("sigma {sigma:.2} shift {shift}: {err:.2}"); }
        assert!(err <= 3.0, "sigma {sigma}: corner error {err:.2} LSB");
        worst = worst.max(err);
    }
    eprintln!("worst corner error over all sigmas: {worst:.2} LSB");
}

/// A deterministic textured image: smooth gradients plus hashed detail,
/// standing in for a natural photo (the pytest suite uses real ones).
fn textured(w: usize, h: usize, c: usize) -> Image {
    let mut img = Image::new(w, h, c).unwrap();
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                let smooth = 128.0 + 90.0 * ((x as f64 * 0.05 + ch as f64).sin() * (y as f64 * 0.03).cos());
                let detail = ((x * 7919 + y * 104729 + ch * 31) % 61) as f64 - 30.0;
                img.data[(y * w + x) * c + ch] = (smooth + detail).clamp(0.0, 255.0) as u8;
            }
        }
    }
    img
}

#[test]
fn gaussian_mean_error_under_1_lsb_on_texture() {
    let img = textured(160, 120, 3);
    for sigma in [0.5, 1.0, 2.5, 4.0, 6.0, 10.0, 25.0] {
        let exact = exact_gaussian(&img, sigma);
        let out = blur(&img, sigma, 1);
        let mae = out.iter().zip(&exact).map(|(&o, &e)| (o as f64 - e).abs()).sum::<f64>() / out.len() as f64;
        assert!(mae <= 1.0, "sigma {sigma}: mean abs error {mae:.3}");
    }
}

#[test]
fn shared_reduced_copy_gives_the_bytes_of_one_thread() {
    // Reductions from small to large, RGB and RGBA, with bands (one per
    // thread) shorter than their halo.
    for c in [3, 4] {
        let img = textured(301, 203, c);
        for sigma in [7.0, 10.0, 33.0, 100.0] {
            let (k, reduced) = gaussian_plan(sigma);
            let pad = fixed::Kernel::new(reduced, TRUNCATE_SIGMAS).radius() + 1;
            assert!(shares_reduced_copy(img.height, 2, k, pad));
            let one = blur(&img, sigma, 1);
            assert!(one == blur(&img, sigma, 2) && one == blur(&img, sigma, 3), "c={c} sigma {sigma}");
        }
    }
}

#[test]
fn gaussian_keeps_alpha_and_blurs_colour_under_transparency() {
    let mut img = textured(40, 30, 4);
    for px in img.data.chunks_exact_mut(4) {
        px[3] = 0; // fully transparent: the colour must still be blurred
    }
    let out = blur(&img, 3.0, 1);
    let rgb = |d: &[u8]| d.chunks_exact(4).map(|p| [p[0], p[1], p[2]]).collect::<Vec<_>>();
    assert!(out.chunks_exact(4).all(|p| p[3] == 0));
    assert_ne!(rgb(&out), rgb(&img.data));
}

#[test]
fn gaussian_rejects_bad_sigma() {
    let img = Image::new(4, 4, 3).unwrap();
    let mut dst = vec![0u8; 48];
    for sigma in [f64::NAN, f64::INFINITY, -1.0, 0.0, 0.49, 250.1] {
        let err = gaussian_blur(img.view(), &mut dst, sigma, 1).unwrap_err();
        assert!(matches!(err, VeilError::InvalidParameter { name: "sigma_px", .. }), "{sigma}");
    }
    assert!(gaussian_blur(img.view(), &mut dst[..47], 1.0, 1).is_err());
}

fn box_reference(src: &Image, r: usize) -> Vec<u8> {
    let (w, h, c) = (src.width as i64, src.height as i64, src.channels as i64);
    let r = r as i64;
    let mut out = vec![0u8; src.data.len()];
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                let mut sum = 0u64;
                for yy in y - r..=y + r {
                    for xx in x - r..=x + r {
                        sum += src.data[((yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)) * c + ch) as usize] as u64;
                    }
                }
                let n = ((2 * r + 1) * (2 * r + 1)) as f64;
                out[((y * w + x) * c + ch) as usize] = (sum as f64 / n + 0.5) as u8;
            }
        }
    }
    out
}

#[test]
fn box_blur_matches_brute_force_within_1() {
    for &(w, h, c, r) in &[(1, 1, 1, 3), (7, 5, 3, 1), (9, 13, 4, 2), (10, 3, 1, 25), (17, 11, 3, 8), (5, 40, 3, 100)] {
        let img = textured(w, h, c);
        let mut dst = vec![0u8; img.data.len()];
        box_blur(img.view(), &mut dst, r, 1).unwrap();
        let want = box_reference(&img, r);
        for (i, (&a, &b)) in dst.iter().zip(&want).enumerate() {
            if c == 4 && i % 4 == 3 {
                assert_eq!(a, img.data[i], "alpha kept");
            } else {
                assert!((a as i32 - b as i32).abs() <= 1, "{w}x{h}x{c} r={r} at {i}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn box_column_sums_give_the_bytes_of_the_row_sums() {
    // Rows longer than a chunk (edge and inner chunks), images narrower and
    // shorter than the window, every radius the column path takes, and
    // several bands (threads 3).
    for &(w, h, c) in &[(1500, 9, 3), (700, 7, 4), (3, 40, 3), (1, 1, 4), (9, 2, 1), (520, 30, 4)] {
        let img = textured(w, h, c);
        for r in 1..=16 {
            let Some(_) = box_column_plan(r) else { continue };
            let mut got = vec![0u8; img.data.len()];
            box_blur(img.view(), &mut got, r, 3).unwrap();
            let mut want = vec![0u8; img.data.len()];
            box_band_sums(&img.view(), r, 0, &mut want);
            assert!(got == want, "{w}x{h}x{c} r={r}");
        }
    }
    assert!(box_column_plan(15).is_some() && box_column_plan(16).is_none());
}

#[test]
fn box_blur_huge_radius_uses_wide_accumulators() {
    let img = textured(6, 4, 3);
    let mut dst = vec![0u8; img.data.len()];
    box_blur(img.view(), &mut dst, 1_000_000, 1).unwrap();
    // As r grows the window is almost all copies of the four corner pixels.
    let mut dst2 = vec![0u8; img.data.len()];
    box_blur(img.view(), &mut dst2, 10_000_000, 1).unwrap();
    for (&a, &b) in dst.iter().zip(&dst2) {
        assert!((a as i32 - b as i32).abs() <= 1);
    }
}

fn any_image() -> impl Strategy<Value = Image> {
    (1usize..200, 1usize..200, prop::sample::select(vec![1usize, 3, 4]), any::<u64>()).prop_map(|(w, h, c, seed)| {
        let mut img = Image::new(w, h, c).unwrap();
        let mut s = seed | 1;
        for v in img.data.iter_mut() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            *v = (s >> 24) as u8;
        }
        img
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn gaussian_never_panics_stays_in_range_and_threads_agree(img in any_image(), sigma in 0.5f64..250.0) {
        let one = blur(&img, sigma, 1);
        let two = blur(&img, sigma, 2);
        let four = blur(&img, sigma, 4);
        prop_assert_eq!(&one, &two);
        prop_assert_eq!(&one, &four);
        // A blur of values in [lo, hi] stays within [lo, hi] per channel.
        let c = img.channels;
        for ch in 0..c {
            let vals = img.data.iter().skip(ch).step_by(c);
            let (lo, hi) = vals.fold((255u8, 0u8), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            for &v in one.iter().skip(ch).step_by(c) {
                prop_assert!(v >= lo && v <= hi);
            }
        }
    }

    #[test]
    fn box_never_panics_and_threads_agree(img in any_image(), radius in 0usize..500) {
        let mut one = vec![0u8; img.data.len()];
        let mut two = vec![0u8; img.data.len()];
        box_blur(img.view(), &mut one, radius, 1).unwrap();
        box_blur(img.view(), &mut two, radius, 3).unwrap();
        prop_assert_eq!(one, two);
    }

    #[test]
    fn pixelate_never_panics_and_threads_agree(img in any_image(), block in 1usize..400, ox in -500i64..500, oy in -500i64..500) {
        let mut one = vec![0u8; img.data.len()];
        let mut two = vec![0u8; img.data.len()];
        crate::pixelate::pixelate(img.view(), &mut one, block, ox, oy, 1).unwrap();
        crate::pixelate::pixelate(img.view(), &mut two, block, ox, oy, 2).unwrap();
        prop_assert_eq!(one, two);
    }
}

/// Sigmas across the whole full-resolution (fixed-point) range, ending
/// just below the first that takes a reduced copy.
fn full_resolution_sigmas() -> Vec<f64> {
    let routed = |s: f64| gaussian_plan(s).0 == 1;
    let (mut top, mut above) = (1.5, 8.0);
    assert!(routed(top) && !routed(above));
    for _ in 0..40 {
        let mid = 0.5 * (top + above);
        if routed(mid) { top = mid } else { above = mid }
    }
    let mut sigmas: Vec<f64> = (0..=16).map(|i| 0.5 + (top - 0.5) * i as f64 / 16.0).collect();
    sigmas.extend([1.0, 1.99, 2.0, 2.09, 2.1, 3.0]);
    sigmas.retain(|&s| routed(s));
    sigmas
}

/// RGB edges in both directions and corners, every channel different, at
/// every full-resolution sigma; the same as RGBA with an alpha gradient
/// that must come back unchanged. Odd sizes, and rows wider than a column
/// strip, so strips, their halos and the vector tails are all crossed by
/// edges.
#[test]
fn full_resolution_within_3_lsb_on_rgb_and_rgba_edges_and_corners() {
    let sigmas = full_resolution_sigmas();
    let mut worst = [0.0f64; 2];
    for (i, &sigma) in sigmas.iter().enumerate() {
        // Two strips (RGB and RGBA alike: alpha is not filtered).
        let (w, h) = (fixed::MAX_STRIP_VALUES / 3 + 37 + 2 * i, 9 + i / 2);
        let strip = fixed::strip_pixels(w, 3);
        assert!(strip < w);
        let mut img = Image::new(w, h, 3).unwrap();
        for y in 0..h {
            for x in 0..w {
                for ch in 0..3 {
                    // Vertical edges at a strip boundary and near the
                    // right end, a horizontal one, and corners.
                    let on = match ch { 0 => x >= strip - 1 || (x % 97) < 11, 1 => y >= h / 3, _ => (x >= w / 2 + 5) != (y >= h / 2) };
                    img.data[(y * w + x) * 3 + ch] = if on { 255 } else { 0 };
                }
            }
        }
        let err = max_error(&blur(&img, sigma, 1), &exact_gaussian(&img, sigma));
        assert!(err <= 3.0, "RGB sigma {sigma}: error {err:.2} LSB");
        worst[0] = worst[0].max(err);
        let mut rgba = Image::new(w, h, 4).unwrap();
        for (i, (d, s)) in rgba.data.chunks_exact_mut(4).zip(img.data.chunks_exact(3)).enumerate() {
            d[..3].copy_from_slice(s);
            d[3] = (i * 7 % 256) as u8;
        }
        let out = blur(&rgba, sigma, 2);
        let exact = exact_gaussian(&rgba, sigma);
        for (i, (&o, &e)) in out.iter().zip(&exact).enumerate() {
            if i % 4 == 3 {
                assert_eq!(o, rgba.data[i], "alpha kept");
            } else {
                let err = (o as f64 - e).abs();
                assert!(err <= 3.0, "RGBA sigma {sigma}: {o} vs {e:.2}");
                worst[1] = worst[1].max(err);
            }
        }
    }
    eprintln!("worst error at full resolution: RGB {:.2} LSB, RGBA {:.2} LSB", worst[0], worst[1]);
}

/// The fixed-point weights: exactly 1 in total, so flat areas stay flat,
/// with the support the truncation says.
#[test]
fn fixed_point_weights_sum_to_one() {
    for sigma in full_resolution_sigmas() {
        let k = fixed::Kernel::new(sigma, FIXED_TRUNCATE_SIGMAS);
        assert_eq!(k.radius(), (FIXED_TRUNCATE_SIGMAS * sigma + 0.5) as usize);
        assert_eq!(k.w[0] as i32 + 2 * k.w[1..].iter().map(|&v| v as i32).sum::<i32>(), 32768, "sigma {sigma}");
        assert!(k.w.windows(2).all(|p| p[0] >= p[1]), "sigma {sigma}: {:?}", k.w);
    }
}

/// The vector builds (AVX-512 and AVX2 here, simd128 in the page) give the
/// bits of the one-lane arithmetic, on rows shorter than a vector, rows
/// that end mid-vector, several strips, and images shorter than the
/// kernel; and 1, 2 or 3 threads give the same bytes.
#[test]
fn fixed_point_vectors_and_threads_give_the_bytes_of_one_lane() {
    let sizes = [(1, 1), (3, 2), (7, 5), (11, 40), (33, 9), (517, 13), (1031, 7), (5600, 3)];
    for &(w, h) in &sizes {
        for c in [1, 3, 4] {
            let img = textured(w, h, c);
            for sigma in [0.5, 1.3, 2.0, 2.7, 3.34, 3.99, 4.5] {
                let kernel = fixed::Kernel::new(sigma, FIXED_TRUNCATE_SIGMAS);
                let mut want = vec![0u8; img.data.len()];
                fixed::gaussian_band_scalar(&img.view(), &kernel, 0, &mut want);
                let mut one = vec![0u8; img.data.len()];
                fixed::gaussian_band(&img.view(), &kernel, 0, &mut one);
                assert!(one == want, "{w}x{h}x{c} sigma {sigma}: vector and one-lane bytes differ");
                let mut avx2 = vec![0u8; img.data.len()];
                if fixed::gaussian_band_avx2(&img.view(), &kernel, 0, &mut avx2) {
                    assert!(avx2 == want, "{w}x{h}x{c} sigma {sigma}: AVX2 and one-lane bytes differ");
                }
                if gaussian_plan(sigma).0 == 1 {
                    assert!(one == blur(&img, sigma, 1), "{w}x{h}x{c} sigma {sigma}: not the full-resolution bytes");
                    assert!(one == blur(&img, sigma, 2) && one == blur(&img, sigma, 3), "{w}x{h}x{c} sigma {sigma}: threads differ");
                }
            }
        }
    }
}

/// RGBA goes through every path with its colour filtered as RGB and its
/// alpha copied: the colour bytes are those of the same image as RGB, on
/// sizes that cross vector tails, with 1 and 2 threads.
#[test]
fn rgba_colour_is_the_rgb_blur_and_alpha_is_kept() {
    for &(w, h) in &[(5, 3), (61, 47), (301, 203)] {
        let rgb = textured(w, h, 3);
        let mut rgba = Image::new(w, h, 4).unwrap();
        for (i, (d, s)) in rgba.data.chunks_exact_mut(4).zip(rgb.data.chunks_exact(3)).enumerate() {
            d[..3].copy_from_slice(s);
            d[3] = (i * 13 % 256) as u8;
        }
        for sigma in [0.5, 2.0, 3.0, 3.9, 4.6, 5.0, 6.0, 10.0, 33.0, 100.0] {
            let want = blur(&rgb, sigma, 1);
            for threads in [1, 2] {
                let got = blur(&rgba, sigma, threads);
                for (p, (g, (a, s))) in got.chunks_exact(4).zip(want.chunks_exact(3).zip(rgba.data.chunks_exact(4))).enumerate() {
                    assert!(g[..3] == a[..] && g[3] == s[3], "{w}x{h} sigma {sigma} threads {threads}: pixel {p}");
                }
            }
        }
    }
}

/// The Q6 passes that blur the reduced copies give the bits of the
/// one-lane arithmetic, for every radius, channel count and a row length
/// that ends mid-vector.
#[test]
fn fixed_point_reduced_passes_give_the_bits_of_one_lane() {
    let mut s = 12345u64;
    let mut q6 = |n: usize| -> Vec<i16> {
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 20) % 16321) as i16
            })
            .collect()
    };
    for r in 1..=fixed::MAX_RADIUS {
        let sigma = (r as f64 - 0.4) / TRUNCATE_SIGMAS;
        let Some(k) = (sigma >= 0.25).then(|| fixed::Kernel::new(sigma, TRUNCATE_SIGMAS)) else { continue };
        let r = k.radius();
        for c in [1, 3] {
            for n in [5 * c, 203 * c] {
                let ext = q6(n + 2 * r * c);
                let ring = q6(n * (2 * r + 1));
                let offs: Vec<usize> = (0..=2 * r).map(|t| ((t * 7) % (2 * r + 1)) * n).collect();
                let (mut row, mut col) = (vec![0i16; n], vec![0i16; n]);
                fixed::filter_row(&ext, c, &k, &mut row);
                fixed::filter_column(&ring, &offs, &k, &mut col);
                let (mut row1, mut col1) = (vec![0i16; n], vec![0i16; n]);
                fixed::filter_scalar(&ext, c, &k, &mut row1, &ring, &offs, &mut col1);
                assert!(row == row1 && col == col1, "r={r} c={c} n={n}");
            }
        }
    }
}

/// The widening gather (one byte shuffle per 8 values) puts each reduced
/// cell where the interpolation reads it, for every reduction, channel
/// count and row length of 8 values or more, in every build; indices
/// that jump are refused.
#[test]
fn widening_gather_gives_each_cell_in_every_build() {
    for k in 2..=9 {
        for c in [1, 3] {
            for width in [4usize, 9, 64, 203, 1001] {
                let pad = 4;
                let geom = Geometry { width: width.div_ceil(k) + 2 * pad, height: 1, channels: c };
                let widen = Widen::new(width, k, pad, geom);
                let idx: Vec<usize> = widen.cell.iter().flat_map(|&i| (0..c).map(move |ch| i * c + ch)).collect();
                let src: Vec<i16> = (0..geom.row_len()).map(|i| (i * 37 % 16321) as i16).collect();
                let Some(g) = fixed::Gather::new(&idx, src.len()) else {
                    // Only rows shorter than one shuffle go one value at a time.
                    assert!(idx.len() < 8 || src.len() < 8, "k={k} c={c} width={width}: no gather");
                    continue;
                };
                let want: Vec<i16> = idx.iter().map(|&i| src[i]).collect();
                let (mut got, mut one) = (vec![0i16; idx.len()], vec![0i16; idx.len()]);
                fixed::gather(&g, &src, &mut got);
                fixed::gather_scalar(&g, &src, &mut one);
                assert!(got == want && one == want, "k={k} c={c} width={width}");
            }
        }
    }
    let jumpy: Vec<usize> = (0..16).map(|i| i * 3).collect();
    assert!(fixed::Gather::new(&jumpy, 64).is_none());
    assert!(fixed::Gather::new(&[0, 1, 2], 64).is_none());
}

/// Every accepted sigma gets a kernel within the fixed-point passes'
/// largest radius, at full resolution and on the reduced copies, and a
/// reduction whose sums fit their integers.
#[test]
fn every_sigma_fits_the_fixed_point_radius() {
    let mut largest = 0;
    for i in 0..=200_000 {
        let sigma = MIN_SIGMA_PX + (MAX_SIGMA_PX - MIN_SIGMA_PX) * i as f64 / 200_000.0;
        let (k, reduced) = gaussian_plan(sigma);
        // The reduced copy's integer sums need k <= MAX_REDUCTION.
        assert!(k <= MAX_REDUCTION, "sigma {sigma}: reduction {k}");
        // Kernel::new panics past MAX_RADIUS.
        let radius = if k == 1 {
            fixed::Kernel::new(sigma, FIXED_TRUNCATE_SIGMAS).radius()
        } else {
            fixed::Kernel::new(reduced, TRUNCATE_SIGMAS).radius()
        };
        largest = largest.max(radius);
    }
    eprintln!("largest radius: {largest}");
}

/// The reduced copy's error peaks where each reduction is first allowed
/// (its blur is the smallest there): a fine sweep of corners and edges at
/// every phase from just below each such sigma to a little above it.
#[test]
fn gaussian_within_3_lsb_where_each_reduction_starts() {
    let start = |k: usize| (0..).map(|i| 1.5 * 1.0002f64.powi(i)).find(|&s| gaussian_plan(s).0 == k).unwrap();
    let first = start(2);
    assert!((2.05..2.15).contains(&first), "the reduced copy starts at sigma {first}");
    let (mut corner, mut edge) = (0.0f64, 0.0f64);
    for k in [2, 3, 4, 5, 8] {
        let from = start(k);
        for i in 0..=24 {
            let sigma = from * (0.98 + i as f64 * 0.005);
            for shift in 0..4 {
                let size = ((sigma * 8.0) as usize).max(30) + shift;
                let at = size / 2 + shift;
                let mut img = Image::new(size, size, 1).unwrap();
                for y in 0..size {
                    for x in 0..size {
                        img.data[y * size + x] = if (x >= at) != (y >= at) { 255 } else { 0 };
                    }
                }
                let err = max_error(&blur(&img, sigma, 1), &exact_gaussian(&img, sigma));
                assert!(err <= 3.0, "sigma {sigma} shift {shift}: corner error {err:.2} LSB");
                corner = corner.max(err);
                for vertical_edge in [true, false] {
                    let img = step(((sigma * 10.0) as usize).max(40) + shift, 3, vertical_edge);
                    let err = max_error(&blur(&img, sigma, 1), &exact_gaussian(&img, sigma));
                    assert!(err <= 3.0, "sigma {sigma} shift {shift}: step-edge error {err:.2} LSB");
                    edge = edge.max(err);
                }
            }
        }
        eprintln!("k = {k} from sigma {from:.3}: corners {corner:.2} LSB, edges {edge:.2} LSB so far");
    }
}
