//! Vertical Gaussian pass as a recursive (IIR) filter, whose cost per pixel
//! does not depend on sigma.
//!
//! Deriche's 4th-order approximation (R. Deriche, "Recursively implementing
//! the Gaussian and its derivatives", INRIA RR-1893, 1993): for `x >= 0`,
//!
//! `g(x) ~ (a0 cos(w0 x/s) + a1 sin(w0 x/s)) e^(-b0 x/s) + (c0 cos(w1 x/s) + c1 sin(w1 x/s)) e^(-b1 x/s)`
//!
//! with the published constants below. Written as four complex
//! exponentials `alpha_k z_k^n`, the kernel `g(|n|)` splits into a causal
//! part (`n >= 0`) and an anticausal one (`n >= 1` on the other side), each
//! a 4th-order recursion with the same denominator. The two parts run on
//! the same input and are added (the parallel form), so each starts from
//! the exact steady state of the repeated edge pixel: that is the nearest
//! border rule over an infinite extension, with no boundary correction
//! needed (a cascade of a causal and an anticausal filter, as in
//! Young-van Vliet, needs Triggs-Sdika's end conditions instead).
//!
//! The recursion runs down strips of columns of a whole image, many
//! columns at a time, so it is vectorised across columns and each
//! column's causal outputs stay in a buffer that fits in L2.

use crate::image::ImageRef;
use crate::simd;

/// Deriche's constants for the Gaussian (RR-1893, table 1).
const A0: f64 = 1.680;
const A1: f64 = 3.735;
const B0: f64 = 1.783;
const W0: f64 = 0.6318;
const C0: f64 = -0.6803;
const C1: f64 = -0.2598;
const B1: f64 = 1.723;
const W1: f64 = 1.997;

#[derive(Clone, Copy, Debug)]
struct Cx {
    re: f64,
    im: f64,
}

impl Cx {
    fn new(re: f64, im: f64) -> Self {
        Self { re, im }
    }
    fn mul(self, o: Cx) -> Cx {
        Cx::new(self.re * o.re - self.im * o.im, self.re * o.im + self.im * o.re)
    }
    fn add(self, o: Cx) -> Cx {
        Cx::new(self.re + o.re, self.im + o.im)
    }
}

/// Polynomial product `p * (1 - z q)`, coefficients by ascending power of q.
fn times_one_minus(p: &[Cx; 5], z: Cx) -> [Cx; 5] {
    let mut out = *p;
    for i in 1..5 {
        let t = p[i - 1].mul(z);
        out[i] = Cx::new(out[i].re - t.re, out[i].im - t.im);
    }
    out
}

/// Coefficients of the recursions, normalised so the whole kernel sums to 1:
/// causal `y[n] = sum_i n[i] x[n-i] - sum_i d[i] y[n-1-i]` (i = 0..3 / 0..3),
/// anticausal `y[n] = sum_i m[i] x[n+1+i] - sum_i d[i] y[n+1+i]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Deriche {
    pub n: [f32; 4],
    pub m: [f32; 4],
    pub d: [f32; 4],
    /// Steady-state outputs of each part for a constant input of 1.
    pub causal_gain: f32,
    pub anti_gain: f32,
}

impl Deriche {
    pub fn new(sigma: f64) -> Self {
        let pole = |b: f64, w: f64| {
            let r = (-b / sigma).exp();
            Cx::new(r * (w / sigma).cos(), r * (w / sigma).sin())
        };
        let (z0, z1) = (pole(B0, W0), pole(B1, W1));
        let zs = [z0, Cx::new(z0.re, -z0.im), z1, Cx::new(z1.re, -z1.im)];
        // a cos(wt) + b sin(wt) = Re((a - ib) e^{iwt}) = alpha e^{iwt} + conj.
        let alphas = [Cx::new(A0 / 2.0, -A1 / 2.0), Cx::new(A0 / 2.0, A1 / 2.0), Cx::new(C0 / 2.0, -C1 / 2.0), Cx::new(C0 / 2.0, C1 / 2.0)];
        let zero = Cx::new(0.0, 0.0);
        let one = [Cx::new(1.0, 0.0), zero, zero, zero, zero];
        let mut den = one;
        for &z in &zs {
            den = times_one_minus(&den, z);
        }
        let (mut causal, mut anti) = ([zero; 5], [zero; 5]);
        for k in 0..4 {
            let mut p = one;
            for (j, &z) in zs.iter().enumerate() {
                if j != k {
                    p = times_one_minus(&p, z);
                }
            }
            for i in 0..4 {
                causal[i] = causal[i].add(alphas[k].mul(p[i]));
                // The anticausal numerator is alpha z q * p(q).
                anti[i + 1] = anti[i + 1].add(alphas[k].mul(zs[k]).mul(p[i]));
            }
        }
        let den_sum: f64 = den.iter().map(|c| c.re).sum();
        let total = (causal.iter().map(|c| c.re).sum::<f64>() + anti.iter().map(|c| c.re).sum::<f64>()) / den_sum;
        let n: [f32; 4] = std::array::from_fn(|i| (causal[i].re / total) as f32);
        let m: [f32; 4] = std::array::from_fn(|i| (anti[i + 1].re / total) as f32);
        let d: [f32; 4] = std::array::from_fn(|i| den[i + 1].re as f32);
        // Gains of the f32 coefficients actually used.
        let den32 = 1.0 + d.iter().map(|&v| v as f64).sum::<f64>();
        Self {
            n,
            m,
            d,
            causal_gain: (n.iter().map(|&v| v as f64).sum::<f64>() / den32) as f32,
            anti_gain: (m.iter().map(|&v| v as f64).sum::<f64>() / den32) as f32,
        }
    }
}

