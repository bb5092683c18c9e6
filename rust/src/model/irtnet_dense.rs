//! IrtNet's dense mixture pass: every expert for every row, as two products over packed panels.
//!
//! 1. every expert's first layer as one `[m, D] · W1` product (`E·H` columns);
//! 2. every expert's second layer as one `[m, E·H] · W2` product, after scaling each expert's
//!    hidden block by its gate weight, since `Σ_e w_e·(W2_e·r_e) = [w_1 r_1 | … ] · [W2_1 | …]ᵀ`;
//!    the second-layer biases `Σ_e w_e·b2_e` are added after (they stay f32 in bf16 mode).
//!
//! Up to 16 rows the products take the panel GEMV kernel, above it the GEMM crate per panel
//! (`kernels::matmul_packed`).

use super::irtnet::IrtNet;
use super::{resize, Scratch};
use crate::kernels::matmul_packed;
use crate::linalg::Mat;

impl IrtNet {
    /// `scratch.body_out[m, O]` = the mixture output of every row, computing every expert
    /// (`scratch.gate_w` holds the expert weights).
    pub(crate) fn mixture_dense(&self, x: &[f32], m: usize, scratch: &mut Scratch, threads: usize) {
        let (h, o, dm) = (self.hidden, self.out, self.embed_dim);
        let e = self.n_shared + self.n_routed;
        let eh = e * h;
        resize(&mut scratch.hidden, m * eh);
        let all1 = 0..self.w1.panels().len();
        let xm = Mat::new(x, m, dm);
        matmul_packed(
            xm,
            &self.w1,
            0,
            all1,
            &mut scratch.hidden,
            eh,
            false,
            threads,
        );
        // bias, ReLU and the gate weight in one pass over each expert's block
        let gw = &scratch.gate_w;
        for (row, wrow) in scratch.hidden.chunks_exact_mut(eh).zip(gw.chunks_exact(e)) {
            let blocks = row.chunks_exact_mut(h).zip(self.b1.chunks_exact(h));
            for ((blk, bias), &we) in blocks.zip(wrow) {
                if we == 0.0 {
                    blk.fill(0.0);
                    continue;
                }
                for (v, b) in blk.iter_mut().zip(bias) {
                    *v = (*v + b).max(0.0) * we;
                }
            }
        }
        resize(&mut scratch.body_out, m * o);
        let all2 = 0..self.w2.panels().len();
        let hm = Mat::new(&scratch.hidden, m, eh);
        matmul_packed(
            hm,
            &self.w2,
            0,
            all2,
            &mut scratch.body_out,
            o,
            false,
            threads,
        );
        for (orow, wrow) in scratch.body_out.chunks_exact_mut(o).zip(gw.chunks_exact(e)) {
            for (&we, b2) in wrow.iter().zip(self.b2.chunks_exact(o)) {
                if we != 0.0 {
                    for (v, b) in orow.iter_mut().zip(b2) {
                        *v += we * b;
                    }
                }
            }
        }
    }
}
