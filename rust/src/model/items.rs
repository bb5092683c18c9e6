//! The item network: query embedding → item parameters (α, β). Which network depends on the
//! method; it does not depend on which LLMs are in the pool, so engines with different LLMs
//! share one (`Arc<ItemNet>`).

use super::irtnet::IrtNet;
use super::jeirt::JeIrt;
use super::method::{ItemParams, Items};
use super::mf::Mf;
use super::Scratch;
use crate::kernels::Dtype;
use crate::weights::{Config, Method, Weights};

/// One method's repacked item network.
#[derive(Debug)]
// built once per model and held in an Arc: the variants' size difference costs nothing
#[allow(clippy::large_enum_variant)]
pub(crate) enum ItemNet {
    IrtNet(IrtNet),
    Mf(Mf),
    JeIrt(JeIrt),
}

impl ItemNet {
    /// Takes the item-network tensors out of validated weights (θ and b stay in `w`).
    pub fn new(cfg: &Config, w: &mut Weights, dtype: Dtype) -> ItemNet {
        // Large matrices packed in column panels (kernels::Packed): contiguous reads, no
        // repacking per call; `dtype` is their storage.
        let (dm, d) = (cfg.embed_dim, cfg.d);
        match cfg.method {
            Method::IrtNet {
                hidden_dim,
                expert_dim,
                n_shared,
                n_routed,
                top_k,
            } => ItemNet::IrtNet(IrtNet::new(
                w, dm, d, hidden_dim, expert_dim, n_shared, n_routed, top_k, dtype,
            )),
            Method::Mf => ItemNet::Mf(Mf::new(w, dm, d, dtype)),
            Method::JeIrt { hidden_dim } => ItemNet::JeIrt(JeIrt::new(w, dm, d, hidden_dim, dtype)),
        }
    }

    /// The method's network: every method-specific call below goes through this one match.
    fn net(&self) -> &dyn ItemParams {
        match self {
            ItemNet::IrtNet(n) => n,
            ItemNet::Mf(n) => n,
            ItemNet::JeIrt(n) => n,
        }
    }

    /// Number of f32 weights one pass reads.
    pub fn n_weights(&self) -> usize {
        self.net().n_weights()
    }

    /// Bytes one pass streams (as stored, panel padding included).
    pub fn weight_bytes(&self) -> usize {
        self.net().weight_bytes()
    }

    /// Whether IrtNet's mixture runs sparsely (see `IrtNet::sparse`).
    pub fn sparse_moe(&self) -> bool {
        matches!(self, ItemNet::IrtNet(n) if n.sparse())
    }

    /// α `[m, d]` and β `[m]` for `m` queries `x` (`[m, embed_dim]`).
    pub fn item_params(&self, io: Items<'_>, scratch: &mut Scratch, threads: usize) {
        self.net().item_params(io, scratch, threads);
    }
}
