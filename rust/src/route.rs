//! Routing rules: which candidate LLM a row of probabilities picks.
//!
//! Naming: the Python API's `margin=δ` is the rule `Rule::WithinOfBest(δ)` here ("the cheapest
//! candidate whose P is within δ of the best candidate's P"); the binding's rule string is
//! "within_best". Evaluation's different decision rule (leave a default LLM only when another
//! beats it by δ) lives in training/ under its own name.

use crate::error::{Error, Result};

/// How `route` picks among the candidates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// Highest probability.
    Best,
    /// Highest `P − λ·cost`.
    Penalty(f32),
    /// Cheapest candidate whose P is at least `max P − δ` (ties: higher P, then order).
    WithinOfBest(f32),
}

/// What `route` chooses from.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// LLM indices to choose from, in preference order for ties.
    pub candidates: Vec<usize>,
    /// Cost of each candidate (same order); needed by `Penalty` and `WithinOfBest`.
    pub cost: Option<Vec<f32>>,
    pub rule: Rule,
}

impl RouteSpec {
    /// Checks the spec against a pool of `n` LLMs; returns the costs the rule uses.
    pub(crate) fn validate(&self, n: usize) -> Result<Option<&[f32]>> {
        let cands = &self.candidates;
        if cands.is_empty() {
            return Err(Error::Input("candidates is empty".into()));
        }
        if let Some(&bad) = cands.iter().find(|&&c| c >= n) {
            return Err(Error::Input(format!(
                "candidate index {bad} out of range for {n} LLMs"
            )));
        }
        match self.rule {
            Rule::Penalty(v) | Rule::WithinOfBest(v) if !v.is_finite() || v < 0.0 => {
                return Err(Error::Input(format!(
                    "the trade-off parameter must be finite and >= 0, got {v}"
                )))
            }
            _ => {}
        }
        match (&self.cost, self.rule) {
            (None, Rule::Best) => Ok(None),
            (None, _) => Err(Error::Input(
                "a cost per candidate is needed for a cost trade-off".into(),
            )),
            (Some(c), _) => {
                if c.len() != cands.len() {
                    return Err(Error::Input(format!(
                        "{} costs for {} candidates",
                        c.len(),
                        cands.len()
                    )));
                }
                if c.iter().any(|v| !v.is_finite()) {
                    return Err(Error::Input("costs must be finite".into()));
                }
                Ok(Some(c.as_slice()))
            }
        }
    }
}

/// Index (into the LLM list) of the candidate `rule` picks from one row of probabilities.
pub(crate) fn choose(p: &[f32], cands: &[usize], cost: Option<&[f32]>, rule: Rule) -> usize {
    let argmax = |score: &dyn Fn(usize) -> f32| {
        let mut best = 0;
        for j in 1..cands.len() {
            if score(j) > score(best) {
                best = j;
            }
        }
        best
    };
    let j = match (rule, cost) {
        (Rule::Penalty(lam), Some(c)) => argmax(&|j| p[cands[j]] - lam * c[j]),
        (Rule::WithinOfBest(delta), Some(c)) => {
            let top = cands
                .iter()
                .map(|&i| p[i])
                .fold(f32::NEG_INFINITY, f32::max);
            let mut best: Option<usize> = None;
            for j in 0..cands.len() {
                if p[cands[j]] < top - delta {
                    continue;
                }
                best = match best {
                    Some(bj) if c[bj] < c[j] || (c[bj] == c[j] && p[cands[bj]] >= p[cands[j]]) => {
                        Some(bj)
                    }
                    _ => Some(j),
                };
            }
            best.unwrap_or(0)
        }
        _ => argmax(&|j| p[cands[j]]),
    };
    cands[j]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choose_rules() {
        let p = [0.9, 0.85, 0.5, 0.9];
        let all = [0, 1, 2, 3];
        assert_eq!(choose(&p, &all, None, Rule::Best), 0); // tie → first candidate
        assert_eq!(choose(&p, &[3, 0], None, Rule::Best), 3);
        let cost = [10.0, 1.0, 0.1, 10.0];
        assert_eq!(choose(&p, &all, Some(&cost), Rule::WithinOfBest(0.1)), 1);
        assert_eq!(choose(&p, &all, Some(&cost), Rule::WithinOfBest(0.0)), 0);
        assert_eq!(choose(&p, &all, Some(&cost), Rule::WithinOfBest(0.5)), 2);
        assert_eq!(choose(&p, &all, Some(&cost), Rule::Penalty(0.0)), 0);
        assert_eq!(choose(&p, &all, Some(&cost), Rule::Penalty(0.01)), 1);
        assert_eq!(choose(&p, &all, Some(&cost), Rule::Penalty(1.0)), 2);
    }
}
