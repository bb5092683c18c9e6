//! `irt_fast._core.Engine`: a loaded model; every call releases the GIL while it computes.

use std::path::PathBuf;

use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use crate::error::Error;
use crate::infer::{Engine, RouteSpec, Rule};
use crate::weights::Method;

/// A model loaded from a weights file, held in Rust. Arrays must be C-contiguous float32
/// (the `irt_fast.Model` wrapper converts); they are read without the GIL, so do not modify
/// them from another thread during a call.
#[pyclass(name = "Engine", module = "irt_fast._core", frozen)]
pub struct PyEngine {
    inner: Engine,
    config_json: String,
    embedder: (String, usize, bool),
    training_json: Option<String>,
}

fn rows<'a>(x: &'a PyReadonlyArray2<'_, f32>) -> Result<(&'a [f32], usize), Error> {
    let b = x.shape()[0];
    let s = x
        .as_slice()
        .map_err(|_| Error::Input("x must be a C-contiguous float32 array".into()))?;
    Ok((s, b))
}

fn check_cols(e: &Engine, x: &PyReadonlyArray2<'_, f32>) -> Result<(), Error> {
    let dm = e.model.config.embed_dim;
    if x.shape()[1] != dm {
        return Err(Error::Input(format!(
            "x has {} columns, the model expects embed_dim = {dm}",
            x.shape()[1]
        )));
    }
    Ok(())
}

#[pymethods]
impl PyEngine {
    /// Loads and validates a weights file (format v1).
    ///
    /// Args:
    ///     path: the .safetensors file written by `training.export.save_model`.
    ///     threads: worker threads (default: every available core).
    ///
    /// Returns:
    ///     Engine
    ///
    /// Raises:
    ///     FileNotFoundError: no such file.
    ///     irt_fast.errors.WeightsFormatError: corrupt, truncated, other version, bad tensor.
    #[staticmethod]
    #[pyo3(signature = (path, threads=None))]
    fn load(py: Python<'_>, path: PathBuf, threads: Option<usize>) -> PyResult<Self> {
        let inner = py.detach(|| Engine::load(&path, threads))?;
        Ok(PyEngine::from_engine(inner))
    }

    /// LLM names, in θ row order.
    #[getter]
    fn llm_names(&self) -> Vec<String> {
        self.inner.model.llm_names.clone()
    }

    /// Input embedding dimension.
    #[getter]
    fn embed_dim(&self) -> usize {
        self.inner.model.config.embed_dim
    }

    /// Ability / discrimination dimension d.
    #[getter]
    fn d(&self) -> usize {
        self.inner.model.config.d
    }

