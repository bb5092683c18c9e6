//! Products against weights packed at load time ([`Packed`]): `C (+)= A · Wᵀ` over a run of
//! panels and a `k` range of them.
//!
//! - Few rows (`m <= GEMV_MAX_ROWS`, the latency path): the hand-written panel kernel
//!   (`gemv`), threads taking contiguous runs of panels, so every weight is read once, in order.
//! - More rows: the `gemm` crate per panel (a panel's `k` range is a strided matrix); bf16
//!   panels are widened to f32 a block at a time first, the cost of which is shared by the rows.
//! - bf16 on a CPU with AVX512_BF16 (`bf16_dot`): the dot-product kernel (`dot`) for every
//!   row count, the activations rounded to bf16 once per call; threads split the panels as
//!   above.

pub mod dot;
pub mod ftz;
pub mod gemv;
pub mod packed;

use std::cell::RefCell;
use std::ops::Range;
use std::sync::OnceLock;

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use crate::linalg::Mat;
pub use packed::{bf16_to_f32, f32_to_bf16, Dtype, Packed, Panel, NB};

/// Up to this many rows take the panel kernel; more take the GEMM crate.
pub const GEMV_MAX_ROWS: usize = 16;

/// Rows of a bf16 panel widened per GEMM call: 2048 × 64 × 4 bytes = 512 KB.
const WIDEN_ROWS: usize = 2048;

/// Environment variable that turns the AVX512_BF16 kernel off: `IRT_FAST_BF16_KERNEL=widen`
/// widens bf16 weights to f32 as on other CPUs (f32 activations; read once per process).
pub const BF16_KERNEL_ENV: &str = "IRT_FAST_BF16_KERNEL";

/// Whether bf16 weights run on the AVX512_BF16 dot-product kernel: when the CPU has it and
/// `BF16_KERNEL_ENV` is not "widen". Decided once per process, so every load agrees.
pub fn bf16_dot() -> bool {
    static CHOICE: OnceLock<bool> = OnceLock::new();
    *CHOICE.get_or_init(|| {
        dot::available() && std::env::var(BF16_KERNEL_ENV).map_or(true, |v| v != "widen")
    })
}

/// The kernel that runs the packed products of `dtype` weights on this CPU: "avx512bf16"
/// (bf16 dot products, every row count), else "avx2+fma" or "scalar" (up to
/// `GEMV_MAX_ROWS` rows; above them the `gemm` crate, which dispatches itself).
pub fn kernel_name(dtype: Dtype) -> &'static str {
    if dtype == Dtype::Bf16 && bf16_dot() {
        "avx512bf16"
    } else if gemv::has_avx2_fma() {
        "avx2+fma"
    } else {
        "scalar"
    }
}

thread_local! {
    /// Activation pairs for the dot-product kernel, reused across calls on a thread.
    static PAIRS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
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
    // The dot-product kernel's activations, rounded once for every thread. The buffer is taken
    // out of the thread-local (not borrowed): a worker waiting below may run another call.
    let mut pairs = PAIRS.with(|b| b.take());
    let (t0, kp) = match &w.store {
        packed::Store::Bf16Pairs(_) => dot::to_pairs(a, k0, &mut pairs),
        _ => (0, 0),
    };
    let pairs_ref = &pairs;
    // The dot-product kernel writes its first k block over c instead of adding to zeros: a
    // pass over c less (a first layer's c, [m, E·H], is larger than the caches).
    let overwrite = !accumulate && kp > 0;
    if !accumulate && !overwrite {
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
        if let packed::Store::Bf16Pairs(d) = &w.store {
            let kpp = w.k().div_ceil(2);
            // SAFETY: bounds checked above (t0 + kp <= kpp); tasks own disjoint columns of c.
            let targets: Vec<dot::Target> = (p0..p1)
                .map(|i| unsafe {
                    let p = panels.start + i;
                    dot::Target {
                        b: d.as_ptr().add((p * kpp + t0) * 2 * NB),
                        c: c_ptr.0.add(pans[i].col0 - base),
                        width: pans[i].width,
                    }
                })
                .collect();
            // SAFETY: as above; `pairs` holds m rows of kp pairs (`dot::to_pairs`).
            unsafe { dot_products(pairs_ref, kp, m, ldc, &targets, overwrite) };
            return;
        }
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
    PAIRS.with(|b| b.replace(pairs));
}

/// The pair-layout panels' contributions on the dot-product kernel (`dot::panels`).
///
/// # Safety
/// `pairs` holds `m` rows of `kp` activation pairs (`dot::to_pairs`); each target as
/// `dot::panels` requires.
unsafe fn dot_products(
    pairs: &[u32],
    kp: usize,
    m: usize,
    ldc: usize,
    targets: &[dot::Target],
    overwrite: bool,
) {
    debug_assert!(pairs.len() >= m * kp);
    #[cfg(target_arch = "x86_64")]
    {
        // the pair layout is only built where the kernel runs (`Packed::build`)
        dot::panels(pairs.as_ptr(), kp, m, kp, ldc, targets, overwrite)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (pairs, kp, m, ldc, targets, overwrite);
        unreachable!("bf16 pairs are packed only for the AVX512_BF16 kernel")
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
        packed::Store::Bf16Pairs(_) => unreachable!("pair panels take dot_products"),
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
