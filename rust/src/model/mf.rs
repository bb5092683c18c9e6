//! EmbedLLM matrix factorisation as an item network: α = scale ⊙ (proj·v + b), β = −out.bias.

use crate::linalg::{matmul, to_layout, Layout, Mat, W};
use crate::weights::Weights;

#[derive(Debug)]
pub(crate) struct Mf {
    pub embed_dim: usize,
    pub d: usize,
    /// `[d, D]` logical, stored in `layout`; `[d]`.
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    /// `out.weight[0]`, `[d]`.
    pub scale: Vec<f32>,
    /// `−out.bias`.
    pub beta: f32,
    pub layout: Layout,
}

impl Mf {
    pub fn new(w: &mut Weights, embed_dim: usize, d: usize, layout: Layout) -> Mf {
        Mf {
            embed_dim,
            d,
            w: to_layout(w.take("proj.weight"), d, embed_dim, layout),
            b: w.take("proj.bias"),
            scale: w.take("out.weight"),
            beta: -w.tensor("out.bias").first().copied().unwrap_or(0.0),
            layout,
        }
    }

    pub fn item_params(
        &self,
        x: &[f32],
        m: usize,
        alpha: &mut [f32],
        beta: &mut [f32],
        threads: usize,
    ) {
        let (dm, d) = (self.embed_dim, self.d);
        matmul(
            Mat::new(x, m, dm),
            W::new(&self.w, d, dm, self.layout),
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
