//! Few-row products on one packed panel: `c[m, width] += a[m, kr] · panel[kr, NB][:, :width]`.
//!
//! At a handful of queries the products are bound by reading the weights, so the kernel's job
//! is to stream the panel once, in order, and keep the FMA units fed from registers: a tile of
//! `MR` rows × `8·NV` columns of accumulators (at most 8 of the 16 AVX2 registers), rows taken
//! `MR` at a time. The `k` range is cut into blocks so that the part of the panel every row
//! group re-reads stays in L1. f32 and bf16 panels share the code; bf16 widens to f32
//! in registers (a shift), so only half the bytes come from memory and accumulation stays f32.

use super::packed::{bf16_to_f32, NB};

/// Bytes of a panel per `k` block when several row groups re-read it: 16 KB stays in L1
/// (64 rows of an f32 panel, 128 of a bf16 one). One row group reads it once: no blocking.
const BLOCK_BYTES: usize = 16 << 10;

/// A stored weight type the kernels can widen to f32.
pub(crate) trait Elem: Copy + Send + Sync + 'static {
    fn to_f32(self) -> f32;
    /// Eight consecutive values as an AVX register.
    ///
    /// # Safety
    /// `p..p+8` must be readable, and the CPU must have AVX2 (callers are `avx2` functions).
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

impl Elem for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> std::arch::x86_64::__m256 {
        std::arch::x86_64::_mm256_loadu_ps(p)
    }
}

impl Elem for u16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16_to_f32(self)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const u16) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // bf16 is the top half of an f32: zero-extend to 32 bits, shift into place
        let h = _mm_loadu_si128(p as *const __m128i);
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
    }
}

/// Whether the AVX2+FMA kernels can run on this CPU (checked once, cached by std).
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `c[r·ldc + j] += Σ_kk a[r·lda + kk] · b[kk·NB + j]` for `r < m`, `j < width`.
///
/// # Safety
/// `a` holds `m` rows of stride `lda` with `kr` readable values each; `b` points at `kr` rows
/// of `NB` values; `c` holds `m` rows of stride `ldc` with `width <= NB` writable values each,
/// not aliasing `a` or `b`. `use_simd` only if `has_avx2_fma()`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn panel<T: Elem>(
    a: *const f32,
    lda: usize,
    m: usize,
    b: *const T,
    kr: usize,
    c: *mut f32,
    ldc: usize,
    width: usize,
    use_simd: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if use_simd {
        return panel_avx2(a, lda, m, b, kr, c, ldc, width);
    }
    let _ = use_simd;
    panel_scalar(a, lda, m, b, kr, c, ldc, width)
}

#[allow(clippy::too_many_arguments)]
unsafe fn panel_scalar<T: Elem>(
    a: *const f32,
    lda: usize,
    m: usize,
    b: *const T,
    kr: usize,
    c: *mut f32,
    ldc: usize,
    width: usize,
) {
    let mut acc = [0.0f32; NB];
    for r in 0..m {
        acc.fill(0.0);
        for kk in 0..kr {
            let av = *a.add(r * lda + kk);
            let row = b.add(kk * NB);
            for (j, s) in acc[..width].iter_mut().enumerate() {
                *s += av * (*row.add(j)).to_f32();
            }
        }
        for (j, s) in acc[..width].iter().enumerate() {
            *c.add(r * ldc + j) += s;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn panel_avx2<T: Elem>(
    a: *const f32,
    lda: usize,
    m: usize,
    b: *const T,
    kr: usize,
    c: *mut f32,
    ldc: usize,
    width: usize,
) {
    let kb = if m == 1 {
        kr
    } else {
        BLOCK_BYTES / (NB * std::mem::size_of::<T>())
    };
    let mut k0 = 0;
    while k0 < kr {
        let kl = kb.min(kr - k0);
        let (ab, bb) = (a.add(k0), b.add(k0 * NB));
        let mut r = 0;
        while r < m {
            let (ar, cr) = (ab.add(r * lda), c.add(r * ldc));
            // widest tile the registers allow for the rows left: 8 accumulators
            let mr = match m - r {
                1 => 1,
                2 => 2,
                3 => 3,
                _ => 4,
            };
            match mr {
                1 => rows::<T, 1, 8>(ar, lda, bb, kl, cr, ldc, width),
                2 => rows::<T, 2, 4>(ar, lda, bb, kl, cr, ldc, width),
                3 => rows::<T, 3, 2>(ar, lda, bb, kl, cr, ldc, width),
                _ => rows::<T, 4, 2>(ar, lda, bb, kl, cr, ldc, width),
            }
            r += mr;
        }
        k0 += kl;
    }
}

/// `MR` rows against the whole panel, `8·NV` columns at a time.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn rows<T: Elem, const MR: usize, const NV: usize>(
    a: *const f32,
    lda: usize,
    b: *const T,
    kr: usize,
    c: *mut f32,
    ldc: usize,
    width: usize,
) {
    use std::arch::x86_64::*;
    let tw = 8 * NV;
    let mut j0 = 0;
    while j0 < width {
        let mut acc = [[_mm256_setzero_ps(); NV]; MR];
        let bj = b.add(j0);
        for kk in 0..kr {
            let bp = bj.add(kk * NB);
            let mut bv = [_mm256_setzero_ps(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = T::load8(bp.add(8 * v));
            }
            for (r, accr) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_ps(*a.add(r * lda + kk));
                for (s, x) in accr.iter_mut().zip(&bv) {
                    *s = _mm256_fmadd_ps(av, *x, *s);
                }
            }
        }
        let w = tw.min(width - j0);
        for (r, accr) in acc.iter().enumerate() {
            let cr = c.add(r * ldc + j0);
            if w == tw {
                for (v, s) in accr.iter().enumerate() {
                    let p = cr.add(8 * v);
                    _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), *s));
                }
            } else {
                let mut tmp = [0.0f32; NB];
                for (v, s) in accr.iter().enumerate() {
                    _mm256_storeu_ps(tmp.as_mut_ptr().add(8 * v), *s);
                }
                for (j, t) in tmp[..w].iter().enumerate() {
                    *cr.add(j) += t;
                }
            }
        }
        j0 += tw;
    }
}
