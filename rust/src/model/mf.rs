//! EmbedLLM matrix factorisation as an item network: α = scale ⊙ (proj·v + b), β = −out.bias.

use super::method::{ItemParams, Items};
use super::Scratch;
use crate::kernels::{matmul_packed, Dtype, Packed};
use crate::linalg::Mat;
use crate::weights::Weights;

#[derive(Debug)]
pub(crate) struct Mf {
    pub embed_dim: usize,
    pub d: usize,
    /// `[d, D]` logical, packed; `[d]`.
    pub w: Packed,
    pub b: Vec<f32>,
    /// `out.weight[0]`, `[d]`.
    pub scale: Vec<f32>,
    /// `−out.bias`.
    pub beta: f32,
}

impl Mf {
    pub fn new(w: &mut Weights, embed_dim: usize, d: usize, dtype: Dtype) -> Mf {
        Mf {
            embed_dim,
            d,
            w: Packed::from_out_in(w.tensor("proj.weight"), d, embed_dim, dtype),
            b: w.take("proj.bias"),
            scale: w.take("out.weight"),
            beta: -w.tensor("out.bias").first().copied().unwrap_or(0.0),
        }
    }
}

impl ItemParams for Mf {
    fn n_weights(&self) -> usize {
        self.w.n_weights()
    }

    fn weight_bytes(&self) -> usize {
        self.w.bytes()
    }

    fn item_params(&self, io: Items<'_>, _: &mut Scratch, threads: usize) {
        let Items { x, m, alpha, beta } = io;
        let (dm, d) = (self.embed_dim, self.d);
        let all = 0..self.w.panels().len();
        matmul_packed(
            Mat::new(x, m, dm),
            &self.w,
            0,
            all,
            alpha,
            d,
            false,
            threads,
        );
        for a in alpha.chunks_exact_mut(d) {
            for ((ai, bi), si) in a.iter_mut().zip(&self.b).zip(&self.scale) {
                *ai = (*ai + bi) * si;
            }
        }
        beta.fill(self.beta);
    }
}
