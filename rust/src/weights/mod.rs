//! Reading and validating a weights file (format v1 or v2, see docs/format.md).
//!
//! Everything here treats the file as untrusted input: every failure is an [`Error`], never a
//! panic, and the message names the file and exactly what disagrees. Rooms: `config` (method
//! and tensor shapes), `meta` (names, embedder, training), `llm_pool` (v2: llm_info, prior,
//! answers).

mod config;
mod llm_pool;
mod meta;

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
pub(crate) use config::parse_config;
pub use config::{Config, Method};
pub(crate) use llm_pool::{added_answers, check_answers, check_prior, parse_llm_info};
pub use llm_pool::{Answers, LlmInfo, Origin, Prior};
pub(crate) use meta::first_duplicate;
pub use meta::Embedder;
use meta::{parse_embedder, parse_llm_names, parse_training};

/// The format version new files are written in.
pub const FORMAT_VERSION: &str = "2";
/// Every version this reader reads (v2 adds optional entries to v1, see docs/format.md).
pub const READABLE_VERSIONS: [&str; 2] = ["1", "2"];
/// Largest |weight| a file may hold. Trained weights are orders of magnitude smaller; a bound
/// keeps every product of a forward pass within float32 range for moderate inputs, so a
/// corrupted exponent is reported at load instead of as NaN probabilities later.
pub const MAX_ABS_WEIGHT: f32 = 1e6;

/// A validated weights file: config, names and every tensor as float32.
#[derive(Debug, Clone)]
pub struct Weights {
    /// Subnormal values in the file, set to zero as it was read (`flush_subnormals`).
    pub flushed_subnormals: usize,
    pub config: Config,
    /// The `config` metadata exactly as stored (unknown keys included).
    pub config_json: String,
    pub llm_names: Vec<String>,
    pub embedder: Embedder,
    /// The optional `training` metadata as stored (validated: a JSON object).
    pub training_json: Option<String>,
    /// v2 `llm_info` as stored, and parsed (None: every LLM trained, n_answers unknown).
    pub llm_info_json: Option<String>,
    pub llm_info: Option<Vec<LlmInfo>>,
    /// v2 `prior.mean` / `prior.cov`, when the file has them.
    pub prior: Option<Prior>,
    /// v2 `answers.*`, when the file has them.
    pub answers: Option<Answers>,
    tensors: HashMap<String, Vec<f32>>,
}

