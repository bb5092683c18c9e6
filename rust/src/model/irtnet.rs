//! IrtNet's item network: a mixture of experts, then the α/β heads.
//!
//! The two big matrices (every expert's first layer, every expert's second layer) are packed
//! once at load time into column panels (`kernels::Packed`) in the load-time `Dtype`, so that a
//! batch streams each weight once: two packed products in the dense pass (irtnet_dense.rs), or
//! one small product per selected expert in the sparse pass (irtnet_sparse.rs). Both write the
//! mixture output `h [m, O]` into `scratch.body_out`; the heads (α and β stacked) are one more,
//! small, product. The gate, the biases and the heads stay f32 whatever the dtype, so bf16
//! storage does not move the gate logits that select the experts.

use super::method::{ItemParams, Items};
use super::{resize, Scratch};
use crate::kernels::{matmul_packed, Dtype, Packed};
use crate::linalg::{matmul, Layout, Mat, W};
use crate::weights::Weights;

/// Packed IrtNet weights.
#[derive(Debug)]
pub(crate) struct IrtNet {
    pub n_shared: usize,
    pub n_routed: usize,
    pub top_k: usize,
    pub hidden: usize,
    pub out: usize,
    pub embed_dim: usize,
    pub d: usize,
    /// First layers: `E` segments (one per expert) of `H` columns, `k = D`.
    pub w1: Packed,
    /// `[E·H]`.
    pub b1: Vec<f32>,
    /// The gate, `R` columns, `k = D`, always f32; `None` without routed experts.
    pub gate: Option<Packed>,
    /// `[R]`.
    pub b_gate: Vec<f32>,
    /// `[R]`, added to gate logits for expert selection only.
    pub selection_bias: Vec<f32>,
    /// Second layers: `O` columns, `k = E·H` (`w2[k = e·H + j, o] = experts.w2[e, o, j]`).
    pub w2: Packed,
    /// `[E, O]`.
    pub b2: Vec<f32>,
    /// `[d + 1, O]`: α rows, then the β row.
    pub w_head: Vec<f32>,
    /// `[d + 1]`.
    pub b_head: Vec<f32>,
}

impl IrtNet {
    /// Takes the validated IrtNet tensors out of `w` and packs them.
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
        dtype: Dtype,
    ) -> IrtNet {
        let (h, o, e, dm) = (hidden, out, n_shared + n_routed, embed_dim);
        let w1 = w.take("experts.w1"); // [E, H, D]: row e·H + j is unit j of expert e
        let w1 = Packed::build(dm, &vec![h; e], dtype, |j, kk| w1[j * dm + kk]);
        let w2 = w.take("experts.w2"); // [E, O, H]
        let w2 = Packed::build(e * h, &[o], dtype, |oi, kk| {
            let (ei, j) = (kk / h, kk % h);
            w2[(ei * o + oi) * h + j]
        });
        let (gate, b_gate, selection_bias) = if n_routed > 0 {
            let g = Packed::from_out_in(w.tensor("gate.weight"), n_routed, dm, Dtype::F32);
            let sb = w.take("gate.selection_bias");
            (Some(g), w.take("gate.bias"), sb)
        } else {
            (None, Vec::new(), Vec::new())
        };
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
            w1,
            b1: w.take("experts.b1"),
            gate,
            b_gate,
            selection_bias,
            w2,
            b2: w.take("experts.b2"),
            w_head,
            b_head,
        }
    }

    /// Whether the mixture runs sparsely: only the selected experts' rows are computed. Exact
    /// (unselected experts have weight 0); faster when few of the routed experts are selected.
    pub fn sparse(&self) -> bool {
        self.n_routed > 0 && self.top_k * 2 <= self.n_routed
    }

    /// `scratch.gate_w[m, E]`: every row's expert weights (1 for shared experts).
    fn expert_weights(&self, x: &[f32], m: usize, scratch: &mut Scratch, threads: usize) {
        let (e, r) = (self.n_shared + self.n_routed, self.n_routed);
        resize(&mut scratch.gate_w, m * e);
        let Some(g) = &self.gate else {
            scratch.gate_w.fill(1.0);
            return;
        };
        resize(&mut scratch.gate_logits, m * r);
        let xm = Mat::new(x, m, self.embed_dim);
        let all = 0..g.panels().len();
        matmul_packed(xm, g, 0, all, &mut scratch.gate_logits, r, false, threads);
        let rows = scratch.gate_logits.chunks_exact_mut(r);
        for (gl, wrow) in rows.zip(scratch.gate_w.chunks_exact_mut(e)) {
            for (gi, b) in gl.iter_mut().zip(&self.b_gate) {
                *gi += b;
            }
            let sb = &self.selection_bias;
            gate_weights(gl, sb, self.top_k, self.n_shared, wrow, &mut scratch.order);
        }
    }
}

impl ItemParams for IrtNet {
    /// Logical weights one dense pass reads.
    fn n_weights(&self) -> usize {
        let gate = self.gate.as_ref().map_or(0, |g| g.n_weights());
        self.w1.n_weights() + self.w2.n_weights() + gate + self.w_head.len()
    }

    /// Bytes one dense pass streams (panel padding included).
    fn weight_bytes(&self) -> usize {
        let gate = self.gate.as_ref().map_or(0, |g| g.bytes());
        self.w1.bytes() + self.w2.bytes() + gate + 4 * self.w_head.len()
    }

    /// The mixture (dense or sparse, see `IrtNet::sparse`), then the α/β heads.
    fn item_params(&self, io: Items<'_>, scratch: &mut Scratch, threads: usize) {
        let Items { x, m, alpha, beta } = io;
        self.expert_weights(x, m, scratch, threads);
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
