//! `irt_fast._core.Engine`: a loaded model; every call releases the GIL while it computes.

use std::path::PathBuf;

use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use crate::error::Error;
use crate::infer::{Engine, RouteSpec, Rule};
use crate::kernels::Dtype;
use crate::weights::{Answers, Method};

/// A model loaded from a weights file, held in Rust. Arrays must be C-contiguous float32
/// (the `irt_fast.Model` wrapper converts); they are read without the GIL, so do not modify
/// them from another thread during a call.
#[pyclass(name = "Engine", module = "irt_fast._core", frozen)]
pub struct PyEngine {
    inner: Engine,
}

fn rows<'a>(x: &'a PyReadonlyArray2<'_, f32>) -> Result<(&'a [f32], usize), Error> {
    let b = x.shape()[0];
    let s = x
        .as_slice()
        .map_err(|_| Error::Input("x must be a C-contiguous float32 array".into()))?;
    Ok((s, b))
}

/// A float32 matrix `[rows, cols]` copied out of any array-like (an `InputError` otherwise).
fn matrix(a: &Bound<'_, PyAny>, what: &str, cols: usize) -> Result<Vec<f32>, Error> {
    let arr: PyReadonlyArray2<'_, f32> = a
        .extract()
        .map_err(|_| Error::Input(format!("{what} must be a float32 array [n, {cols}]")))?;
    if arr.shape()[1] != cols {
        return Err(Error::Input(format!(
            "{what} has {} columns, expected {cols}",
            arr.shape()[1]
        )));
    }
    Ok(arr.as_array().iter().copied().collect())
}