/// A mutable 8-bit image whose column strips are handed to different
/// threads.
#[derive(Clone, Copy)]
pub(super) struct SharedRows {
    ptr: *mut u8,
    len: usize,
    row_len: usize,
}

// SAFETY: SharedRows only makes `StripRows`, whose constructor is unsafe
// and requires disjoint strips.
unsafe impl Send for SharedRows {}
unsafe impl Sync for SharedRows {}

impl SharedRows {
    pub fn new(data: &mut [u8], row_len: usize) -> Self {
        Self { ptr: data.as_mut_ptr(), len: data.len(), row_len }
    }

    /// Values `v0..v1` of every row.
    ///
    /// # Safety
    /// No two live `StripRows` of one image may overlap, and the slice
    /// `SharedRows::new` was made from must not be used while one lives.
    pub unsafe fn strip(&self, v0: usize, v1: usize) -> StripRows {
        assert!(v0 <= v1 && v1 <= self.row_len);
        StripRows { ptr: self.ptr, len: self.len, row_len: self.row_len, v0, v1 }
    }
}

/// Values `v0..v1` of every row of an image, borrowed exclusively.
pub(super) struct StripRows {
    ptr: *mut u8,
    len: usize,
    row_len: usize,
    v0: usize,
    v1: usize,
}

impl StripRows {
    fn height(&self) -> usize {
        self.len / self.row_len.max(1)
    }

    /// Asks for the strip's values in row `y` (if any) to be brought into
    /// the cache: rows are a whole image row apart, too far for the
    /// hardware prefetchers, and the recursion would otherwise wait on
    /// each one.
    #[inline(always)]
    fn prefetch(&self, y: usize) {
        if y < self.height() {
            let at = y * self.row_len + self.v0;
            // SAFETY: in bounds (y < height, v0 < v1 <= row_len); nothing is read.
            let p = unsafe { self.ptr.add(at) };
            simd::prefetch(p, self.v1 - self.v0);
        }
    }

    /// The strip's values in row `y`.
    #[inline(always)]
    fn segment(&mut self, y: usize) -> &mut [u8] {
        let at = y * self.row_len + self.v0;
        assert!(y < self.height());
        // SAFETY: in bounds (checked), and exclusive: `SharedRows::strip`'s
        // contract keeps other strips off these bytes, and `&mut self`
        // allows one live segment at a time.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(at), self.v1 - self.v0) }
    }
}

/// Values per column strip: the causal outputs of a strip (`height` rows of
/// f32) are kept for the way back up, so the strip narrows as the image
/// grows taller, within 16..=256 values (a multiple of 16, so strips start
/// on a pixel boundary for 1, 2 or 4 channels and RGBA alpha can be copied
/// per strip).
pub(super) fn strip_values(height: usize, row_len: usize) -> usize {
    // Measured on 12 MP: 1 MiB strips leave the recursion waiting on
    // memory, 16 MiB ones spill the buffer out of the cache.
    let budget_bytes: usize = 4 << 20;
    let s = (budget_bytes / (4 * height.max(1))) / 48 * 48;
    let s = s.clamp(48, 4800);
    s.min(row_len.div_ceil(48) * 48)
}

/// How many rows ahead the strip's next values are asked for.
const PREFETCH_ROWS: usize = 24;

/// Scratch for one strip.
pub(super) struct Scratch {
    causal: Vec<f32>,
    ring: Vec<f32>,
    anti: Vec<f32>,
    fresh: Vec<f32>,
    sum: Vec<f32>,
    total: Vec<f32>,
}

impl Scratch {
    pub fn new(strip: usize, height: usize) -> Self {
        Self { causal: vec![0.0; strip * (height + 4)], ring: vec![0.0; strip * 4], anti: vec![0.0; strip * 4], fresh: vec![0.0; strip], sum: vec![0.0; strip], total: vec![0.0; strip] }
    }
}

