//! The IrtNet mixture on packed weights: query embeddings `[m, D]` → expert output `[m, O]`.
//!
//! Dense (every expert computed, unselected ones weighted 0): two products over packed panels,
//! `x · W1` for every expert's first layer at once, then `[w_1·r_1 | … | w_E·r_E] · W2`, since
//! `Σ_e w_e·(W2_e·r_e) = [w_1 r_1 | …] · [W2_1 | …]ᵀ`; the second-layer biases `Σ_e w_e·b2_e`
//! are added after. Sparse (few of many routed experts selected): per expert, only the rows
//! that selected it, against that expert's own panels (a segment of `W1`, a `k` range of `W2`).
//!
//! The two big matrices are stored in the load-time `Dtype`; the gate, biases and heads stay
//! f32, so bf16 storage does not move the gate logits that pick the experts.

use super::{matmul_packed, Dtype, Packed};
use crate::linalg::Mat;
use crate::weights::Weights;

/// One IrtNet mixture, packed for inference.
#[derive(Debug, Clone)]
pub struct Moe {
    pub n_shared: usize,
    pub n_routed: usize,
    pub top_k: usize,
    pub hidden: usize,
    pub out: usize,
    /// First layers: `E` segments of `H` columns, `k = D`.
    w1: Packed,
    /// `[E·H]`.
    b1: Vec<f32>,
    /// Gate: `R` columns, `k = D`, always f32 (expert selection must not depend on the dtype).
    gate: Option<Packed>,
    /// `[R]` each.
    b_gate: Vec<f32>,
    selection_bias: Vec<f32>,
    /// Second layers: `O` columns, `k = E·H` (`w2[k = e·H + j, o] = experts.w2[e, o, j]`).
    w2: Packed,
    /// `[E, O]`.
    b2: Vec<f32>,
}

/// Working memory of one chunk of rows, reused across chunks.
#[derive(Default)]
pub struct MoeScratch {
    hidden: Vec<f32>,
    gate: Vec<f32>,
    gw: Vec<f32>,
    order: Vec<usize>,
    xe: Vec<f32>,
    he: Vec<f32>,
    oe: Vec<f32>,
    rows: Vec<usize>,
}

