//! The one matrix product the engine needs, `C (+)= A · Bᵀ`, on top of the `gemm` crate.
//!
//! Weights are stored as PyTorch stores `Linear.weight` (`[out, in]`, row-major), so every layer is
//! `A[m, k] · W[n, k]ᵀ`. Small `m` (a few queries) is memory-bound: the work is then split over
//! output columns so each thread streams its own slab of the weights. Large `m` is split over rows
//! one level up (in `infer`), so here a large product runs on the calling thread only.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// A row-major matrix view with an arbitrary row stride (`ld >= cols`).
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub ld: usize,
}

impl<'a> Mat<'a> {
    /// A dense row-major matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            ld: cols,
        }
    }

    fn check(&self) {
        assert!(self.ld >= self.cols, "row stride shorter than a row");
        if self.rows > 0 {
            assert!(
                self.data.len() >= (self.rows - 1) * self.ld + self.cols,
                "matrix view out of bounds"
            );
        }
    }
}

/// `c[m, n] = a[m, k] · b[n, k]ᵀ (+ c if accumulate)`, with `c` row-major of row stride `ldc`.
///
/// `threads > 1` splits the columns of `c` (the rows of `b`) into slabs computed in parallel on
/// the current rayon pool. Each output element is computed by the same kernel whatever the split,
/// so the split only changes speed.
pub fn matmul_nt(
    a: Mat<'_>,
    b: Mat<'_>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    threads: usize,
) {
    let (m, n, k) = (a.rows, b.rows, a.cols);
    assert_eq!(b.cols, k, "inner dimensions differ");
    a.check();
    b.check();
    assert!(ldc >= n);
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * ldc + n, "output out of bounds");
    // Slabs are multiples of 64 columns: whole cache lines, whole SIMD micro-tiles.
    let slab = n.div_ceil(threads.max(1)).next_multiple_of(64);
    if threads <= 1 || n <= slab {
        // SAFETY: the bounds of a, b and c were checked above; c is exclusively borrowed.
        unsafe {
            gemm_raw(
                m,
                n,
                k,
                a,
                b.data.as_ptr(),
                b.ld,
                c.as_mut_ptr(),
                ldc,
                accumulate,
            )
        };
        return;
    }
    let c_ptr = SendPtr(c.as_mut_ptr());
    (0..n.div_ceil(slab)).into_par_iter().for_each(|s| {
        let c_ptr = &c_ptr;
        let j0 = s * slab;
        let nj = slab.min(n - j0);
        // SAFETY: slabs are disjoint column ranges of c, so no two tasks write the same element;
        // all offsets stay inside the bounds checked above.
        unsafe {
            gemm_raw(
                m,
                nj,
                k,
                a,
                b.data.as_ptr().add(j0 * b.ld),
                b.ld,
                c_ptr.0.add(j0),
                ldc,
                accumulate,
            )
        };
    });
}

struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint column slabs of one output to rayon tasks.
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}

/// # Safety
/// `a`, `b` (`n` rows of stride `ldb`, `k` columns) and `c` (`m` rows of stride `ldc`, `n`
/// columns) must be valid for the given shapes, and `c` must not alias `a` or `b`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw(
    m: usize,
    n: usize,
    k: usize,
    a: Mat<'_>,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    gemm(
        m,
        n,
        k,
        c,
        1,
        ldc as isize,
        accumulate,
        a.data.as_ptr(),
        1,
        a.ld as isize,
        b,
        ldb as isize,
        1,
        1.0,
        1.0,
        false,
        false,
        false,
        Parallelism::None,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    s += a[i * k + p] as f64 * b[j * k + p] as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn matches_naive_for_all_splits() {
        for &(m, n, k) in &[(1, 300, 77), (5, 129, 64), (33, 1000, 20), (64, 64, 1)] {
            let a = rand_vec(m * k, 1);
            let b = rand_vec(n * k, 2);
            let want = naive(&a, &b, m, n, k);
            for threads in [1, 2, 3] {
                let mut c = vec![0.0; m * n];
                matmul_nt(
                    Mat::new(&a, m, k),
                    Mat::new(&b, n, k),
                    &mut c,
                    n,
                    false,
                    threads,
                );
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-4, "{x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn accumulates_and_respects_strides() {
        let (m, n, k) = (3, 5, 4);
        let a = rand_vec(m * 6, 3); // row stride 6, only 4 columns used
        let b = rand_vec(n * k, 4);
        let mut c = vec![1.0f32; m * 7];
        matmul_nt(
            Mat {
                data: &a,
                rows: m,
                cols: k,
                ld: 6,
            },
            Mat::new(&b, n, k),
            &mut c,
            7,
            true,
            1,
        );
        for i in 0..m {
            for j in 0..n {
                let s: f32 = (0..k).map(|p| a[i * 6 + p] * b[j * k + p]).sum();
                assert!((c[i * 7 + j] - 1.0 - s).abs() < 1e-5);
            }
            assert_eq!(c[i * 7 + 5], 1.0);
            assert_eq!(c[i * 7 + 6], 1.0);
        }
    }
}