    /// "irtnet", "mf" or "jeirt".
    #[getter]
    fn method(&self) -> &'static str {
        self.inner.model.config.method_name()
    }

    /// The file's `config` metadata (JSON text, unknown keys included).
    #[getter]
    fn config_json(&self) -> &str {
        &self.config_json
    }

    /// The file's optional `training` metadata (JSON text) or None.
    #[getter]
    fn training_json(&self) -> Option<&str> {
        self.training_json.as_deref()
    }

    /// The embedder the model expects: (name, dim, normalize).
    #[getter]
    fn embedder(&self) -> (String, usize, bool) {
        self.embedder.clone()
    }

    /// Worker threads of this engine.
    #[getter]
    fn threads(&self) -> usize {
        self.inner.threads()
    }

    /// Number of float32 weights read by one forward pass.
    #[getter]
    fn n_weights(&self) -> usize {
        self.inner.model.n_weights()
    }

    /// Multiply-adds per query of the forward pass.
    #[getter]
    fn macs_per_query(&self) -> usize {
        self.inner.model.macs_per_query()
    }

    /// P(correct) of every LLM for every query.
    ///
    /// Args:
    ///     x: float32 [B, embed_dim], C-contiguous.
    ///
    /// Returns:
    ///     float32 [B, n_llms]
    fn predict_proba<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let e = &self.inner;
        let (xs, b) = check_cols(e, &x).and_then(|_| rows(&x))?;
        let p = py.detach(|| e.predict_proba(xs, b))?;
        PyArray1::from_vec(py, p).reshape([b, e.model.config.n_llms])
    }

    /// Item parameters of every query.
    ///
    /// Args:
    ///     x: float32 [B, embed_dim], C-contiguous.
    ///
    /// Returns:
    ///     (alpha float32 [B, d], beta float32 [B])
    #[allow(clippy::type_complexity)]
    fn item_params<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
    ) -> PyResult<(Bound<'py, PyArray2<f32>>, Bound<'py, PyArray1<f32>>)> {
        let e = &self.inner;
        let (xs, b) = check_cols(e, &x).and_then(|_| rows(&x))?;
        let (a, be) = py.detach(|| e.item_params(xs, b))?;
        let a = PyArray1::from_vec(py, a).reshape([b, e.model.config.d])?;
        Ok((a, PyArray1::from_vec(py, be)))
    }

    /// The best candidate LLM for every query.
    ///
    /// Args:
    ///     x: float32 [B, embed_dim], C-contiguous.
    ///     candidates: LLM indices to choose from (ties go to the earlier one).
    ///     cost: one cost per candidate, or None.
    ///     rule: "best" (max P), "penalty" (max P − param·cost) or "within_best" (the
    ///         cheapest candidate with P ≥ max P − param; Model.route's margin=).
    ///     param: λ for "penalty", δ for "within_best".
    ///
    /// Returns:
    ///     (choice uint32 [B] indices into llm_names, probability float32 [B])
    #[pyo3(signature = (x, candidates, cost=None, rule="best", param=0.0))]
    #[allow(clippy::type_complexity)]
    fn route<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        candidates: Vec<usize>,
        cost: Option<Vec<f32>>,
        rule: &str,
        param: f32,
    ) -> PyResult<(Bound<'py, PyArray1<u32>>, Bound<'py, PyArray1<f32>>)> {
        let e = &self.inner;
        let rule = match rule {
            "best" => Rule::Best,
            "penalty" => Rule::Penalty(param),
            // "margin" is the name irt_fast.Model.route passes (its keyword is margin=)
            "within_best" | "margin" => Rule::WithinOfBest(param),
            other => {
                return Err(Error::Input(format!(
                    "rule must be \"best\", \"penalty\" or \"within_best\", got {other:?}"
                ))
                .into())
            }
        };
        let spec = RouteSpec {
            candidates,
            cost,
            rule,
        };
        let (xs, b) = check_cols(e, &x).and_then(|_| rows(&x))?;
        let (c, p) = py.detach(|| e.route(xs, b, &spec))?;
        Ok((PyArray1::from_vec(py, c), PyArray1::from_vec(py, p)))
    }

    /// Sums of P per (group, LLM) and query counts per group, streamed in chunks.
    ///
    /// Args:
    ///     x: float32 [B, embed_dim], C-contiguous.
    ///     groups: uint32 [B] group label per query in [0, n_groups), or None (one group).
    ///     n_groups: number of groups (ignored without labels).
    ///
    /// Returns:
    ///     (sums float64 [n_groups, n_llms], counts uint64 [n_groups])
    #[pyo3(signature = (x, groups=None, n_groups=1))]
    #[allow(clippy::type_complexity)]
    fn predict_accuracy_sums<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        groups: Option<PyReadonlyArray1<'py, u32>>,
        n_groups: usize,
    ) -> PyResult<(Bound<'py, PyArray2<f64>>, Bound<'py, PyArray1<u64>>)> {
        let e = &self.inner;
        let (xs, b) = check_cols(e, &x).and_then(|_| rows(&x))?;
        let g = match &groups {
            None => None,
            Some(g) => Some((
                g.as_slice()
                    .map_err(|_| Error::Input("groups must be a contiguous uint32 array".into()))?,
                n_groups,
            )),
        };
        let (s, c) = py.detach(|| e.predict_accuracy(xs, b, g))?;
        let ng = if g.is_some() { n_groups } else { 1 };
        let s = PyArray1::from_vec(py, s).reshape([ng, e.model.config.n_llms])?;
        Ok((s, PyArray1::from_vec(py, c)))
    }

    fn __repr__(&self) -> String {
        let c = &self.inner.model.config;
        let extra = match c.method {
            Method::IrtNet {
                n_shared,
                n_routed,
                top_k,
                ..
            } => format!(", experts={n_shared}+{n_routed}, top_k={top_k}"),
            _ => String::new(),
        };
        format!(
            "Engine(method={:?}, embed_dim={}, d={}, n_llms={}{extra}, threads={})",
            c.method_name(),
            c.embed_dim,
            c.d,
            c.n_llms,
            self.inner.threads()
        )
    }
}

impl PyEngine {
    fn from_engine(inner: Engine) -> Self {
        let m = &inner.model;
        PyEngine {
            config_json: m.config_json.clone(),
            embedder: (
                m.embedder.name.clone(),
                m.embedder.dim,
                m.embedder.normalize,
            ),
            training_json: m.training_json.clone(),
            inner,
        }
    }
}
