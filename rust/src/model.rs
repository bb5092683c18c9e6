//! The forward pass: query embeddings → item parameters (α, β) → P(correct) for every LLM.
//!
//! Weights are repacked once at load time so that a batch costs two large GEMMs:
//!
//! 1. every expert's first layer *and* the gate as one `[m, D] · [E·H + R, D]ᵀ` product;
//! 2. every expert's second layer as one `[m, E·H] · [O, E·H]ᵀ` product, after scaling each
//!    expert's hidden block by its gate weight, since `Σ_e w_e·(W2_e·r_e) = [w_1 r_1 | … ] · [W2_1 | …]ᵀ`.
//!
//! The heads (α and β stacked) and the LLM scores are two more, small, products.

use crate::linalg::{matmul, to_layout, Layout, Mat, W};
use crate::weights::{Config, Embedder, Method, Weights};

/// Repacked weights of one model, ready for batched inference.
#[derive(Debug, Clone)]
pub struct Model {
    pub config: Config,
    pub llm_names: Vec<String>,
    /// The file's `config` metadata as stored (unknown keys included).
    pub config_json: String,
    pub embedder: Embedder,
    /// The file's optional `training` metadata.
    pub training_json: Option<String>,
    body: Body,
    /// Storage of the large weight matrices.
    layout: Layout,
    /// `[n_llms, d]`.
    theta: Vec<f32>,
    /// `[n_llms]`, zeros when the config has no per-LLM bias.
    llm_bias: Vec<f32>,
}

#[derive(Debug, Clone)]
enum Body {
    IrtNet {
        n_shared: usize,
        n_routed: usize,
        top_k: usize,
        hidden: usize,
        out: usize,
        /// `[E·H + R, D]`: all experts' first layers, then the gate.
        w_in: Vec<f32>,
        /// `[E·H + R]`.
        b_in: Vec<f32>,
        /// `[R]`, added to gate logits for expert selection only.
        selection_bias: Vec<f32>,
        /// `[O, E·H + E]`: `w2t[o, e·H + j] = experts.w2[e, o, j]`, `w2t[o, E·H + e] = b2[e, o]`.
        w2t: Vec<f32>,
        /// `[d + 1, O]`: α rows, then the β row.
        w_head: Vec<f32>,
        /// `[d + 1]`.
        b_head: Vec<f32>,
    },
    Mf {
        /// `[d, D]`, `[d]`.
        w: Vec<f32>,
        b: Vec<f32>,
        /// `out.weight[0]`, `[d]`.
        scale: Vec<f32>,
        /// `−out.bias`.
        beta: f32,
    },
    JeIrt {
        hidden: usize,
        w1: Vec<f32>,
        b1: Vec<f32>,
        w2: Vec<f32>,
        b2: Vec<f32>,
    },
}

/// Per-call working memory for a chunk of queries; reused across chunks.
#[derive(Default)]
pub struct Scratch {
    hidden: Vec<f32>,
    body_out: Vec<f32>,
    heads: Vec<f32>,
    alpha: Vec<f32>,
    beta: Vec<f32>,
    gate_w: Vec<f32>,
    order: Vec<usize>,
}

