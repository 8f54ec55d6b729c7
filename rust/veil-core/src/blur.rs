//! Gaussian and box blur on whole images.
//!
//! Both use the "nearest" border rule: pixels beyond the edge repeat the
//! edge pixel (scipy's `mode="nearest"`, OpenCV's `BORDER_REPLICATE`).
//!
//! **Gaussian.** A sampled Gaussian kernel, renormalised, applied
//! separably, all in 16-bit fixed point (bytes x 64, `blur/fixed.rs`).
//! While sigma is small (below 2.1 px, where no reduced copy is allowed)
//! the image is blurred at full resolution, with the kernel truncated at 3
//! sigma: the mass it drops (0.27%) moves a 0/255 step edge by well under
//! a level. Both passes run in one sweep over each band of rows, so the
//! image is read once and written once.
//!
//! For larger sigma the work is done on a copy reduced k times (k x k
//! block means, integer sums; for k = 2 and 3 the box applied three times,
//! which aliases far less), blurred with the remaining sigma by the same
//! fixed-point passes, the kernel truncated at 4 sigma (as
//! `scipy.ndimage.gaussian_filter` does; 3 for k = 2), and brought back
//! with linear interpolation, also in fixed point: the prefilter and the
//! interpolation are themselves small blurs whose variances are
//! subtracted from the target (variances of convolved kernels add), so the
//! total stays sigma^2. k is the largest reduction that leaves the reduced
//! blur a sigma of at least 0.85 to 2.6 reduced pixels (the floor depends
//! on k), so the reduced blur is always a small kernel and the cost per
//! output pixel does not grow with sigma; the floors keep the error under
//! 2.8 LSB at step edges and corners, every phase, where each reduction
//! starts (see the sweeps in `blur/tests.rs` against an exact f64
//! convolution). Integer arithmetic (and one f32 multiply per block mean)
//! throughout, so every target gives the same bytes.
//!
//! **Box.** Exact means over `(2r+1)^2` windows with integer running sums,
//! for any radius, including radii larger than the image. Up to radius 15
//! the sums go down the columns first, in u16, then across the rows of
//! column sums by doubling; above it, across rows first.

use crate::error::{check_range, Result, VeilError};
use crate::image::{colour_channels, ImageRef};
use crate::parallel::{for_each_band, for_each_band_min};
use crate::simd::{self, dispatch};

mod fixed;

/// Smallest Gaussian sigma accepted, in pixels. Below this the kernel is
/// nearly a delta and anonymizes nothing.
pub const MIN_SIGMA_PX: f64 = 0.5;
/// Largest Gaussian sigma accepted, in pixels.
pub const MAX_SIGMA_PX: f64 = 250.0;
/// Kernel support of the blur on a reduced copy, in sigmas (scipy's
/// default `truncate=4.0`).
const TRUNCATE_SIGMAS: f64 = 4.0;
/// The same for copies reduced 2 times, whose other errors are small
/// enough to afford the 0.35 levels of a 3-sigma cut (`FIXED_TRUNCATE_SIGMAS`)
/// for a quarter fewer taps; with it, copies reduced 3 times measured 2.73
/// levels at corners where they start (2.2 at 4 sigmas), and larger
/// reductions 2.75 at sigma 41 (2.31 at 4 sigmas).
const HALF_TRUNCATE_SIGMAS: f64 = 3.0;
/// Kernel support at full resolution, in sigmas. For a renormalised kernel
/// the error on a 0/255 step edge is about the mass left out times 255/2:
/// 0.35 levels at 3 sigma (the sweeps in `blur/tests.rs` measure the whole
/// error, fixed point included), for 25% fewer taps than at 4.
const FIXED_TRUNCATE_SIGMAS: f64 = 3.0;
/// Sigma of the blur on the reduced copy never goes below this (in reduced
/// pixels): a smaller one would leave detail that linear interpolation
/// renders visibly wrong.
const MIN_REDUCED_SIGMA: f64 = 2.6;
/// The same floor for a copy reduced only 2 times, whose prefilter
/// (`SMOOTH_2`) and interpolation are so small that a much lower floor
/// stays accurate: 2.42 levels at corners where it starts (sigma 2.1).
const MIN_REDUCED_SIGMA_HALF: f64 = 0.85;
/// And for a copy reduced 3 times (`SMOOTH_3`): 2.2 levels where it starts
/// (sigma 5.7). With the plain 3 x 3 mean a floor of 2.0 measured 3.57.
const MIN_REDUCED_SIGMA_THIRD: f64 = 1.8;
/// And for a copy reduced 4 to 7 times. (These floors were set by the
/// step-edge and corner sweeps in `blur/tests.rs`: the error grows with k.)
const MIN_REDUCED_SIGMA_SMALL_K: f64 = 2.4;

fn check_dst(src: &ImageRef, dst: &[u8]) -> Result<()> {
    if dst.len() != src.data.len() {
        return Err(VeilError::InvalidImage(format!(
            "output buffer holds {} bytes, the image needs {}",
            dst.len(),
            src.data.len()
        )));
    }
    Ok(())
}

/// Copies the alpha channel of `src` rows into a band of `dst` rows
/// starting at `y0`: veil's kernels never change alpha.
pub(crate) fn restore_alpha(src: &ImageRef, band: &mut [u8], y0: usize) {
    if src.channels != 4 {
        return;
    }
    let start = y0 * src.row_len();
    let src_band = &src.data[start..start + band.len()];
    copy_alpha_fast(band, src_band);
}

#[inline(always)]
fn copy_alpha_body(band: &mut [u8], src: &[u8]) {
    simd::copy_alpha(band, src)
}
dispatch!(fn copy_alpha_fast(band: &mut [u8], src: &[u8]) => copy_alpha_body);

// ---------------------------------------------------------------- Gaussian

/// Variance (in full-resolution pixels^2) added by taking k x k block means
/// and, later, interpolating linearly back from the block centres.
fn reduction_variance(k: usize) -> f64 {
    if k <= 1 {
        return 0.0;
    }
    let kf = k as f64;
    // A box of k samples has variance (k^2 - 1) / 12; the prefilter of 2x
    // and 3x reductions is three such boxes (`SMOOTH_2`, `SMOOTH_3`).
    let boxes = if k <= 3 { 3.0 } else { 1.0 };
    let block = boxes * (kf * kf - 1.0) / 12.0;
    // Linear interpolation with fraction t puts weights (1-t, t) on points k
    // apart: variance t (1 - t) k^2, averaged over the k output phases.
    let interp: f64 = (0..k)
        .map(|i| {
            let u = (i as f64 + 0.5) / kf - 0.5;
            let t = u - u.floor();
            t * (1.0 - t)
        })
        .sum::<f64>()
        / kf
        * kf
        * kf;
    block + interp
}

/// The reduction factor for `sigma` and the sigma left for the reduced copy.
fn gaussian_plan(sigma: f64) -> (usize, f64) {
    let mut k = (sigma / MIN_REDUCED_SIGMA_HALF).floor().max(2.0) as usize;
    loop {
        let rest = sigma * sigma - reduction_variance(k);
        let reduced = if rest > 0.0 { rest.sqrt() / k as f64 } else { 0.0 };
        if k == 1 {
            return (1, sigma);
        }
        let floor = match k {
            2 => MIN_REDUCED_SIGMA_HALF,
            3 => MIN_REDUCED_SIGMA_THIRD,
            4..=7 => MIN_REDUCED_SIGMA_SMALL_K,
            _ => MIN_REDUCED_SIGMA,
        };
        if reduced >= floor {
            return (k, reduced);
        }
        k -= 1;
    }
}

