//! The `config` metadata: which method, its sizes, and the tensors it needs.

use serde_json::Value;

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

pub(crate) fn parse_config(json: &str) -> std::result::Result<Config, String> {
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
