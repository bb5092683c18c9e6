//! bf16 × bf16 products with AVX512_BF16 dot products (`vdpbf16ps`): each instruction
//! multiplies 16 pairs of bf16 weights (a panel row pair, `k` and `k + 1`, per output column)
//! by one pair of bf16 activations and adds both products to 16 f32 sums. That is 32
//! multiply-adds per instruction, twice an f32 FMA's, on half the bytes: the same native bf16
//! arithmetic torch reaches through oneDNN.
//!
//! The activations are rounded to bf16 once per call (`to_pairs`: nearest-even, as
//! `f32_to_bf16`), so this kernel rounds both operands where the widening kernels (`gemv`,
//! the `gemm` crate) round only the weights; sums stay f32. One kernel serves every row count:
//! a tile of up to `MR` rows × the panel's 64 columns lives in registers (4·`MR` of the 32
//! zmm registers) while a `k` block of the panel, small enough for L1, is read once per tile.
//! A row's sum is added up in the same order in any batch and on any threads, so its result
//! is bitwise the same.

use super::packed::{f32_to_bf16, NB};
use crate::linalg::Mat;

/// Rows per register tile: 6 × 4 accumulators + 4 weight vectors of the 32 zmm registers.
const MR: usize = 6;
/// Pairs of panel rows per `k` block: 128 × 64 columns × 2 × 2 bytes = 32 KB, within L1.
const KB: usize = 128;

/// Whether this CPU runs the kernel (AVX512F and AVX512_BF16; checked once, cached by std).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The rows of `a` as bf16 pairs aligned with the panel's row pairs: `out[r·kp + t]` holds
/// the weights' rows `2(t0 + t)` (low half) and `2(t0 + t) + 1` (high half), where `a`'s
/// column `i` multiplies weight row `k0 + i`, and a row outside `k0..k0 + a.cols` is 0.
/// Returns `(t0, kp)`.
pub(crate) fn to_pairs(a: Mat<'_>, k0: usize, out: &mut Vec<u32>) -> (usize, usize) {
    let (m, kr) = (a.rows, a.cols);
    let t0 = k0 / 2;
    let kp = (k0 + kr).div_ceil(2) - t0;
    out.clear();
    out.resize(m * kp, 0);
    if kp == 0 {
        return (t0, 0);
    }
    let lead = k0 % 2; // a's first column is the high half of pair 0
    for (r, o) in out.chunks_exact_mut(kp).enumerate() {
        let row = &a.data[r * a.ld..r * a.ld + kr];
        let bits = |i: usize| -> u32 { row.get(i).map_or(0, |&v| f32_to_bf16(v) as u32) };
        let mut t = 0;
        if lead == 1 {
            o[0] = bits(0) << 16;
            t = 1;
        }
        let full = kr.saturating_sub(lead) / 2; // pairs with both halves in range
        #[cfg(target_arch = "x86_64")]
        if full > 0 && available() {
            // SAFETY: the CPU has the features; `row[lead..]` holds 2·full values and `o[t..]`
            // has room for `full` pairs.
            unsafe { round_pairs(row[lead..].as_ptr(), full, o[t..].as_mut_ptr()) };
            t += full;
        }
        while t < kp {
            let i = 2 * t - lead;
            o[t] = bits(i) | (bits(i + 1) << 16);
            t += 1;
        }
    }
    (t0, kp)
}

/// `n` pairs of consecutive f32 at `src` rounded to bf16 (nearest-even) as `u32` pairs at `dst`,
/// 16 pairs per instruction; the tail is left to the caller.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn round_pairs(src: *const f32, n: usize, dst: *mut u32) {
    use std::arch::x86_64::*;
    let mut t = 0;
    while t + 16 <= n {
        let lo = _mm512_loadu_ps(src.add(2 * t));
        let hi = _mm512_loadu_ps(src.add(2 * t + 16));
        // the second operand fills the low 16 bf16 lanes: memory order is kept
        let v = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_storeu_si512(dst.add(t) as *mut __m512i, v);
        t += 16;
    }
    if t < n {
        // the tail, in the same rounding (the scalar loop in `to_pairs` would agree anyway)
        let (mut buf, mut out) = ([0.0f32; 32], [0u32; 16]);
        std::ptr::copy_nonoverlapping(src.add(2 * t), buf.as_mut_ptr(), 2 * (n - t));
        round_pairs(buf.as_ptr(), 16, out.as_mut_ptr());
        std::ptr::copy_nonoverlapping(out.as_ptr(), dst.add(t), n - t);
    }
}

/// A panel of the pair layout and where its columns go: the panel's first pair row of the
/// range, its output columns in `c` (row stride `ldc`), and how many of its 64 are real.
#[derive(Clone, Copy)]
pub(crate) struct Target {
    pub b: *const u16,
    pub c: *mut f32,
    pub width: usize,
}