/// Gaussian blur of `src` into `dst` (same size), with standard deviation
/// `sigma_px` in pixels, on up to `threads` threads. Alpha is copied.
pub fn gaussian_blur(src: ImageRef, dst: &mut [u8], sigma_px: f64, threads: usize) -> Result<()> {
    check_range("sigma_px", sigma_px, MIN_SIGMA_PX, MAX_SIGMA_PX)?;
    check_dst(&src, dst)?;
    let (k, reduced_sigma) = gaussian_plan(sigma_px);
    // Full resolution only where the plan allows no reduced copy (below
    // sigma 2.1): from there the reduced copy is the cheaper path (RGB
    // about 19 ms from sigma 2.1 to 3.4, against 20-34 ms at full
    // resolution, 12 MP, one thread).
    if k == 1 {
        let kernel = fixed::Kernel::new(sigma_px, FIXED_TRUNCATE_SIGMAS);
        // Alpha is put back as each row is written.
        for_each_band(dst, src.row_len(), threads, |y0, band| fixed::gaussian_band(&src, &kernel, y0, band));
        return Ok(());
    }
    let kernel = fixed::Kernel::new(reduced_sigma, if k == 2 { HALF_TRUNCATE_SIGMAS } else { TRUNCATE_SIGMAS });
    // Reduced cells beyond the image edges, as many as the kernel reaches:
    // they hold block means of the replicated edge pixels, so the border
    // rule is the full-resolution one, not a replicated reduced cell.
    let pad = kernel.radius() + 1;
    // The reduced copy holds the colour channels only: RGBA alpha is
    // copied as each output row is written, never filtered.
    let geom = Geometry {
        width: src.width.div_ceil(k) + 2 * pad,
        height: src.height.div_ceil(k) + 2 * pad,
        channels: colour_channels(src.channels),
    };
    // One band per thread: a band's first rows need the blurred reduced
    // rows of its halo, which every band makes again (filtering 2r+1
    // reduced rows across before its first output row), so smaller bands
    // would add work without balancing anything on a quiet machine.
    let band_rows = (src.height / threads.max(1)).max(1);
    if shares_reduced_copy(src.height, threads, k, pad) {
        // Bands that each made their reduced rows from the source would
        // each reduce the rows of their halo again (`pad` reduced rows, so
        // `pad k` source rows, each side: at sigma 100 more than a band
        // holds). The reduced copy is made once instead, split among the
        // threads, and then blurred and widened band by band; it holds the
        // same values as the rows made on demand, so the bytes are those of
        // one thread.
        let mut reduced = vec![0i16; geom.height * geom.row_len()];
        for_each_band_min(&mut reduced, geom.row_len(), threads, 8, |j0, rows| reduce_band(&src, k, pad, geom.row_len(), j0, rows));
        let shared = SharedReduced { rows: &reduced, k, pad, geom };
        for_each_band_min(dst, src.row_len(), threads, band_rows, |y0, band| reduced_band_pre(&src, &shared, &kernel, y0, band));
        return Ok(());
    }
    for_each_band_min(dst, src.row_len(), threads, band_rows, |y0, band| reduced_band(&src, &kernel, k, pad, geom, y0, band));
    Ok(())
}

/// Whether the threads share one reduced copy, made beforehand, rather
/// than each band making its reduced rows from the source as it goes: when
/// the source rows that a band reduces only for its halo (`pad` reduced
/// rows each side, `k` source rows each) come to more than a tenth of the
/// band. Made beforehand, the copy is written to memory and read back (at
/// sigma 10, k = 4, that cost a fifth more CPU time than one thread);
/// made on demand, its rows stay in the cache.
fn shares_reduced_copy(height: usize, threads: usize, k: usize, pad: usize) -> bool {
    threads > 1 && 2 * pad * k * 10 > height / threads
}

#[derive(Clone, Copy, Debug)]
struct Geometry {
    width: usize,
    height: usize,
    channels: usize,
}

impl Geometry {
    fn row_len(&self) -> usize {
        self.width * self.channels
    }
}

/// A source of rows for `FixedConv`: `load(j, out)` writes reduced row
/// `j` (Q6). A trait with `#[inline(always)]` methods rather than a
/// closure, so that the loading is compiled inside each SIMD build of the
/// caller (a closure body may be left out of line, in the baseline build).
trait RowSource {
    fn load(&mut self, j: usize, out: &mut [i16]);
}

/// The rows of the reduced copy, made from the source on demand (whole rows).
struct ReducedRows<'a, 'b> {
    src: &'b ImageRef<'a>,
    k: usize,
    pad: usize,
    acc: Vec<u16>,
    /// Scratch of `reduce_row` for k = 3.
    sums: Vec<u32>,
}

impl RowSource for ReducedRows<'_, '_> {
    #[inline(always)]
    fn load(&mut self, j: usize, out: &mut [i16]) {
        reduce_row(self.src, self.k, self.pad, j, &mut self.acc, &mut self.sums, out);
    }
}

/// Rows of a reduced copy made beforehand (`reduce_band`), `row_len` values each.
struct PrecomputedRows<'a> {
    rows: &'a [i16],
    row_len: usize,
}

impl RowSource for PrecomputedRows<'_> {
    #[inline(always)]
    fn load(&mut self, j: usize, out: &mut [i16]) {
        out.copy_from_slice(&self.rows[j * self.row_len..(j + 1) * self.row_len]);
    }
}

/// Reduced rows `j0..` (as many as `band` holds) into `band`.
#[inline(always)]
fn reduce_band_impl(src: &ImageRef, k: usize, pad: usize, low_len: usize, j0: usize, band: &mut [i16]) {
    let (mut acc, mut sums) = (vec![0u16; src.row_len()], vec![0u32; sums_len(k, src.row_len())]);
    for (jj, low) in band.chunks_exact_mut(low_len).enumerate() {
        reduce_row(src, k, pad, j0 + jj, &mut acc, &mut sums, low);
    }
}
dispatch!(fn reduce_band(src: &ImageRef, k: usize, pad: usize, low_len: usize, j0: usize, band: &mut [i16]) => reduce_band_impl);

/// The separable blur of the reduced copy, in the fixed point of the
/// full-resolution path (`blur/fixed.rs`): each reduced row (Q6 block
/// means, from `load`) is filtered across once into a ring of `2r+1` rows
/// keyed by row, and `row(j)` is the vertical sum of the ring, in Q6.
/// Rows are asked for in increasing order, so each is loaded once.
struct FixedConv<'k> {
    kernel: &'k fixed::Kernel,
    geom: Geometry,
    ext: Vec<i16>,
    ring: fixed::Ring,
    held: Vec<usize>,
    offs: Vec<usize>,
}

impl<'k> FixedConv<'k> {
    fn new(kernel: &'k fixed::Kernel, geom: Geometry) -> Self {
        let (r, n) = (kernel.radius(), geom.row_len());
        let slots = (2 * r + 1).min(geom.height);
        Self {
            kernel,
            geom,
            ext: vec![0; n + 2 * r * geom.channels],
            ring: fixed::Ring::new(slots, n),
            held: vec![usize::MAX; slots],
            offs: vec![0; 2 * r + 1],
        }
    }

    /// Filters reduced row `j` across into its ring slot.
    #[inline(always)]
    fn fill<L: RowSource>(&mut self, j: usize, load: &mut L) {
        let (r, c, w, n) = (self.kernel.radius(), self.geom.channels, self.geom.width, self.geom.row_len());
        // ext[p c..] holds cell p - r, clamped to the row (nearest rule).
        let ext = &mut self.ext;
        load.load(j, &mut ext[r * c..r * c + n]);
        for p in 0..r {
            for ch in 0..c {
                ext[p * c + ch] = ext[r * c + ch];
                ext[(r + w + p) * c + ch] = ext[(r + w - 1) * c + ch];
            }
        }
        let slot = j % self.held.len();
        fixed::filter_row(ext, c, self.kernel, self.ring.row_mut(slot));
        self.held[slot] = j;
    }

    /// Blurred reduced row `j` into `out` (`geom.row_len()` values, Q6).
    #[inline(always)]
    fn row<L: RowSource>(&mut self, j: usize, load: &mut L, out: &mut [i16]) {
        let r = self.kernel.radius();
        let last = self.geom.height - 1;
        for t in 0..=2 * r {
            let sy = (j + t).saturating_sub(r).min(last);
            let slot = sy % self.held.len();
            if self.held[slot] != sy {
                self.fill(sy, load);
            }
            self.offs[t] = self.ring.offset(slot);
        }
        fixed::filter_column(self.ring.values(), &self.offs, self.kernel, out);
    }
}

/// The source indices that the `k` positions `start..start+k` read under the
/// nearest border rule, each with how many positions read it: inside the
/// image each index once, beyond an edge the edge index many times.
fn clamped_span(start: isize, k: usize, len: usize) -> impl Iterator<Item = (usize, u16)> {
    let last = len as isize - 1;
    let end = start + k as isize - 1;
    let (lo, hi) = (start.clamp(0, last), end.clamp(0, last));
    (lo..=hi).map(move |i| {
        // Positions t that read index i: all t <= 0 read 0, all t >= last read last.
        let from = if i == 0 { start } else { i.max(start) };
        let to = if i == last { end } else { i.min(end) };
        (i as usize, (to - from + 1) as u16)
    })
}

/// The length of `reduce_row`'s `sums` scratch for reduction `k` and
/// source rows of `row_len` values: only the 3x prefilter uses it.
fn sums_len(k: usize, row_len: usize) -> usize {
    if k == 3 { row_len } else { 0 }
}

/// Largest reduction of the reduced path: `k` source rows of bytes are
/// summed in u16 (k 255 < 2^16) and a block of `k^2` in u32.
const MAX_REDUCTION: usize = 257;

