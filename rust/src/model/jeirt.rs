//! JE-IRT as an item network: an MLP whose output's direction is α and norm is β.

use super::method::{ItemParams, Items};
use super::{resize, Scratch};
use crate::kernels::{matmul_packed, Dtype, Packed};
use crate::linalg::Mat;
use crate::weights::Weights;

#[derive(Debug)]
pub(crate) struct JeIrt {
    pub embed_dim: usize,
    pub d: usize,
    pub hidden: usize,
    /// `[H, D]` and `[d, H]` logical, packed.
    pub w1: Packed,
    pub b1: Vec<f32>,
    pub w2: Packed,
    pub b2: Vec<f32>,
}

impl JeIrt {
    pub fn new(w: &mut Weights, embed_dim: usize, d: usize, hidden: usize, dtype: Dtype) -> JeIrt {
        JeIrt {
            embed_dim,
            d,
            hidden,
            w1: Packed::from_out_in(w.tensor("mlp.w1"), hidden, embed_dim, dtype),
            b1: w.take("mlp.b1"),
            w2: Packed::from_out_in(w.tensor("mlp.w2"), d, hidden, dtype),
            b2: w.take("mlp.b2"),
        }
    }
}

impl ItemParams for JeIrt {
    fn n_weights(&self) -> usize {
        self.w1.n_weights() + self.w2.n_weights()
    }

    fn weight_bytes(&self) -> usize {
        self.w1.bytes() + self.w2.bytes()
    }

    fn item_params(&self, io: Items<'_>, scratch: &mut Scratch, threads: usize) {
        let Items { x, m, alpha, beta } = io;
        let (dm, d, h) = (self.embed_dim, self.d, self.hidden);
        resize(&mut scratch.hidden, m * h);
        let xm = Mat::new(x, m, dm);
        let all1 = 0..self.w1.panels().len();
        matmul_packed(
            xm,
            &self.w1,
            0,
            all1,
            &mut scratch.hidden,
            h,
            false,
            threads,
        );
        for row in scratch.hidden.chunks_exact_mut(h) {
            for (v, bi) in row.iter_mut().zip(&self.b1) {
                *v = (*v + bi).max(0.0);
            }
        }
        let hm = Mat::new(&scratch.hidden, m, h);
        let all2 = 0..self.w2.panels().len();
        matmul_packed(hm, &self.w2, 0, all2, alpha, d, false, threads);
        for (a, be) in alpha.chunks_exact_mut(d).zip(beta.iter_mut()) {
            let mut norm2 = 0.0f32;
            for (ai, bi) in a.iter_mut().zip(&self.b2) {
                *ai += bi;
                norm2 += *ai * *ai;
            }
            let norm = norm2.sqrt();
            let denom = norm.max(1e-12);
            for ai in a.iter_mut() {
                *ai /= denom;
            }
            *be = norm;
        }
    }
}
