//! What every method's item network implements (IrtNet, MF, JE-IRT), so that `items::ItemNet`
//! dispatches once: the chunk of queries in, α and β out.

use super::Scratch;

/// One chunk of queries and where its item parameters go.
pub(crate) struct Items<'a> {
    /// `[m, embed_dim]` query embeddings, row-major.
    pub x: &'a [f32],
    pub m: usize,
    /// `[m, d]` and `[m]`, written.
    pub alpha: &'a mut [f32],
    pub beta: &'a mut [f32],
}

/// What every method's item network answers; `ItemNet::net` picks the method once.
pub(crate) trait ItemParams {
    /// Logical f32 weights one pass reads.
    fn n_weights(&self) -> usize;
    /// Bytes one pass streams (as stored, panel padding included).
    fn weight_bytes(&self) -> usize;
    /// Writes α and β of the chunk `io`; `threads` splits the columns of each product.
    fn item_params(&self, io: Items<'_>, scratch: &mut Scratch, threads: usize);
}