/// Reduced row `j` (k x k block means in Q6, on the grid with `pad` cells
/// beyond each edge, whose blocks take the nearest edge pixels) into `low`.
/// `acc` is a scratch row of the source's length, and so is `sums` for
/// k = 3 (`sums_len`).
#[inline(always)]
fn reduce_row(src: &ImageRef, k: usize, pad: usize, j: usize, acc: &mut [u16], sums: &mut [u32], low: &mut [i16]) {
    let (w, h, c) = (src.width, src.height, src.channels);
    debug_assert!(k <= MAX_REDUCTION);
    match k {
        2 => return reduce_row_smooth::<2>(src, pad, j, acc, low, sums),
        3 => return reduce_row_smooth::<3>(src, pad, j, acc, low, sums),
        _ => {}
    }
    // 64 / k^2, so that a block sum times it is the block mean in Q6: the
    // sums are exact integers below 2^24, the product one f32 rounding.
    let scale = 64.0 / (k * k) as f32;
    for (i, (y, n)) in clamped_span((j as isize - pad as isize) * k as isize, k, h).enumerate() {
        let row = src.row(y);
        match (i, n) {
            (0, 1) => acc.iter_mut().zip(row).for_each(|(a, &b)| *a = b as u16),
            (0, _) => acc.iter_mut().zip(row).for_each(|(a, &b)| *a = n * b as u16),
            (_, 1) => acc.iter_mut().zip(row).for_each(|(a, &b)| *a += b as u16),
            _ => acc.iter_mut().zip(row).for_each(|(a, &b)| *a += n * b as u16),
        }
    }
    match c {
        1 => reduce_columns::<1, 1>(acc, low, k, pad, w, scale),
        3 => reduce_columns::<3, 3>(acc, low, k, pad, w, scale),
        _ => reduce_columns::<4, 3>(acc, low, k, pad, w, scale),
    }
}

/// The prefilter of 2x and 3x reductions: the box of k pixels applied
/// three times (`[1 3 3 1] / 8` for k = 2, `[1 3 6 7 6 3 1] / 27` for
/// k = 3), over the cell's pixels and k - 1 beyond each side, in both
/// directions. Against the plain k x k mean it removes most of what the
/// reduced grid would alias: at step-edge corners, in an f64 model of the
/// whole path, the error falls from 2.8 to 0.6 levels at sigma 3 with
/// k = 2, and from 3.35 to 1.6 at sigma 6.2 with k = 3 (where the plain
/// mean broke the 3-level bound), so the reduced copy is accurate from
/// sigma 2.1 instead of 3.35. The integer weights sum to k^3.
const SMOOTH_2: [u16; 4] = [1, 3, 3, 1];
const SMOOTH_3: [u16; 7] = [1, 3, 6, 7, 6, 3, 1];

/// The `SMOOTH_2` or `SMOOTH_3` weights of reduction `k`.
fn smooth_weights(k: usize) -> &'static [u16] {
    if k == 2 { &SMOOTH_2 } else { &SMOOTH_3 }
}

/// Pixels `start..start + weights.len()` under the nearest border rule,
/// each with the sum of the weights that land on it (at most 7 entries).
fn smooth_taps(start: isize, weights: &[u16], len: usize) -> ([(usize, u16); 7], usize) {
    let mut taps = [(0usize, 0u16); 7];
    let mut n = 0;
    for (d, &w) in weights.iter().enumerate() {
        let i = (start + d as isize).clamp(0, len as isize - 1) as usize;
        if n > 0 && taps[n - 1].0 == i {
            taps[n - 1].1 += w;
        } else {
            taps[n] = (i, w);
            n += 1;
        }
    }
    (taps, n)
}

/// `reduce_row` for k = 2 or 3 (`K`): the smooth prefilter down the
/// `3K - 2` source rows of reduced row `j` into `acc` (u16, at most
/// 27 x 255), then across.
#[inline(always)]
fn reduce_row_smooth<const K: usize>(src: &ImageRef, pad: usize, j: usize, acc: &mut [u16], low: &mut [i16], sums: &mut [u32]) {
    let (w, h, c) = (src.width, src.height, src.channels);
    let weights = smooth_weights(K);
    let (taps, n) = smooth_taps((j as isize - pad as isize) * K as isize - (K as isize - 1), weights, h);
    let len = acc.len();
    let row = |t: usize| &src.row(taps[t].0)[..len];
    if K == 2 && n == 4 {
        // Inside the image: one pass over the four rows.
        let (a, b, c, d) = (row(0), row(1), row(2), row(3));
        for (i, v) in acc.iter_mut().enumerate() {
            *v = a[i] as u16 + 3 * (b[i] as u16 + c[i] as u16) + d[i] as u16;
        }
    } else if K == 3 && n == 7 {
        let (a, b, c, d, e, f, g) = (row(0), row(1), row(2), row(3), row(4), row(5), row(6));
        for (i, v) in acc.iter_mut().enumerate() {
            let outer = a[i] as u16 + g[i] as u16;
            let mid = b[i] as u16 + f[i] as u16;
            let inner = c[i] as u16 + e[i] as u16;
            *v = outer + 3 * mid + 6 * inner + 7 * d[i] as u16;
        }
    } else {
        for (t, &(_, wt)) in taps[..n].iter().enumerate() {
            let r = row(t);
            if t == 0 {
                acc.iter_mut().zip(r).for_each(|(a, &b)| *a = wt * b as u16);
            } else {
                acc.iter_mut().zip(r).for_each(|(a, &b)| *a += wt * b as u16);
            }
        }
    }
    match c {
        1 => smooth_columns::<1, 1, K>(acc, low, pad, w, sums),
        3 => smooth_columns::<3, 3, K>(acc, low, pad, w, sums),
        _ => smooth_columns::<4, 3, K>(acc, low, pad, w, sums),
    }
}

/// The smooth prefilter across one row of column sums `acc` (`C` values
/// per pixel) at every `K`-th pixel, into the reduced row `low` (its
/// first `CO` channels per cell, Q6): cell `i` takes pixels
/// `K (i - pad) - (K - 1) ..= K (i - pad) + 2K - 2`.
#[inline(always)]
fn smooth_columns<const C: usize, const CO: usize, const K: usize>(acc: &[u16], low: &mut [i16], pad: usize, w: usize, sums: &mut [u32]) {
    let cells = low.len() / CO;
    let weights = smooth_weights(K);
    let span = weights.len();
    // 64 / K^6 turns a sum into Q6: exactly 1 for K = 2 (the sum is the Q6
    // value itself, at most 16320, so u16 holds it), one f32 multiply for 3.
    let scale = 64.0 / (K.pow(6)) as f32;
    // Cells whose pixels are all inside the image: i - pad in 1..=(w + 1 - 2K) / K.
    let first_inside = (pad + 1).min(cells);
    let inside = ((w + 1).saturating_sub(2 * K) / K).min(cells - first_inside);
    let run = &acc[C..];
    let cells_inside = low[first_inside * CO..(first_inside + inside) * CO].chunks_exact_mut(CO);
    if K == 2 {
        for (m, cell) in cells_inside.enumerate() {
            let px = &run[2 * m * C..2 * m * C + 4 * C];
            for ch in 0..CO {
                cell[ch] = (px[ch] + 3 * px[C + ch] + 3 * px[2 * C + ch] + px[3 * C + ch]) as i16;
            }
        }
    } else if inside > 0 {
        // K = 3: the weighted sums at every pixel of the run first (whole
        // vectors; a sum at every third pixel alone stays scalar), then
        // every third one taken.
        let values = (K * (inside - 1) + 1) * C;
        let sums = &mut sums[..values];
        for (v, out) in sums.iter_mut().enumerate() {
            let px = &run[v..v + (span - 1) * C + 1];
            let (outer, mid, inner) = (px[0] as u32 + px[6 * C] as u32, px[C] as u32 + px[5 * C] as u32, px[2 * C] as u32 + px[4 * C] as u32);
            *out = outer + 3 * mid + 6 * inner + 7 * px[3 * C] as u32;
        }
        for (m, cell) in cells_inside.enumerate() {
            for ch in 0..CO {
                cell[ch] = block_q6(sums[K * m * C + ch], scale);
            }
        }
    }
    // The rest reach past an edge and repeat the edge pixels.
    for i in (0..first_inside).chain(first_inside + inside..cells) {
        let (taps, n) = smooth_taps((i as isize - pad as isize) * K as isize - (K as isize - 1), weights, w);
        let mut sum = [0u32; CO];
        for &(x, wt) in &taps[..n] {
            for ch in 0..CO {
                sum[ch] += wt as u32 * acc[x * C + ch] as u32;
            }
        }
        for ch in 0..CO {
            low[i * CO + ch] = block_q6(sum[ch], scale);
        }
    }
}

/// `sum * scale + 0.5` truncated: the Q6 value of a block sum (below 2^24,
/// so exact in f32; the result at most 16320).
#[inline(always)]
fn block_q6(sum: u32, scale: f32) -> i16 {
    let v = sum as f32 * scale + 0.5;
    debug_assert!((0.0..16321.0).contains(&v));
    // SAFETY: v is finite and in 0..16321 (see above).
    unsafe { v.to_int_unchecked::<i32>() as i16 }
}

