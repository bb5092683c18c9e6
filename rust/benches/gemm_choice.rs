//! Which GEMM crate for the engine's two big products? Times `gemm` and `matrixmultiply` on
//! the reference shapes (one chunk of 256 queries, one thread), interleaved to share the noise.
//! Then the engine's panel kernels against the `gemm` crate at 1-256 rows (`packed_vs_gemm`).
//! Run: `cargo bench --bench gemm_choice` (`-- --packed-only` for the second part alone).

use std::time::Instant;

fn gemm_crate(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    // c[m,n] = a[m,k] · b[n,k]ᵀ, all row-major
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

fn mm_crate(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            1,
            k as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}

fn main() {
    packed_vs_gemm();
    if std::env::args().any(|a| a == "--packed-only") {
        return;
    }
    let shapes = [
        (256, 20480 + 39, 768, "layer 1 (all experts + gate)"),
        (256, 256, 20520, "layer 2 (fused)"),
    ];
    for (m, n, k, what) in shapes {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
            .collect();
        let b: Vec<f32> = (0..n * k)
            .map(|i| ((i * 104729) % 1000) as f32 * 1e-3 - 0.5)
            .collect();
        let mut c1 = vec![0.0f32; m * n];
        let mut c2 = vec![0.0f32; m * n];
        let (mut t1, mut t2) = (f64::MAX, f64::MAX);
        for _ in 0..5 {
            let t = Instant::now();
            gemm_crate(m, n, k, &a, &b, &mut c1);
            t1 = t1.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            mm_crate(m, n, k, &a, &b, &mut c2);
            t2 = t2.min(t.elapsed().as_secs_f64());
        }
        let diff = c1
            .iter()
            .zip(&c2)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        let gf = 2.0 * (m * n * k) as f64 / 1e9;
        println!(
            "{what}: m={m} n={n} k={k}: gemm {:.1} GFLOP/s, matrixmultiply {:.1} GFLOP/s (max diff {diff:.2e})",
            gf / t1,
            gf / t2
        );
    }
}

/// The engine's current path (the `gemm` crate on `[k, n]` weights, columns split over threads)
/// against the packed panels (hand-written GEMV up to 16 rows, `gemm` per panel above), f32 and
/// bf16, on the reference model's two big products with 2 threads. Interleaved, min of `reps`.
fn packed_vs_gemm() {
    use irt_fast::kernels::{matmul_packed, Dtype, Packed};
    use irt_fast::linalg::{matmul, to_layout, Layout, Mat, W};
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    println!(
        "kernels: f32 {}, bf16 {}",
        irt_fast::kernels::kernel_name(Dtype::F32),
        irt_fast::kernels::kernel_name(Dtype::Bf16)
    );
    let layers: [(usize, Vec<usize>, &str); 2] = [
        (768, [vec![512; 40], vec![39]].concat(), "layer 1"),
        (20520, vec![256], "layer 2"),
    ];
    for (k, segs, what) in layers {
        let n: usize = segs.iter().sum();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 104729) % 1000) as f32 * 1e-3 - 0.5)
            .collect();
        let pf = Packed::build(k, &segs, Dtype::F32, |j, kk| w[j * k + kk]);
        let pb = Packed::build(k, &segs, Dtype::Bf16, |j, kk| w[j * k + kk]);
        let wt = to_layout(w, n, k, Layout::InOut);
        for m in [1usize, 2, 4, 8, 16, 64, 256] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
                .collect();
            let am = Mat::new(&a, m, k);
            let mut c = vec![0.0f32; m * n];
            let reps = if m <= 16 { 15 } else { 4 };
            let mut best = [f64::MAX; 3];
            for _ in 0..reps {
                pool.install(|| {
                    let t = Instant::now();
                    matmul(am, W::new(&wt, n, k, Layout::InOut), &mut c, n, false, 2);
                    best[0] = best[0].min(t.elapsed().as_secs_f64());
                    for (i, p) in [&pf, &pb].into_iter().enumerate() {
                        let t = Instant::now();
                        let all = 0..p.panels().len();
                        matmul_packed(am, p, 0, all, &mut c, n, false, 2);
                        best[i + 1] = best[i + 1].min(t.elapsed().as_secs_f64());
                    }
                });
            }
            let gb = |t: f64, bytes: usize| bytes as f64 / t / 1e9;
            println!(
                "{what} m={m:>3}: gemm [k,n] {:.2} ms ({:.1} GB/s) | packed f32 {:.2} ms ({:.1} GB/s) | packed bf16 {:.2} ms ({:.1} GB/s)",
                best[0] * 1e3,
                gb(best[0], n * k * 4),
                best[1] * 1e3,
                gb(best[1], pf.bytes()),
                best[2] * 1e3,
                gb(best[2], pb.bytes()),
            );
        }
    }
}
