//! The model: an item network (query → α, β; shared between engines, see `items`) and the
//! pool of LLMs (θ, b, names; `llms`), which together give P(correct) for every (query, LLM).
//!
//! Rooms: `items` dispatches over the methods, once, to the `method::ItemParams` that `irtnet`
//! (+ `irtnet_dense`, `irtnet_sparse`), `mf` and `jeirt` implement; `Scratch` is the per-chunk
//! working memory they share.

mod irtnet;
mod irtnet_dense;
mod irtnet_sparse;
mod items;
mod jeirt;
mod llms;
mod method;
mod mf;

use std::sync::Arc;

use crate::kernels::Dtype;
use crate::linalg::{matmul, Layout, Mat, W};
use crate::weights::{Answers, Config, Embedder, LlmInfo, Prior, Weights};
use items::ItemNet;

/// Largest number of rows per chunk of a batch: bounds working memory (reference model:
/// ~80 KB per row). 256 measured best of 128/256/512 on the reference model (2-core Zen 5,
/// batch 2048).
pub const MAX_CHUNK_ROWS: usize = 256;

/// A loaded model, ready for batched inference.
#[derive(Debug, Clone)]
pub struct Model {
    pub config: Config,
    pub llm_names: Vec<String>,
    /// The file's `config` metadata as stored (unknown keys included).
    pub config_json: String,
    pub embedder: Embedder,
    /// The file's optional `training` metadata (validated: a JSON object).
    pub training_json: Option<String>,
    /// Format v2 `llm_info` (None: every LLM trained), as JSON text and parsed.
    pub llm_info_json: Option<String>,
    pub llm_info: Option<Vec<LlmInfo>>,
    /// Population prior over (θ, b) of the trained LLMs, when the file records it.
    pub prior: Option<Arc<Prior>>,
    /// The added LLMs' recorded answers, when known.
    pub answers: Option<Arc<Answers>>,
    items: Arc<ItemNet>,
    /// `[n_llms, d]`.
    theta: Vec<f32>,
    /// `[n_llms]`, zeros when the config has no per-LLM bias.
    llm_bias: Vec<f32>,
    dtype: Dtype,
}

/// Per-call working memory for a chunk of queries; reused across chunks.
#[derive(Default)]
pub struct Scratch {
    hidden: Vec<f32>,
    body_out: Vec<f32>,
    heads: Vec<f32>,
    alpha: Vec<f32>,
    beta: Vec<f32>,
    /// `[m, E]` expert weights, `[m, R]` gate logits.
    gate_w: Vec<f32>,
    gate_logits: Vec<f32>,
    order: Vec<usize>,
    /// The sparse pass's per-expert rows, inputs, hidden units and outputs.
    rows: Vec<usize>,
    xe: Vec<f32>,
    he: Vec<f32>,
    oe: Vec<f32>,
}

impl Model {
    /// Packs validated weights for inference, exactly (f32).
    pub fn new(w: Weights) -> Model {
        Model::with_dtype(w, Dtype::F32)
    }

    /// Packs validated weights for inference, the item network's large matrices stored in
    /// `dtype` (bf16 halves the bytes a batch streams; sums stay f32).
    pub fn with_dtype(mut w: Weights, dtype: Dtype) -> Model {
        let cfg = w.config.clone();
        let items = ItemNet::new(&cfg, &mut w, dtype);
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
            llm_info_json: w.llm_info_json.take(),
            llm_info: w.llm_info.take(),
            prior: w.prior.take().map(Arc::new),
            answers: w.answers.take().map(Arc::new),
            config: cfg,
            items: Arc::new(items),
            dtype,
        }
    }

    /// Storage of the item network's large matrices.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// Bytes of weights one forward pass streams (the memory floor of a batch of one).
    pub fn weight_bytes(&self) -> usize {
        self.items.weight_bytes() + 4 * self.theta.len()
    }

    /// Number of f32 weights the forward pass reads per query batch.
    pub fn n_weights(&self) -> usize {
        self.items.n_weights() + self.theta.len()
    }

    /// Multiply-adds per query of the forward pass (α, β and the LLM scores).
    pub fn macs_per_query(&self) -> usize {
        self.n_weights()
    }

    /// Whether IrtNet's mixture runs sparsely: only the selected experts' rows are computed.
    pub fn sparse_moe(&self) -> bool {
        self.items.sparse_moe()
    }

    /// Rows per chunk that keep working memory bounded and the products efficient.
    pub fn max_chunk_rows(&self) -> usize {
        // Sparse experts each see ~top_k/n_routed of a chunk's rows: bigger chunks keep their
        // products from becoming memory-bound, and no [rows, E·H] buffer is needed.
        if self.sparse_moe() {
            4 * MAX_CHUNK_ROWS
        } else {
            MAX_CHUNK_ROWS
        }
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
        assert_eq!(x.len(), m * self.config.embed_dim);
        assert_eq!(alpha.len(), m * self.config.d);
        assert_eq!(beta.len(), m);
        let io = method::Items { x, m, alpha, beta };
        self.items.item_params(io, scratch, threads);
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

/// Sets `v`'s length to `n` (scratch buffers keep their capacity across chunks).
fn resize(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    v.truncate(n);
}