/// Sums of `k` columns of `acc` (one row of column sums, `C` values per
/// pixel) into the reduced row `low` (its first `CO` channels per pixel), in Q6.
#[inline(always)]
fn reduce_columns<const C: usize, const CO: usize>(acc: &[u16], low: &mut [i16], k: usize, pad: usize, w: usize, scale: f32) {
    let cells = low.len() / CO;
    // Cells wholly inside the image: plain runs of k pixels, in order.
    let first_inside = pad;
    let inside = (w / k).min(cells.saturating_sub(first_inside));
    let run = &acc[..inside * k * C];
    let out = &mut low[first_inside * CO..(first_inside + inside) * CO];
    // The commonest reductions with the block width known to the
    // compiler, which unrolls and vectorises them.
    match k {
        2 => block_means::<C, CO, 2>(run, out, 2, scale),
        3 => block_means::<C, CO, 3>(run, out, 3, scale),
        4 => block_means::<C, CO, 4>(run, out, 4, scale),
        _ => block_means::<C, CO, 0>(run, out, k, scale),
    }
    // The rest reach past an edge and repeat the edge pixels.
    for i in (0..first_inside.min(cells)).chain(first_inside + inside..cells) {
        let start = (i as isize - pad as isize) * k as isize;
        let mut sum = [0u32; CO];
        for (x, n) in clamped_span(start, k, w) {
            for ch in 0..CO {
                sum[ch] += n as u32 * acc[x * C + ch] as u32;
            }
        }
        for ch in 0..CO {
            low[i * CO + ch] = block_q6(sum[ch], scale);
        }
    }
}

/// Q6 means of blocks of `k` pixels of `run` (`C` values each, the first
/// `CO` kept) into `out`; `K` is `k` when it is fixed at compile time, else 0.
#[inline(always)]
fn block_means<const C: usize, const CO: usize, const K: usize>(run: &[u16], out: &mut [i16], k: usize, scale: f32) {
    let k = if K > 0 { K } else { k };
    if K.is_power_of_two() && K <= 8 {
        // The sum of K x K bytes fits u16 and its Q6 mean is the sum times
        // 64 / K^2, a shift: the same value as `block_q6`, with no f32.
        let shift = 6 - 2 * K.trailing_zeros();
        for (cell, block) in out.chunks_exact_mut(CO).zip(run.chunks_exact(K * C)) {
            let mut sum = [0u16; CO];
            for px in block.chunks_exact(C) {
                for ch in 0..CO {
                    sum[ch] += px[ch];
                }
            }
            for ch in 0..CO {
                cell[ch] = (sum[ch] << shift) as i16;
            }
        }
        return;
    }
    for (cell, block) in out.chunks_exact_mut(CO).zip(run.chunks_exact(k * C)) {
        let mut sum = [0u32; CO];
        for px in block.chunks_exact(C) {
            for ch in 0..CO {
                sum[ch] += px[ch] as u32;
            }
        }
        for ch in 0..CO {
            cell[ch] = block_q6(sum[ch], scale);
        }
    }
}

/// Position of full-resolution pixel `x` on the padded reduced grid: the
/// cell whose centre is at or before it, the next cell, and the fraction
/// of the way between them in Q15 (below 1, as `k <= MAX_REDUCTION`).
fn reduced_position(x: usize, k: usize, pad: usize, len: usize) -> (usize, usize, i16) {
    let u = (x as f64 + 0.5) / k as f64 - 0.5;
    let i = u.floor();
    let t = ((u - i) * 32768.0).round().min(32767.0) as i16;
    let i0 = ((i + pad as f64) as usize).min(len - 1);
    (i0, (i0 + 1).min(len - 1), t)
}

/// How a blurred reduced row is widened to full width by linear
/// interpolation, as two contiguous rows rather than a gather per value:
/// `rep` holds, for each output pixel `x` (and `k` more), the cell at or
/// before it (cell `cell[x]`, each repeated about `k` times), so the next
/// cell of pixel `x` is `rep[x + k]`, and `out = rep[x] + (rep[x + k] -
/// rep[x]) t[x]` runs over whole vectors (`fixed::lerp_values`).
struct Widen {
    k: usize,
    channels: usize,
    /// Cells in a reduced row.
    cells: usize,
    cell: Vec<usize>,
    /// The fraction of each output value (per channel), in Q15.
    t: Vec<i16>,
    rep: Vec<i16>,
    /// `rep` from a blurred reduced row, as one vector shuffle per 8 values.
    gather: Option<fixed::Gather>,
}

impl Widen {
    fn new(width: usize, k: usize, pad: usize, geom: Geometry) -> Self {
        let c = geom.channels;
        let cell: Vec<usize> = (0..width + k).map(|x| reduced_position(x, k, pad, geom.width).0).collect();
        // The cell after pixel x's is pixel x + k's: positions k apart are
        // exactly one cell apart on the padded grid (never clamped).
        assert!(k >= 2 && (0..width).all(|x| cell[x + k] == cell[x] + 1) && cell[width + k - 1] < geom.width);
        let t = (0..width).flat_map(|x| std::iter::repeat_n(reduced_position(x, k, pad, geom.width).2, c)).collect();
        let idx: Vec<usize> = cell.iter().flat_map(|&i| (0..c).map(move |ch| i * c + ch)).collect();
        let gather = fixed::Gather::new(&idx, geom.row_len());
        Self { k, channels: c, cells: geom.width, cell, t, rep: vec![0; (width + k) * c], gather }
    }

    /// Blurred reduced row `low` widened into `out` (full width, Q6).
    #[inline(always)]
    fn row<const C: usize>(&mut self, low: &[i16], out: &mut [i16]) {
        assert!(C == self.channels && low.len() >= self.cells * C && self.rep.len() == self.cell.len() * C);
        if let Some(g) = &self.gather {
            fixed::gather(g, low, &mut self.rep);
        } else {
            self.rep_scalar::<C>(low);
        }
        let n = out.len();
        fixed::lerp_values(&self.rep[..n], &self.rep[self.k * C..self.k * C + n], &self.t, out);
    }

    /// `rep` one cell at a time, where `gather` does not apply.
    #[inline(always)]
    fn rep_scalar<const C: usize>(&mut self, low: &[i16]) {
        let (from, to) = (low.as_ptr(), self.rep.as_mut_ptr());
        for (x, &i) in self.cell.iter().enumerate() {
            // SAFETY: i < self.cells (checked in `new`), so i C + C <= low.len(),
            // and x C + C <= rep.len() (checked above).
            unsafe { core::ptr::copy_nonoverlapping(from.add(i * C), to.add(x * C), C) };
        }
    }
}

/// Gaussian of a band of output rows by way of the reduced copy: each
/// reduced row is made from the source when the convolution first needs
/// it, blurred, widened to full width and interpolated, so no full-size
/// intermediate is ever stored.
#[inline(always)]
fn reduced_band_impl(src: &ImageRef, kernel: &fixed::Kernel, k: usize, pad: usize, geom: Geometry, y0: usize, band: &mut [u8]) {
    let row_len = src.row_len();
    let mut load = ReducedRows { src, k, pad, acc: vec![0u16; row_len], sums: vec![0u32; sums_len(k, row_len)] };
    reduced_band_from(src, kernel, k, pad, geom, y0, band, &mut load);
}
dispatch!(fn reduced_band(src: &ImageRef, kernel: &fixed::Kernel, k: usize, pad: usize, geom: Geometry, y0: usize, band: &mut [u8]) => reduced_band_impl);

/// A reduced copy made beforehand (`reduce_band`), with its reduction and grid.
struct SharedReduced<'a> {
    rows: &'a [i16],
    k: usize,
    pad: usize,
    geom: Geometry,
}

/// `reduced_band` from a reduced copy made beforehand.
#[inline(always)]
fn reduced_band_pre_impl(src: &ImageRef, shared: &SharedReduced, kernel: &fixed::Kernel, y0: usize, band: &mut [u8]) {
    let mut load = PrecomputedRows { rows: shared.rows, row_len: shared.geom.row_len() };
    reduced_band_from(src, kernel, shared.k, shared.pad, shared.geom, y0, band, &mut load);
}
dispatch!(fn reduced_band_pre(src: &ImageRef, shared: &SharedReduced, kernel: &fixed::Kernel, y0: usize, band: &mut [u8]) => reduced_band_pre_impl);

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn reduced_band_from<L: RowSource>(src: &ImageRef, kernel: &fixed::Kernel, k: usize, pad: usize, geom: Geometry, y0: usize, band: &mut [u8], load: &mut L) {
    let c = geom.channels;
    let row_len = src.width * c;
    // RGBA: an output row's colour bytes, then put with the source alpha.
    let mut rgb = vec![0u8; if src.channels == c { 0 } else { row_len + 16 }];
    let mut conv = FixedConv::new(kernel, geom);
    let mut low = vec![0i16; geom.row_len()];
    let mut widen = Widen::new(src.width, k, pad, geom);
    // Two blurred reduced rows widened to full width, reused while y stays between them.
    let mut wide = [vec![0i16; row_len], vec![0i16; row_len]];
    let mut held = [usize::MAX, usize::MAX];
    for (yy, out) in band.chunks_exact_mut(src.row_len()).enumerate() {
        let (j0, j1, t) = reduced_position(y0 + yy, k, pad, geom.height);
        // When the pair slides down by one, the old lower row is the new
        // upper one: swap the buffers instead of recomputing.
        if held[0] != j0 && held[1] == j0 {
            wide.swap(0, 1);
            held.swap(0, 1);
        }
        for (slot, j) in [(0usize, j0), (1usize, j1)] {
            if held[slot] != j {
                conv.row(j, load, &mut low);
                match c {
                    1 => widen.row::<1>(&low, &mut wide[slot]),
                    _ => widen.row::<3>(&low, &mut wide[slot]),
                }
                held[slot] = j;
            }
        }
        if src.channels == c {
            fixed::lerp_row(&wide[0], &wide[1], &[t], out);
        } else {
            fixed::lerp_row(&wide[0], &wide[1], &[t], &mut rgb[..row_len]);
            fixed::rgba_of_rgb_row(&rgb, src.row(y0 + yy), out);
        }
    }
}

