//! veil-core against libblur (crates.io) on one 12 MP buffer, in one run:
//! Gaussian blur, box blur and (for scale) libblur's stack blur, with 1 and
//! 2 threads. Each time is a median of `--repeat` runs and is also shown as
//! a multiple of a plain copy of the image (the memory floor), so numbers
//! from a busy machine can still be compared within the run.
//!
//! Both Gaussians use the same 4-sigma sampled kernel size and clamp
//! (replicate) edges; libblur is run in its exact f32 mode and in its
//! fixed-point mode (its default; its docs give 1-3% error for it).
use std::num::NonZeroUsize;
use std::time::Instant;

use libblur::{
    BlurImage, BlurImageMut, BoxBlurParameters, ConvolutionMode, EdgeMode, EdgeMode2D, FastBlurChannels,
    GaussianBlurParams, ThreadingPolicy,
};
use veil_core::{blur, pixelate::pixelate, ImageRef};

fn median_ms<F: FnMut()>(repeat: usize, mut f: F) -> f64 {
    f();
    let mut t: Vec<f64> = (0..repeat)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

fn policy(threads: usize) -> ThreadingPolicy {
    if threads == 1 {
        ThreadingPolicy::Single
    } else {
        ThreadingPolicy::Fixed(NonZeroUsize::new(threads).unwrap())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let repeat = args.iter().position(|a| a == "--repeat").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(7);
    let (w, h) = (4000usize, 3000usize);
    println!("# veil-core vs libblur 0.24: {w}x{h}, median of {repeat} runs; x copy = time / plain copy of the same buffer");
    for c in [3usize, 4] {
        // Smooth gradients plus hashed detail, like a photo to these kernels.
        let src: Vec<u8> = (0..w * h * c)
            .map(|i| {
                let (p, ch) = (i / c, i % c);
                let (x, y) = ((p % w) as f64, (p / w) as f64);
                let v = 128.0 + 90.0 * ((x * 0.01 + ch as f64).sin() * (y * 0.007).cos()) + ((i * 2654435761) >> 27 & 31) as f64;
                v.clamp(0.0, 255.0) as u8
            })
            .collect();
        let mut dst = vec![0u8; src.len()];
        let img = ImageRef::new(&src, w, h, c).unwrap();
        let channels = if c == 3 { FastBlurChannels::Channels3 } else { FastBlurChannels::Channels4 };
        let lb_src = BlurImage::borrow(&src, w as u32, h as u32, channels);
        let copy = median_ms(repeat, || dst.copy_from_slice(&src));
        println!("\n## {} (plain copy {copy:.1} ms)\n", if c == 3 { "RGB" } else { "RGBA" });
        println!("| kernel | threads | veil-core ms (x copy) | libblur | libblur ms (x copy) | libblur / veil |");
        println!("|---|---|---|---|---|---|");
        let row = |name: &str, t: usize, veil: f64, peer: &str, ms: f64| {
            println!("| {name} | {t} | {veil:.1} ({:.1}x) | {peer} | {ms:.1} ({:.1}x) | {:.2}x |", veil / copy, ms / copy, ms / veil);
        };
        for threads in [1usize, 2] {
            for sigma in [2.0f64, 3.0, 5.0, 10.0, 33.0, 100.0] {
                let veil = median_ms(repeat, || blur::gaussian_blur(img, &mut dst, sigma, threads).unwrap());
                let name = format!("Gaussian sigma {sigma}");
                // Same support as veil's (and scipy's): radius round(4 sigma).
                let kernel = 2 * (4.0 * sigma + 0.5) as u32 + 1;
                // libblur's Gaussian costs O(sigma) per pixel: at sigma 33 one
                // call takes seconds, at 100 tens of seconds, so those are skipped.
                let modes: &[(&str, ConvolutionMode)] = if sigma <= 10.0 {
                    &[("gaussian_blur exact", ConvolutionMode::Exact), ("gaussian_blur fixed-point", ConvolutionMode::FixedPoint)]
                } else {
                    &[]
                };
                for &(peer, mode) in modes {
                    let mut out = BlurImageMut::borrow(&mut dst, w as u32, h as u32, channels);
                    let ms = median_ms(repeat, || {
                        libblur::gaussian_blur(&lb_src, &mut out, GaussianBlurParams::new(kernel, sigma), EdgeMode2D::new(EdgeMode::Clamp), policy(threads), mode).unwrap()
                    });
                    row(&name, threads, veil, peer, ms);
                }
                // Stack blur of the radius whose variance r(r+2)/6 matches sigma.
                let r = ((-1.0 + (1.0 + 6.0 * sigma * sigma).sqrt()).round() as u32).max(1);
                let ms = median_ms(repeat, || {
                    let mut out = BlurImageMut::borrow(&mut dst, w as u32, h as u32, channels);
                    libblur::stack_blur(&mut out, libblur::AnisotropicRadius::new(r), policy(threads)).unwrap()
                });
                row(&name, threads, veil, &format!("stack_blur r={r} (in place)"), ms);
            }
            let r = 10usize;
            let veil = median_ms(repeat, || blur::box_blur(img, &mut dst, r, threads).unwrap());
            let mut out = BlurImageMut::borrow(&mut dst, w as u32, h as u32, channels);
            let k = 2 * r as u32 + 1;
            let ms = median_ms(repeat, || {
                libblur::box_blur(&lb_src, &mut out, BoxBlurParameters { x_axis_kernel: k, y_axis_kernel: k }, policy(threads)).unwrap()
            });
            row("box r=10", threads, veil, "box_blur", ms);
            let veil = median_ms(repeat, || pixelate(img, &mut dst, 16, 0, 0, threads).unwrap());
            println!("| pixelate 16 px | {threads} | {veil:.1} ({:.1}x) | (none) | | |", veil / copy);
        }
    }
}
