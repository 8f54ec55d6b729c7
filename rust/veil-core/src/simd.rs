//! Hot inner loops, written so the compiler vectorises them, and a runtime
//! switch that compiles the callers again for AVX2 and for AVX-512 on
//! x86-64.
//!
//! Everything here is plain `mul` then `add` (Rust never fuses them into FMA
//! on its own), so the AVX2, SSE2 and WebAssembly builds give bit-identical
//! results.

/// Hints that the `len` bytes at `p` will be read soon (x86-64 only; a
/// no-op elsewhere). Never dereferences `p`.
#[inline(always)]
pub fn prefetch(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for off in (0..len).step_by(64) {
        // SAFETY: a prefetch never faults, whatever the address.
        unsafe { core::arch::x86_64::_mm_prefetch(p.wrapping_add(off) as *const i8, core::arch::x86_64::_MM_HINT_T0) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

/// Rounds to the nearest byte, saturating. `v + 0.5` truncated is the same
/// as round-half-up for the non-negative values blurs produce.
#[inline(always)]
#[allow(clippy::manual_clamp)] // clamp() would keep NaN; max/min turn it into 0
pub fn to_u8(v: f32) -> u8 {
    // f32::max/min drop NaN, so the value is in 0..=255 here; the unchecked
    // conversion is what lets the compiler vectorise this (a saturating
    // `as` cast stays scalar).
    let v = (v + 0.5).max(0.0).min(255.0);
    // SAFETY: v is finite and within i32 range.
    unsafe { v.to_int_unchecked::<i32>() as u8 }
}

/// Copies the alpha bytes (every 4th, RGBA) of `src` into `dst`.
#[inline(always)]
pub fn copy_alpha(dst: &mut [u8], src: &[u8]) {
    let n = dst.len().min(src.len()) / 4 * 4;
    let (dst, src) = (&mut dst[..n], &src[..n]);
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let done = wasm::copy_alpha16(dst, src);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let done = 0;
    // 16 pixels at a time as 32-bit words (a select on the top byte), which
    // vectorises; a byte store to every 4th byte does not. (A loop over
    // single words here made LLVM fail to compile the AVX-512 build.)
    let words = (n - done) / 64 * 16;
    for b in 0..words / 16 {
        let at = done + b * 64;
        // SAFETY: at + 64 <= n for every block; unaligned reads and writes
        // of plain integers.
        unsafe {
            let d = core::ptr::read_unaligned(dst.as_ptr().add(at) as *const [u32; 16]);
            let s = core::ptr::read_unaligned(src.as_ptr().add(at) as *const [u32; 16]);
            let mut o = [0u32; 16];
            for i in 0..16 {
                let (dv, sv) = (u32::from_le(d[i]), u32::from_le(s[i]));
                o[i] = ((dv & 0x00ff_ffff) | (sv & 0xff00_0000)).to_le();
            }
            core::ptr::write_unaligned(dst.as_mut_ptr().add(at) as *mut [u32; 16], o);
        }
    }
    let done = done + words * 4;
    for (d, s) in dst[done..].chunks_exact_mut(4).zip(src[done..].chunks_exact(4)) {
        d[3] = s[3];
    }
}

/// `out.copy_from_slice(src)` with non-temporal stores on x86-64: the
/// output of a kernel that writes each byte once is not read again soon,
/// and an ordinary store first reads the line it writes (a third of the
/// memory traffic of a copy). Callers finish with `stream_fence`.
#[inline(always)]
pub fn stream_copy(out: &mut [u8], src: &[u8]) {
    let n = out.len().min(src.len());
    let (out, src) = (&mut out[..n], &src[..n]);
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
        let head = out.as_ptr().align_offset(16).min(n);
        out[..head].copy_from_slice(&src[..head]);
        let blocks = (n - head) / 16;
        for b in 0..blocks {
            let at = head + 16 * b;
            // SAFETY: at + 16 <= n; out + at is 16-byte aligned (head), the
            // load is unaligned. SSE2 is part of x86-64.
            unsafe {
                let v = _mm_loadu_si128(src.as_ptr().add(at) as *const __m128i);
                _mm_stream_si128(out.as_mut_ptr().add(at) as *mut __m128i, v);
            }
        }
        let done = head + 16 * blocks;
        out[done..].copy_from_slice(&src[done..]);
    }
    #[cfg(not(target_arch = "x86_64"))]
    out.copy_from_slice(src);
}

/// `stream_copy(out, copy_with_alpha(colour, alpha))` in one pass: the
/// colour bytes of `colour` with the alpha bytes (every 4th, RGBA) of
/// `alpha`, written with non-temporal stores on x86-64. Callers finish
/// with `stream_fence`. (Unused on wasm32, where the box blur puts the
/// alpha in as it stores its means.)
#[inline(always)]
#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))]
pub fn stream_copy_with_alpha(out: &mut [u8], colour: &[u8], alpha: &[u8]) {
    let n = out.len().min(colour.len()).min(alpha.len()) / 4 * 4;
    let (out, colour, alpha) = (&mut out[..n], &colour[..n], &alpha[..n]);
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::*;
        // The head up to a 16-byte boundary of `out`, in whole pixels when
        // the output rows start on pixel boundaries of that alignment.
        let head = (out.as_ptr().align_offset(16).min(n)).div_ceil(4) * 4;
        let head = head.min(n);
        copy_with_alpha(&mut out[..head], &colour[..head], &alpha[..head]);
        if out[head..].as_ptr().align_offset(16) == 0 {
            let blocks = (n - head) / 16;
            // SAFETY: SSE2 is part of x86-64; at + 16 <= n for every block,
            // out + at is 16-byte aligned (checked above), the loads are unaligned.
            unsafe {
                let keep = _mm_set1_epi32(0x00ff_ffff);
                for b in 0..blocks {
                    let at = head + 16 * b;
                    let c = _mm_loadu_si128(colour.as_ptr().add(at) as *const __m128i);
                    let a = _mm_loadu_si128(alpha.as_ptr().add(at) as *const __m128i);
                    let v = _mm_or_si128(_mm_and_si128(keep, c), _mm_andnot_si128(keep, a));
                    _mm_stream_si128(out.as_mut_ptr().add(at) as *mut __m128i, v);
                }
            }
            let done = head + 16 * blocks;
            copy_with_alpha(&mut out[done..], &colour[done..], &alpha[done..]);
            return;
        }
        copy_with_alpha(&mut out[head..], &colour[head..], &alpha[head..]);
    }
    #[cfg(not(target_arch = "x86_64"))]
    copy_with_alpha(out, colour, alpha);
}

/// Orders the non-temporal stores of `stream_copy` before what follows
/// (a no-op elsewhere).
#[inline(always)]
pub fn stream_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86-64.
    unsafe {
        core::arch::x86_64::_mm_sfence()
    };
}

