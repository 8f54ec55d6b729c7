//! Pixelation: every block becomes the mean of its pixels.
//!
//! The mean, not one sampled pixel: a sampled pixel keeps a real pixel of
//! the face at full precision on a regular grid, and the mean over the block
//! is also what makes the mosaic look even. Blocks lie on a grid anchored
//! at `(origin_x, origin_y)` (which may be outside the image), so the grid
//! of a face's region starts at the region's corner. Blocks cut by the image
//! border take the mean of the pixels they have.

use crate::error::{Result, VeilError};
use crate::image::ImageRef;
use crate::parallel::for_each_band;
use crate::simd::{self, dispatch};

/// Pixelates `src` into `dst` with square blocks of `block_px` pixels.
/// Alpha is copied.
pub fn pixelate(
    src: ImageRef,
    dst: &mut [u8],
    block_px: usize,
    origin_x: i64,
    origin_y: i64,
    threads: usize,
) -> Result<()> {
    if block_px == 0 {
        return Err(VeilError::param("block_px", "must be at least 1"));
    }
    if dst.len() != src.data.len() {
        return Err(VeilError::InvalidImage(format!(
            "output buffer holds {} bytes, the image needs {}",
            dst.len(),
            src.data.len()
        )));
    }
    let grid = Grid::new(block_px, origin_x, origin_y);
    // Alpha is put back as each row is written (pixelate_rows).
    for_each_band(dst, src.row_len(), threads, |y0, band| pixelate_band(&src, grid, y0, band));
    Ok(())
}

/// A block grid: block `n` along an axis covers `[first + n*size, first + (n+1)*size)`.
#[derive(Clone, Copy, Debug)]
struct Grid {
    size: usize,
    /// Offset of the grid within a block, in `0..size`: a grid line falls at
    /// every coordinate `c` with `c % size == phase`.
    phase_x: usize,
    phase_y: usize,
}

impl Grid {
    fn new(size: usize, origin_x: i64, origin_y: i64) -> Self {
        let s = size as i64;
        Self { size, phase_x: origin_x.rem_euclid(s) as usize, phase_y: origin_y.rem_euclid(s) as usize }
    }
    /// The block containing coordinate `v`, as the range it covers clipped to `0..len`.
    fn block(&self, v: usize, phase: usize, len: usize) -> (usize, usize) {
        // The block starts at the last grid line at or before v.
        let (v, size) = (v as i64, self.size as i64);
        let start = v - (v - phase as i64).rem_euclid(size);
        let lo = start.max(0) as usize;
        let hi = ((start + size) as usize).min(len);
        (lo, hi)
    }
}

#[inline(always)]
fn pixelate_band_impl(src: &ImageRef, grid: Grid, y0: usize, band: &mut [u8]) {
    // Column sums of up to 257 rows of bytes fit in u16, which vectorises
    // twice as wide as u32.
    if grid.size <= 257 {
        pixelate_rows::<u16>(src, grid, y0, band)
    } else {
        pixelate_rows::<u32>(src, grid, y0, band)
    }
}

#[inline(always)]
fn pixelate_rows<S>(src: &ImageRef, grid: Grid, y0: usize, band: &mut [u8])
where
    S: Copy + Default + std::ops::AddAssign + From<u8> + Into<u64>,
{
    let (w, h, c) = (src.width, src.height, src.channels);
    let row_len = src.row_len();
    let y_end = y0 + band.len() / row_len;
    let mut column_sums = vec![S::default(); row_len];
    let mut pattern = vec![0u8; row_len];
    let mut with_alpha = vec![0u8; if c == 4 { row_len } else { 0 }];
    let mut y = y0;
    while y < y_end {
        // The block row containing y, whole (it may extend past the band).
        let (by0, by1) = grid.block(y, grid.phase_y, h);
        column_sums.iter_mut().for_each(|s| *s = S::default());
        for sy in by0..by1 {
            for (s, &v) in column_sums.iter_mut().zip(src.row(sy)) {
                *s += S::from(v);
            }
        }
        let mut x = 0;
        let mut recip = (0u64, 0f64);
        while x < w {
            let (bx0, bx1) = grid.block(x, grid.phase_x, w);
            let count = ((bx1 - bx0) * (by1 - by0)) as u64;
            if recip.0 != count {
                recip = (count, 1.0 / (2 * count) as f64);
            }
            let mut means = [0u8; 4];
            for (ch, mean) in means.iter_mut().enumerate().take(c) {
                let sum: u64 = (bx0..bx1).map(|sx| column_sums[sx * c + ch].into()).sum();
                *mean = round_mean(sum, count, recip.1);
            }
            let run = &mut pattern[bx0 * c..bx1 * c];
            match c {
                1 => run.fill(means[0]),
                3 => fill_pixels::<3>(run, [means[0], means[1], means[2]]),
                _ => fill_pixels::<4>(run, means),
            }
            x = bx1;
        }
        let rows_here = by1.min(y_end) - y;
        for yy in 0..rows_here {
            let r = y - y0 + yy;
            let out = &mut band[r * row_len..(r + 1) * row_len];
            if c == 4 {
                simd::copy_with_alpha(&mut with_alpha, &pattern, src.row(y + yy));
                simd::stream_copy(out, &with_alpha);
            } else {
                simd::stream_copy(out, &pattern);
            }
        }
        y += rows_here;
    }
    simd::stream_fence();
}
/// Every pixel of `run` set to `px`, a compile-time array so that the
/// copy is a plain store (from a run-time-length slice it was not).
#[inline(always)]
fn fill_pixels<const C: usize>(run: &mut [u8], px: [u8; C]) {
    for out in run.chunks_exact_mut(C) {
        out.copy_from_slice(&px);
    }
}