/// The vertical recursive Gaussian of one strip, in place. `alpha_src`
/// (RGBA only) gives the alpha bytes to put back.
#[inline(always)]
pub(super) fn vertical_strip_impl(img: &mut StripRows, f: &Deriche, alpha_src: Option<&ImageRef>, s: &mut Scratch) {
    let (v0, v1) = (img.v0, img.v1);
    let pf = PREFETCH_ROWS;
    let n = v1 - v0;
    let h = img.height();
    if n == 0 || h == 0 {
        return;
    }
    let [n0, n1, n2, n3] = f.n;
    let [m1, m2, m3, m4] = f.m;
    let [d1, d2, d3, d4] = f.d;
    // Causal pass, top to bottom. `causal` holds y[n] at row n + 4 (rows
    // 0..4 are the steady state before the top edge); `ring` the inputs
    // x[n], x[n-1], x[n-2], x[n-3] at slots n % 4, ...
    let causal = &mut s.causal[..n * (h + 4)];
    let ring = &mut s.ring[..n * 4];
    {
        let (first, _) = ring.split_at_mut(n);
        simd::widen(first, img.segment(0));
        for slot in 1..4 {
            ring.copy_within(0..n, slot * n);
        }
        for row in 0..4 {
            for i in 0..n {
                causal[row * n + i] = f.causal_gain * ring[i];
            }
        }
    }
    for y in 0..h {
        let slot = y % 4;
        img.prefetch(y + pf);
        simd::widen(&mut ring[slot * n..(slot + 1) * n], img.segment(y));
        let x0 = &ring[slot * n..][..n];
        let x1 = &ring[((y + 3) % 4) * n..][..n];
        let x2 = &ring[((y + 2) % 4) * n..][..n];
        let x3 = &ring[((y + 1) % 4) * n..][..n];
        let (past, now) = causal.split_at_mut((y + 4) * n);
        let out = &mut now[..n];
        let y1 = &past[(y + 3) * n..][..n];
        let y2 = &past[(y + 2) * n..][..n];
        let y3 = &past[(y + 1) * n..][..n];
        let y4 = &past[y * n..][..n];
        for i in 0..n {
            out[i] = ((n0 * x0[i] + n1 * x1[i]) + (n2 * x2[i] + n3 * x3[i])) - ((d2 * y2[i] + d3 * y3[i]) + d4 * y4[i]) - d1 * y1[i];
        }
    }
    // Anticausal pass, bottom to top, in place: row y is read (it becomes
    // x[n+1] of the next step) before its output is written. `ring` holds
    // x[n+1..n+4] and `anti` y[n+1..n+4], both at slots keyed by row % 4.
    let anti = &mut s.anti[..n * 4];
    simd::widen(&mut ring[..n], img.segment(h - 1));
    for slot in 1..4 {
        ring.copy_within(0..n, slot * n);
    }
    for i in 0..n {
        let v = f.anti_gain * ring[i];
        for slot in 0..4 {
            anti[slot * n + i] = v;
        }
    }
    let (fresh, sum, total) = (&mut s.fresh[..n], &mut s.sum[..n], &mut s.total[..n]);
    for y in (0..h).rev() {
        // Slots: row y+k lives at (y + k) % 4; y+4 shares y's slot, which
        // is overwritten last.
        if y >= pf {
            img.prefetch(y - pf);
        }
        let seg = img.segment(y);
        simd::widen(fresh, seg);
        let (s1, s2, s3, s4) = ((y + 1) % 4, (y + 2) % 4, (y + 3) % 4, y % 4);
        let x1 = &ring[s1 * n..][..n];
        let x2 = &ring[s2 * n..][..n];
        let x3 = &ring[s3 * n..][..n];
        let x4 = &ring[s4 * n..][..n];
        let (a1, a2, a3) = (&anti[s1 * n..][..n], &anti[s2 * n..][..n], &anti[s3 * n..][..n]);
        let a4 = &anti[s4 * n..][..n];
        let c = &causal[(y + 4) * n..][..n];
        for i in 0..n {
            let v = ((m1 * x1[i] + m2 * x2[i]) + (m3 * x3[i] + m4 * x4[i])) - ((d2 * a2[i] + d3 * a3[i]) + d4 * a4[i]) - d1 * a1[i];
            sum[i] = v;
            total[i] = c[i] + v;
        }
        simd::narrow(seg, total);
        if let Some(src) = alpha_src {
            simd::copy_alpha(seg, &src.row(y)[v0..v1]);
        }
        // y[n] and x[n] go where y[n+4] and x[n+4] were.
        anti[s4 * n..][..n].copy_from_slice(sum);
        ring[s4 * n..][..n].copy_from_slice(fresh);
    }
}
