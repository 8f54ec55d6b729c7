//! Full-resolution Gaussian in 16-bit fixed point, both passes in one
//! sweep over each band of rows.
//!
//! Values are bytes times 64 (Q6, at most 16320) and weights are Q15
//! integers that sum to exactly 32768. Each product is the rounded high
//! half `(v w + 2^14) >> 15`, which is one instruction on every target
//! used: `pmulhrsw` on x86-64 (AVX2, AVX-512 BW) and
//! `i16x8.q15mulr_sat_s` on WebAssembly (which only differs from it for
//! `-32768 * -32768`, out of reach here). The kernel is symmetric, so the
//! two values at distance j are added first (at most 2 * 16327 < 2^15) and
//! multiplied once. Every product rounds by at most half a Q6 unit and
//! integer sums are exact, so a pass is within `(r + 1) / 2` units (1/64
//! of a level each) of the exact sum of its quantised weights, and every
//! target gives the same bits.
//!
//! Rows are filtered horizontally once each, into a ring of `2r+1` rows of
//! a strip of columns, and each output row is the vertical sum of the ring,
//! rounded to bytes: the source is read once and the output written once.

use crate::image::ImageRef;

/// Q15 weights of a symmetric sampled Gaussian: `w[j]` for distance `j` in
/// `0..=radius`, with `w[0] + 2 * sum(w[1..])` exactly 32768.
#[derive(Clone, Debug)]
pub(super) struct Kernel {
    pub w: Vec<i16>,
}

impl Kernel {
    /// The sampled Gaussian of `sigma`, truncated at `truncate` sigmas and
    /// renormalised, rounded to Q15; the rounding residue goes to the centre
    /// weight, so a flat image stays flat.
    pub fn new(sigma: f64, truncate: f64) -> Self {
        let radius = (truncate * sigma + 0.5) as usize;
        let g: Vec<f64> = (0..=radius).map(|j| (-0.5 * (j * j) as f64 / (sigma * sigma)).exp()).collect();
        let total = g[0] + 2.0 * g[1..].iter().sum::<f64>();
        let mut w: Vec<i32> = g.iter().map(|v| (v / total * 32768.0).round() as i32).collect();
        let sum = w[0] + 2 * w[1..].iter().sum::<i32>();
        w[0] += 32768 - sum;
        assert!(radius <= MAX_RADIUS && w.iter().all(|&v| (0..32768).contains(&v)), "sigma {sigma}: weights {w:?}");
        Self { w: w.into_iter().map(|v| v as i16).collect() }
    }

    pub fn radius(&self) -> usize {
        self.w.len() - 1
    }
}

/// The arithmetic of both passes on `N` lanes of i16.
trait Lanes: Copy {
    const N: usize;
    /// Whether the column pass makes two output rows per load of the ring
    /// (`column_pass_pair`): it keeps `2r+2` vectors live, which fits in
    /// AVX-512's 32 registers but spills with AVX2's and simd128's 16
    /// (measured in the page: sigma 3 87 -> 116 ms).
    const PAIR_ROWS: bool = false;
    fn splat(v: i16) -> Self;
    /// # Safety
    /// `p..p+N` readable.
    unsafe fn load(p: *const i16) -> Self;
    /// # Safety
    /// `p..p+N` writable.
    unsafe fn store(self, p: *mut i16);
    /// `N` bytes as Q6.
    /// # Safety
    /// `p..p+N` readable.
    unsafe fn load_q6(p: *const u8) -> Self;
    /// `min((v + 32) >> 6, 255)` as `N` bytes (v is never negative).
    /// # Safety
    /// `p..p+N` writable.
    unsafe fn store_u8(self, p: *mut u8);
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    /// `(self * w + 2^14) >> 15` (arithmetic shift), for `|self| < 2^15`
    /// and `0 <= w < 2^15`.
    fn mulhrs(self, w: Self) -> Self;
    /// `dst[i] = src[ctrl[2 i] / 2]` for the 8 values at `dst`: a shuffle
    /// of the 16 bytes at `src` by the byte indices `ctrl` (each below 16).
    /// # Safety
    /// 16 bytes readable at `src` and `ctrl`, writable at `dst`.
    #[inline(always)]
    unsafe fn shuffle8(src: *const i16, ctrl: *const u8, dst: *mut i16) {
        for i in 0..8 {
            *dst.add(i) = *src.add(*ctrl.add(2 * i) as usize / 2);
        }
    }
    /// The colour bytes of 4 RGBA pixels at `src` (16 bytes) to the first
    /// 12 of the 16 bytes at `dst` (the other 4 are overwritten).
    /// # Safety
    /// 16 bytes readable at `src`, writable at `dst`.
    #[inline(always)]
    unsafe fn rgb_of_rgba4(src: *const u8, dst: *mut u8) {
        for p in 0..4 {
            core::ptr::copy_nonoverlapping(src.add(4 * p), dst.add(3 * p), 3);
        }
    }
    /// 4 RGB pixels (the first 12 of the 16 bytes at `rgb`) with the alpha
    /// bytes of the 4 RGBA pixels at `alpha`, as 16 bytes at `out`.
    /// # Safety
    /// 16 bytes readable at `rgb` and `alpha`, writable at `out`.
    #[inline(always)]
    unsafe fn rgba_of_rgb4(rgb: *const u8, alpha: *const u8, out: *mut u8) {
        for p in 0..4 {
            core::ptr::copy_nonoverlapping(rgb.add(3 * p), out.add(4 * p), 3);
            *out.add(4 * p + 3) = *alpha.add(4 * p + 3);
        }
    }
}

