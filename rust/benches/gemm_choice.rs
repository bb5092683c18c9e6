//! Which GEMM crate for the engine's two big products? Times `gemm` and `matrixmultiply` on
//! the reference shapes (one chunk of 256 queries, one thread), interleaved to share the noise.
//! Run: `cargo bench --bench gemm_choice`.

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
