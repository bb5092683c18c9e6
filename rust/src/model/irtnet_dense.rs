//! IrtNet's dense mixture pass: every expert for every row, as two large GEMMs.
//!
//! 1. every expert's first layer *and* the gate as one `[m, D] · [E·H + R, D]ᵀ` product;
//! 2. every expert's second layer as one `[m, E·H] · [O, E·H]ᵀ` product, after scaling each
//!    expert's hidden block by its gate weight, since `Σ_e w_e·(W2_e·r_e) = [w_1 r_1 | … ] · [W2_1 | …]ᵀ`.
//!
//! The seam for other kernels (GEMV for a few rows, bf16 weights): `mixture_dense` only has to
//! leave the mixture output `h [m, O]` in `scratch.body_out`.

use super::irtnet::{gate_weights, IrtNet};
use super::{resize, Scratch};
use crate::linalg::{matmul, Mat, W};

impl IrtNet {
    /// `scratch.body_out[m, O]` = the mixture output of every row, computing every expert.
    pub(crate) fn mixture_dense(&self, x: &[f32], m: usize, scratch: &mut Scratch, threads: usize) {
        let (h, o, r, dm) = (self.hidden, self.out, self.n_routed, self.embed_dim);
        let e = self.n_shared + r;
        let eh = e * h;
        // Row layout: [E·H hidden units | E gate weights]. The first product writes the R gate
        // logits into the tail; they are replaced by the E expert weights, which the second
        // product multiplies with the b2 columns appended to `w2t`.
        let width = eh + e;
        resize(&mut scratch.hidden, m * width);
        matmul(
            Mat::new(x, m, dm),
            W::new(&self.w_in, eh + r, dm, self.layout),
            &mut scratch.hidden,
            width,
            false,
            threads,
        );
        resize(&mut scratch.gate_w, e);
        for row in scratch.hidden.chunks_exact_mut(width) {
            let (experts, tail) = row.split_at_mut(eh);
            for (g, b) in tail[..r].iter_mut().zip(&self.b_in[eh..]) {
                *g += b;
            }
            gate_weights(
                &tail[..r],
                &self.selection_bias,
                self.top_k,
                self.n_shared,
                &mut scratch.gate_w,
                &mut scratch.order,
            );
            tail.copy_from_slice(&scratch.gate_w);
            // bias, ReLU and the gate weight in one pass over each expert's block
            for ((blk, bias), &we) in experts
                .chunks_exact_mut(h)
                .zip(self.b_in.chunks_exact(h))
                .zip(tail.iter())
            {
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
        matmul(
            Mat::new(&scratch.hidden, m, width),
            W::new(&self.w2t, o, width, self.layout),
            &mut scratch.body_out,
            o,
            false,
            threads,
        );
    }
}