// --------------------------------------------------------------------- Box

/// Fixed-point scale of the horizontal means (8 fractional bits), so the
/// vertical pass sums exact integers and rounds once at the end.
const FRAC: u64 = 256;

/// Box blur: each pixel becomes the mean of the `(2r+1) x (2r+1)` window
/// around it, `r = radius_px`, with the nearest border rule. Any radius is
/// accepted; as it grows past the image the result tends to the mean of the
/// repeated edges, exactly as the border rule says. Alpha is copied.
pub fn box_blur(src: ImageRef, dst: &mut [u8], radius_px: usize, threads: usize) -> Result<()> {
    check_dst(&src, dst)?;
    if radius_px == 0 {
        dst.copy_from_slice(src.data);
        return Ok(());
    }
    if let Some((levels, terms)) = box_column_plan(radius_px) {
        for_each_band(dst, src.row_len(), threads, |y0, band| {
            box_band_columns(&src, radius_px, levels, &terms, y0, band);
        });
        return Ok(());
    }
    if radius_px <= BOX_SUMS_MAX_RADIUS {
        for_each_band(dst, src.row_len(), threads, |y0, band| {
            // Alpha is put back as each row is written.
            box_band_sums(&src, radius_px, y0, band);
        });
        return Ok(());
    }
    // Window sums of up to (2r+1) horizontal means of up to 255*FRAC.
    let window = 2 * radius_px as u128 + 1;
    if window * 255 * FRAC as u128 <= u32::MAX as u128 {
        for_each_band(dst, src.row_len(), threads, |y0, band| {
            box_band::<u32>(&src, radius_px, y0, band);
            restore_alpha(&src, band, y0);
        });
    } else {
        for_each_band(dst, src.row_len(), threads, |y0, band| {
            box_band::<u64>(&src, radius_px, y0, band);
            restore_alpha(&src, band, y0);
        });
    }
    Ok(())
}

/// Largest radius for which box blur keeps exact window sums: a row's
/// sums of `2r+1 <= 255` bytes fit in u16, and the 2-D sums of up to
/// `255^2 * 255 < 2^24` are exact in f32 as well as in u32.
const BOX_SUMS_MAX_RADIUS: usize = 127;

/// Values of a row whose window sums are built at a time: the doubling
/// passes then run on two scratch chunks that stay in L1.
const BOX_CHUNK: usize = 2048;

/// Horizontal window sums `out[x] = sum of row[clamp(x+d)]` for `|d| <= r`,
/// per channel, without a serial running sum: windows of 1, 2, 4, ... pixels
/// are built by doubling (`s_2m[i] = s_m[i] + s_m[i + m]`, each a plain
/// vector add) and the window of `2r+1` is the sum of those named by its
/// binary digits, chunk by chunk of the row. `tmp` holds two chunks with
/// their halo, `BOX_CHUNK + 2rC` values each.
#[inline(always)]
fn box_row_sums(row: &[u8], c: usize, r: usize, tmp: &mut [u16], out: &mut [u16]) {
    let n = row.len();
    let halo = 2 * r * c;
    let window = 2 * r + 1;
    let span = BOX_CHUNK + halo;
    let (buf_a, buf_b) = tmp[..2 * span].split_at_mut(span);
    for start in (0..n).step_by(BOX_CHUNK) {
        let m = BOX_CHUNK.min(n - start);
        let len = m + halo;
        let out = &mut out[start..start + m];
        out.iter_mut().for_each(|v| *v = 0);
        let (mut cur, mut next) = (&mut buf_a[..len], &mut buf_b[..len]);
        extend_chunk(row, c, r, start, cur);
        // cur holds sums of `size` pixels, valid for the first `valid` values.
        let (mut size, mut offset, mut valid) = (1usize, 0usize, len);
        loop {
            if window & size != 0 {
                for (o, &v) in out.iter_mut().zip(&cur[offset * c..offset * c + m]) {
                    *o = o.wrapping_add(v);
                }
                offset += size;
            }
            if 2 * size > window {
                break;
            }
            valid -= size * c;
            let (a, b) = (&cur[..valid], &cur[size * c..size * c + valid]);
            for ((d, &x), &y) in next[..valid].iter_mut().zip(a).zip(b) {
                *d = x.wrapping_add(y);
            }
            std::mem::swap(&mut cur, &mut next);
            size *= 2;
        }
    }
}

/// `cur[j]` = value `start + j` of `row` extended by `r` pixels of `c`
/// values each side (the nearest rule): value `start + j - rc` of the row,
/// clamped to its first or last pixel.
#[inline(always)]
fn extend_chunk<T: Copy + Into<u16>>(row: &[T], c: usize, r: usize, start: usize, cur: &mut [u16]) {
    let (n, len) = (row.len(), cur.len());
    let lead = (r * c).saturating_sub(start).min(len);
    let inner_end = (r * c + n - start).min(len);
    for (j, v) in cur[..lead].iter_mut().enumerate() {
        *v = row[(start + j) % c].into();
    }
    let from = start + lead - r * c;
    for (v, &b) in cur[lead..inner_end].iter_mut().zip(&row[from..]) {
        *v = b.into();
    }
    for (j, v) in cur[inner_end..].iter_mut().enumerate() {
        *v = row[n - c + (start + inner_end + j) % c].into();
    }
}

/// The terms of a box window of `2r+1` values as sums of `2^l` values
/// (`l <= levels`) that stay below 2^16 for column sums of `2r+1` bytes:
/// `(levels, [(l, offset in pixels)])`, or None when more than
/// `BOX_MAX_TERMS` would be needed (radius above 15).
fn box_column_plan(radius: usize) -> Option<(usize, Vec<(usize, usize)>)> {
    let window = 2 * radius + 1;
    let most = window * 255;
    let mut levels = 0;
    while (2usize << levels) <= window && (2usize << levels) * most <= u16::MAX as usize {
        levels += 1;
    }
    let k = 1usize << levels;
    let mut terms = Vec::new();
    let mut offset = 0;
    for _ in 0..window / k {
        terms.push((levels, offset));
        offset += k;
    }
    for l in (0..levels).rev() {
        if (window % k) & (1 << l) != 0 {
            terms.push((l, offset));
            offset += 1 << l;
        }
    }
    debug_assert_eq!(offset, window);
    (terms.len() <= BOX_MAX_TERMS).then_some((levels, terms))
}

/// Where `terms` (of a window of `2r+1` column sums) split into two groups
/// whose sums each stay below 2^16, reordered so: `terms[..split]` then
/// `terms[split..]`, at most 3 each. None when they do not.
fn box_pair_split(radius: usize, terms: &mut [(usize, usize)]) -> Option<usize> {
    let most = (2 * radius + 1) * 255;
    let room = u16::MAX as usize / most;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let (mut size_a, mut size_b) = (0usize, 0usize);
    // First fit, largest terms first (they come in that order).
    for &t in terms.iter() {
        let size = 1usize << t.0;
        if size_a + size <= room && a.len() < 3 {
            a.push(t);
            size_a += size;
        } else if size_b + size <= room && b.len() < 3 {
            b.push(t);
            size_b += size;
        } else {
            return None;
        }
    }
    let split = a.len();
    for (slot, t) in terms.iter_mut().zip(a.into_iter().chain(b)) {
        *slot = t;
    }
    Some(split)
}

/// Most terms in the last horizontal sum of `box_band_columns`.
const BOX_MAX_TERMS: usize = 6;

/// `out[i]` = the mean of the window whose sum is `sum_t terms[t][i]`;
/// with `alpha` (RGBA), every 4th byte is `alpha[i]` instead.
#[inline(always)]
fn box_final<const T: usize>(terms: [&[u16]; T], norm: f32, out: &mut [u8], alpha: Option<&[u8]>) {
    let m = out.len();
    let terms = terms.map(|t| &t[..m]);
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let done = wasm_box::means16(out, norm, alpha, |i| {
        use core::arch::wasm32::*;
        let mut s = [u32x4_splat(0); 4];
        for t in terms {
            // SAFETY: means16 asks only for i + 16 <= m = t.len().
            let (lo, hi) = unsafe { wasm_box::load16(t, i) };
            let wide = [u32x4_extend_low_u16x8(lo), u32x4_extend_high_u16x8(lo), u32x4_extend_low_u16x8(hi), u32x4_extend_high_u16x8(hi)];
            s = [0, 1, 2, 3].map(|k| i32x4_add(s[k], wide[k]));
        }
        s
    });
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let done = 0;
    for (i, o) in out.iter_mut().enumerate().skip(done) {
        let mut sum = 0u32;
        for t in terms {
            sum += t[i] as u32;
        }
        *o = box_mean(sum, norm);
    }
    box_tail_alpha(out, alpha, done);
}