impl Model {
    /// Repacks validated weights for inference.
    pub fn new(mut w: Weights) -> Model {
        let cfg = w.config.clone();
        // [in, out] storage: measured 2-4× faster than PyTorch's [out, in] for 2-128 queries
        // (no repacking of the weights per call) and no slower for large batches.
        let layout = Layout::InOut;
        let dm = cfg.embed_dim;
        let body = match cfg.method {
            Method::IrtNet {
                hidden_dim: h,
                expert_dim: o,
                n_shared,
                n_routed,
                top_k,
            } => {
                let e = n_shared + n_routed;
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
                let w_in = to_layout(w_in, e * h + n_routed, dm, layout);
                let w2t = to_layout(w2t, o, width, layout);
                Body::IrtNet {
                    n_shared,
                    n_routed,
                    top_k,
                    hidden: h,
                    out: o,
                    w_in,
                    b_in,
                    selection_bias: w.take("gate.selection_bias"),
                    w2t,
                    w_head,
                    b_head,
                }
            }
            Method::Mf => Body::Mf {
                w: to_layout(w.take("proj.weight"), cfg.d, dm, layout),
                b: w.take("proj.bias"),
                scale: w.take("out.weight"),
                beta: -w.tensor("out.bias").first().copied().unwrap_or(0.0),
            },
            Method::JeIrt { hidden_dim } => Body::JeIrt {
                hidden: hidden_dim,
                w1: to_layout(w.take("mlp.w1"), hidden_dim, dm, layout),
                b1: w.take("mlp.b1"),
                w2: to_layout(w.take("mlp.w2"), cfg.d, hidden_dim, layout),
                b2: w.take("mlp.b2"),
            },
        };
        let llm_bias = if cfg.llm_bias {
            w.take("llm_bias")
        } else {
            vec![0.0; cfg.n_llms]
        };
        Model {
            theta: w.take("theta"),
            llm_bias,
            llm_names: std::mem::take(&mut w.llm_names),
            config_json: std::mem::take(&mut w.config_json),
            embedder: w.embedder.clone(),
            training_json: w.training_json.take(),
            config: cfg,
            body,
            layout,
        }
    }

    /// Number of f32 weights the forward pass reads per query batch.
    pub fn n_weights(&self) -> usize {
        let body = match &self.body {
            Body::IrtNet {
                w_in, w2t, w_head, ..
            } => w_in.len() + w2t.len() + w_head.len(),
            Body::Mf { w, .. } => w.len(),
            Body::JeIrt { w1, w2, .. } => w1.len() + w2.len(),
        };
        body + self.theta.len()
    }

    /// Multiply-adds per query of the forward pass (α, β and the LLM scores).
    pub fn macs_per_query(&self) -> usize {
        self.n_weights()
    }