/// Byte indices that take the colour bytes of 4 RGBA pixels (a shuffle
/// of 16 bytes; the last 4 are zeroed), and that put 4 RGB pixels back in
/// RGBA order (the alpha places zeroed, to be filled from the source).
const RGB_OF_RGBA: [u8; 16] = [0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 0x80, 0x80, 0x80, 0x80];
const RGBA_OF_RGB: [u8; 16] = [0, 1, 2, 0x80, 3, 4, 5, 0x80, 6, 7, 8, 0x80, 9, 10, 11, 0x80];

/// One lane in plain Rust: the fallback, and the definition the vector
/// versions match bit for bit.
#[derive(Clone, Copy)]
struct Scalar(i16);

impl Lanes for Scalar {
    const N: usize = 1;
    #[inline(always)]
    fn splat(v: i16) -> Self {
        Scalar(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const i16) -> Self {
        Scalar(*p)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut i16) {
        *p = self.0
    }
    #[inline(always)]
    unsafe fn load_q6(p: *const u8) -> Self {
        Scalar((*p as i16) << 6)
    }
    #[inline(always)]
    unsafe fn store_u8(self, p: *mut u8) {
        *p = ((self.0 as i32 + 32) >> 6).min(255) as u8
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Scalar(self.0.wrapping_add(o.0))
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        Scalar(self.0.wrapping_sub(o.0))
    }
    #[inline(always)]
    fn mulhrs(self, w: Self) -> Self {
        Scalar(((self.0 as i32 * w.0 as i32 + (1 << 14)) >> 15) as i16)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Lanes;
    use core::arch::x86_64::*;

    #[derive(Clone, Copy)]
    pub struct Avx2(__m256i);

    impl Lanes for Avx2 {
        const N: usize = 16;
        #[inline(always)]
        fn splat(v: i16) -> Self {
            // SAFETY: only compiled into functions that enable AVX2.
            Avx2(unsafe { _mm256_set1_epi16(v) })
        }
        #[inline(always)]
        unsafe fn load(p: *const i16) -> Self {
            Avx2(_mm256_loadu_si256(p as *const __m256i))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut i16) {
            _mm256_storeu_si256(p as *mut __m256i, self.0)
        }
        #[inline(always)]
        unsafe fn load_q6(p: *const u8) -> Self {
            Avx2(_mm256_slli_epi16::<6>(_mm256_cvtepu8_epi16(_mm_loadu_si128(p as *const __m128i))))
        }
        #[inline(always)]
        unsafe fn store_u8(self, p: *mut u8) {
            let v = _mm256_srli_epi16::<6>(_mm256_add_epi16(self.0, _mm256_set1_epi16(32)));
            let packed = _mm256_permute4x64_epi64::<0b1000>(_mm256_packus_epi16(v, v));
            _mm_storeu_si128(p as *mut __m128i, _mm256_castsi256_si128(packed))
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            // SAFETY: as in splat.
            Avx2(unsafe { _mm256_add_epi16(self.0, o.0) })
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            // SAFETY: as in splat.
            Avx2(unsafe { _mm256_sub_epi16(self.0, o.0) })
        }
        #[inline(always)]
        fn mulhrs(self, w: Self) -> Self {
            // SAFETY: as in splat.
            Avx2(unsafe { _mm256_mulhrs_epi16(self.0, w.0) })
        }
        #[inline(always)]
        unsafe fn shuffle8(src: *const i16, ctrl: *const u8, dst: *mut i16) {
            let v = _mm_shuffle_epi8(_mm_loadu_si128(src as *const __m128i), _mm_loadu_si128(ctrl as *const __m128i));
            _mm_storeu_si128(dst as *mut __m128i, v)
        }
        #[inline(always)]
        unsafe fn rgb_of_rgba4(src: *const u8, dst: *mut u8) {
            let v = _mm_loadu_si128(src as *const __m128i);
            let idx = _mm_loadu_si128(super::RGB_OF_RGBA.as_ptr() as *const __m128i);
            _mm_storeu_si128(dst as *mut __m128i, _mm_shuffle_epi8(v, idx))
        }
        #[inline(always)]
        unsafe fn rgba_of_rgb4(rgb: *const u8, alpha: *const u8, out: *mut u8) {
            let v = _mm_loadu_si128(rgb as *const __m128i);
            let idx = _mm_loadu_si128(super::RGBA_OF_RGB.as_ptr() as *const __m128i);
            let a = _mm_and_si128(_mm_loadu_si128(alpha as *const __m128i), _mm_set1_epi32(0xff00_0000u32 as i32));
            _mm_storeu_si128(out as *mut __m128i, _mm_or_si128(_mm_shuffle_epi8(v, idx), a))
        }
    }

    #[derive(Clone, Copy)]
    pub struct Avx512(__m512i);

    impl Lanes for Avx512 {
        const N: usize = 32;
        const PAIR_ROWS: bool = true;
        #[inline(always)]
        fn splat(v: i16) -> Self {
            // SAFETY: only compiled into functions that enable AVX-512 F and BW.
            Avx512(unsafe { _mm512_set1_epi16(v) })
        }
        #[inline(always)]
        unsafe fn load(p: *const i16) -> Self {
            Avx512(_mm512_loadu_si512(p as *const __m512i))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut i16) {
            _mm512_storeu_si512(p as *mut __m512i, self.0)
        }
        #[inline(always)]
        unsafe fn load_q6(p: *const u8) -> Self {
            Avx512(_mm512_slli_epi16::<6>(_mm512_cvtepu8_epi16(_mm256_loadu_si256(p as *const __m256i))))
        }
        #[inline(always)]
        unsafe fn store_u8(self, p: *mut u8) {
            let v = _mm512_srli_epi16::<6>(_mm512_add_epi16(self.0, _mm512_set1_epi16(32)));
            _mm256_storeu_si256(p as *mut __m256i, _mm512_cvtusepi16_epi8(v))
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            // SAFETY: as in splat.
            Avx512(unsafe { _mm512_add_epi16(self.0, o.0) })
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            // SAFETY: as in splat.
            Avx512(unsafe { _mm512_sub_epi16(self.0, o.0) })
        }
        #[inline(always)]
        fn mulhrs(self, w: Self) -> Self {
            // SAFETY: as in splat.
            Avx512(unsafe { _mm512_mulhrs_epi16(self.0, w.0) })
        }
        #[inline(always)]
        unsafe fn shuffle8(src: *const i16, ctrl: *const u8, dst: *mut i16) {
            let v = _mm_shuffle_epi8(_mm_loadu_si128(src as *const __m128i), _mm_loadu_si128(ctrl as *const __m128i));
            _mm_storeu_si128(dst as *mut __m128i, v)
        }
        #[inline(always)]
        unsafe fn rgb_of_rgba4(src: *const u8, dst: *mut u8) {
            let v = _mm_loadu_si128(src as *const __m128i);
            let idx = _mm_loadu_si128(super::RGB_OF_RGBA.as_ptr() as *const __m128i);
            _mm_storeu_si128(dst as *mut __m128i, _mm_shuffle_epi8(v, idx))
        }
        #[inline(always)]
        unsafe fn rgba_of_rgb4(rgb: *const u8, alpha: *const u8, out: *mut u8) {
            let v = _mm_loadu_si128(rgb as *const __m128i);
            let idx = _mm_loadu_si128(super::RGBA_OF_RGB.as_ptr() as *const __m128i);
            let a = _mm_and_si128(_mm_loadu_si128(alpha as *const __m128i), _mm_set1_epi32(0xff00_0000u32 as i32));
            _mm_storeu_si128(out as *mut __m128i, _mm_or_si128(_mm_shuffle_epi8(v, idx), a))
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use super::Lanes;
    use core::arch::wasm32::*;

    #[derive(Clone, Copy)]
    pub struct Simd128(v128);

    impl Lanes for Simd128 {
        const N: usize = 8;
        #[inline(always)]
        fn splat(v: i16) -> Self {
            Simd128(i16x8_splat(v))
        }
        #[inline(always)]
        unsafe fn load(p: *const i16) -> Self {
            Simd128(v128_load(p as *const v128))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut i16) {
            v128_store(p as *mut v128, self.0)
        }
        #[inline(always)]
        unsafe fn load_q6(p: *const u8) -> Self {
            Simd128(i16x8_shl(u16x8_load_extend_u8x8(p), 6))
        }
        #[inline(always)]
        unsafe fn store_u8(self, p: *mut u8) {
            let v = u16x8_shr(i16x8_add(self.0, i16x8_splat(32)), 6);
            v128_store64_lane::<0>(u8x16_narrow_i16x8(v, v), p as *mut u64)
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            Simd128(i16x8_add(self.0, o.0))
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            Simd128(i16x8_sub(self.0, o.0))
        }
        #[inline(always)]
        fn mulhrs(self, w: Self) -> Self {
            Simd128(i16x8_q15mulr_sat(self.0, w.0))
        }
        #[inline(always)]
        unsafe fn shuffle8(src: *const i16, ctrl: *const u8, dst: *mut i16) {
            v128_store(dst as *mut v128, i8x16_swizzle(v128_load(src as *const v128), v128_load(ctrl as *const v128)))
        }
        #[inline(always)]
        unsafe fn rgb_of_rgba4(src: *const u8, dst: *mut u8) {
            let idx = v128_load(super::RGB_OF_RGBA.as_ptr() as *const v128);
            v128_store(dst as *mut v128, i8x16_swizzle(v128_load(src as *const v128), idx))
        }
        #[inline(always)]
        unsafe fn rgba_of_rgb4(rgb: *const u8, alpha: *const u8, out: *mut u8) {
            let idx = v128_load(super::RGBA_OF_RGB.as_ptr() as *const v128);
            let a = v128_and(v128_load(alpha as *const v128), u32x4_splat(0xff00_0000));
            v128_store(out as *mut v128, v128_or(i8x16_swizzle(v128_load(rgb as *const v128), idx), a))
        }
    }
}

/// Largest kernel radius of this path.
pub(super) const MAX_RADIUS: usize = 15;

/// Vectors per step of the inner loops: independent sums that share each
/// weight register.
const BLOCK: usize = 4;

/// Calls `$f::<R>` for the kernel radius `R = $r`, so that the loops over
/// taps are unrolled with the weights in registers.
macro_rules! with_radius {
    ($r:expr, $f:ident::<$($v:ty),+>($($arg:expr),*)) => {
        match $r {
            1 => $f::<$($v),+, 1>($($arg),*),
            2 => $f::<$($v),+, 2>($($arg),*),
            3 => $f::<$($v),+, 3>($($arg),*),
            4 => $f::<$($v),+, 4>($($arg),*),
            5 => $f::<$($v),+, 5>($($arg),*),
            6 => $f::<$($v),+, 6>($($arg),*),
            7 => $f::<$($v),+, 7>($($arg),*),
            8 => $f::<$($v),+, 8>($($arg),*),
            9 => $f::<$($v),+, 9>($($arg),*),
            10 => $f::<$($v),+, 10>($($arg),*),
            11 => $f::<$($v),+, 11>($($arg),*),
            12 => $f::<$($v),+, 12>($($arg),*),
            13 => $f::<$($v),+, 13>($($arg),*),
            14 => $f::<$($v),+, 14>($($arg),*),
            15 => $f::<$($v),+, 15>($($arg),*),
            r => unreachable!("radius {r} is above MAX_RADIUS"),
        }
    };
}

/// The weights of `k` in vector registers.
#[inline(always)]
fn splat_weights<V: Lanes>(k: &Kernel) -> [V; MAX_RADIUS + 1] {
    let mut w = [V::splat(0); MAX_RADIUS + 1];
    for (v, &x) in w.iter_mut().zip(&k.w) {
        *v = V::splat(x);
    }
    w
}

/// `out[i] = w0 ext[r c + i] + sum_j w_j (ext[(r - j) c + i] + ext[(r + j) c + i])`
/// for `i < out.len()`, `c` values per pixel.
#[inline(always)]
fn row_pass<V: Lanes>(ext: &[i16], c: usize, k: &Kernel, out: &mut [i16]) {
    with_radius!(k.radius(), row_pass_r::<V>(ext, c, k, out))
}

#[inline(always)]
fn row_pass_r<V: Lanes, const R: usize>(ext: &[i16], c: usize, k: &Kernel, out: &mut [i16]) {
    let n = out.len();
    assert!(k.radius() == R && ext.len() >= n + 2 * R * c);
    let (e, o) = (ext.as_ptr(), out.as_mut_ptr());
    let w = splat_weights::<V>(k);
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // j also picks the rows
    unsafe fn at<V: Lanes, const R: usize, const B: usize>(e: *const i16, c: usize, w: &[V; MAX_RADIUS + 1], i: usize, o: *mut i16) {
        let mut acc = [V::splat(0); B];
        for (b, acc) in acc.iter_mut().enumerate() {
            *acc = V::load(e.add(R * c + i + b * V::N)).mulhrs(w[0]);
        }
        for j in 1..=R {
            for (b, acc) in acc.iter_mut().enumerate() {
                let pair = V::load(e.add((R - j) * c + i + b * V::N)).add(V::load(e.add((R + j) * c + i + b * V::N)));
                *acc = acc.add(pair.mulhrs(w[j]));
            }
        }
        for (b, acc) in acc.iter().enumerate() {
            acc.store(o.add(i + b * V::N));
        }
    }
    let ws = splat_weights::<Scalar>(k);
    // SAFETY: every index read is below n + 2Rc <= ext.len() (asserted) and
    // every one written below n; the vector calls cover i..i+BN <= n.
    unsafe {
        if n < V::N {
            for i in 0..n {
                at::<Scalar, R, 1>(e, c, &ws, i, o);
            }
        } else {
            let mut i = 0;
            while i + BLOCK * V::N <= n {
                at::<V, R, BLOCK>(e, c, &w, i, o);
                i += BLOCK * V::N;
            }
            while i + V::N <= n {
                at::<V, R, 1>(e, c, &w, i, o);
                i += V::N;
            }
            if i < n {
                at::<V, R, 1>(e, c, &w, n - V::N, o);
            }
        }
    }
}

/// What a column pass writes: bytes (its Q6 sums rounded) or the Q6 sums.
trait ColumnOut: Copy {
    /// Stores the `V::N` sums of `sums` at `p`.
    unsafe fn put<V: Lanes>(sums: V, p: *mut Self);
}

impl ColumnOut for u8 {
    #[inline(always)]
    unsafe fn put<V: Lanes>(sums: V, p: *mut u8) {
        sums.store_u8(p)
    }
}

impl ColumnOut for i16 {
    #[inline(always)]
    unsafe fn put<V: Lanes>(sums: V, p: *mut i16) {
        sums.store(p)
    }
}

/// `out[i] = w0 row_r[i] + sum_j w_j (row_{r-j}[i] + row_{r+j}[i])` in Q6,
/// as bytes (`T = u8`, rounded) or kept in Q6 (`T = i16`), for
/// `i < out.len()`, where `row_t` is `ring[offs[t]..]` (`2r+1` offsets).
#[inline(always)]
fn column_pass<V: Lanes, T: ColumnOut>(ring: &[i16], offs: &[usize], k: &Kernel, out: &mut [T]) {
    with_radius!(k.radius(), column_pass_r::<V, T>(ring, offs, k, out))
}

#[inline(always)]
fn column_pass_r<V: Lanes, T: ColumnOut, const R: usize>(ring: &[i16], offs: &[usize], k: &Kernel, out: &mut [T]) {
    let n = out.len();
    assert!(k.radius() == R && offs.len() == 2 * R + 1 && offs.iter().all(|&o| o + n <= ring.len()));
    let o = out.as_mut_ptr();
    let mut rows = [ring.as_ptr(); 2 * MAX_RADIUS + 1];
    for (p, &off) in rows.iter_mut().zip(offs) {
        // SAFETY: off + n <= ring.len() (asserted).
        *p = unsafe { ring.as_ptr().add(off) };
    }
    let w = splat_weights::<V>(k);
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // j also picks the rows
    unsafe fn at<V: Lanes, T: ColumnOut, const R: usize, const B: usize>(rows: &[*const i16; 2 * MAX_RADIUS + 1], w: &[V; MAX_RADIUS + 1], i: usize, o: *mut T) {
        let mut acc = [V::splat(0); B];
        for (b, acc) in acc.iter_mut().enumerate() {
            *acc = V::load(rows[R].add(i + b * V::N)).mulhrs(w[0]);
        }
        for j in 1..=R {
            for (b, acc) in acc.iter_mut().enumerate() {
                let pair = V::load(rows[R - j].add(i + b * V::N)).add(V::load(rows[R + j].add(i + b * V::N)));
                *acc = acc.add(pair.mulhrs(w[j]));
            }
        }
        for (b, acc) in acc.iter().enumerate() {
            T::put(*acc, o.add(i + b * V::N));
        }
    }
    let ws = splat_weights::<Scalar>(k);
    // SAFETY: 2R+1 rows, each with n values (asserted); i..i+BN <= n.
    unsafe {
        if n < V::N {
            for i in 0..n {
                at::<Scalar, T, R, 1>(&rows, &ws, i, o);
            }
        } else {
            let mut i = 0;
            while i + BLOCK * V::N <= n {
                at::<V, T, R, BLOCK>(&rows, &w, i, o);
                i += BLOCK * V::N;
            }
            while i + V::N <= n {
                at::<V, T, R, 1>(&rows, &w, i, o);
                i += V::N;
            }
            if i < n {
                at::<V, T, R, 1>(&rows, &w, n - V::N, o);
            }
        }
    }
}

/// `column_pass` to bytes for two neighbouring output rows at once:
/// `offs` names `2r+2` rows, the first `2r+1` are `out_a`'s window and
/// the last `2r+1` are `out_b`'s. Each row is loaded once for both, which
/// halves what the pass reads from the ring (in L2); each output is the
/// same sum, in the same order, as `column_pass` gives it.
#[inline(always)]
fn column_pass_pair<V: Lanes>(ring: &[i16], offs: &[usize], k: &Kernel, out_a: &mut [u8], out_b: &mut [u8]) {
    with_radius!(k.radius(), column_pass_pair_r::<V>(ring, offs, k, out_a, out_b))
}

#[inline(always)]
fn column_pass_pair_r<V: Lanes, const R: usize>(ring: &[i16], offs: &[usize], k: &Kernel, out_a: &mut [u8], out_b: &mut [u8]) {
    let n = out_a.len();
    assert!(k.radius() == R && out_b.len() == n && offs.len() == 2 * R + 2 && offs.iter().all(|&o| o + n <= ring.len()));
    let (oa, ob) = (out_a.as_mut_ptr(), out_b.as_mut_ptr());
    let mut rows = [ring.as_ptr(); 2 * MAX_RADIUS + 2];
    for (p, &off) in rows.iter_mut().zip(offs) {
        // SAFETY: off + n <= ring.len() (asserted).
        *p = unsafe { ring.as_ptr().add(off) };
    }
    let w = splat_weights::<V>(k);
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // j also picks the rows
    unsafe fn at<V: Lanes, const R: usize>(rows: &[*const i16; 2 * MAX_RADIUS + 2], w: &[V; MAX_RADIUS + 1], i: usize, oa: *mut u8, ob: *mut u8) {
        let mut v = [V::splat(0); 2 * MAX_RADIUS + 2];
        for t in 0..2 * R + 2 {
            v[t] = V::load(rows[t].add(i));
        }
        let (mut a, mut b) = (v[R].mulhrs(w[0]), v[R + 1].mulhrs(w[0]));
        for j in 1..=R {
            a = a.add(v[R - j].add(v[R + j]).mulhrs(w[j]));
            b = b.add(v[R + 1 - j].add(v[R + 1 + j]).mulhrs(w[j]));
        }
        a.store_u8(oa.add(i));
        b.store_u8(ob.add(i));
    }
    let ws = splat_weights::<Scalar>(k);
    // SAFETY: 2R+2 rows, each with n values (asserted); i..i+N <= n.
    unsafe {
        if n < V::N {
            for i in 0..n {
                at::<Scalar, R>(&rows, &ws, i, oa, ob);
            }
        } else {
            let mut i = 0;
            while i + V::N <= n {
                at::<V, R>(&rows, &w, i, oa, ob);
                i += V::N;
            }
            if i < n {
                at::<V, R>(&rows, &w, n - V::N, oa, ob);
            }
        }
    }
}

/// `column_pass` with the sums kept in Q6 (`out`, i16) instead of rounded
/// to bytes.
#[inline(always)]
fn column_pass_q6<V: Lanes>(ring: &[i16], offs: &[usize], k: &Kernel, out: &mut [i16]) {
    column_pass::<V, i16>(ring, offs, k, out)
}

/// Defines `$name(args)` that runs `$body::<V>(args)` with the widest
/// `Lanes` the CPU has (the one-lane version where there is none).
macro_rules! dispatch_lanes {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $body:ident) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw")]
                unsafe fn avx512($($arg: $ty),*) {
                    $body::<x86::Avx512>($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) {
                    $body::<x86::Avx2>($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512bw") {
                    // SAFETY: the CPU has AVX-512 F and BW, checked just above.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            return $body::<wasm::Simd128>($($arg),*);
            #[allow(unreachable_code)]
            $body::<Scalar>($($arg),*)
        }
    };
}

dispatch_lanes!(
    /// The horizontal pass of one row: `out[i] = w0 ext[r c + i] + sum_j w_j
    /// (ext[(r - j) c + i] + ext[(r + j) c + i])`, all Q6.
    pub(super) fn filter_row(ext: &[i16], c: usize, k: &Kernel, out: &mut [i16]) => row_pass
);
dispatch_lanes!(
    /// The vertical pass of one row, in Q6: `out[i] = w0 row_r[i] + sum_j
    /// w_j (row_{r-j}[i] + row_{r+j}[i])`, where `row_t` is `ring[offs[t]..]`.
    pub(super) fn filter_column(ring: &[i16], offs: &[usize], k: &Kernel, out: &mut [i16]) => column_pass_q6
);

/// `out[i] = a[i] + (b[i] - a[i]) t_i` for Q6 rows (as bytes or Q6), the
/// product rounded as `mulhrs` does: linear interpolation with the fraction
/// `t[0]` for every value (`t.len() == 1`) or `t[i]` for each (Q15).
#[inline(always)]
fn lerp_pass<V: Lanes, T: ColumnOut>(a: &[i16], b: &[i16], t: &[i16], out: &mut [T]) {
    let n = out.len();
    let each = t.len() > 1;
    assert!(a.len() >= n && b.len() >= n && !t.is_empty() && (!each || t.len() >= n));
    if n < V::N && V::N > 1 {
        return lerp_pass::<Scalar, T>(a, b, t, out);
    }
    let (pa, pb, pt, po) = (a.as_ptr(), b.as_ptr(), t.as_ptr(), out.as_mut_ptr());
    let splat = V::splat(t[0]);
    // SAFETY: every step reads and writes at..at+N <= n; the last vector
    // overlaps the one before (the same values again).
    unsafe {
        let mut i = 0;
        while i < n {
            let at = i.min(n - V::N);
            let w = if each { V::load(pt.add(at)) } else { splat };
            let (va, vb) = (V::load(pa.add(at)), V::load(pb.add(at)));
            T::put(va.add(vb.sub(va).mulhrs(w)), po.add(at));
            i += V::N;
        }
    }
}

#[inline(always)]
fn lerp_bytes<V: Lanes>(a: &[i16], b: &[i16], t: &[i16], out: &mut [u8]) {
    lerp_pass::<V, u8>(a, b, t, out)
}

#[inline(always)]
fn lerp_q6<V: Lanes>(a: &[i16], b: &[i16], t: &[i16], out: &mut [i16]) {
    lerp_pass::<V, i16>(a, b, t, out)
}

dispatch_lanes!(
    /// `out[i]` = the byte of `a[i] + (b[i] - a[i]) t`: the linear
    /// interpolation of two Q6 rows with one fraction (`t`, Q15), rounded.
    pub(super) fn lerp_row(a: &[i16], b: &[i16], t: &[i16], out: &mut [u8]) => lerp_bytes
);
dispatch_lanes!(
    /// `out[i] = a[i] + (b[i] - a[i]) t[i]`, Q6 values and Q15 fractions.
    pub(super) fn lerp_values(a: &[i16], b: &[i16], t: &[i16], out: &mut [i16]) => lerp_q6
);

/// A fixed gather `out[i] = src[idx[i]]` of i16 values whose indices
/// move slowly (each run of 8 outputs reads within 8 neighbouring
/// values), done as one 16-byte shuffle per 8 outputs instead of a load
/// and store per value: the widening of a reduced row, where each cell
/// repeats for the `k` pixels that start from it.
pub(super) struct Gather {
    /// Where each run of 8 outputs reads from, and its byte shuffle.
    base: Vec<usize>,
    ctrl: Vec<[u8; 16]>,
    idx: Vec<usize>,
}

impl Gather {
    /// The gather of `idx` from rows of `src_len` values; `None` where a
    /// run of 8 outputs would read more than 8 neighbouring values.
    pub fn new(idx: &[usize], src_len: usize) -> Option<Self> {
        let n = idx.len();
        if n < 8 || src_len < 8 || idx.iter().any(|&i| i >= src_len) {
            return None;
        }
        let (mut base, mut ctrl) = (Vec::new(), Vec::new());
        for c in 0..n.div_ceil(8) {
            // The last run overlaps the one before it when n is not a multiple of 8.
            let run = &idx[(8 * c).min(n - 8)..][..8];
            let (lo, hi) = (*run.iter().min().unwrap(), *run.iter().max().unwrap());
            if hi - lo >= 8 {
                return None;
            }
            let at = lo.min(src_len - 8);
            let mut bytes = [0u8; 16];
            for (i, &v) in run.iter().enumerate() {
                bytes[2 * i] = (2 * (v - at)) as u8;
                bytes[2 * i + 1] = (2 * (v - at) + 1) as u8;
            }
            base.push(at);
            ctrl.push(bytes);
        }
        Some(Self { base, ctrl, idx: idx.to_vec() })
    }
}

#[inline(always)]
fn gather_impl<V: Lanes>(g: &Gather, src: &[i16], out: &mut [i16]) {
    let n = g.idx.len();
    assert!(out.len() >= n && g.base.iter().all(|&b| b + 8 <= src.len()));
    let (s, o) = (src.as_ptr(), out.as_mut_ptr());
    for (c, (&at, ctrl)) in g.base.iter().zip(&g.ctrl).enumerate() {
        // SAFETY: at + 8 <= src.len() (asserted) and the run's 8 outputs
        // start at or below n - 8, within out.
        unsafe { V::shuffle8(s.add(at), ctrl.as_ptr(), o.add((8 * c).min(n - 8))) };
    }
}

dispatch_lanes!(
    /// `out[i] = src[idx[i]]` for the indices of `g`.
    pub(super) fn gather(g: &Gather, src: &[i16], out: &mut [i16]) => gather_impl
);

/// `out[i] = src[i] << 6`.
#[inline(always)]
fn to_q6<V: Lanes>(src: &[u8], out: &mut [i16]) {
    let n = src.len();
    assert!(out.len() >= n);
    let (s, o) = (src.as_ptr(), out.as_mut_ptr());
    // SAFETY: i..i+N <= n for the vector loads, i < n for the scalar ones.
    unsafe {
        if n < V::N {
            for i in 0..n {
                Scalar::load_q6(s.add(i)).store(o.add(i));
            }
        } else {
            let mut i = 0;
            while i + V::N <= n {
                V::load_q6(s.add(i)).store(o.add(i));
                i += V::N;
            }
            if i < n {
                V::load_q6(s.add(n - V::N)).store(o.add(n - V::N));
            }
        }
    }
}

/// Most values in a column strip. Rows up to this long (5461 RGB pixels)
/// are filtered whole, which measured 7-10% faster than strips of 1536 to
/// 6144 values on a 4000-pixel-wide image (`benches/bench_kernels.py`,
/// sigma 2 and 3.3): the ring of `2r+1` rows (at most 21 x 32 KiB) then
/// sits in L2, the source and output are read and written in whole rows,
/// and there are no halos to filter twice. Wider rows are cut into equal
/// strips.
pub(super) const MAX_STRIP_VALUES: usize = 16384;

/// Pixels per column strip for rows of `width` pixels of `cc` filtered
/// channels.
pub(super) fn strip_pixels(width: usize, cc: usize) -> usize {
    let strips = (width * cc).div_ceil(MAX_STRIP_VALUES).max(1);
    width.div_ceil(strips).max(1)
}

/// The colour bytes of the RGBA pixels `src` into `dst` (3 per pixel),
/// which has 16 bytes to spare at the end.
#[inline(always)]
fn rgb_of_rgba<V: Lanes>(src: &[u8], dst: &mut [u8]) {
    let px = src.len() / 4;
    assert!(dst.len() >= 3 * px + 16);
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    // SAFETY: each step reads 16 bytes of src within its px pixels and
    // writes 16 bytes from 3p, below 3 px + 16 <= dst.len().
    unsafe {
        for p in (0..px / 4 * 4).step_by(4) {
            V::rgb_of_rgba4(s.add(4 * p), d.add(3 * p));
        }
    }
    for p in px / 4 * 4..px {
        dst[3 * p..3 * p + 3].copy_from_slice(&src[4 * p..4 * p + 3]);
    }
}

/// The RGB pixels `rgb` (which has 16 bytes to spare at the end) with the
/// alpha bytes of `alpha` (RGBA) into `out` (RGBA).
#[inline(always)]
fn rgba_of_rgb<V: Lanes>(rgb: &[u8], alpha: &[u8], out: &mut [u8]) {
    let px = out.len() / 4;
    assert!(rgb.len() >= 3 * px + 16 && alpha.len() >= 4 * px);
    let (g, a, o) = (rgb.as_ptr(), alpha.as_ptr(), out.as_mut_ptr());
    // SAFETY: each step reads 16 bytes of rgb from 3p (below 3 px + 16),
    // and 16 bytes of alpha and out from 4p, within their 4 px.
    unsafe {
        for p in (0..px / 4 * 4).step_by(4) {
            V::rgba_of_rgb4(g.add(3 * p), a.add(4 * p), o.add(4 * p));
        }
    }
    for p in px / 4 * 4..px {
        out[4 * p..4 * p + 3].copy_from_slice(&rgb[3 * p..3 * p + 3]);
        out[4 * p + 3] = alpha[4 * p + 3];
    }
}

/// Row `row` filtered horizontally into `out`: pixels `lo..hi` of the
/// row go to `ext` from pixel `lead` on, the edge pixels repeat beyond them;
/// `cc` channels of each pixel (the colour ones: RGBA rows are packed to
/// RGB in `packed` first, so the alpha values cost nothing).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fill_row<V: Lanes>(c: usize, cc: usize, k: &Kernel, row: &[u8], (lo, hi, lead): (usize, usize, usize), packed: &mut [u8], ext: &mut [i16], out: &mut [i16]) {
    let row_len = row.len();
    let colour = if cc == c {
        &row[lo * c..hi * c]
    } else {
        rgb_of_rgba::<V>(&row[lo * c..hi * c], packed);
        &packed[..(hi - lo) * cc]
    };
    to_q6::<V>(colour, &mut ext[lead * cc..]);
    for p in 0..lead {
        for ch in 0..cc {
            ext[p * cc + ch] = (row[ch] as i16) << 6;
        }
    }
    for p in lead + hi - lo..ext.len() / cc {
        for ch in 0..cc {
            ext[p * cc + ch] = (row[row_len - c + ch] as i16) << 6;
        }
    }
    row_pass::<V>(ext, cc, k, out);
}

/// Rows of horizontally filtered values kept for the column pass, each
/// starting on a 64-byte boundary, so that the column pass's vector loads
/// (at the same offset in every row) never straddle two cache lines
/// (measured 5-10% of the full-resolution Gaussian).
pub(super) struct Ring {
    buf: Vec<i16>,
    base: usize,
    stride: usize,
    len: usize,
}

impl Ring {
    /// `slots` rows of `len` values.
    pub fn new(slots: usize, len: usize) -> Self {
        let stride = len.next_multiple_of(32);
        let buf = vec![0i16; slots * stride + 32];
        let base = buf.as_ptr().align_offset(64).min(32);
        Self { buf, base, stride, len }
    }

    /// Where row `slot` starts in `values()`.
    pub fn offset(&self, slot: usize) -> usize {
        self.base + slot * self.stride
    }

    pub fn row_mut(&mut self, slot: usize) -> &mut [i16] {
        let at = self.offset(slot);
        &mut self.buf[at..at + self.len]
    }

    pub fn values(&self) -> &[i16] {
        &self.buf
    }
}

/// The Gaussian of output rows `y0..` (as many as `band` holds), strip by
/// strip of columns.
#[inline(always)]
fn band_impl<V: Lanes>(src: &ImageRef, k: &Kernel, y0: usize, band: &mut [u8]) {
    let (w, h, c) = (src.width, src.height, src.channels);
    // Channels filtered: alpha is copied, not blurred.
    let cc = if c == 4 { 3 } else { c };
    let row_len = src.row_len();
    let rows = band.len() / row_len;
    let r = k.radius();
    let strip_px = strip_pixels(w, cc);
    // 2r+2 slots: the windows of two neighbouring output rows, done together.
    let slots = (2 * r + 2).min(h);
    let span = strip_px.min(w) * cc;
    let mut ring = Ring::new(slots, span);
    let mut held = vec![usize::MAX; slots];
    let mut ext = vec![0i16; span + 2 * r * cc];
    let mut offs = vec![0usize; 2 * r + 2];
    // RGBA only: a source row's colour bytes, and two output rows'.
    let (mut packed, mut rgb) = if cc == c { (Vec::new(), Vec::new()) } else { (vec![0u8; span + 2 * r * cc + 16], vec![0u8; 2 * (span + 16)]) };
    for x0 in (0..w).step_by(strip_px) {
        let x1 = (x0 + strip_px).min(w);
        let n = (x1 - x0) * cc;
        held.iter_mut().for_each(|v| *v = usize::MAX);
        // ext[p cc..] holds pixel x0 - r + p, clamped to the row (nearest rule).
        let first = x0 as isize - r as isize;
        let lo = first.max(0) as usize;
        let hi = (x1 + r).min(w);
        let lead = (lo as isize - first) as usize;
        let ext = &mut ext[..n + 2 * r * cc];
        let mut yy = 0;
        while yy < rows {
            let y = y0 + yy;
            // Two output rows when the band has them (2r+2 source rows).
            let pair = V::PAIR_ROWS && yy + 1 < rows;
            let taps = 2 * r + 1 + pair as usize;
            for t in 0..taps {
                let sy = (y + t).saturating_sub(r).min(h - 1);
                let slot = sy % slots;
                if held[slot] != sy {
                    fill_row::<V>(c, cc, k, src.row(sy), (lo, hi, lead), &mut packed, ext, &mut ring.row_mut(slot)[..n]);
                    held[slot] = sy;
                }
            }
            for (t, off) in offs[..taps].iter_mut().enumerate() {
                *off = ring.offset((y + t).saturating_sub(r).min(h - 1) % slots);
            }
            let (at_a, at_b) = (yy * row_len, (yy + 1) * row_len);
            if pair {
                let (band_a, band_b) = band.split_at_mut(at_b);
                let out_a = &mut band_a[at_a + x0 * c..at_a + x1 * c];
                let out_b = &mut band_b[x0 * c..x1 * c];
                if cc == c {
                    column_pass_pair::<V>(ring.values(), &offs, k, out_a, out_b);
                } else {
                    let (rgb_a, rgb_b) = rgb.split_at_mut(span + 16);
                    column_pass_pair::<V>(ring.values(), &offs, k, &mut rgb_a[..n], &mut rgb_b[..n]);
                    rgba_of_rgb::<V>(rgb_a, &src.row(y)[x0 * c..x1 * c], out_a);
                    rgba_of_rgb::<V>(rgb_b, &src.row(y + 1)[x0 * c..x1 * c], out_b);
                }
                yy += 2;
            } else {
                let out = &mut band[at_a + x0 * c..at_a + x1 * c];
                if cc == c {
                    column_pass::<V, u8>(ring.values(), &offs[..taps], k, out);
                } else {
                    column_pass::<V, u8>(ring.values(), &offs[..taps], k, &mut rgb[..n]);
                    rgba_of_rgb::<V>(&rgb, &src.row(y)[x0 * c..x1 * c], out);
                }
                yy += 1;
            }
        }
    }
}

/// `out` (RGBA) = the RGB pixels `rgb` (with 16 bytes to spare) with the
/// alpha bytes of `alpha` (RGBA), in the best vector build.
pub(super) fn rgba_of_rgb_row(rgb: &[u8], alpha: &[u8], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(rgb: &[u8], alpha: &[u8], out: &mut [u8]) {
            rgba_of_rgb::<x86::Avx2>(rgb, alpha, out)
        }
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { avx2(rgb, alpha, out) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return rgba_of_rgb::<wasm::Simd128>(rgb, alpha, out);
    #[allow(unreachable_code)]
    rgba_of_rgb::<Scalar>(rgb, alpha, out)
}

/// The Gaussian of a band of rows with kernel `k`, alpha copied from `src`.
pub(super) fn gaussian_band(src: &ImageRef, k: &Kernel, y0: usize, band: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw")]
        unsafe fn avx512(src: &ImageRef, k: &Kernel, y0: usize, band: &mut [u8]) {
            band_impl::<x86::Avx512>(src, k, y0, band)
        }
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(src: &ImageRef, k: &Kernel, y0: usize, band: &mut [u8]) {
            band_impl::<x86::Avx2>(src, k, y0, band)
        }
        if std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has AVX-512 F and BW, checked just above.
            return unsafe { avx512(src, k, y0, band) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { avx2(src, k, y0, band) };
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return band_impl::<wasm::Simd128>(src, k, y0, band);
    #[allow(unreachable_code)]
    band_impl::<Scalar>(src, k, y0, band)
}

/// `gaussian_band` with the one-lane arithmetic only, for tests that the
/// vector builds give its bits.
#[cfg(test)]
pub(super) fn gaussian_band_scalar(src: &ImageRef, k: &Kernel, y0: usize, band: &mut [u8]) {
    band_impl::<Scalar>(src, k, y0, band)
}

/// `gaussian_band` in the AVX2 build, where the CPU has AVX2 (false if
/// not), for tests on machines that would otherwise take AVX-512.
#[cfg(test)]
pub(super) fn gaussian_band_avx2(src: &ImageRef, k: &Kernel, y0: usize, band: &mut [u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(src: &ImageRef, k: &Kernel, y0: usize, band: &mut [u8]) {
            band_impl::<x86::Avx2>(src, k, y0, band)
        }
        // SAFETY: the CPU has AVX2, checked just above.
        unsafe { avx2(src, k, y0, band) };
        return true;
    }
    let _ = (src, k, y0, band);
    false
}

/// `filter_row` and `filter_column` with the one-lane arithmetic only.
#[cfg(test)]
pub(super) fn filter_scalar(ext: &[i16], c: usize, k: &Kernel, row_out: &mut [i16], ring: &[i16], offs: &[usize], column_out: &mut [i16]) {
    row_pass::<Scalar>(ext, c, k, row_out);
    column_pass_q6::<Scalar>(ring, offs, k, column_out);
}

/// `gather` with the one-lane arithmetic only.
#[cfg(test)]
pub(super) fn gather_scalar(g: &Gather, src: &[i16], out: &mut [i16]) {
    gather_impl::<Scalar>(g, src, out)
}
