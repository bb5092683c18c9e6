//! Reading and validating a weights file (format v1, see docs/format.md).
//!
//! Everything here treats the file as untrusted input: every failure is an [`Error`], never a
//! panic, and the message names the file and exactly what disagrees.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use crate::error::{Error, Result};

/// The only format version this reader understands.
pub const FORMAT_VERSION: &str = "1";
/// Largest |weight| a file may hold. Trained weights are orders of magnitude smaller; a bound
/// keeps every product of a forward pass within float32 range for moderate inputs, so a
/// corrupted exponent is reported at load instead of as NaN probabilities later.
pub const MAX_ABS_WEIGHT: f32 = 1e6;

/// How α(v) and β(v) are computed from a query embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Mixture of experts (IrtNet).
    IrtNet {
        hidden_dim: usize,
        expert_dim: usize,
        n_shared: usize,
        n_routed: usize,
        top_k: usize,
    },
    /// EmbedLLM matrix factorisation.
    Mf,
    /// JE-IRT (direction = semantics, norm = difficulty).
    JeIrt { hidden_dim: usize },
}

/// The model config stored in the file's `config` metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub method: Method,
    pub embed_dim: usize,
    pub d: usize,
    pub n_llms: usize,
    pub llm_bias: bool,
}

impl Config {
    /// The method's name as written in the file.
    pub fn method_name(&self) -> &'static str {
        match self.method {
            Method::IrtNet { .. } => "irtnet",
            Method::Mf => "mf",
            Method::JeIrt { .. } => "jeirt",
        }
    }

    /// Every tensor this config needs, with its exact shape.
    pub fn expected_tensors(&self) -> Vec<(&'static str, Vec<usize>)> {
        let (dm, d, n) = (self.embed_dim, self.d, self.n_llms);
        let mut t: Vec<(&'static str, Vec<usize>)> = match self.method {
            Method::IrtNet {
                hidden_dim: h,
                expert_dim: o,
                n_shared,
                n_routed,
                ..
            } => {
                let e = n_shared + n_routed;
                let mut t = vec![
                    ("experts.w1", vec![e, h, dm]),
                    ("experts.b1", vec![e, h]),
                    ("experts.w2", vec![e, o, h]),
                    ("experts.b2", vec![e, o]),
                    ("alpha.weight", vec![d, o]),
                    ("alpha.bias", vec![d]),
                    ("beta.weight", vec![1, o]),
                    ("beta.bias", vec![1]),
                ];
                if n_routed > 0 {
                    t.push(("gate.weight", vec![n_routed, dm]));
                    t.push(("gate.bias", vec![n_routed]));
                    t.push(("gate.selection_bias", vec![n_routed]));
                }
                t
            }
            Method::Mf => vec![
                ("proj.weight", vec![d, dm]),
                ("proj.bias", vec![d]),
                ("out.weight", vec![1, d]),
                ("out.bias", vec![1]),
            ],
            Method::JeIrt { hidden_dim: h } => vec![
                ("mlp.w1", vec![h, dm]),
                ("mlp.b1", vec![h]),
                ("mlp.w2", vec![d, h]),
                ("mlp.b2", vec![d]),
            ],
        };
        t.push(("theta", vec![n, d]));
        if self.llm_bias {
            t.push(("llm_bias", vec![n]));
        }
        t
    }
}

/// The sentence embedder the model expects its inputs from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embedder {
    pub name: String,
    pub dim: usize,
    pub normalize: bool,
}

/// A validated weights file: config, names and every tensor as float32.
#[derive(Debug, Clone)]
pub struct Weights {
    pub config: Config,
    /// The `config` metadata exactly as stored (unknown keys included).
    pub config_json: String,
    pub llm_names: Vec<String>,
    pub embedder: Embedder,
    /// The optional `training` metadata as stored (informational only).
    pub training_json: Option<String>,
    tensors: HashMap<String, Vec<f32>>,
}