/// `(2 sum + n) / 2n` rounded down (the mean rounded half up), by a
/// multiply with `recip = 1 / 2n` instead of a 64-bit division. Exact: the
/// quotient is below 256 and, unless it is an integer, at least 1/2n
/// (> 2^-40 here, as n < 2^39) from the next integer, while the product's
/// rounding error is under 2^-44; the added 2^-41 lifts exact integers
/// that the product left just below.
#[inline(always)]
fn round_mean(sum: u64, count: u64, recip: f64) -> u8 {
    let q = (2 * sum + count) as f64 * recip + 1.0 / (1u64 << 41) as f64;
    q as u8
}

dispatch!(fn pixelate_band(src: &ImageRef, grid: Grid, y0: usize, band: &mut [u8]) => pixelate_band_impl);

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_reference(src: &[u8], w: usize, h: usize, c: usize, b: usize, ox: i64, oy: i64) -> Vec<u8> {
        let mut out = vec![0u8; src.len()];
        let block_of = |v: usize, o: i64| (v as i64 - o).div_euclid(b as i64);
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let (bx, by) = (block_of(x, ox), block_of(y, oy));
                    let (mut sum, mut n) = (0u64, 0u64);
                    for yy in 0..h {
                        for xx in 0..w {
                            if block_of(xx, ox) == bx && block_of(yy, oy) == by {
                                sum += src[(yy * w + xx) * c + ch] as u64;
                                n += 1;
                            }
                        }
                    }
                    out[(y * w + x) * c + ch] = ((2 * sum + n) / (2 * n)) as u8;
                }
            }
        }
        out
    }

    #[test]
    fn matches_brute_force_block_means() {
        let (w, h, c) = (13, 9, 3);
        let src: Vec<u8> = (0..w * h * c).map(|i| (i * 37 % 251) as u8).collect();
        for &(b, ox, oy) in &[(1, 0, 0), (3, 0, 0), (4, 2, -3), (5, -7, 11), (20, 3, 3), (2, 100, -100)] {
            let mut dst = vec![0u8; src.len()];
            pixelate(ImageRef::new(&src, w, h, c).unwrap(), &mut dst, b, ox, oy, 1).unwrap();
            assert_eq!(dst, mean_reference(&src, w, h, c, b, ox, oy), "block {b} origin ({ox},{oy})");
        }
    }

    #[test]
    fn rgba_keeps_alpha_and_averages_colour() {
        // Wide enough for the 64-byte paths, with a ragged end.
        let (w, h, c) = (77, 21, 4);
        let src: Vec<u8> = (0..w * h * c).map(|i| (i * 53 % 241) as u8).collect();
        for &(b, ox, oy) in &[(1, 0, 0), (5, 2, -3), (16, 0, 0), (30, -7, 11)] {
            let mut dst = vec![0u8; src.len()];
            pixelate(ImageRef::new(&src, w, h, c).unwrap(), &mut dst, b, ox, oy, 2).unwrap();
            let want = mean_reference(&src, w, h, c, b, ox, oy);
            for i in 0..src.len() {
                let expected = if i % 4 == 3 { src[i] } else { want[i] };
                assert_eq!(dst[i], expected, "block {b} at {i}");
            }
        }
    }

    #[test]
    fn rejects_zero_block() {
        let src = [0u8; 3];
        let mut dst = [0u8; 3];
        let err = pixelate(ImageRef::new(&src, 1, 1, 3).unwrap(), &mut dst, 0, 0, 0, 1).unwrap_err();
        assert!(matches!(err, VeilError::InvalidParameter { name: "block_px", .. }));
    }
}
