//! Format v2's description of the LLM pool beyond θ and b: `llm_info` (which LLMs were added
//! after training, from how many answers), the population `prior` over (θ, b) of the trained
//! LLMs, and the added LLMs' recorded `answers`. The same checks serve the loader (a failure is
//! a format error) and `Model::with_llms` (an input error): each returns a message.

use serde_json::Value;

/// Where an LLM's θ row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Fitted with the item network.
    Trained,
    /// Fitted afterwards from its answers, the item network frozen.
    Added,
}

/// One `llm_info` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmInfo {
    pub name: String,
    pub origin: Origin,
    /// Answers the LLM was fitted from (required for added LLMs).
    pub n_answers: Option<u64>,
}

/// Population prior over (θ, b): `mean [p]`, `cov [p, p]`, p = d + 1 with a per-LLM bias, else d.
#[derive(Debug, Clone, PartialEq)]
pub struct Prior {
    pub mean: Vec<f32>,
    pub cov: Vec<f32>,
}

/// The recorded answers of the added LLMs, in θ-row order: `alpha [K, d]`, `beta [K]`,
/// `correct [K]` ∈ {0, 1}.
#[derive(Debug, Clone, PartialEq)]
pub struct Answers {
    pub alpha: Vec<f32>,
    pub beta: Vec<f32>,
    pub correct: Vec<f32>,
}

type Msg<T> = std::result::Result<T, String>;

/// Parses `llm_info` and checks it against `names` (θ-row order).
pub fn parse_llm_info(json: &str, names: &[String]) -> Msg<Vec<LlmInfo>> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("not valid JSON: {e}"))?;
    let list = v.as_array().ok_or("not a JSON list")?;
    if list.len() != names.len() {
        return Err(format!(
            "{} entries for {} LLMs (llm_names)",
            list.len(),
            names.len()
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, (e, want)) in list.iter().zip(names).enumerate() {
        let obj = e
            .as_object()
            .ok_or(format!("entry {i} is not a JSON object"))?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .ok_or(format!("entry {i}: \"name\" is missing or not a string"))?;
        if name != want {
            return Err(format!(
                "entry {i} is named {name:?} but llm_names[{i}] is {want:?}"
            ));
        }
        let origin = match obj.get("origin").and_then(Value::as_str) {
            Some("trained") => Origin::Trained,
            Some("added") => Origin::Added,
            _ => {
                return Err(format!(
                    "entry {i} ({name:?}): \"origin\" must be \"trained\" or \"added\""
                ))
            }
        };
        let n_answers = match obj.get("n_answers") {
            None | Some(Value::Null) => None,
            Some(x) => Some(x.as_u64().ok_or(format!(
                "entry {i} ({name:?}): n_answers = {x} is not a non-negative integer or null"
            ))?),
        };
        if origin == Origin::Added && n_answers.is_none() {
            return Err(format!(
                "entry {i} ({name:?}): an added LLM needs n_answers (the answers it was fitted from)"
            ));
        }
        out.push(LlmInfo {
            name: name.to_string(),
            origin,
            n_answers,
        });
    }
    Ok(out)
}

/// K = Σ n_answers over the added LLMs (the rows `answers` must have).
pub fn added_answers(info: &[LlmInfo]) -> Msg<usize> {
    let mut k: u64 = 0;
    for e in info.iter().filter(|e| e.origin == Origin::Added) {
        k = k
            .checked_add(e.n_answers.unwrap_or(0))
            .filter(|&k| k <= 1 << 40)
            .ok_or("the added LLMs' n_answers add up to an implausible number")?;
    }
    Ok(k as usize)
}

fn finite(name: &str, v: &[f32]) -> Msg<()> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(format!(
            "{name} has a non-finite value ({}) at flat index {i}",
            v[i]
        )),
        None => Ok(()),
    }
}

/// Shapes, finiteness, symmetry and positive definiteness of a prior of dimension `p`.
pub fn check_prior(prior: &Prior, p: usize) -> Msg<()> {
    if prior.mean.len() != p || prior.cov.len() != p * p {
        return Err(format!(
            "prior.mean has {} values and prior.cov {}, expected [{p}] and [{p}, {p}]",
            prior.mean.len(),
            prior.cov.len()
        ));
    }
    finite("prior.mean", &prior.mean)?;
    finite("prior.cov", &prior.cov)?;
    let c = |i: usize, j: usize| prior.cov[i * p + j] as f64;
    for i in 0..p {
        for j in 0..i {
            let tol = 1e-4 * (c(i, i).abs() + c(j, j).abs()).max(1e-12);
            if (c(i, j) - c(j, i)).abs() > tol {
                return Err(format!("prior.cov is not symmetric at [{i}, {j}]"));
            }
        }
    }
    // Cholesky in f64: a covariance that is not positive definite cannot be a prior.
    let mut l = vec![0.0f64; p * p];
    for j in 0..p {
        let mut s = c(j, j);
        for k in 0..j {
            s -= l[j * p + k] * l[j * p + k];
        }
        if s.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return Err(format!("prior.cov is not positive definite (pivot {j})"));
        }
        let d = s.sqrt();
        l[j * p + j] = d;
        for i in j + 1..p {
            let mut s = c(i, j);
            for k in 0..j {
                s -= l[i * p + k] * l[j * p + k];
            }
            l[i * p + j] = s / d;
        }
    }
    Ok(())
}

/// Shapes (`k` rows of dimension `d`), finiteness and 0/1 answers.
pub fn check_answers(a: &Answers, k: usize, d: usize) -> Msg<()> {
    if a.alpha.len() != k * d || a.beta.len() != k || a.correct.len() != k {
        return Err(format!(
            "answers.alpha/beta/correct have {}/{}/{} values, expected [{k}, {d}]/[{k}]/[{k}] \
             (K = the added LLMs' n_answers summed)",
            a.alpha.len(),
            a.beta.len(),
            a.correct.len()
        ));
    }
    finite("answers.alpha", &a.alpha)?;
    finite("answers.beta", &a.beta)?;
    if let Some(i) = a.correct.iter().position(|&c| c != 0.0 && c != 1.0) {
        return Err(format!(
            "answers.correct[{i}] = {} is not 0 or 1",
            a.correct[i]
        ));
    }
    Ok(())
}
