//! One kernel call on a 1000x750 RGB image, for instruction counting:
//! `valgrind --tool=callgrind target/release/examples/profile_one gaussian 10`.
use veil_core::{blur, pixelate::pixelate, ImageRef};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kernel = args.get(1).map(String::as_str).unwrap_or("gaussian");
    let p: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let (w, h, c) = (1000, 750, 3);
    let src: Vec<u8> = (0..w * h * c).map(|i| ((i * 2654435761usize) >> 13) as u8).collect();
    let img = ImageRef::new(&src, w, h, c).unwrap();
    let mut dst = vec![0u8; src.len()];
    match kernel {
        "gaussian" => blur::gaussian_blur(img, &mut dst, p, 1).unwrap(),
        "box" => blur::box_blur(img, &mut dst, p as usize, 1).unwrap(),
        "pixelate" => pixelate(img, &mut dst, p as usize, 0, 0, 1).unwrap(),
        _ => {} // baseline: set-up only
    }
    println!("{}", dst.iter().map(|&v| v as u64).sum::<u64>());
}