/// Puts `alpha`'s every 4th byte into `out` from value `from` on.
#[inline(always)]
fn box_tail_alpha(out: &mut [u8], alpha: Option<&[u8]>, from: usize) {
    if let Some(alpha) = alpha {
        for i in (from / 4 * 4 + 3..out.len()).step_by(4) {
            out[i] = alpha[i];
        }
    }
}

/// `box_final` for terms in two groups (see `box_pair_split`) whose u16
/// sums cannot wrap: fewer values are widened to u32.
#[inline(always)]
fn box_final_pairs<const A: usize, const B: usize>(a: [&[u16]; A], b: [&[u16]; B], norm: f32, out: &mut [u8], alpha: Option<&[u8]>) {
    let m = out.len();
    let (a, b) = (a.map(|t| &t[..m]), b.map(|t| &t[..m]));
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let done = wasm_box::means16(out, norm, alpha, |i| {
        use core::arch::wasm32::*;
        // The u16 sums of each group (which cannot wrap), 16 values each.
        let group = |g: &[&[u16]]| {
            let mut s = (u16x8_splat(0), u16x8_splat(0));
            for t in g {
                // SAFETY: means16 asks only for i + 16 <= m = t.len().
                let (lo, hi) = unsafe { wasm_box::load16(t, i) };
                s = (i16x8_add(s.0, lo), i16x8_add(s.1, hi));
            }
            s
        };
        let (sa, sb) = (group(&a), group(&b));
        [
            i32x4_add(u32x4_extend_low_u16x8(sa.0), u32x4_extend_low_u16x8(sb.0)),
            i32x4_add(u32x4_extend_high_u16x8(sa.0), u32x4_extend_high_u16x8(sb.0)),
            i32x4_add(u32x4_extend_low_u16x8(sa.1), u32x4_extend_low_u16x8(sb.1)),
            i32x4_add(u32x4_extend_high_u16x8(sa.1), u32x4_extend_high_u16x8(sb.1)),
        ]
    });
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let done = 0;
    for (i, o) in out.iter_mut().enumerate().skip(done) {
        let (mut sa, mut sb) = (0u16, 0u16);
        for t in a {
            sa = sa.wrapping_add(t[i]);
        }
        for t in b {
            sb = sb.wrapping_add(t[i]);
        }
        *o = box_mean(sa as u32 + sb as u32, norm);
    }
    box_tail_alpha(out, alpha, done);
}

/// Box blur of a band for a radius that `box_column_plan` accepts: the
/// running sums go down the columns first (u16, one pass over each
/// entering and leaving source row), then across each row of column sums
/// in L1-sized chunks, by doubling in u16 as far as the sums fit and one
/// u32 sum of at most `BOX_MAX_TERMS` terms. Exact window sums, so the
/// same bytes as `box_band_sums`, with about half the passes over the
/// data; each output byte is written once.
#[inline(always)]
fn box_band_columns_impl(src: &ImageRef, radius: usize, levels: usize, terms: &[(usize, usize)], y0: usize, band: &mut [u8]) {
    let (c, row_len) = (src.channels, src.row_len());
    let (r, last) = (radius as isize, src.height as isize - 1);
    let row_at = |t: isize| src.row(t.clamp(0, last) as usize);
    let first = y0 as isize;
    let mut terms = terms.to_vec();
    let split = box_pair_split(radius, &mut terms);
    // Column sums of the window of the band's first row.
    let mut cols = vec![0u16; row_len];
    for t in first - r..=first + r {
        for (s, &b) in cols.iter_mut().zip(row_at(t)) {
            *s += b as u16;
        }
    }
    let halo = 2 * radius * c;
    let span = BOX_CHUNK + halo;
    let mut ext = vec![0u16; span];
    let mut sums = vec![0u16; levels * span];
    let chunk = BOX_CHUNK.min(row_len);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let mut means = vec![0u8; chunk];
    let norm = (1.0 / ((2 * radius + 1) as f64).powi(2)) as f32;
    for (yy, out) in band.chunks_exact_mut(row_len).enumerate() {
        let y = first + yy as isize;
        if yy > 0 {
            let (e, l) = (row_at(y + r), row_at(y - r - 1));
            for ((s, &e), &l) in cols.iter_mut().zip(e).zip(l) {
                *s = s.wrapping_add(e as u16).wrapping_sub(l as u16);
            }
        }
        // The next entering row is read from memory next.
        simd::prefetch(row_at(y + r + 1).as_ptr(), row_len);
        for start in (0..row_len).step_by(chunk) {
            let m = chunk.min(row_len - start);
            let len = m + halo;
            // base[j]: the column sum of value start + j - rC, clamped.
            let base: &[u16] = if start >= radius * c && start + m + radius * c <= row_len {
                &cols[start - radius * c..start - radius * c + len]
            } else {
                extend_chunk(&cols, c, radius, start, &mut ext[..len]);
                &ext[..len]
            };
            // Level l holds sums of 2^l values, valid for the first
            // len - (2^l - 1) C of them.
            let mut valid = len;
            for l in 1..=levels {
                let size = 1 << (l - 1);
                valid -= size * c;
                let (below, here) = sums.split_at_mut((l - 1) * span);
                let prev: &[u16] = if l == 1 { base } else { &below[(l - 2) * span..(l - 1) * span] };
                let (a, b) = (&prev[..valid], &prev[size * c..size * c + valid]);
                for ((d, &x), &y) in here[..valid].iter_mut().zip(a).zip(b) {
                    *d = x.wrapping_add(y);
                }
            }
            let level = |l: usize| -> &[u16] { if l == 0 { base } else { &sums[(l - 1) * span..l * span] } };
            let parts: Vec<&[u16]> = terms.iter().map(|&(l, o)| &level(l)[o * c..o * c + m]).collect();
            // On wasm32 the means go straight into the output row, with the
            // alpha put in as they are stored (simd128 has no non-temporal
            // store); elsewhere through `means` and a non-temporal copy.
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            let (means, alpha) = (&mut out[start..start + m], (c == 4).then(|| &src.row(y as usize)[start..start + m]));
            #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
            let (means, alpha) = (&mut means[..m], None);
            let p = &parts;
            match (split, parts.len()) {
                (Some(1), 2) => box_final_pairs::<1, 1>([p[0]], [p[1]], norm, means, alpha),
                (Some(1), 3) => box_final_pairs::<1, 2>([p[0]], [p[1], p[2]], norm, means, alpha),
                (Some(2), 3) => box_final_pairs::<2, 1>([p[0], p[1]], [p[2]], norm, means, alpha),
                (Some(2), 4) => box_final_pairs::<2, 2>([p[0], p[1]], [p[2], p[3]], norm, means, alpha),
                (Some(1), 4) => box_final_pairs::<1, 3>([p[0]], [p[1], p[2], p[3]], norm, means, alpha),
                (Some(3), 4) => box_final_pairs::<3, 1>([p[0], p[1], p[2]], [p[3]], norm, means, alpha),
                (Some(2), 5) => box_final_pairs::<2, 3>([p[0], p[1]], [p[2], p[3], p[4]], norm, means, alpha),
                (Some(3), 5) => box_final_pairs::<3, 2>([p[0], p[1], p[2]], [p[3], p[4]], norm, means, alpha),
                (Some(3), 6) => box_final_pairs::<3, 3>([p[0], p[1], p[2]], [p[3], p[4], p[5]], norm, means, alpha),
                _ => match parts.len() {
                1 => box_final::<1>([parts[0]], norm, means, alpha),
                2 => box_final::<2>([parts[0], parts[1]], norm, means, alpha),
                3 => box_final::<3>([parts[0], parts[1], parts[2]], norm, means, alpha),
                4 => box_final::<4>([parts[0], parts[1], parts[2], parts[3]], norm, means, alpha),
                5 => box_final::<5>([parts[0], parts[1], parts[2], parts[3], parts[4]], norm, means, alpha),
                _ => box_final::<6>([parts[0], parts[1], parts[2], parts[3], parts[4], parts[5]], norm, means, alpha),
                },
            }
            // Written once, with non-temporal stores and, for RGBA, the source alpha.
            #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
            {
                let out = &mut out[start..start + m];
                if c == 4 {
                    simd::stream_copy_with_alpha(out, means, &src.row(y as usize)[start..start + m]);
                } else {
                    simd::stream_copy(out, means);
                }
            }
        }
    }
    simd::stream_fence();
}
dispatch!(fn box_band_columns(src: &ImageRef, radius: usize, levels: usize, terms: &[(usize, usize)], y0: usize, band: &mut [u8]) => box_band_columns_impl);

/// Horizontal window sums of source rows, cached by clamped row index: the
/// entering row and the leaving one are at most 2r+1 distinct rows apart,
/// so 2r+2 slots never evict a row that is still needed.
struct SumRows<'a> {
    src: &'a ImageRef<'a>,
    radius: usize,
    tmp: Vec<u16>,
    cache: Vec<u16>,
    held: Vec<usize>,
}

impl<'a> SumRows<'a> {
    #[inline(always)]
    fn new(src: &'a ImageRef<'a>, radius: usize) -> Self {
        let slots = (2 * radius + 2).min(src.height);
        Self {
            src,
            radius,
            tmp: vec![0; 2 * (BOX_CHUNK + 2 * radius * src.channels)],
            cache: vec![0; slots * src.row_len()],
            held: vec![usize::MAX; slots],
        }
    }

