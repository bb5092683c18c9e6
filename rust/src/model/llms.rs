//! The pool of LLMs of a model: θ, b, names, and (format v2) where each came from, the
//! population prior and the added LLMs' answers. `with_llms` swaps the pool and keeps the item
//! network (shared, not copied): this is how an LLM fitted after training joins.

use std::sync::Arc;

use serde_json::Value;

use super::Model;
use crate::error::{Error, Result};
use crate::weights::{added_answers, check_answers, first_duplicate, parse_llm_info, Answers};

impl Model {
    /// `[n_llms, d]` abilities, row-major.
    pub fn theta(&self) -> &[f32] {
        &self.theta
    }

    /// `[n_llms]` per-LLM offsets (zeros when the config has none).
    pub fn llm_bias(&self) -> &[f32] {
        &self.llm_bias
    }

    /// The same item network with another pool of LLMs: `names [n]`, `theta [n, d]`,
    /// `bias [n]` (zeros when the config has no per-LLM bias), `llm_info_json` (format v2's
    /// `llm_info` for these LLMs) and optionally the added LLMs' answers. Every failure is
    /// `Error::Input`; `self` is unchanged.
    pub fn with_llms(
        &self,
        names: Vec<String>,
        theta: Vec<f32>,
        bias: Vec<f32>,
        llm_info_json: &str,
        answers: Option<Answers>,
    ) -> Result<Model> {
        let bad = |m: String| Error::Input(m);
        let (d, n) = (self.config.d, names.len());
        if n == 0 {
            return Err(bad("a model needs at least one LLM".into()));
        }
        if let Some(dup) = first_duplicate(&names) {
            return Err(bad(format!("LLM name {dup:?} appears twice")));
        }
        if theta.len() != n * d {
            return Err(bad(format!(
                "theta has {} values, expected {n} LLMs × d {d}",
                theta.len()
            )));
        }
        if bias.len() != n {
            return Err(bad(format!("bias has {} values for {n} LLMs", bias.len())));
        }
        if let Some(i) = theta.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("theta is not finite at LLM {}", i / d)));
        }
        if let Some(i) = bias.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("bias is not finite at LLM {i}")));
        }
        if !self.config.llm_bias && bias.iter().any(|&v| v != 0.0) {
            return Err(bad(
                "this model has no per-LLM bias (config.llm_bias is false): bias must be zeros"
                    .into(),
            ));
        }
        let info =
            parse_llm_info(llm_info_json, &names).map_err(|m| bad(format!("llm_info: {m}")))?;
        if let Some(a) = &answers {
            let k = added_answers(&info).map_err(|m| bad(format!("llm_info: {m}")))?;
            check_answers(a, k, d).map_err(bad)?;
        }
        let mut config = self.config.clone();
        config.n_llms = n;
        Ok(Model {
            config_json: with_n_llms(&self.config_json, n)?,
            config,
            llm_names: names,
            embedder: self.embedder.clone(),
            training_json: self.training_json.clone(),
            llm_info_json: Some(llm_info_json.to_string()),
            llm_info: Some(info),
            prior: self.prior.clone(),
            answers: answers.map(Arc::new),
            items: Arc::clone(&self.items),
            dtype: self.dtype,
            theta,
            llm_bias: bias,
        })
    }
}

/// The `config` JSON with `n_llms` replaced (other keys kept).
fn with_n_llms(config_json: &str, n: usize) -> Result<String> {
    let mut v: Value = serde_json::from_str(config_json)
        .map_err(|e| Error::Input(format!("stored config is not JSON: {e}")))?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("n_llms".into(), Value::from(n as u64));
    }
    Ok(v.to_string())
}