impl Weights {
    /// Reads and validates a weights file. Only regular files are read (a FIFO would block,
    /// `/dev/zero` never ends), and the header length is checked against the file size before
    /// the file is read.
    pub fn load(path: &Path) -> Result<Self> {
        let io = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound(path.to_path_buf())
            } else {
                Error::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        };
        let not_regular = || {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            ))
        };
        if !std::fs::metadata(path).map_err(io)?.is_file() {
            return Err(not_regular());
        }
        let mut f = std::fs::File::open(path).map_err(io)?;
        let meta = f.metadata().map_err(io)?; // the file opened, not a swapped-in path
        if !meta.is_file() {
            return Err(not_regular());
        }
        let size = meta.len();
        let origin = path.display().to_string();
        let mut head = [0u8; 8];
        if size < 8 {
            return Err(Error::format(
                &origin,
                format!("{size} bytes: too short for a safetensors file"),
            ));
        }
        f.read_exact(&mut head).map_err(io)?;
        let n = u64::from_le_bytes(head);
        if n > size - 8 {
            return Err(Error::format(
                &origin,
                format!("the header claims {n} bytes but the file has {size} (truncated or not safetensors)"),
            ));
        }
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(size as usize)
            .map_err(|_| Error::Memory(format!("cannot allocate {size} bytes to read {origin}")))?;
        bytes.extend_from_slice(&head);
        // bounded: a file that grows while being read is cut at its size, then rejected
        f.take(size - 8).read_to_end(&mut bytes).map_err(io)?;
        Self::from_bytes(&bytes, &origin)
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
        if !READABLE_VERSIONS.contains(&version.as_str()) {
            return Err(fmt(format!(
                "format version {version:?} is not supported: this reader reads versions \
                 \"1\" and \"2\""
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
        if let Some(t) = &training_json {
            parse_training(t).map_err(|m| fmt(format!("training: {m}")))?;
        }
        let llm_info_json = meta.get("llm_info").cloned();
        let llm_info = match &llm_info_json {
            None => None,
            Some(j) => {
                Some(parse_llm_info(j, &llm_names).map_err(|m| fmt(format!("llm_info: {m}")))?)
            }
        };

        let flushed = std::cell::Cell::new(0usize);
        let read = |name: &str, shape: &[usize], bound: bool| -> Result<Vec<f32>> {
            let mut v = read_tensor(&st, name, shape, bound).map_err(fmt)?;
            flushed.set(flushed.get() + flush_subnormals(&mut v));
            Ok(v)
        };
        let mut tensors = HashMap::new();
        for (name, shape) in config.expected_tensors() {
            if st.tensor(name).is_err() {
                return Err(fmt(format!(
                    "tensor {name:?} is missing (method {:?} needs it, shape {shape:?})",
                    config.method_name()
                )));
            }
            tensors.insert(name.to_string(), read(name, &shape, true)?);
        }
        let has = |name: &str| st.tensor(name).is_ok();
        let (d, p) = (config.d, config.d + usize::from(config.llm_bias));
        let prior = match (has("prior.mean"), has("prior.cov")) {
            (false, false) => None,
            (true, true) => {
                let pr = Prior {
                    mean: read("prior.mean", &[p], false)?,
                    cov: read("prior.cov", &[p, p], false)?,
                };
                check_prior(&pr, p).map_err(fmt)?;
                Some(pr)
            }
            _ => {
                return Err(fmt(
                    "prior.mean and prior.cov come together: one is missing".into(),
                ))
            }
        };
        let answer_keys = ["answers.alpha", "answers.beta", "answers.correct"];
        let answers =
            match answer_keys.iter().filter(|k| has(k)).count() {
                0 => None,
                3 => {
                    let info = llm_info.as_deref().ok_or_else(|| {
                        fmt("answers.* tensors without llm_info: whose answers are they?".into())
                    })?;
                    let k = added_answers(info).map_err(|m| fmt(format!("llm_info: {m}")))?;
                    let a = Answers {
                        alpha: read("answers.alpha", &[k, d], false)?,
                        beta: read("answers.beta", &[k], false)?,
                        correct: read("answers.correct", &[k], false)?,
                    };
                    check_answers(&a, k, d).map_err(fmt)?;
                    Some(a)
                }
                _ => return Err(fmt(
                    "answers.alpha, answers.beta and answers.correct come together: one is missing"
                        .into(),
                )),
            };
        Ok(Weights {
            flushed_subnormals: flushed.get(),
            config,
            config_json,
            llm_names,
            embedder,
            training_json,
            llm_info_json,
            llm_info,
            prior,
            answers,
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

/// Sets every subnormal value (nonzero, |v| < 1.18e-38) to zero, a change below 1.2e-38 each;
/// returns how many there were. Subnormal arithmetic is up to ~100× slower on many x86
/// processors, and a file from elsewhere (or a model trained without flushing) may hold them.
/// Read from the bits, so the calling thread's denormals-are-zero flag cannot hide one.
pub fn flush_subnormals(v: &mut [f32]) -> usize {
    let mut n = 0;
    for x in v.iter_mut().filter(|x| x.is_subnormal()) {
        *x = 0.0;
        n += 1;
    }
    n
}

/// One tensor as float32 with exactly `shape`, finite, and (`bound`) within ±MAX_ABS_WEIGHT.
fn read_tensor(
    st: &SafeTensors<'_>,
    name: &str,
    shape: &[usize],
    bound: bool,
) -> std::result::Result<Vec<f32>, String> {
    let view = st
        .tensor(name)
        .map_err(|_| format!("tensor {name:?} is missing"))?;
    if view.dtype() != Dtype::F32 {
        return Err(format!(
            "tensor {name:?} has dtype {:?}, expected F32",
            view.dtype()
        ));
    }
    if view.shape() != shape {
        return Err(format!(
            "tensor {name:?} has shape {:?}, expected {shape:?}",
            view.shape()
        ));
    }
    let data: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "tensor {name:?} contains a non-finite value ({}) at flat index {i}",
            data[i]
        ));
    }
    if bound {
        if let Some(i) = data.iter().position(|v| v.abs() > MAX_ABS_WEIGHT) {
            return Err(format!(
                "tensor {name:?} holds {} at flat index {i}: beyond the plausible bound \
                 ±{MAX_ABS_WEIGHT:e} (a corrupted file?)",
                data[i]
            ));
        }
    }
    Ok(data)
}