impl Weights {
    /// Reads and validates a weights file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound(path.to_path_buf())
            } else {
                Error::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Validates the bytes of a weights file; `origin` names it in error messages.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self> {
        let fmt = |msg: String| Error::format(origin, msg);
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            fmt(format!(
                "not a readable safetensors file (corrupt or truncated?): {e:?}"
            ))
        })?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| fmt(format!("unreadable safetensors header: {e:?}")))?;
        let meta = header.metadata().clone().ok_or_else(|| {
            fmt("no __metadata__ in the header: not an irt_fast weights file".into())
        })?;
        let get = |key: &str| -> Result<&String> {
            meta.get(key)
                .ok_or_else(|| fmt(format!("metadata key {key:?} is missing")))
        };

        let format = get("format")?;
        if format != "irt_fast" {
            return Err(fmt(format!(
                "metadata format is {format:?}, expected \"irt_fast\""
            )));
        }
        let version = get("format_version")?;
        if version != FORMAT_VERSION {
            return Err(fmt(format!(
                "format version {version:?} is not supported: this reader reads version \
                 {FORMAT_VERSION:?}"
            )));
        }

        let config_json = get("config")?.clone();
        let config = parse_config(&config_json).map_err(|m| fmt(format!("config: {m}")))?;
        let llm_names = parse_llm_names(get("llm_names")?, config.n_llms)
            .map_err(|m| fmt(format!("llm_names: {m}")))?;
        let embedder =
            parse_embedder(get("embedder")?).map_err(|m| fmt(format!("embedder: {m}")))?;
        if embedder.dim != config.embed_dim {
            return Err(fmt(format!(
                "embedder.dim = {} but config.embed_dim = {}",
                embedder.dim, config.embed_dim
            )));
        }
        let training_json = meta.get("training").cloned();

        let mut tensors = HashMap::new();
        for (name, shape) in config.expected_tensors() {
            let view = st.tensor(name).map_err(|_| {
                fmt(format!(
                    "tensor {name:?} is missing (method {:?} needs it, shape {shape:?})",
                    config.method_name()
                ))
            })?;
            if view.dtype() != Dtype::F32 {
                return Err(fmt(format!(
                    "tensor {name:?} has dtype {:?}, expected F32",
                    view.dtype()
                )));
            }
            if view.shape() != shape.as_slice() {
                return Err(fmt(format!(
                    "tensor {name:?} has shape {:?}, expected {shape:?}",
                    view.shape()
                )));
            }
            let data: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if let Some(i) = data.iter().position(|v| !v.is_finite()) {
                return Err(fmt(format!(
                    "tensor {name:?} contains a non-finite value ({}) at flat index {i}",
                    data[i]
                )));
            }
            if let Some(i) = data.iter().position(|v| v.abs() > MAX_ABS_WEIGHT) {
                return Err(fmt(format!(
                    "tensor {name:?} holds {} at flat index {i}: beyond the plausible bound \
                     ±{MAX_ABS_WEIGHT:e} (a corrupted file?)",
                    data[i]
                )));
            }
            tensors.insert(name.to_string(), data);
        }
        Ok(Weights {
            config,
            config_json,
            llm_names,
            embedder,
            training_json,
            tensors,
        })
    }

    /// A validated tensor, flat row-major. Only names from `expected_tensors` exist.
    pub fn tensor(&self, name: &str) -> &[f32] {
        self.tensors.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Moves a tensor out (avoids copying the large expert matrices).
    pub(crate) fn take(&mut self, name: &str) -> Vec<f32> {
        self.tensors.remove(name).unwrap_or_default()
    }
}

fn parse_config(json: &str) -> std::result::Result<Config, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("not valid JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let size = |key: &str, min: u64| -> std::result::Result<usize, String> {
        let x = obj
            .get(key)
            .ok_or_else(|| format!("key {key:?} is missing"))?;
        let n = x
            .as_u64()
            .ok_or_else(|| format!("{key} = {x} is not a non-negative integer"))?;
        if n < min {
            return Err(format!("{key} = {n} must be at least {min}"));
        }
        // Bound every size so that products of sizes cannot overflow.
        if n > 1 << 24 {
            return Err(format!("{key} = {n} is implausibly large"));
        }
        Ok(n as usize)
    };
    let method_name = obj
        .get("method")
        .and_then(Value::as_str)
        .ok_or("key \"method\" is missing or not a string")?;
    let llm_bias = obj
        .get("llm_bias")
        .and_then(Value::as_bool)
        .ok_or("key \"llm_bias\" is missing or not a boolean")?;
    let method = match method_name {
        "irtnet" => {
            let n_shared = size("n_shared", 0)?;
            let n_routed = size("n_routed", 0)?;
            let top_k = size("top_k", 0)?;
            if n_shared + n_routed == 0 {
                return Err("n_shared + n_routed must be at least 1".into());
            }
            if n_routed > 0 && !(1..=n_routed).contains(&top_k) {
                return Err(format!(
                    "top_k = {top_k} must be between 1 and n_routed = {n_routed}"
                ));
            }
            Method::IrtNet {
                hidden_dim: size("hidden_dim", 1)?,
                expert_dim: size("expert_dim", 1)?,
                n_shared,
                n_routed,
                top_k: if n_routed == 0 { 0 } else { top_k },
            }
        }
        "mf" => Method::Mf,
        "jeirt" => Method::JeIrt {
            hidden_dim: size("hidden_dim", 1)?,
        },
        other => {
            return Err(format!(
                "unknown method {other:?} (expected \"irtnet\", \"mf\" or \"jeirt\")"
            ))
        }
    };
    Ok(Config {
        method,
        embed_dim: size("embed_dim", 1)?,
        d: size("d", 1)?,
        n_llms: size("n_llms", 1)?,
        llm_bias,
    })
}

fn parse_llm_names(json: &str, n_llms: usize) -> std::result::Result<Vec<String>, String> {
    let names: Vec<String> =
        serde_json::from_str(json).map_err(|e| format!("not a JSON list of strings: {e}"))?;
    if names.len() != n_llms {
        return Err(format!(
            "{} names but config.n_llms = {n_llms}",
            names.len()
        ));
    }
    let mut seen = HashSet::new();
    for n in &names {
        if !seen.insert(n.as_str()) {
            return Err(format!("name {n:?} appears twice"));
        }
    }
    Ok(names)
}

fn parse_embedder(json: &str) -> std::result::Result<Embedder, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("not valid JSON: {e}"))?;
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or("key \"name\" is missing or not a string")?;
    let dim = v
        .get("dim")
        .and_then(Value::as_u64)
        .ok_or("key \"dim\" is missing or not an integer")?;
    let normalize = v
        .get("normalize")
        .and_then(Value::as_bool)
        .ok_or("key \"normalize\" is missing or not a boolean")?;
    Ok(Embedder {
        name: name.to_string(),
        dim: dim as usize,
        normalize,
    })
}
