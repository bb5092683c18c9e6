//! The PyO3 layer: `irt_fast._core`. Thin wrappers only; all logic lives in the pure-Rust core.

mod engine;
mod error;

use pyo3::prelude::*;

/// irt_fast's compiled engine. Use the `irt_fast` package, not this module.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<engine::PyEngine>()?;
    m.add("FORMAT_VERSION", crate::weights::FORMAT_VERSION)?;
    m.add("MAX_CHUNK_ROWS", crate::model::MAX_CHUNK_ROWS)?;
    Ok(())
}