impl Moe {
    /// Takes the mixture's tensors out of validated weights (shapes already checked).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        w: &mut Weights,
        dm: usize,
        hidden: usize,
        out: usize,
        n_shared: usize,
        n_routed: usize,
        top_k: usize,
        dtype: Dtype,
    ) -> Moe {
        let (h, o) = (hidden, out);
        let e = n_shared + n_routed;
        let w1 = w.take("experts.w1"); // [E, H, D]: row e·H + j is unit j of expert e
        let w1 = Packed::build(dm, &vec![h; e], dtype, |j, kk| w1[j * dm + kk]);
        let w2 = w.take("experts.w2"); // [E, O, H]
        let w2 = Packed::build(e * h, &[o], dtype, |oi, kk| {
            let (ei, j) = (kk / h, kk % h);
            w2[(ei * o + oi) * h + j]
        });
        let (gate, b_gate, selection_bias) = if n_routed > 0 {
            let g = Packed::from_out_in(w.tensor("gate.weight"), n_routed, dm, Dtype::F32);
            (Some(g), w.take("gate.bias"), w.take("gate.selection_bias"))
        } else {
            (None, Vec::new(), Vec::new())
        };
        Moe {
            n_shared,
            n_routed,
            top_k,
            hidden: h,
            out: o,
            w1,
            b1: w.take("experts.b1"),
            gate,
            b_gate,
            selection_bias,
            w2,
            b2: w.take("experts.b2"),
        }
    }

    fn n_experts(&self) -> usize {
        self.n_shared + self.n_routed
    }

    /// Weights streamed by one dense pass (logical, no padding).
    pub fn n_weights(&self) -> usize {
        self.w1.n_weights() + self.w2.n_weights() + self.gate.as_ref().map_or(0, |g| g.n_weights())
    }

    /// Bytes one dense pass streams (panel padding included).
    pub fn weight_bytes(&self) -> usize {
        self.w1.bytes() + self.w2.bytes() + self.gate.as_ref().map_or(0, |g| g.bytes())
    }

    /// Whether only the selected experts' rows are computed (exact either way: unselected
    /// experts have weight 0); chosen when at most half of the routed experts are selected.
    pub fn sparse(&self) -> bool {
        self.n_routed > 0 && self.top_k * 2 <= self.n_routed
    }

    /// `out[m, O]` = the mixture's output for the `m` rows of `x` (`[m, D]`).
    pub fn forward(
        &self,
        x: &[f32],
        m: usize,
        out: &mut [f32],
        s: &mut MoeScratch,
        threads: usize,
    ) {
        let (dm, e, o) = (self.w1.k(), self.n_experts(), self.out);
        assert_eq!(x.len(), m * dm);
        assert_eq!(out.len(), m * o);
        let xm = Mat::new(x, m, dm);
        // expert weights per row, [m, E]
        resize(&mut s.gw, m * e);
        if let Some(g) = &self.gate {
            let r = self.n_routed;
            resize(&mut s.gate, m * r);
            matmul_packed(
                xm,
                g,
                0,
                0..g.panels().len(),
                &mut s.gate,
                r,
                false,
                threads,
            );
            for (gl, wrow) in s.gate.chunks_exact_mut(r).zip(s.gw.chunks_exact_mut(e)) {
                for (gi, b) in gl.iter_mut().zip(&self.b_gate) {
                    *gi += b;
                }
                gate_weights(
                    gl,
                    &self.selection_bias,
                    self.top_k,
                    self.n_shared,
                    wrow,
                    &mut s.order,
                );
            }
        } else {
            s.gw.fill(1.0);
        }
        if self.sparse() {
            self.forward_sparse(x, m, out, s, threads);
        } else {
            self.forward_dense(xm, out, s, threads);
        }
    }

    fn forward_dense(&self, xm: Mat<'_>, out: &mut [f32], s: &mut MoeScratch, threads: usize) {
        let (m, h, e, o) = (xm.rows, self.hidden, self.n_experts(), self.out);
        let eh = e * h;
        resize(&mut s.hidden, m * eh);
        let all1 = 0..self.w1.panels().len();
        matmul_packed(xm, &self.w1, 0, all1, &mut s.hidden, eh, false, threads);
        // bias, ReLU and the gate weight in one pass over each expert's block
        for (row, wrow) in s.hidden.chunks_exact_mut(eh).zip(s.gw.chunks_exact(e)) {
            for ((blk, bias), &we) in row
                .chunks_exact_mut(h)
                .zip(self.b1.chunks_exact(h))
                .zip(wrow)
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
        let all2 = 0..self.w2.panels().len();
        let hm = Mat::new(&s.hidden, m, eh);
        matmul_packed(hm, &self.w2, 0, all2, out, o, false, threads);
        for (orow, wrow) in out.chunks_exact_mut(o).zip(s.gw.chunks_exact(e)) {
            for (&we, b2) in wrow.iter().zip(self.b2.chunks_exact(o)) {
                if we != 0.0 {
                    for (v, b) in orow.iter_mut().zip(b2) {
                        *v += we * b;
                    }
                }
            }
        }
    }

    fn forward_sparse(
        &self,
        x: &[f32],
        m: usize,
        out: &mut [f32],
        s: &mut MoeScratch,
        threads: usize,
    ) {
        let (dm, h, e, o) = (self.w1.k(), self.hidden, self.n_experts(), self.out);
        out.fill(0.0);
        let all2 = 0..self.w2.panels().len();
        for ei in 0..e {
            s.rows.clear();
            s.rows.extend((0..m).filter(|&i| s.gw[i * e + ei] != 0.0));
            let me = s.rows.len();
            if me == 0 {
                continue;
            }
            let xin: &[f32] = if me == m {
                x
            } else {
                s.xe.clear();
                for &i in &s.rows {
                    s.xe.extend_from_slice(&x[i * dm..(i + 1) * dm]);
                }
                &s.xe
            };
            resize(&mut s.he, me * h);
            let seg = self.w1.segment(ei);
            matmul_packed(
                Mat::new(xin, me, dm),
                &self.w1,
                0,
                seg,
                &mut s.he,
                h,
                false,
                threads,
            );
            let b1 = &self.b1[ei * h..(ei + 1) * h];
            for (row, &i) in s.he.chunks_exact_mut(h).zip(&s.rows) {
                let we = s.gw[i * e + ei];
                for (v, b) in row.iter_mut().zip(b1) {
                    *v = (*v + b).max(0.0) * we;
                }
            }
            resize(&mut s.oe, me * o);
            let hm = Mat::new(&s.he, me, h);
            matmul_packed(
                hm,
                &self.w2,
                ei * h,
                all2.clone(),
                &mut s.oe,
                o,
                false,
                threads,
            );
            let b2 = &self.b2[ei * o..(ei + 1) * o];
            for (orow, &i) in s.oe.chunks_exact(o).zip(&s.rows) {
                let we = s.gw[i * e + ei];
                let acc = &mut out[i * o..(i + 1) * o];
                for ((a, v), b) in acc.iter_mut().zip(orow).zip(b2) {
                    *a += v + we * b;
                }
            }
        }
    }
}

fn resize(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    v.truncate(n);
}

/// Expert weights for one query: 1 for shared experts; for routed ones the softmax of the gate
/// logits over the `top_k` experts with the largest `logit + selection_bias` (ties → lower
/// index), 0 for the others.
pub fn gate_weights(
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