/// A float32 vector copied out of any array-like (an `InputError` otherwise).
fn vector(a: &Bound<'_, PyAny>, what: &str) -> Result<Vec<f32>, Error> {
    let arr: PyReadonlyArray1<'_, f32> = a
        .extract()
        .map_err(|_| Error::Input(format!("{what} must be a 1-D float32 array")))?;
    Ok(arr.as_array().iter().copied().collect())
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
    /// Loads and validates a weights file (format v1 or v2).
    ///
    /// Args:
    ///     path: the .safetensors file written by `training.export.save_model`.
    ///     threads: worker threads (default: every available core).
    ///     dtype: storage of the large weight matrices, "f32" (exact, also None) or "bf16"
    ///         (half the bytes; f32 sums).
    ///
    /// Returns:
    ///     Engine
    ///
    /// Raises:
    ///     FileNotFoundError: no such file.
    ///     irt_fast.errors.WeightsFormatError: corrupt, truncated, other version, bad tensor.
    ///     irt_fast.errors.InputError: an unknown dtype.
    #[staticmethod]
    #[pyo3(signature = (path, threads=None, dtype=None))]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        threads: Option<&Bound<'_, PyAny>>,
        dtype: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let threads = match threads {
            None => None,
            Some(t) => Some(t.extract::<usize>().map_err(|_| {
                Error::Input(format!("threads must be a positive integer, got {t}"))
            })?),
        };
        let dtype = match dtype.map(|d| (d, d.extract::<String>())) {
            None => Dtype::F32,
            Some((_, Ok(s))) if s == "f32" || s == "float32" => Dtype::F32,
            Some((_, Ok(s))) if s == "bf16" || s == "bfloat16" => Dtype::Bf16,
            Some((d, _)) => {
                return Err(Error::Input(format!("dtype must be 'f32' or 'bf16', got {d}")).into())
            }
        };
        let inner = py.detach(|| Engine::load_with(&path, threads, dtype))?;
        Ok(PyEngine { inner })
    }

    /// Storage of the large weight matrices: "f32" or "bf16".
    #[getter]
    fn dtype(&self) -> &'static str {
        self.inner.model.dtype().name()
    }

    /// Bytes of weights one forward pass streams (its memory floor at batch 1).
    #[getter]
    fn weight_bytes(&self) -> usize {
        self.inner.model.weight_bytes()
    }

    /// The kernel this engine's large products run on, on this CPU: "avx512bf16" (bf16
    /// weights and activations in AVX512_BF16 dot products, every batch size), else "avx2+fma"
    /// or "scalar" (up to 16 rows; above them the gemm crate, which dispatches itself).
    #[getter]
    fn kernel(&self) -> &'static str {
        crate::kernels::kernel_name(self.inner.model.dtype())
    }

    /// Subnormal values (below 1.18e-38) the weights file held, set to zero at load, plus any
    /// among LLMs added since: they change no output beyond 1e-38 per weight, and left in
    /// place they can make x86 arithmetic many times slower.
    #[getter]
    fn flushed_subnormals(&self) -> usize {
        self.inner.flushed_subnormals()
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
        &self.inner.model.config_json
    }

    /// The file's optional `training` metadata (JSON text, validated to be a JSON object)
    /// or None.
    #[getter]
    fn training_json(&self) -> Option<&str> {
        self.inner.model.training_json.as_deref()
    }

    /// The embedder the model expects: (name, dim, normalize).
    #[getter]
    fn embedder(&self) -> (String, usize, bool) {
        let e = &self.inner.model.embedder;
        (e.name.clone(), e.dim, e.normalize)
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
            "within_best" => Rule::WithinOfBest(param),
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

    /// A new engine with another pool of LLMs, sharing this one's item network (no copy) and
    /// threads; this engine is unchanged.
    ///
    /// Args:
    ///     names: LLM names, unique, in θ row order.
    ///     theta: float32 [n, d].
    ///     bias: float32 [n] (zeros when the model has no per-LLM bias).
    ///     llm_info_json: format v2 `llm_info` for these LLMs (JSON list).
    ///     answers: (alpha float32 [K, d], beta float32 [K], correct float32 [K]) of the added
    ///         LLMs, K = their n_answers summed; or None.
    ///
    /// Raises:
    ///     irt_fast.errors.InputError: any shape, value, name or llm_info inconsistency.
    #[pyo3(signature = (names, theta, bias, llm_info_json, answers=None))]
    fn with_llms(
        &self,
        py: Python<'_>,
        names: Vec<String>,
        theta: &Bound<'_, PyAny>,
        bias: &Bound<'_, PyAny>,
        llm_info_json: &str,
        answers: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let theta = matrix(theta, "theta", self.inner.model.config.d)?;
        let bias = vector(bias, "bias")?;
        let answers = match answers {
            None => None,
            Some(a) => {
                let (al, be, co): (Bound<'_, PyAny>, Bound<'_, PyAny>, Bound<'_, PyAny>) =
                    a.extract().map_err(|_| {
                        Error::Input("answers must be a tuple (alpha, beta, correct)".into())
                    })?;
                Some(Answers {
                    alpha: matrix(&al, "answers alpha", self.inner.model.config.d)?,
                    beta: vector(&be, "answers beta")?,
                    correct: vector(&co, "answers correct")?,
                })
            }
        };
        let inner = py.detach(|| {
            self.inner
                .with_llms(names, theta, bias, llm_info_json, answers)
        })?;
        Ok(PyEngine { inner })
    }

    /// Abilities θ, float32 [n_llms, d] (a copy).
    #[getter]
    fn theta<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let m = &self.inner.model;
        PyArray1::from_slice(py, m.theta()).reshape([m.config.n_llms, m.config.d])
    }

    /// Per-LLM offsets b, float32 [n_llms] (zeros when the model has none).
    #[getter]
    fn llm_bias<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        PyArray1::from_slice(py, self.inner.model.llm_bias())
    }

    /// The file's population prior (mean float32 [p], cov float32 [p, p]) or None (v1 file).
    #[getter]
    #[allow(clippy::type_complexity)]
    fn prior<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Option<(Bound<'py, PyArray1<f32>>, Bound<'py, PyArray2<f32>>)>> {
        let Some(p) = &self.inner.model.prior else {
            return Ok(None);
        };
        let n = p.mean.len();
        let cov = PyArray1::from_slice(py, &p.cov).reshape([n, n])?;
        Ok(Some((PyArray1::from_slice(py, &p.mean), cov)))
    }

    /// Format v2 `llm_info` (JSON text) or None (v1 file: every LLM trained).
    #[getter]
    fn llm_info_json(&self) -> Option<&str> {
        self.inner.model.llm_info_json.as_deref()
    }

    /// The added LLMs' answers (alpha float32 [K, d], beta [K], correct [K]) or None.
    #[getter]
    #[allow(clippy::type_complexity)]
    fn answers<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<
        Option<(
            Bound<'py, PyArray2<f32>>,
            Bound<'py, PyArray1<f32>>,
            Bound<'py, PyArray1<f32>>,
        )>,
    > {
        let Some(a) = &self.inner.model.answers else {
            return Ok(None);
        };
        let k = a.beta.len();
        let alpha = PyArray1::from_slice(py, &a.alpha).reshape([k, self.inner.model.config.d])?;
        Ok(Some((
            alpha,
            PyArray1::from_slice(py, &a.beta),
            PyArray1::from_slice(py, &a.correct),
        )))
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
