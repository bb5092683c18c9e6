//! The other metadata entries: `llm_names`, `embedder`, `training`, `llm_info` (v2).

use std::collections::HashSet;

use serde_json::Value;

/// The sentence embedder the model expects its inputs from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embedder {
    pub name: String,
    pub dim: usize,
    pub normalize: bool,
}

pub(crate) fn parse_llm_names(
    json: &str,
    n_llms: usize,
) -> std::result::Result<Vec<String>, String> {
    let names: Vec<String> =
        serde_json::from_str(json).map_err(|e| format!("not a JSON list of strings: {e}"))?;
    if names.len() != n_llms {
        return Err(format!(
            "{} names but config.n_llms = {n_llms}",
            names.len()
        ));
    }
    if let Some(n) = first_duplicate(&names) {
        return Err(format!("name {n:?} appears twice"));
    }
    Ok(names)
}

/// The first name that appears a second time, if any (LLM names must be unique).
pub(crate) fn first_duplicate(names: &[String]) -> Option<&String> {
    let mut seen = HashSet::new();
    names.iter().find(|n| !seen.insert(n.as_str()))
}

pub(crate) fn parse_embedder(json: &str) -> std::result::Result<Embedder, String> {
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

/// The optional `training` metadata: any JSON object (informational; serde_json bounds the
/// nesting depth, so a hostile value is an error here, not a crash in a later parser).
pub(crate) fn parse_training(json: &str) -> std::result::Result<(), String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("not valid JSON: {e}"))?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    Ok(())
}