    #[inline(always)]
    fn slot(&self, t: isize) -> (usize, usize) {
        let y = t.clamp(0, self.src.height as isize - 1) as usize;
        (y, y % self.held.len())
    }

    /// The sums of row `clamp(t)`, computed unless held.
    #[inline(always)]
    fn get(&mut self, t: isize) -> &[u16] {
        let (y, s) = self.slot(t);
        let n = self.src.row_len();
        if self.held[s] != y {
            let out = &mut self.cache[s * n..(s + 1) * n];
            box_row_sums(self.src.row(y), self.src.channels, self.radius, &mut self.tmp, out);
            self.held[s] = y;
        }
        &self.cache[s * n..(s + 1) * n]
    }

    /// The sums of row `clamp(t)`, which `get` has made.
    #[inline(always)]
    fn held_row(&self, t: isize) -> &[u16] {
        let (_, s) = self.slot(t);
        let n = self.src.row_len();
        &self.cache[s * n..(s + 1) * n]
    }
}

/// WebAssembly SIMD versions of the loops that make the box means (the last
/// step of `box_band_columns`, and `box_band_sums`'s row): LLVM leaves them
/// scalar on wasm32, which made them most of a box blur's time in the
/// browser (radius 10 on 12 MP RGBA: 140 ms, now about 42, in Node's V8).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm_box {
    use core::arch::wasm32::*;

    /// Values `i..i + 16` of `t` as two u16x8 vectors.
    ///
    /// # Safety
    /// `i + 16 <= t.len()`.
    #[inline(always)]
    pub unsafe fn load16(t: &[u16], i: usize) -> (v128, v128) {
        debug_assert!(i + 16 <= t.len());
        // SAFETY: in bounds (the caller's contract); unaligned loads are allowed.
        unsafe { (v128_load(t.as_ptr().add(i) as *const v128), v128_load(t.as_ptr().add(i + 8) as *const v128)) }
    }

    /// `acc[i..i + 16]`, first moved by `slide` (`acc += enter - leave`)
    /// when given.
    ///
    /// # Safety
    /// `i + 16 <=` the length of `acc` and of both slide rows.
    #[inline(always)]
    pub unsafe fn slide16(acc: &mut [u32], slide: Option<(&[u16], &[u16])>, i: usize) -> [v128; 4] {
        debug_assert!(i + 16 <= acc.len());
        let p = acc.as_mut_ptr();
        // SAFETY: in bounds (the caller's contract); unaligned loads are allowed.
        let mut a = [0, 4, 8, 12].map(|k| unsafe { v128_load(p.add(i + k) as *const v128) });
        if let Some((e, l)) = slide {
            // SAFETY: as above.
            let ((e0, e1), (l0, l1)) = unsafe { (load16(e, i), load16(l, i)) };
            let (e, l) = (
                [u32x4_extend_low_u16x8(e0), u32x4_extend_high_u16x8(e0), u32x4_extend_low_u16x8(e1), u32x4_extend_high_u16x8(e1)],
                [u32x4_extend_low_u16x8(l0), u32x4_extend_high_u16x8(l0), u32x4_extend_low_u16x8(l1), u32x4_extend_high_u16x8(l1)],
            );
            for (k, a) in a.iter_mut().enumerate() {
                *a = i32x4_sub(i32x4_add(*a, e[k]), l[k]);
                // SAFETY: as above.
                unsafe { v128_store(p.add(i + 4 * k) as *mut v128, *a) };
            }
        }
        a
    }

    /// `out[i] = box_mean(sum_i, norm)` 16 values at a time, where
    /// `sums(i)` gives the window sums of values `i..i + 16` as four u32x4
    /// (each below 2^24). The same operations as `box_mean` (the
    /// conversion of an integer below 2^24 is exact, then an f32 multiply
    /// and an add), so the same bytes: the truncation of the value in
    /// 0..256 is a floor, and adding 2^23 (exact) leaves the integer in the
    /// low byte of each lane, which the shuffles gather (cheaper in V8 than
    /// `i32x4.trunc_sat_f32x4_s` and two narrows).
    /// Returns the values done, a multiple of 16; the caller does the tail.
    #[inline(always)]
    pub fn means16(out: &mut [u8], norm: f32, alpha: Option<&[u8]>, mut sums: impl FnMut(usize) -> [v128; 4]) -> usize {
        assert!(alpha.is_none_or(|a| a.len() >= out.len()));
        let (vn, half) = (f32x4_splat(norm), f32x4_splat(0.5));
        let blocks = out.len() / 16;
        let magic = f32x4_splat(8_388_608.0);
        for (b, o) in out.chunks_exact_mut(16).enumerate() {
            let q = sums(16 * b).map(|v| f32x4_add(f32x4_floor(f32x4_add(f32x4_mul(f32x4_convert_i32x4(v), vn), half)), magic));
            let lo = i8x16_shuffle::<0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0>(q[0], q[1]);
            let hi = i8x16_shuffle::<0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0>(q[2], q[3]);
            let bytes = i64x2_shuffle::<0, 2>(lo, hi);
            let bytes = match alpha {
                // SAFETY: alpha is as long as out; unaligned loads are allowed.
                Some(a) => v128_bitselect(unsafe { v128_load(a.as_ptr().add(16 * b) as *const v128) }, bytes, u32x4_splat(0xff00_0000)),
                None => bytes,
            };
            // SAFETY: the chunk holds 16 bytes; unaligned stores are allowed.
            unsafe { v128_store(o.as_mut_ptr() as *mut v128, bytes) };
        }
        blocks * 16
    }
}

/// The rounded mean of a window sum `a` of at most `255 (2r+1)^2 < 2^24`
/// (exact in f32), `norm = 1 / (2r+1)^2`: at most 255.5 before
/// truncation, so no clamping is needed (which keeps the loop vectorised
/// with two fewer operations per value than `simd::to_u8`).
#[inline(always)]
fn box_mean(a: u32, norm: f32) -> u8 {
    debug_assert!(a < 1 << 24);
    // Through i32, the same values here (a < 2^24, v < 256): the signed
    // conversions are single SSE2/AVX2 instructions, the unsigned ones are
    // sequences below AVX-512.
    let v = (a as i32) as f32 * norm + 0.5;
    debug_assert!((0.0..256.0).contains(&v));
    // SAFETY: v is finite and in 0..256 (see above).
    unsafe { v.to_int_unchecked::<i32>() as u8 }
}

/// Box blur of a band for `radius <= BOX_SUMS_MAX_RADIUS`: exact integer
/// window sums (horizontal by doubling, vertical as a running sum over
/// cached rows), one rounding at the end.
#[inline(always)]
fn box_band_sums_impl(src: &ImageRef, radius: usize, y0: usize, band: &mut [u8]) {
    let row_len = src.row_len();
    let r = radius as isize;
    let mut rows = SumRows::new(src, radius);
    let mut acc = vec![0u32; row_len];
    let first = y0 as isize;
    for t in first - r..=first + r {
        for (a, &v) in acc.iter_mut().zip(rows.get(t)) {
            *a += v as u32;
        }
    }
    let norm = (1.0 / ((2 * radius + 1) as f64).powi(2)) as f32;
    // Each output row is made in `means` (in L1) and then written once, with
    // non-temporal stores and, for RGBA, the source alpha; on wasm32 (no
    // non-temporal stores) straight into the output, alpha included.
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let (mut means, mut with_alpha) = (vec![0u8; row_len], vec![0u8; if src.channels == 4 { row_len } else { 0 }]);
    for (yy, out) in band.chunks_exact_mut(row_len).enumerate() {
        let y = first + yy as isize;
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        {
            let slide = (yy > 0).then(|| {
                rows.get(y + r);
                rows.get(y - r - 1);
                (rows.held_row(y + r), rows.held_row(y - r - 1))
            });
            box_sums_row(&mut acc, slide, norm, out, (src.channels == 4).then(|| src.row(y as usize)));
        }
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        {
            if yy == 0 {
                for (o, &a) in means.iter_mut().zip(&acc) {
                    *o = box_mean(a, norm);
                }
            } else {
                rows.get(y + r);
                rows.get(y - r - 1);
                let (e, l) = (rows.held_row(y + r), rows.held_row(y - r - 1));
                for (((a, o), &e), &l) in acc.iter_mut().zip(means.iter_mut()).zip(e).zip(l) {
                    *a = a.wrapping_add(e as u32).wrapping_sub(l as u32);
                    *o = box_mean(*a, norm);
                }
            }
            if src.channels == 4 {
                simd::copy_with_alpha(&mut with_alpha, &means, src.row(y as usize));
                simd::stream_copy(out, &with_alpha);
            } else {
                simd::stream_copy(out, &means);
            }
        }
    }
    simd::stream_fence();
}

