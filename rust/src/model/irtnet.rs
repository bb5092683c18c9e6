//! IrtNet's item network: a mixture of experts, then the α/β heads.
//!
//! Weights are repacked once at load time so that a batch costs two large GEMMs in the dense
//! pass (irtnet_dense.rs) or one small product per selected expert in the sparse pass
//! (irtnet_sparse.rs); both write the mixture output `h [m, O]` into `scratch.body_out`, and the
//! heads (α and β stacked) are one more, small, product.

use super::{resize, Scratch};
use crate::linalg::{matmul, to_layout, Layout, Mat, W};
use crate::weights::Weights;

/// Repacked IrtNet weights.
#[derive(Debug)]
pub(crate) struct IrtNet {
    pub n_shared: usize,
    pub n_routed: usize,
    pub top_k: usize,
    pub hidden: usize,
    pub out: usize,
    pub embed_dim: usize,
    pub d: usize,
    /// `[E·H + R, D]` logical (stored in `layout`): all experts' first layers, then the gate.
    pub w_in: Vec<f32>,
    /// `[E·H + R]`.
    pub b_in: Vec<f32>,
    /// `[R]`, added to gate logits for expert selection only.
    pub selection_bias: Vec<f32>,
    /// `[O, E·H + E]` logical: `w2t[o, e·H + j] = experts.w2[e, o, j]`,
    /// `w2t[o, E·H + e] = b2[e, o]`.
    pub w2t: Vec<f32>,
    /// `[d + 1, O]`: α rows, then the β row.
    pub w_head: Vec<f32>,
    /// `[d + 1]`.
    pub b_head: Vec<f32>,
    pub layout: Layout,
}

impl IrtNet {
    /// Takes the validated IrtNet tensors out of `w` and repacks them.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        w: &mut Weights,
        embed_dim: usize,
        d: usize,
        hidden: usize,
        out: usize,
        n_shared: usize,
        n_routed: usize,
        top_k: usize,
        layout: Layout,
    ) -> IrtNet {
        let (h, o, e) = (hidden, out, n_shared + n_routed);
        let mut w_in = w.take("experts.w1");
        w_in.extend_from_slice(w.tensor("gate.weight"));
        let mut b_in = w.take("experts.b1");
        b_in.extend_from_slice(w.tensor("gate.bias"));
        let w2 = w.take("experts.w2");
        let b2 = w.take("experts.b2");
        let width = e * h + e;
        let mut w2t = vec![0.0f32; o * width];
        for (oi, row) in w2t.chunks_exact_mut(width).enumerate() {
            for ei in 0..e {
                let src = &w2[(ei * o + oi) * h..(ei * o + oi + 1) * h];
                row[ei * h..(ei + 1) * h].copy_from_slice(src);
                row[e * h + ei] = b2[ei * o + oi];
            }
        }
        let mut w_head = w.take("alpha.weight");
        w_head.extend_from_slice(w.tensor("beta.weight"));
        let mut b_head = w.take("alpha.bias");
        b_head.extend_from_slice(w.tensor("beta.bias"));
        IrtNet {
            n_shared,
            n_routed,
            top_k,
            hidden: h,
            out: o,
            embed_dim,
            d,
            w_in: to_layout(w_in, e * h + n_routed, embed_dim, layout),
            b_in,
            selection_bias: w.take("gate.selection_bias"),
            w2t: to_layout(w2t, o, width, layout),
            w_head,
            b_head,
            layout,
        }
    }

    pub fn n_weights(&self) -> usize {
        self.w_in.len() + self.w2t.len() + self.w_head.len()
    }

    /// Whether the mixture runs sparsely: only the selected experts' rows are computed. Exact
    /// (unselected experts have weight 0); faster when few of the routed experts are selected.
    pub fn sparse(&self) -> bool {
        self.layout == Layout::InOut && self.n_routed > 0 && self.top_k * 2 <= self.n_routed
    }

    /// α `[m, d]` and β `[m]` for `m` queries `x`.
    pub fn item_params(
        &self,
        x: &[f32],
        m: usize,
        alpha: &mut [f32],
        beta: &mut [f32],
        scratch: &mut Scratch,
        threads: usize,
    ) {
        if self.sparse() {
            self.mixture_sparse(x, m, scratch, threads);
        } else {
            self.mixture_dense(x, m, scratch, threads);
        }
        let (d, o) = (self.d, self.out);
        let d1 = d + 1;
        resize(&mut scratch.heads, m * d1);
        matmul(
            Mat::new(&scratch.body_out, m, o),
            W::new(&self.w_head, d1, o, Layout::OutIn),
            &mut scratch.heads,
            d1,
            false,
            threads,
        );
        for ((row, a), b) in scratch
            .heads
            .chunks_exact(d1)
            .zip(alpha.chunks_exact_mut(d))
            .zip(beta.iter_mut())
        {
            for ((ai, ri), bi) in a.iter_mut().zip(row).zip(&self.b_head) {
                *ai = ri + bi;
            }
            *b = row[d] + self.b_head[d];
        }
    }
}

/// Expert weights for one query: 1 for shared experts; for routed ones the softmax of the gate
/// logits over the `top_k` experts with the largest `logit + selection_bias` (ties → lower
/// index), 0 for the others.
pub(crate) fn gate_weights(
    logits: &[f32],
    selection_bias: &[f32],
    top_k: usize,
    n_shared: usize,
    w: &mut [f32],
    order: &mut Vec<usize>,
) {
    let r = logits.len();
    w[..n_shared].fill(1.0);
    let routed = &mut w[n_shared..];
    if r == 0 {
        return;
    }
    if top_k >= r {
        let mx = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut s = 0.0f32;
        for (wi, &g) in routed.iter_mut().zip(logits) {
            *wi = (g - mx).exp();
            s += *wi;
        }
        for wi in routed.iter_mut() {
            *wi /= s;
        }
        return;
    }
    order.clear();
    order.extend(0..r);
    let key = |i: usize| logits[i] + selection_bias[i];
    // stable sort: equal keys keep ascending index order
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)));
    routed.fill(0.0);
    let sel = &order[..top_k];
    let mx = sel
        .iter()
        .map(|&i| logits[i])
        .fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0f32;
    for &i in sel {
        routed[i] = (logits[i] - mx).exp();
        s += routed[i];
    }
    for &i in sel {
        routed[i] /= s;
    }
}
