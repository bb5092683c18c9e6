//! The one conversion from the engine's `Error` to the Python exception users catch: the
//! matching class of `irt_fast.errors`, `FileNotFoundError`, `OSError` or `MemoryError`.

use pyo3::exceptions::{PyFileNotFoundError, PyMemoryError, PyOSError};
use pyo3::PyErr;

use crate::error::Error;

pyo3::import_exception!(irt_fast.errors, WeightsFormatError);
pyo3::import_exception!(irt_fast.errors, InputError);

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        let msg = e.to_string();
        match e {
            Error::NotFound(_) => PyFileNotFoundError::new_err(msg),
            Error::Io { .. } => PyOSError::new_err(msg),
            Error::Format { .. } => WeightsFormatError::new_err(msg),
            Error::Input(_) => InputError::new_err(msg),
            Error::Memory(_) => PyMemoryError::new_err(msg),
        }
    }
}
