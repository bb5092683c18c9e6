use super::*;

/// Deterministic values in [-0.5, 0.5) for the kernel tests (also used by linalg's tests).
pub(crate) fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
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

/// f64 reference of `a[m, kr] · W[k0..k0+kr, cols]ᵀ` from the *stored* (rounded) weights.
fn naive(a: &[f32], m: usize, w: &Packed, k0: usize, kr: usize, cols: Range<usize>) -> Vec<f32> {
    let n = cols.len();
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for (jj, j) in cols.clone().enumerate() {
            let s: f64 = (0..kr)
                .map(|p| a[i * kr + p] as f64 * w.get(j, k0 + p) as f64)
                .sum();
            c[i * n + jj] = s as f32;
        }
    }
    c
}

fn close(got: &[f32], want: &[f32], kr: usize) {
    // inputs are in ±0.5: f32 sums of kr terms stay within ~kr·2⁻²⁴ relative
    let tol = 1e-6 * kr as f32 + 1e-6;
    for (i, (x, y)) in got.iter().zip(want).enumerate() {
        assert!((x - y).abs() <= tol, "element {i}: {x} vs {y}");
    }
}

#[test]
fn every_row_count_layout_and_thread_count_matches_the_reference() {
    // segments that pad panels, k that crosses the kernel's k-blocks, row counts on both paths
    let (k, segs) = (1100usize, [130usize, 7, 64]);
    let n: usize = segs.iter().sum();
    let wf = rand_vec(n * k, 11);
    for dtype in [Dtype::F32, Dtype::Bf16] {
        let w = Packed::build(k, &segs, dtype, |j, kk| wf[j * k + kk]);
        for m in (1..=20).chain([33, 40]) {
            let a = rand_vec(m * k, m as u64);
            let want = naive(&a, m, &w, 0, k, 0..n);
            let mut first: Option<Vec<f32>> = None;
            for threads in [1, 2, 3, 5] {
                let mut c = vec![0.0f32; m * n];
                let all = 0..w.panels().len();
                matmul_packed(Mat::new(&a, m, k), &w, 0, all, &mut c, n, false, threads);
                close(&c, &want, k);
                match &first {
                    None => first = Some(c),
                    // each element is summed by one task in one order: bitwise equal
                    Some(f) => assert_eq!(f, &c, "{dtype:?} m={m} threads={threads}"),
                }
            }
        }
    }
}

#[test]
fn segment_and_k_range_views_accumulate_in_place() {
    let (k, segs) = (300usize, [64usize, 100, 5]);
    let n: usize = segs.iter().sum();
    let wf = rand_vec(n * k, 3);
    for dtype in [Dtype::F32, Dtype::Bf16] {
        let w = Packed::build(k, &segs, dtype, |j, kk| wf[j * k + kk]);
        let (k0, kr) = (37, 200);
        let seg = w.segment(1);
        let cols = 64..164;
        for m in [1, 3, 16, 17, 50] {
            let a = rand_vec(m * kr, 7 + m as u64);
            let want = naive(&a, m, &w, k0, kr, cols.clone());
            // c has a wider row stride and starts at 1: accumulate adds, columns past the
            // segment stay untouched
            let ldc = 120;
            let mut c = vec![1.0f32; m * ldc];
            matmul_packed(
                Mat::new(&a, m, kr),
                &w,
                k0,
                seg.clone(),
                &mut c,
                ldc,
                true,
                2,
            );
            for i in 0..m {
                let got: Vec<f32> = c[i * ldc..i * ldc + 100].iter().map(|v| v - 1.0).collect();
                close(&got, &want[i * 100..(i + 1) * 100], kr);
                assert!(c[i * ldc + 100..(i + 1) * ldc].iter().all(|&v| v == 1.0));
            }
        }
    }
}

#[test]
fn simd_and_scalar_kernels_agree() {
    if !gemv::has_avx2_fma() {
        return; // nothing to compare on this CPU; the scalar path is what runs
    }
    let (k, n) = (2100usize, 64usize);
    let wf = rand_vec(n * k, 5);
    let w = Packed::from_out_in(&wf, n, k, Dtype::Bf16);
    let packed::Store::Bf16(d) = &w.store else {
        unreachable!()
    };
    for m in 1..=GEMV_MAX_ROWS {
        let a = rand_vec(m * k, 9);
        let mut c1 = vec![0.0f32; m * n];
        let mut c2 = vec![0.0f32; m * n];
        // SAFETY: shapes match the buffers.
        unsafe {
            gemv::panel(a.as_ptr(), k, m, d.as_ptr(), k, c1.as_mut_ptr(), n, n, true);
            gemv::panel(
                a.as_ptr(),
                k,
                m,
                d.as_ptr(),
                k,
                c2.as_mut_ptr(),
                n,
                n,
                false,
            );
        }
        close(&c1, &c2, k);
    }
}

#[test]
fn bf16_error_is_bounded_by_the_weight_rounding() {
    // |Σ a·(w − bf16(w))| <= Σ |a|·|w|·2⁻⁹: the only error bf16 adds is the rounding of w
    let (k, n, m) = (768usize, 100usize, 4usize);
    let wf = rand_vec(n * k, 21);
    let a = rand_vec(m * k, 22);
    let f = Packed::from_out_in(&wf, n, k, Dtype::F32);
    let b = Packed::from_out_in(&wf, n, k, Dtype::Bf16);
    let (mut cf, mut cb) = (vec![0.0f32; m * n], vec![0.0f32; m * n]);
    matmul_packed(Mat::new(&a, m, k), &f, 0, 0..2, &mut cf, n, false, 1);
    matmul_packed(Mat::new(&a, m, k), &b, 0, 0..2, &mut cb, n, false, 1);
    for i in 0..m {
        for j in 0..n {
            let bound: f32 = (0..k)
                .map(|p| (a[i * k + p] * wf[j * k + p]).abs() / 256.0)
                .sum();
            let d = (cf[i * n + j] - cb[i * n + j]).abs();
            assert!(d <= bound + 1e-5, "{d} > {bound}");
        }
    }
}
