//! JE-IRT as an item network: an MLP whose output's direction is α and norm is β.

use super::{resize, Scratch};
use crate::linalg::{matmul, to_layout, Layout, Mat, W};
use crate::weights::Weights;

#[derive(Debug)]
pub(crate) struct JeIrt {
    pub embed_dim: usize,
    pub d: usize,
    pub hidden: usize,
    /// `[H, D]` and `[d, H]` logical, stored in `layout`.
    pub w1: Vec<f32>,
    pub b1: Vec<f32>,
    pub w2: Vec<f32>,
    pub b2: Vec<f32>,
    pub layout: Layout,
}

impl JeIrt {
    pub fn new(
        w: &mut Weights,
        embed_dim: usize,
        d: usize,
        hidden: usize,
        layout: Layout,
    ) -> JeIrt {
        JeIrt {
            embed_dim,
            d,
            hidden,
            w1: to_layout(w.take("mlp.w1"), hidden, embed_dim, layout),
            b1: w.take("mlp.b1"),
            w2: to_layout(w.take("mlp.w2"), d, hidden, layout),
            b2: w.take("mlp.b2"),
            layout,
        }
    }

    pub fn item_params(
        &self,
        x: &[f32],
        m: usize,
        alpha: &mut [f32],
        beta: &mut [f32],
        scratch: &mut Scratch,
        threads: usize,
    ) {
        let (dm, d, h) = (self.embed_dim, self.d, self.hidden);
        resize(&mut scratch.hidden, m * h);
        matmul(
            Mat::new(x, m, dm),
            W::new(&self.w1, h, dm, self.layout),
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
        matmul(
            Mat::new(&scratch.hidden, m, h),
            W::new(&self.w2, d, h, self.layout),
            alpha,
            d,
            false,
            threads,
        );
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
