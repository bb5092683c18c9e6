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

/// f64 reference of `a[m, kr] · W[k0..k0+kr, cols]ᵀ` from the *stored* (rounded) weights, and
/// with `a` rounded to bf16 as the kernel does when the weights are in the dot-product layout.
fn naive(a: &[f32], m: usize, w: &Packed, k0: usize, kr: usize, cols: Range<usize>) -> Vec<f32> {
    let n = cols.len();
    let round = |v: f32| {
        if w.bf16_dot() {
            bf16_to_f32(f32_to_bf16(v))
        } else {
            v
        }
    };
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for (jj, j) in cols.clone().enumerate() {
            let s: f64 = (0..kr)
                .map(|p| round(a[i * kr + p]) as f64 * w.get(j, k0 + p) as f64)
                .sum();
            c[i * n + jj] = s as f32;
        }
    }
    c
}

/// The layouts this CPU can run: f32, bf16 widened, and bf16 in pairs where AVX512_BF16 is.
fn layouts() -> Vec<(Dtype, bool)> {
    let mut v = vec![(Dtype::F32, false), (Dtype::Bf16, false)];
    if dot::available() {
        v.push((Dtype::Bf16, true));
    }
    v
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
    for (dtype, pairs) in layouts() {
        let w = Packed::build_for(k, &segs, dtype, pairs, |j, kk| wf[j * k + kk]);
        assert_eq!(w.bf16_dot(), pairs);
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
                    Some(f) => assert_eq!(f, &c, "{dtype:?} {pairs} m={m} threads={threads}"),
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
    for (dtype, pairs) in layouts() {
        let w = Packed::build_for(k, &segs, dtype, pairs, |j, kk| wf[j * k + kk]);
        // an odd start and an odd end: the pair layout's half pairs at both edges
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
    let w = Packed::build_for(k, &[n], Dtype::Bf16, false, |j, kk| wf[j * k + kk]);
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
    // the widening kernels: bf16 weights, f32 activations
    let b = Packed::build_for(k, &[n], Dtype::Bf16, false, |j, kk| wf[j * k + kk]);
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

#[test]
fn dot_kernel_pairs_round_like_the_scalar_rounding() {
    // every alignment: k0 odd or even, lengths around the 16-pair vector width
    for (k0, kr) in [
        (0, 1),
        (1, 1),
        (0, 31),
        (1, 32),
        (2, 33),
        (3, 64),
        (0, 65),
        (5, 70),
    ] {
        let m = 3;
        let a = rand_vec(m * kr, (k0 * 100 + kr) as u64);
        let mut out = Vec::new();
        let (t0, kp) = dot::to_pairs(Mat::new(&a, m, kr), k0, &mut out);
        assert_eq!((t0, kp), (k0 / 2, (k0 + kr).div_ceil(2) - k0 / 2));
        for r in 0..m {
            for t in 0..kp {
                let half = |kk: usize| -> u32 {
                    if kk < k0 || kk >= k0 + kr {
                        0
                    } else {
                        f32_to_bf16(a[r * kr + kk - k0]) as u32
                    }
                };
                let kk = 2 * (t0 + t);
                let want = half(kk) | (half(kk + 1) << 16);
                assert_eq!(out[r * kp + t], want, "k0={k0} kr={kr} r={r} t={t}");
            }
        }
    }
}

#[test]
fn dot_kernel_error_is_bounded_by_both_roundings() {
    // against exact f32 activations: |Σ a·w − Σ bf16(a)·w| <= Σ |a|·|w|·2⁻⁸ (weights as stored)
    if !dot::available() {
        return; // the pair layout is never built on this CPU
    }
    let (k, n, m) = (768usize, 100usize, 24usize);
    let wf = rand_vec(n * k, 31);
    let a = rand_vec(m * k, 32);
    let w = Packed::build_for(k, &[n], Dtype::Bf16, true, |j, kk| wf[j * k + kk]);
    let mut c = vec![0.0f32; m * n];
    matmul_packed(Mat::new(&a, m, k), &w, 0, 0..2, &mut c, n, false, 2);
    let mut worst = 0.0f64;
    for i in 0..m {
        for j in 0..n {
            let exact: f64 = (0..k)
                .map(|p| a[i * k + p] as f64 * w.get(j, p) as f64)
                .sum();
            let bound: f64 = (0..k)
                .map(|p| (a[i * k + p] as f64 * w.get(j, p) as f64).abs() / 256.0)
                .sum();
            let d = (c[i * n + j] as f64 - exact).abs();
            assert!(d <= bound + 1e-5, "{d} > {bound}");
            worst = worst.max(d / bound);
        }
    }
    assert!(
        worst > 0.01,
        "activations were not rounded? worst ratio {worst}"
    );
    // a row's result does not depend on the rows around it: bitwise equal alone
    for i in [0, 5, 6, 23] {
        let mut one = vec![0.0f32; n];
        let row = Mat::new(&a[i * k..(i + 1) * k], 1, k);
        matmul_packed(row, &w, 0, 0..2, &mut one, n, false, 1);
        assert_eq!(one, c[i * n..(i + 1) * n], "row {i}");
    }
}

#[test]
fn empty_and_single_k_ranges_write_their_products() {
    // the dot kernel writes over c (no zero fill first) except when it has no k pair at all
    let (k, n) = (9usize, 70usize);
    let wf = rand_vec(n * k, 41);
    for (dtype, pairs) in layouts() {
        let w = Packed::build_for(k, &[n], dtype, pairs, |j, kk| wf[j * k + kk]);
        for (k0, kr) in [(0, 0), (3, 0), (4, 1), (3, 1), (8, 1)] {
            let m = 2;
            let a = rand_vec(m * kr, 5);
            let mut c = vec![f32::NAN; m * n];
            let all = 0..w.panels().len();
            matmul_packed(Mat::new(&a, m, kr), &w, k0, all, &mut c, n, false, 1);
            let want = naive(&a, m, &w, k0, kr, 0..n);
            close(&c, &want, kr.max(1));
        }
    }
}
