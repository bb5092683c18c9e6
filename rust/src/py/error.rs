//! `Error` → the matching class of `irt_fast.errors` (a missing file is `FileNotFoundError`).

use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::error::Error;

fn irt_error(py: Python<'_>, class: &str, msg: String) -> PyErr {
    let cls = PyModule::import(py, "irt_fast.errors")
        .and_then(|m| m.getattr(class))
        .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
    match cls {
        Ok(cls) => PyErr::from_type(cls, msg),
        // irt_fast.errors ships with the package; if it cannot be imported, still say what failed
        Err(e) => PyRuntimeError::new_err(format!("{msg} (and irt_fast.errors failed: {e})")),
    }
}

/// Converts an engine error into the Python exception users catch.
pub fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::NotFound(_) => PyFileNotFoundError::new_err(msg),
        Error::Io { .. } => PyOSError::new_err(msg),
        Error::Format { .. } => irt_error(py, "WeightsFormatError", msg),
        Error::Input(_) => irt_error(py, "InputError", msg),
    }
}