/// One output row of `box_band_sums`: the window sums `acc` moved down a
/// row (`slide`: the entering and the leaving row's sums), then
/// `out[i] = box_mean(acc[i])`; with `alpha` (RGBA), every 4th byte is
/// `alpha[i]` instead. (wasm32 only: elsewhere LLVM vectorises the loops
/// of `box_band_sums` as they are.)
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn box_sums_row(acc: &mut [u32], slide: Option<(&[u16], &[u16])>, norm: f32, out: &mut [u8], alpha: Option<&[u8]>) {
    let n = out.len();
    let acc = &mut acc[..n];
    let slide = slide.map(|(e, l)| (&e[..n], &l[..n]));
    // SAFETY: means16 asks only for i + 16 <= n, the length of acc and of both slide rows.
    let done = wasm_box::means16(out, norm, alpha, |i| unsafe { wasm_box::slide16(acc, slide, i) });
    match slide {
        None => {
            for (o, &a) in out.iter_mut().zip(acc.iter()).skip(done) {
                *o = box_mean(a, norm);
            }
        }
        Some((e, l)) => {
            for (((a, o), &e), &l) in acc.iter_mut().zip(out.iter_mut()).zip(e).zip(l).skip(done) {
                *a = a.wrapping_add(e as u32).wrapping_sub(l as u32);
                *o = box_mean(*a, norm);
            }
        }
    }
    box_tail_alpha(out, alpha, done);
}
dispatch!(fn box_band_sums(src: &ImageRef, radius: usize, y0: usize, band: &mut [u8]) => box_band_sums_impl);

/// Integer accumulator for the vertical window sums.
trait Acc: Copy + Default + Send + Sync {
    fn add(self, v: u16) -> Self;
    fn sub(self, v: u16) -> Self;
    fn add_times(self, v: u16, n: u64) -> Self;
    fn to_f32(self) -> f32;
}
impl Acc for u32 {
    fn add(self, v: u16) -> Self { self + v as u32 }
    fn sub(self, v: u16) -> Self { self - v as u32 }
    fn add_times(self, v: u16, n: u64) -> Self { self + v as u32 * n as u32 }
    fn to_f32(self) -> f32 { self as f32 }
}
impl Acc for u64 {
    fn add(self, v: u16) -> Self { self + v as u64 }
    fn sub(self, v: u16) -> Self { self - v as u64 }
    fn add_times(self, v: u16, n: u64) -> Self { self + v as u64 * n }
    fn to_f32(self) -> f32 { self as f32 }
}

/// Horizontal box means of one row, in FRAC fixed point.
fn box_row(row: &[u8], channels: usize, radius: usize, out: &mut [u16]) {
    match channels {
        1 => box_row_c::<1>(row, radius, out),
        3 => box_row_c::<3>(row, radius, out),
        _ => box_row_c::<4>(row, radius, out),
    }
}

/// Running window sums along the row: each step adds the pixel entering on
/// the right and drops the one leaving on the left (indices clamped to the
/// row, the nearest border rule). The first window is summed in closed form
/// so that a radius far beyond the row costs nothing extra.
#[inline(always)]
fn box_row_c<const C: usize>(row: &[u8], radius: usize, out: &mut [u16]) {
    let width = row.len() / C;
    let last = width as i64 - 1;
    let r = radius as i64;
    // mean * FRAC = sum * FRAC / (2r+1), as a 32.32 fixed-point multiply
    // (sum * scale < 2^48, no overflow) rounded to nearest.
    let scale = ((FRAC as u128) << 32) / (2 * radius as u128 + 1);
    let scale = scale as u64;
    let fixed = |sum: u64| ((sum * scale + (1 << 31)) >> 32) as u16;
    let at = |i: i64, ch: usize| row[i.clamp(0, last) as usize * C + ch] as u64;
    // Steps x whose window reaches neither edge need no clamping.
    let lo = (r + 1).min(width as i64);
    let hi = (width as i64 - r).max(lo);
    // Window [-r, r] at x = 0: r+1 copies of pixel 0 (positions -r..=0),
    // then pixels 1..=r, of which those past the end repeat the last.
    let inside = r.min(last);
    let mut sums = [0u64; C];
    for (ch, sum) in sums.iter_mut().enumerate() {
        *sum = (r as u64 + 1) * at(0, ch) + (r - inside) as u64 * at(last, ch);
        for i in 1..=inside {
            *sum += at(i, ch);
        }
        out[ch] = fixed(*sum);
    }
    let clamped_step = |x: i64, sums: &mut [u64; C], out: &mut [u16]| {
        for (ch, sum) in sums.iter_mut().enumerate() {
            *sum = *sum + at(x + r, ch) - at(x - r - 1, ch);
            out[x as usize * C + ch] = fixed(*sum);
        }
    };
    for x in 1..lo {
        clamped_step(x, &mut sums, out);
    }
    if hi > lo {
        let (lo, hi) = (lo as usize, hi as usize);
        let entering = row[(lo + radius) * C..].chunks_exact(C);
        let leaving = row[(lo - radius - 1) * C..].chunks_exact(C);
        for ((o, e), l) in out[lo * C..hi * C].chunks_exact_mut(C).zip(entering).zip(leaving) {
            for ch in 0..C {
                sums[ch] = sums[ch] + e[ch] as u64 - l[ch] as u64;
                o[ch] = fixed(sums[ch]);
            }
        }
    }
    for x in hi..width as i64 {
        clamped_step(x, &mut sums, out);
    }
}

/// Horizontal means of source rows, cached by row. Rows 0 and h-1 repeat
/// for as long as the window hangs over an edge, so they are kept apart;
/// the others enter and leave the window once, 2r+1 rows apart, so a ring
/// of 2r+2 slots never evicts a row that is still needed.
struct BoxRows<'a> {
    src: &'a ImageRef<'a>,
    radius: usize,
    cache: Vec<u16>,
    held: Vec<usize>,
    edges: [Vec<u16>; 2],
}

impl<'a> BoxRows<'a> {
    fn new(src: &'a ImageRef<'a>, radius: usize) -> Self {
        let row_len = src.row_len();
        let slots = (2 * radius + 2).min(src.height);
        let mut rows = Self {
            src,
            radius,
            cache: vec![0; slots * row_len],
            held: vec![usize::MAX; slots],
            edges: [vec![0; row_len], vec![0; row_len]],
        };
        let (c, last) = (src.channels, src.height - 1);
        box_row(src.row(0), c, radius, &mut rows.edges[0]);
        box_row(src.row(last), c, radius, &mut rows.edges[1]);
        rows
    }

    /// Computes the means of row `clamp(t)` unless already held.
    fn ensure(&mut self, t: isize) {
        let h = self.src.height as isize;
        if t <= 0 || t >= h - 1 {
            return;
        }
        let (y, n) = (t as usize, self.src.row_len());
        let s = y % self.held.len();
        if self.held[s] != y {
            let out = &mut self.cache[s * n..(s + 1) * n];
            box_row(self.src.row(y), self.src.channels, self.radius, out);
            self.held[s] = y;
        }
    }

    /// The means of row `clamp(t)`; `ensure(t)` must have been called.
    fn get(&self, t: isize) -> &[u16] {
        let h = self.src.height as isize;
        if t <= 0 {
            return &self.edges[0];
        }
        if t >= h - 1 {
            return &self.edges[1];
        }
        let (y, n) = (t as usize, self.src.row_len());
        let s = y % self.held.len();
        debug_assert_eq!(self.held[s], y);
        &self.cache[s * n..(s + 1) * n]
    }
}

fn box_band<A: Acc>(src: &ImageRef, radius: usize, y0: usize, band: &mut [u8]) {
    let row_len = src.row_len();
    let last = src.height as isize - 1;
    let r = radius as isize;
    let mut rows = BoxRows::new(src, radius);

    // Window sum for the first row of the band: rows clamp(t) for t in
    // [y0-r, y0+r], where every t <= 0 is row 0 and every t >= h-1 is row h-1.
    let first = y0 as isize;
    let (copies_first, copies_last) = if last == 0 {
        ((2 * r + 1) as u64, 0) // one row: first and last are the same row
    } else {
        ((r - first + 1).max(0) as u64, (first + r - last + 1).max(0) as u64)
    };
    let mut acc = vec![A::default(); row_len];
    for (i, a) in acc.iter_mut().enumerate() {
        *a = A::default().add_times(rows.edges[0][i], copies_first).add_times(rows.edges[1][i], copies_last);
    }
    for t in (first - r).max(1)..=(first + r).min(last - 1) {
        rows.ensure(t);
        for (a, &v) in acc.iter_mut().zip(rows.get(t)) {
            *a = a.add(v);
        }
    }
    let norm = (1.0 / ((2 * radius + 1) as f64 * FRAC as f64)) as f32;
    for (yy, out) in band.chunks_exact_mut(row_len).enumerate() {
        let y = first + yy as isize;
        if yy > 0 {
            rows.ensure(y + r);
            rows.ensure(y - r - 1);
            let (enter, leave) = (rows.get(y + r), rows.get(y - r - 1));
            for i in 0..row_len {
                acc[i] = acc[i].add(enter[i]).sub(leave[i]);
            }
        }
        for (o, a) in out.iter_mut().zip(&acc) {
            *o = simd::to_u8(a.to_f32() * norm);
        }
    }
}

#[cfg(test)]
mod tests;