/// `out` = the colour bytes of `colour` with the alpha bytes (every 4th,
/// RGBA) of `alpha`: a copy and an alpha restore in one pass.
#[inline(always)]
pub fn copy_with_alpha(out: &mut [u8], colour: &[u8], alpha: &[u8]) {
    let n = out.len().min(colour.len()).min(alpha.len()) / 4 * 4;
    let (out, colour, alpha) = (&mut out[..n], &colour[..n], &alpha[..n]);
    let words = n / 4;
    for i in 0..words {
        // SAFETY: 4 i + 4 <= n; unaligned reads and writes of plain integers.
        unsafe {
            let c = u32::from_le(core::ptr::read_unaligned(colour.as_ptr().add(4 * i) as *const u32));
            let a = u32::from_le(core::ptr::read_unaligned(alpha.as_ptr().add(4 * i) as *const u32));
            core::ptr::write_unaligned(out.as_mut_ptr().add(4 * i) as *mut u32, ((c & 0x00ff_ffff) | (a & 0xff00_0000)).to_le());
        }
    }
    let done = words * 4;
    for ((o, c), a) in out[done..].chunks_exact_mut(4).zip(colour[done..].chunks_exact(4)).zip(alpha[done..].chunks_exact(4)) {
        o[..3].copy_from_slice(&c[..3]);
        o[3] = a[3];
    }
}

/// WebAssembly SIMD versions of loops LLVM leaves scalar on wasm32.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use core::arch::wasm32::*;

    /// Bytes done (a multiple of 16); the caller finishes the tail.
    #[inline(always)]
    pub fn copy_alpha16(dst: &mut [u8], src: &[u8]) -> usize {
        let alpha = u32x4_splat(0xff00_0000);
        let blocks = dst.len().min(src.len()) / 16;
        for (d, s) in dst.chunks_exact_mut(16).zip(src.chunks_exact(16)).take(blocks) {
            // SAFETY: each chunk holds 16 bytes; unaligned loads are allowed.
            unsafe {
                let v = v128_bitselect(v128_load(s.as_ptr() as *const v128), v128_load(d.as_ptr() as *const v128), alpha);
                v128_store(d.as_mut_ptr() as *mut v128, v);
            }
        }
        blocks * 16
    }

}

/// Defines `$name(args)` that runs `$body_fn(args)` compiled for AVX2 when the
/// CPU has it, and the portable build otherwise. `$body_fn` must be
/// `#[inline(always)]` (as must the helpers it calls) so that it is compiled
/// inside the AVX2 function.
macro_rules! dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $body_fn:ident) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw")]
                unsafe fn avx512($($arg: $ty),*) {
                    $body_fn($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) {
                    $body_fn($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512bw") {
                    // SAFETY: the CPU supports AVX-512 F and BW, checked just above.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body_fn($($arg),*)
        }
    };
}
pub(crate) use dispatch;
