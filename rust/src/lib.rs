//! irt_fast's inference engine: load a weights file, score query embeddings against every LLM,
//! route and predict accuracy. The core is pure Rust; `py` (feature `python`) is the thin
//! PyO3 layer that becomes `irt_fast._core`.
//!
//! Data flows one way: `weights` (file → validated tensors) → `model` (item network + LLMs) →
//! `infer` (batches, chunks, the pool) ← `route` (rules). `linalg` is the one matrix product.

pub mod error;
pub mod infer;
pub mod kernels;
pub mod linalg;
pub mod model;
mod pool;
pub mod route;
pub mod weights;

#[cfg(feature = "python")]
mod py;

pub use error::{Error, Result};
pub use infer::Engine;
pub use model::Model;
pub use weights::{Config, Method, Weights};