    /// α and β for `m` queries `x` (`[m, embed_dim]`, row-major): writes `alpha[m, d]` and
    /// `beta[m]`. `threads` is the column split used inside each product (see `matmul_nt`).
    pub fn item_params(
        &self,
        x: &[f32],
        m: usize,
        alpha: &mut [f32],
        beta: &mut [f32],
        scratch: &mut Scratch,
        threads: usize,
    ) {
        let (dm, d) = (self.config.embed_dim, self.config.d);
        assert_eq!(x.len(), m * dm);
        assert_eq!(alpha.len(), m * d);
        assert_eq!(beta.len(), m);
        let xm = Mat::new(x, m, dm);
        match &self.body {
            Body::IrtNet {
                n_shared,
                n_routed,
                top_k,
                hidden,
                out,
                w_in,
                b_in,
                selection_bias,
                w2t,
                w_head,
                b_head,
            } => {
                let (h, o, r) = (*hidden, *out, *n_routed);
                let e = n_shared + r;
                let eh = e * h;
                if self.sparse_moe() {
                    self.moe_sparse(x, m, scratch, threads);
                } else {
                    // Row layout: [E·H hidden units | E gate weights]. The first product writes the
                    // R gate logits into the tail; they are replaced by the E expert weights, which
                    // the second product multiplies with the b2 columns appended to `w2t`.
                    let width = eh + e;
                    resize(&mut scratch.hidden, m * width);
                    matmul(
                        xm,
                        W::new(w_in, eh + r, dm, self.layout),
                        &mut scratch.hidden,
                        width,
                        false,
                        threads,
                    );
                    resize(&mut scratch.gate_w, e);
                    for row in scratch.hidden.chunks_exact_mut(width) {
                        let (experts, tail) = row.split_at_mut(eh);
                        for (g, b) in tail[..r].iter_mut().zip(&b_in[eh..]) {
                            *g += b;
                        }
                        gate_weights(
                            &tail[..r],
                            selection_bias,
                            *top_k,
                            *n_shared,
                            &mut scratch.gate_w,
                            &mut scratch.order,
                        );
                        tail.copy_from_slice(&scratch.gate_w);
                        // bias, ReLU and the gate weight in one pass over each expert's block
                        for ((blk, bias), &we) in experts
                            .chunks_exact_mut(h)
                            .zip(b_in.chunks_exact(h))
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
                        W::new(w2t, o, width, self.layout),
                        &mut scratch.body_out,
                        o,
                        false,
                        threads,
                    );
                }
                let d1 = d + 1;
                resize(&mut scratch.heads, m * d1);
                matmul(
                    Mat::new(&scratch.body_out, m, o),
                    W::new(w_head, d1, o, Layout::OutIn),
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
                    for ((ai, ri), bi) in a.iter_mut().zip(row).zip(b_head) {
                        *ai = ri + bi;
                    }
                    *b = row[d] + b_head[d];
                }
            }
            Body::Mf {
                w,
                b,
                scale,
                beta: b0,
            } => {
                matmul(xm, W::new(w, d, dm, self.layout), alpha, d, false, threads);
                for a in alpha.chunks_exact_mut(d) {
                    for ((ai, bi), si) in a.iter_mut().zip(b).zip(scale) {
                        *ai = (*ai + bi) * si;
                    }
                }
                beta.fill(*b0);
            }
            Body::JeIrt {
                hidden,
                w1,
                b1,
                w2,
                b2,
            } => {
                let h = *hidden;
                resize(&mut scratch.hidden, m * h);
                matmul(
                    xm,
                    W::new(w1, h, dm, self.layout),
                    &mut scratch.hidden,
                    h,
                    false,
                    threads,
                );
                for row in scratch.hidden.chunks_exact_mut(h) {
                    for (v, bi) in row.iter_mut().zip(b1) {
                        *v = (*v + bi).max(0.0);
                    }
                }
                matmul(
                    Mat::new(&scratch.hidden, m, h),
                    W::new(w2, d, h, self.layout),
                    alpha,
                    d,
                    false,
                    threads,
                );
                for (a, be) in alpha.chunks_exact_mut(d).zip(beta.iter_mut()) {
                    let mut norm2 = 0.0f32;
                    for (ai, bi) in a.iter_mut().zip(b2) {
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
    }

    /// Whether the mixture runs sparsely: only the selected experts' rows are computed. Exact
    /// (unselected experts have weight 0); faster when few of the routed experts are selected.
    pub fn sparse_moe(&self) -> bool {
        match self.body {
            Body::IrtNet {
                n_routed, top_k, ..
            } => self.layout == Layout::InOut && n_routed > 0 && top_k * 2 <= n_routed,
            _ => false,
        }
    }

    /// Rows per chunk that keep working memory bounded and the products efficient.
    pub fn max_chunk_rows(&self) -> usize {
        // Sparse experts each see ~top_k/n_routed of a chunk's rows: bigger chunks keep their
        // products from becoming memory-bound, and no [rows, E·H] buffer is needed.
        if self.sparse_moe() {
            4 * crate::infer::MAX_CHUNK_ROWS
        } else {
            crate::infer::MAX_CHUNK_ROWS
        }
    }

    /// The sparse mixture: `scratch.body_out[m, O]` = Σ over each row's selected experts.
    fn moe_sparse(&self, x: &[f32], m: usize, scratch: &mut Scratch, threads: usize) {
        let Body::IrtNet {
            n_shared,
            n_routed,
            top_k,
            hidden: h,
            out: o,
            w_in,
            b_in,
            selection_bias,
            w2t,
            ..
        } = &self.body
        else {
            return;
        };
        let (h, o, r, ns) = (*h, *o, *n_routed, *n_shared);
        let dm = self.config.embed_dim;
        let e = ns + r;
        let eh = e * h;
        let ld1 = eh + r; // row stride of w_in ([D, E·H + R])
        let xm = Mat::new(x, m, dm);
        // gate logits and weights, [m, R] then [m, E]
        let mut gate = vec![0.0f32; m * r];
        matmul(
            xm,
            W::in_out_block(w_in, dm, ld1, eh, r),
            &mut gate,
            r,
            false,
            threads,
        );
        let mut gw = vec![0.0f32; m * e];
        resize(&mut scratch.gate_w, e);
        for (g, wrow) in gate.chunks_exact_mut(r).zip(gw.chunks_exact_mut(e)) {
            for (gi, b) in g.iter_mut().zip(&b_in[eh..]) {
                *gi += b;
            }
            gate_weights(g, selection_bias, *top_k, ns, wrow, &mut scratch.order);
        }
        resize(&mut scratch.body_out, m * o);
        scratch.body_out.fill(0.0);
        let mut xe: Vec<f32> = Vec::new();
        let mut he: Vec<f32> = Vec::new();
        let mut oe: Vec<f32> = Vec::new();
        let mut rows: Vec<usize> = Vec::new();
        for ei in 0..e {
            rows.clear();
            rows.extend((0..m).filter(|&i| gw[i * e + ei] != 0.0));
            let me = rows.len();
            if me == 0 {
                continue;
            }
            let xin = if me == m {
                x
            } else {
                xe.clear();
                for &i in &rows {
                    xe.extend_from_slice(&x[i * dm..(i + 1) * dm]);
                }
                &xe[..]
            };
            resize(&mut he, me * h);
            matmul(
                Mat::new(xin, me, dm),
                W::in_out_block(w_in, dm, ld1, ei * h, h),
                &mut he,
                h,
                false,
                threads,
            );
            let b1 = &b_in[ei * h..(ei + 1) * h];
            for (row, &i) in he.chunks_exact_mut(h).zip(&rows) {
                let we = gw[i * e + ei];
                for (v, b) in row.iter_mut().zip(b1) {
                    *v = (*v + b).max(0.0) * we;
                }
            }
            resize(&mut oe, me * o);
            matmul(
                Mat::new(&he, me, h),
                W::new(&w2t[ei * h * o..(ei + 1) * h * o], o, h, Layout::InOut),
                &mut oe,
                o,
                false,
                threads,
            );
            let b2 = &w2t[(eh + ei) * o..(eh + ei + 1) * o];
            for (orow, &i) in oe.chunks_exact(o).zip(&rows) {
                let we = gw[i * e + ei];
                for ((acc, v), b) in scratch.body_out[i * o..(i + 1) * o]
                    .iter_mut()
                    .zip(orow)
                    .zip(b2)
                {
                    *acc += v + we * b;
                }
            }
        }
    }

    /// P(correct) of every LLM for `m` queries: writes `proba[m, n_llms]`.
    pub fn predict_proba(
        &self,
        x: &[f32],
        m: usize,
        proba: &mut [f32],
        scratch: &mut Scratch,
        threads: usize,
    ) {
        let (d, n) = (self.config.d, self.config.n_llms);
        assert_eq!(proba.len(), m * n);
        let mut alpha = std::mem::take(&mut scratch.alpha);
        let mut beta = std::mem::take(&mut scratch.beta);
        resize(&mut alpha, m * d);
        resize(&mut beta, m);
        self.item_params(x, m, &mut alpha, &mut beta, scratch, threads);
        matmul(
            Mat::new(&alpha, m, d),
            W::new(&self.theta, n, d, Layout::OutIn),
            proba,
            n,
            false,
            threads,
        );
        for (row, b) in proba.chunks_exact_mut(n).zip(&beta) {
            for (p, lb) in row.iter_mut().zip(&self.llm_bias) {
                *p = sigmoid(*p - b + lb);
            }
        }
        scratch.alpha = alpha;
        scratch.beta = beta;
    }
}

#[inline]
fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
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
fn gate_weights(
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
