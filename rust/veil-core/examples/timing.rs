//! Quick single-thread timings of the kernels on a 12 MP RGB image:
//! `cargo run -p veil-core --release --example timing`.
use std::time::Instant;
use veil_core::{blur, pixelate::pixelate, ImageRef};

/// CPU time of the calling thread in ns (Linux), which a busy machine
/// disturbs less than wall time does.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

fn time<F: FnMut()>(name: &str, mut f: F) {
    f();
    let (mut best, mut best_cpu) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        let c = thread_cpu_ns();
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
        if let (Some(a), Some(b)) = (c, thread_cpu_ns()) {
            best_cpu = best_cpu.min((b - a) as f64 * 1e-6);
        }
    }
    println!("{name:>24}: {best:7.1} ms wall, {best_cpu:7.1} ms cpu (this thread)");
}

fn main() {
    let threads: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let (w, h, c) = (4000, 3000, 3);
    let src: Vec<u8> = (0..w * h * c).map(|i| ((i * 2654435761usize) >> 13) as u8).collect();
    let img = ImageRef::new(&src, w, h, c).unwrap();
    let mut dst = vec![0u8; src.len()];
    time("copy", || dst.copy_from_slice(&src));
    for sigma in std::env::var("SIGMAS").ok().map(|s| s.split(",").map(|v| v.parse().unwrap()).collect::<Vec<f64>>()).unwrap_or(vec![1.0, 2.0, 3.0, 5.0, 10.0, 33.0, 100.0]) {
        time(&format!("gaussian {sigma}"), || blur::gaussian_blur(img, &mut dst, sigma, threads).unwrap());
    }
    time("box 10", || blur::box_blur(img, &mut dst, 10, threads).unwrap());
    time("pixelate 16", || pixelate(img, &mut dst, 16, 0, 0, threads).unwrap());
}
