//! Products against weights packed at load time ([`Packed`]): `C (+)= A · Wᵀ` over a run of
//! panels and a `k` range of them.
//!
//! - Few rows (`m <= GEMV_MAX_ROWS`, the latency path): the hand-written panel kernel
//!   (`gemv`), threads taking contiguous runs of panels, so every weight is read once, in order.
//! - More rows: the `gemm` crate per panel (a panel's `k` range is a strided matrix); bf16
//!   panels are widened to f32 a block at a time first, the cost of which is shared by the rows.

pub mod ftz;
pub mod gemv;
pub mod packed;

use std::ops::Range;

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use crate::linalg::Mat;
pub use packed::{bf16_to_f32, f32_to_bf16, Dtype, Packed, Panel, NB};

/// Up to this many rows take the panel kernel; more take the GEMM crate.
pub const GEMV_MAX_ROWS: usize = 16;

/// Rows of a bf16 panel widened per GEMM call: 2048 × 64 × 4 bytes = 512 KB.
const WIDEN_ROWS: usize = 2048;

/// Which kernel family runs: "avx2+fma" or "scalar" (GEMV); the GEMM crate dispatches itself.
pub fn kernel_name() -> &'static str {
    if gemv::has_avx2_fma() {
        "avx2+fma"
    } else {
        "scalar"
    }
}

/// `c[m, cols] (+)= a[m, kr] · W[k0..k0+kr, panels]`, where output column `col0 − base` of
/// `c` (row stride `ldc`) takes panel column `col0`, `base` being the first panel's `col0`.
/// `threads > 1` splits the panels into contiguous runs on the current rayon pool. Results do
/// not depend on `threads` (each output element is summed by one task, in the same order).
#[allow(clippy::too_many_arguments)]
pub fn matmul_packed(
    a: Mat<'_>,
    w: &Packed,
    k0: usize,
    panels: Range<usize>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    threads: usize,
) {
    let (m, kr) = (a.rows, a.cols);
    assert!(k0 + kr <= w.k(), "k range out of bounds");
    assert!(panels.end <= w.panels().len() && panels.start <= panels.end);
    if m == 0 || panels.is_empty() {
        return;
    }
    assert!(
        a.ld >= kr && a.data.len() >= (m - 1) * a.ld + kr,
        "a out of bounds"
    );
    let pans = &w.panels()[panels.clone()];
    let base = pans[0].col0;
    let last = pans[pans.len() - 1];
    let cols = last.col0 + last.width - base;
    assert!(
        ldc >= cols && c.len() >= (m - 1) * ldc + cols,
        "c out of bounds"
    );
    if !accumulate {
        for r in 0..m {
            c[r * ldc..r * ldc + cols].fill(0.0);
        }
    }
    let simd = gemv::has_avx2_fma();
    let np = pans.len();
    let c_ptr = SendPtr(c.as_mut_ptr());
    // One task per thread, each a contiguous run of panels.
    let run = |t: usize, tasks: usize| {
        let c_ptr = &c_ptr;
        let (p0, p1) = (t * np / tasks, (t + 1) * np / tasks);
        let mut widened: Vec<f32> = Vec::new();
        for (i, pan) in pans[p0..p1].iter().enumerate() {
            let p = panels.start + p0 + i;
            // SAFETY: bounds checked above; tasks write disjoint column ranges of c.
            unsafe {
                let cp = c_ptr.0.add(pan.col0 - base);
                panel_product(a, w, p, k0, cp, ldc, pan.width, simd, &mut widened);
            }
        }
    };
    let tasks = threads.clamp(1, np);
    if tasks == 1 {
        run(0, 1);
    } else {
        (0..tasks).into_par_iter().for_each(|t| run(t, tasks));
    }
}

/// One panel's contribution, `c[m, width] += a · panel[k0..k0+a.cols]`.
///
/// # Safety
/// As `matmul_packed` checks: `a` and the panel's `k` range in bounds, `c` writable for `m`
/// rows of stride `ldc` and `width` columns.
#[allow(clippy::too_many_arguments)]
unsafe fn panel_product(
    a: Mat<'_>,
    w: &Packed,
    p: usize,
    k0: usize,
    c: *mut f32,
    ldc: usize,
    width: usize,
    simd: bool,
    widened: &mut Vec<f32>,
) {
    let (m, kr, k) = (a.rows, a.cols, w.k());
    let off = (p * k + k0) * NB;
    match &w.store {
        packed::Store::F32(d) => {
            let b = d.as_ptr().add(off);
            if m <= GEMV_MAX_ROWS {
                gemv::panel(a.data.as_ptr(), a.ld, m, b, kr, c, ldc, width, simd);
            } else {
                gemm_block(a, 0, kr, b, c, ldc, width);
            }
        }
        packed::Store::Bf16(d) => {
            let b = d.as_ptr().add(off);
            if m <= GEMV_MAX_ROWS {
                gemv::panel(a.data.as_ptr(), a.ld, m, b, kr, c, ldc, width, simd);
                return;
            }
            let mut kb = 0;
            while kb < kr {
                let kl = WIDEN_ROWS.min(kr - kb);
                widened.clear();
                let src = std::slice::from_raw_parts(b.add(kb * NB), kl * NB);
                widened.extend(src.iter().map(|&h| bf16_to_f32(h)));
                gemm_block(a, kb, kl, widened.as_ptr(), c, ldc, width);
                kb += kl;
            }
        }
    }
}

/// `c[m, width] += a[:, kb..kb+kl] · b[kl, NB][:, :width]` with the `gemm` crate.
unsafe fn gemm_block(
    a: Mat<'_>,
    kb: usize,
    kl: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    width: usize,
) {
    gemm(
        a.rows,
        width,
        kl,
        c,
        1,
        ldc as isize,
        true,
        a.data.as_ptr().add(kb),
        1,
        a.ld as isize,
        b,
        1,
        NB as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        Parallelism::None,
    );
}

struct SendPtr(*mut f32);
// SAFETY: hands disjoint column ranges of one output to rayon tasks.
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}

#[cfg(test)]
pub(crate) mod tests;