/// For each target: `c[r·ldc + j] += Σ_t pair(ap[r·ldp + t]) · pair(b[t·2NB + 2j ..])` for
/// `r < m`, `j < width`, `t < kp`, in blocks of `KB` pairs of `k` (with `overwrite`, `=` for the
/// first block: `c` need not be zeroed first, `kp > 0`). The loop order depends on
/// which operand would fall out of cache: while every row's activation pairs fit in L2
/// (`A_IN_L2`), panel by panel, so each panel's outputs are written to memory once (a first
/// layer's outputs, `[m, E·H]`, do not fit in cache); above, `k` block by `k` block across
/// the panels, so a block of the activations is read from L2 by every panel (a second layer's
/// long `k`, `E·H`, makes them far larger than L2).
///
/// # Safety
/// `available()`; `ap` holds `m` rows of stride `ldp` with `kp` pairs each; each `b` points at
/// `kp` pair rows of a panel (`kp · NB · 2` values); each `c` holds `m` rows of stride `ldc`
/// with `width <= NB` writable values, not aliasing the inputs or each other.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
pub(crate) unsafe fn panels(
    ap: *const u32,
    ldp: usize,
    m: usize,
    kp: usize,
    ldc: usize,
    targets: &[Target],
    overwrite: bool,
) {
    // Every element's sum is added up k block by k block in increasing order, whatever the
    // loop order and the row count: a row's result does not depend on the batch size (nor,
    // as panels are split, on the threads).
    let blocks = (0..kp).step_by(KB);
    if m * kp * 4 <= A_IN_L2 {
        for t in targets {
            for k0 in blocks.clone() {
                block(ap, ldp, m, kp, ldc, t, k0, overwrite && k0 == 0);
            }
        }
    } else {
        for k0 in blocks {
            for t in targets {
                block(ap, ldp, m, kp, ldc, t, k0, overwrite && k0 == 0);
            }
        }
    }
}

/// Bytes of activation pairs up to which the panels are the outer loop (half an L2 of 1 MB).
const A_IN_L2: usize = 512 << 10;

/// One `k` block (pairs `k0..k0 + KB`) of one target, every row, `MR` rows at a time, added
/// into `c` (`set`: written over it).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    ap: *const u32,
    ldp: usize,
    m: usize,
    kp: usize,
    ldc: usize,
    t: &Target,
    k0: usize,
    set: bool,
) {
    let kl = KB.min(kp - k0);
    let (ab, bb) = (ap.add(k0), t.b.add(k0 * 2 * NB));
    let mut r = 0;
    while r < m {
        let (ar, cr) = (ab.add(r * ldp), t.c.add(r * ldc));
        let mr = MR.min(m - r);
        match mr {
            1 => tile::<1>(ar, ldp, bb, kl, cr, ldc, t.width, set),
            2 => tile::<2>(ar, ldp, bb, kl, cr, ldc, t.width, set),
            3 => tile::<3>(ar, ldp, bb, kl, cr, ldc, t.width, set),
            4 => tile::<4>(ar, ldp, bb, kl, cr, ldc, t.width, set),
            5 => tile::<5>(ar, ldp, bb, kl, cr, ldc, t.width, set),
            _ => tile::<MR>(ar, ldp, bb, kl, cr, ldc, t.width, set),
        }
        r += mr;
    }
}

/// `R` rows × the panel's 64 columns over `kl` pairs, added into `c` (`set`: written over it).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize>(
    ap: *const u32,
    ldp: usize,
    b: *const u16,
    kl: usize,
    c: *mut f32,
    ldc: usize,
    width: usize,
    set: bool,
) {
    use std::arch::x86_64::*;
    const V: usize = NB / 16; // 4 vectors of 16 f32 lanes
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    for t in 0..kl {
        let bp = b.add(t * 2 * NB);
        let mut bv = [bh(_mm512_setzero_si512()); V];
        for (v, x) in bv.iter_mut().enumerate() {
            *x = bh(_mm512_loadu_si512(bp.add(32 * v) as *const __m512i));
        }
        for (r, accr) in acc.iter_mut().enumerate() {
            let av = bh(_mm512_set1_epi32(*ap.add(r * ldp + t) as i32));
            for (s, x) in accr.iter_mut().zip(&bv) {
                *s = _mm512_dpbf16_ps(*s, av, *x);
            }
        }
    }
    for (r, accr) in acc.iter().enumerate() {
        let cr = c.add(r * ldc);
        for (v, s) in accr.iter().enumerate() {
            let j = 16 * v;
            if j >= width {
                break;
            }
            let mask: __mmask16 = if width - j >= 16 {
                0xFFFF
            } else {
                (1u16 << (width - j)) - 1
            };
            let p = cr.add(j);
            let sum = if set {
                *s
            } else {
                _mm512_add_ps(_mm512_maskz_loadu_ps(mask, p), *s)
            };
            _mm512_mask_storeu_ps(p, mask, sum);
        }
    }
}

/// 32 bf16 values from their bits (a reinterpretation, no conversion).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn bh(v: std::arch::x86_64::__m512i) -> std::arch::x86_64::__m512bh {
    use std::arch::x86_64::{__m512bh, __m512i};
    // SAFETY: both are 64-byte vectors with no invalid bit patterns.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
}
