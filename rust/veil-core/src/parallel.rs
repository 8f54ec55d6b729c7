//! Row-parallel execution. Every kernel splits its output rows into bands and
//! computes each band from the input alone, so the result does not depend on
//! how many threads ran it. Without the `parallel` feature (the WebAssembly
//! build) everything runs on the calling thread.

/// Rows per band: large enough that the per-band start-up work (filling a
/// blur's ring of rows) stays small next to the band itself.
#[cfg(not(test))]
pub const MIN_BAND_ROWS: usize = 64;
/// Tiny bands in tests, so that small test images exercise the banding.
#[cfg(test)]
pub const MIN_BAND_ROWS: usize = 3;

/// Splits `out` (rows of `row_len` values) into bands and runs
/// `f(first_row, band)` on each, on up to `threads` threads.
pub fn for_each_band<T: Send, F>(out: &mut [T], row_len: usize, threads: usize, f: F)
where
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    for_each_band_min(out, row_len, threads, MIN_BAND_ROWS, f)
}

/// `for_each_band` with bands of at least `min_rows` rows (for work whose
/// bands have no start-up cost).
pub fn for_each_band_min<T: Send, F>(out: &mut [T], row_len: usize, threads: usize, min_rows: usize, f: F)
where
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    let rows = out.len().checked_div(row_len).unwrap_or(0);
    let (threads, min_rows) = (threads.max(1), min_rows.max(1));
    if threads == 1 || rows < 2 * min_rows {
        f(0, out);
        return;
    }
    run_parallel(out, row_len, rows, threads, min_rows, f);
}

#[cfg(feature = "parallel")]
fn run_parallel<T: Send, F>(out: &mut [T], row_len: usize, rows: usize, threads: usize, min_rows: usize, f: F)
where
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    use rayon::prelude::*;
    // A few bands per thread balance uneven work without much overlap cost.
    let bands = (threads * 4).min(rows / min_rows).max(1);
    let band_rows = rows.div_ceil(bands);
    let job = || {
        out.par_chunks_mut(band_rows * row_len)
            .enumerate()
            .for_each(|(i, band)| f(i * band_rows, band));
    };
    pool(threads).install(job);
}

#[cfg(not(feature = "parallel"))]
fn run_parallel<T: Send, F>(out: &mut [T], _row_len: usize, _rows: usize, _threads: usize, _min_rows: usize, f: F)
where
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    f(0, out);
}

/// One rayon pool per thread count, built once: building a pool per call
/// would cost more than blurring a face.
#[cfg(feature = "parallel")]
fn pool(threads: usize) -> &'static rayon::ThreadPool {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static POOLS: OnceLock<Mutex<HashMap<usize, &'static rayon::ThreadPool>>> = OnceLock::new();
    let mut pools = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    pools.entry(threads).or_insert_with(|| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("veil-{i}"))
            .build()
            .expect("cannot start worker threads");
        Box::leak(Box::new(pool))
    })
}

/// The number of threads to use when the caller does not say: all cores.
pub fn default_threads() -> usize {
    #[cfg(feature = "parallel")]
    {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    }
    #[cfg(not(feature = "parallel"))]
    {
        1
    }
}
