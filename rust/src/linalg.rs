//! The one matrix product the engine needs, a layer `C (+)= A · Wᵀ`, on top of the `gemm` crate
//! (chosen by measurement over `matrixmultiply`: see rust/benches/gemm_choice.rs).
//!
//! `W` is `[out, in]` as PyTorch stores `Linear.weight`, or its transpose (`Layout`). Small `m` (a few queries) is memory-bound: the work is then split over
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

/// How a weight matrix of logical shape `[n (out), k (in)]` is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[n, k]` row-major, as PyTorch stores `Linear.weight`.
    OutIn,
    /// `[k, n]` row-major (the transpose): the GEMM kernels read it without repacking, which
    /// matters when only a few queries share each pass over the weights.
    InOut,
}

/// A weight matrix: `n` outputs × `k` inputs, stored in `layout`.
#[derive(Clone, Copy)]
pub struct W<'a> {
    pub data: &'a [f32],
    pub n: usize,
    pub k: usize,
    pub layout: Layout,
    /// Row stride of an `InOut` matrix (`>= n`): lets a block of columns (one expert's units
    /// inside the stacked matrix) be used as a matrix of its own.
    pub ld: usize,
}

impl<'a> W<'a> {
    pub fn new(data: &'a [f32], n: usize, k: usize, layout: Layout) -> Self {
        assert_eq!(data.len(), n * k, "weight matrix size");
        W {
            data,
            n,
            k,
            layout,
            ld: match layout {
                Layout::OutIn => k,
                Layout::InOut => n,
            },
        }
    }

    /// Columns `j0..j0 + n` of an `InOut` matrix `[k, ld]`.
    pub fn in_out_block(data: &'a [f32], k: usize, ld: usize, j0: usize, n: usize) -> Self {
        assert!(j0 + n <= ld && k >= 1 && data.len() >= (k - 1) * ld + j0 + n);
        W {
            data: &data[j0..],
            n,
            k,
            layout: Layout::InOut,
            ld,
        }
    }
}

/// Returns `w` (logical `[n, k]`, row-major) in `layout`.
pub fn to_layout(w: Vec<f32>, n: usize, k: usize, layout: Layout) -> Vec<f32> {
    match layout {
        Layout::OutIn => w,
        Layout::InOut => {
            let mut t = vec![0.0f32; n * k];
            for (j, row) in w.chunks_exact(k).enumerate() {
                for (p, v) in row.iter().enumerate() {
                    t[p * n + j] = *v;
                }
            }
            t
        }
    }
}

/// `c[m, n] = a[m, k] · wᵀ (+ c if accumulate)`: a layer applied to `m` rows. See `matmul_nt`.
pub fn matmul(a: Mat<'_>, w: W<'_>, c: &mut [f32], ldc: usize, accumulate: bool, threads: usize) {
    match w.layout {
        Layout::OutIn => matmul_nt(
            a,
            Mat {
                data: w.data,
                rows: w.n,
                cols: w.k,
                ld: w.ld,
            },
            c,
            ldc,
            accumulate,
            threads,
        ),
        Layout::InOut => matmul_nn(a, w, c, ldc, accumulate, threads),
    }
}

fn matmul_nn(a: Mat<'_>, w: W<'_>, c: &mut [f32], ldc: usize, accumulate: bool, threads: usize) {
    let (m, n, k) = (a.rows, w.n, a.cols);
    assert_eq!(w.k, k, "inner dimensions differ");
    a.check();
    assert!(ldc >= n);
    assert!(w.ld >= n && (k == 0 || w.data.len() >= (k - 1) * w.ld + n));
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * ldc + n, "output out of bounds");
    if m == 1 {
        // gemm's matrix-vector path is ~2× slower on this layout than its matrix kernel on two
        // rows (measured: 4.4–8.5 ms vs 1.8 ms on the reference model), so run two rows.
        let mut a2 = Vec::with_capacity(2 * k);
        a2.extend_from_slice(&a.data[..k]);
        a2.resize(2 * k, 0.0);
        let mut c2 = vec![0.0f32; 2 * n];
        matmul_nn(Mat::new(&a2, 2, k), w, &mut c2, n, false, threads);
        for (ci, v) in c[..n].iter_mut().zip(&c2[..n]) {
            *ci = if accumulate { *ci + v } else { *v };
        }
        return;
    }
    let slab = n.div_ceil(threads.max(1)).next_multiple_of(64);
    let run = |j0: usize, nj: usize, c_ptr: *mut f32| {
        // SAFETY: bounds checked above; columns j0..j0+nj of w ([k, n] row-major) and of c.
        unsafe {
            gemm(
                m,
                nj,
                k,
                c_ptr.add(j0),
                1,
                ldc as isize,
                accumulate,
                a.data.as_ptr(),
                1,
                a.ld as isize,
                w.data.as_ptr().add(j0),
                1,
                w.ld as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            )
        }
    };
    if threads <= 1 || n <= slab {
        run(0, n, c.as_mut_ptr());
        return;
    }
    let c_ptr = SendPtr(c.as_mut_ptr());
    (0..n.div_ceil(slab)).into_par_iter().for_each(|s| {
        let c_ptr = &c_ptr;
        let j0 = s * slab;
        // disjoint column slabs: no two tasks write the same element
        run(j0, slab.min(n - j0), c_ptr.0);
    });
}

/// `c[m, n] = a[m, k] · b[n, k]ᵀ (+ c if accumulate)`, with `c` row-major of row stride `ldc`.
///
/// `threads > 1` splits the columns of `c` (the rows of `b`) into slabs computed in parallel on
/// the current rayon pool. The split changes speed, and results only at rounding level (the
/// kernel's blocking may depend on the slab's size).
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

    use crate::kernels::tests::rand_vec;

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
    fn both_layouts_agree() {
        for &(m, n, k) in &[(1, 300, 77), (7, 129, 64), (40, 1000, 20)] {
            let a = rand_vec(m * k, 5);
            let b = rand_vec(n * k, 6);
            let want = naive(&a, &b, m, n, k);
            let bt = to_layout(b.clone(), n, k, Layout::InOut);
            for threads in [1, 2, 3] {
                for (data, layout) in [(&b, Layout::OutIn), (&bt, Layout::InOut)] {
                    let mut c = vec![0.0; m * n];
                    let w = W::new(data, n, k, layout);
                    matmul(Mat::new(&a, m, k), w, &mut c, n, false, threads);
                    for (x, y) in c.iter().zip(&want) {
                        assert!((x - y).abs() < 1e-4, "{layout:?}: {x} vs {y}");
                    }
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
