//! Batched inference on a thread pool: predict_proba, item_params, route, predict_accuracy.
//!
//! A batch is cut into chunks of rows. With enough rows, chunks run in parallel, one per thread,
//! each with single-threaded products (no synchronisation inside a chunk). With few rows (one
//! query, a handful) the work is memory-bound, so the batch is one chunk and every product is
//! split over output columns instead, so that each thread streams its own part of the weights.
//! Working memory is per chunk, so it does not grow with the number of queries.

use std::path::Path;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::{Model, Scratch};
use crate::weights::Weights;

/// Largest number of rows per chunk: bounds working memory (reference model: ~80 KB per row).
/// 256 measured best of 128/256/512 on the reference model (2-core Zen 5, batch 2048).
pub const MAX_CHUNK_ROWS: usize = 256;
/// Below `threads × MIN_ROWS_PER_THREAD` rows, split columns instead of rows. Measured on the
/// reference model with 2 threads: column split is faster up to ~256 rows, row split from ~512.
pub const MIN_ROWS_PER_THREAD: usize = 192;

/// How `route` picks among the candidates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// Highest probability.
    Best,
    /// Highest `P − λ·cost`.
    Penalty(f32),
    /// Cheapest candidate whose P is at least `max P − margin` (ties: higher P, then order).
    Margin(f32),
}

/// What `route` chooses from.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// LLM indices to choose from, in preference order for ties.
    pub candidates: Vec<usize>,
    /// Cost of each candidate (same order); needed by `Penalty` and `Margin`.
    pub cost: Option<Vec<f32>>,
    pub rule: Rule,
}

/// A loaded model and the thread pool it runs on.
pub struct Engine {
    pub model: Model,
    pool: rayon::ThreadPool,
    threads: usize,
}

impl Engine {
    /// Loads and validates a weights file. `threads = None` uses every available core.
    pub fn load(path: &Path, threads: Option<usize>) -> Result<Engine> {
        Engine::new(Model::new(Weights::load(path)?), threads)
    }

    /// Wraps a model with a pool of `threads` workers.
    pub fn new(model: Model, threads: Option<usize>) -> Result<Engine> {
        let threads = match threads {
            Some(0) => return Err(Error::Input("threads must be at least 1".into())),
            Some(t) => t,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("irt_fast-{i}"))
            .build()
            .map_err(|e| Error::Input(format!("cannot start {threads} threads: {e}")))?;
        Ok(Engine {
            model,
            pool,
            threads,
        })
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// P(correct) for `b` queries: `[b, n_llms]` row-major.
    pub fn predict_proba(&self, x: &[f32], b: usize) -> Result<Vec<f32>> {
        self.check_input(x, b)?;
        let n = self.model.config.n_llms;
        let mut out = vec![0.0f32; b * n];
        self.for_chunks(x, b, &mut out, n, |xc, m, oc, s, t| {
            self.model.predict_proba(xc, m, oc, s, t)
        });
        Ok(out)
    }

    /// α (`[b, d]`) and β (`[b]`) for `b` queries.
    pub fn item_params(&self, x: &[f32], b: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        self.check_input(x, b)?;
        let d = self.model.config.d;
        // α and β of a row travel together so that one output slice describes a chunk.
        let mut packed = vec![0.0f32; b * (d + 1)];
        self.for_chunks(x, b, &mut packed, d + 1, |xc, m, oc, s, t| {
            let mut alpha = vec![0.0f32; m * d];
            let mut beta = vec![0.0f32; m];
            self.model.item_params(xc, m, &mut alpha, &mut beta, s, t);
            for ((o, a), be) in oc
                .chunks_exact_mut(d + 1)
                .zip(alpha.chunks_exact(d))
                .zip(&beta)
            {
                o[..d].copy_from_slice(a);
                o[d] = *be;
            }
        });
        let mut alpha = Vec::with_capacity(b * d);
        let mut beta = Vec::with_capacity(b);
        for row in packed.chunks_exact(d + 1) {
            alpha.extend_from_slice(&row[..d]);
            beta.push(row[d]);
        }
        Ok((alpha, beta))
    }

    /// The chosen LLM (index into `llm_names`) and its probability for each of `b` queries.
    pub fn route(&self, x: &[f32], b: usize, spec: &RouteSpec) -> Result<(Vec<u32>, Vec<f32>)> {
        self.check_input(x, b)?;
        let n = self.model.config.n_llms;
        let cands = &spec.candidates;
        if cands.is_empty() {
            return Err(Error::Input("candidates is empty".into()));
        }
        if let Some(&bad) = cands.iter().find(|&&c| c >= n) {
            return Err(Error::Input(format!(
                "candidate index {bad} out of range for {n} LLMs"
            )));
        }
        let cost = match (&spec.cost, spec.rule) {
            (None, Rule::Best) => None,
            (None, _) => {
                return Err(Error::Input(
                    "a cost per candidate is needed for a cost trade-off".into(),
                ))
            }
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
                Some(c.as_slice())
            }
        };
        match spec.rule {
            Rule::Penalty(v) | Rule::Margin(v) if !v.is_finite() || v < 0.0 => {
                return Err(Error::Input(format!(
                    "the trade-off parameter must be finite and >= 0, got {v}"
                )))
            }
            _ => {}
        }
        // One output row per query: [choice as f32 bits, probability].
        let mut packed = vec![0.0f32; b * 2];
        self.for_chunks(x, b, &mut packed, 2, |xc, m, oc, s, t| {
            let mut p = vec![0.0f32; m * n];
            self.model.predict_proba(xc, m, &mut p, s, t);
            for (row, o) in p.chunks_exact(n).zip(oc.chunks_exact_mut(2)) {
                let c = choose(row, cands, cost, spec.rule);
                o[0] = f32::from_bits(c as u32);
                o[1] = row[c];
            }
        });
        let choice = packed.chunks_exact(2).map(|o| o[0].to_bits()).collect();
        let proba = packed.chunks_exact(2).map(|o| o[1]).collect();
        Ok((choice, proba))
    }

    /// Sums of P per (group, LLM) and query counts per group, for `b` queries labelled by
    /// `groups` (`None`: one group). Returns `(sums [n_groups, n_llms], counts [n_groups])`;
    /// dividing gives predicted accuracies. Sums are f64 and reduced in a fixed order, so the
    /// result does not depend on the thread count.
    pub fn predict_accuracy(
        &self,
        x: &[f32],
        b: usize,
        groups: Option<(&[u32], usize)>,
    ) -> Result<(Vec<f64>, Vec<u64>)> {
        self.check_input(x, b)?;
        let n = self.model.config.n_llms;
        let n_groups = match groups {
            None => 1,
            Some((g, ng)) => {
                if g.len() != b {
                    return Err(Error::Input(format!(
                        "{} group labels for {b} queries",
                        g.len()
                    )));
                }
                if let Some(bad) = g.iter().find(|&&v| v as usize >= ng) {
                    return Err(Error::Input(format!(
                        "group label {bad} out of range for {ng} groups"
                    )));
                }
                ng
            }
        };
        let mut sums = vec![0.0f64; n_groups * n];
        let mut counts = vec![0u64; n_groups];
        let dm = self.model.config.embed_dim;
        let rows = self.rows_per_chunk(b);
        let window = rows * self.threads * 4;
        let mut start = 0;
        while start < b {
            let m_win = window.min(b - start);
            let xw = &x[start * dm..(start + m_win) * dm];
            let gw = groups.map(|(g, _)| &g[start..start + m_win]);
            let partials: Vec<Vec<f64>> = self.pool.install(|| {
                let work = |(ci, xc): (usize, &[f32])| {
                    let m = xc.len() / dm;
                    let mut s = Scratch::default();
                    let mut p = vec![0.0f32; m * n];
                    let t = if m_win <= rows { self.threads } else { 1 };
                    self.model.predict_proba(xc, m, &mut p, &mut s, t);
                    let mut part = vec![0.0f64; n_groups * n];
                    for (r, row) in p.chunks_exact(n).enumerate() {
                        let g = gw.map_or(0, |g| g[ci * rows + r] as usize);
                        for (acc, v) in part[g * n..(g + 1) * n].iter_mut().zip(row) {
                            *acc += *v as f64;
                        }
                    }
                    part
                };
                xw.par_chunks(rows * dm).enumerate().map(work).collect()
            });
            for part in partials {
                for (a, v) in sums.iter_mut().zip(part) {
                    *a += v;
                }
            }
            match gw {
                None => counts[0] += m_win as u64,
                Some(g) => g.iter().for_each(|&v| counts[v as usize] += 1),
            }
            start += m_win;
        }
        Ok((sums, counts))
    }

    fn check_input(&self, x: &[f32], b: usize) -> Result<()> {
        let dm = self.model.config.embed_dim;
        if b == 0 {
            return Err(Error::Input("no queries (empty batch)".into()));
        }
        if x.len() != b * dm {
            return Err(Error::Input(format!(
                "x has {} values, expected {b} rows × embed_dim {dm}",
                x.len()
            )));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::Input(format!(
                "x contains a non-finite value at row {}, column {}",
                i / dm,
                i % dm
            )));
        }
        Ok(())
    }

    /// Rows per chunk for a batch of `b`: equal chunks, a multiple of the thread count of them,
    /// none above `MAX_CHUNK_ROWS`; the whole batch when it is too small to split by rows.
    fn rows_per_chunk(&self, b: usize) -> usize {
        if b < self.threads * MIN_ROWS_PER_THREAD {
            return b.max(1);
        }
        let n_chunks = b
            .div_ceil(self.model.max_chunk_rows())
            .next_multiple_of(self.threads);
        b.div_ceil(n_chunks)
    }

    /// Runs `f(x_chunk, rows, out_chunk, scratch, column_threads)` over the chunks of a batch,
    /// where `out` holds `width` values per query.
    fn for_chunks<F>(&self, x: &[f32], b: usize, out: &mut [f32], width: usize, f: F)
    where
        F: Fn(&[f32], usize, &mut [f32], &mut Scratch, usize) + Sync,
    {
        let dm = self.model.config.embed_dim;
        let rows = self.rows_per_chunk(b);
        self.pool.install(|| {
            if rows >= b {
                f(x, b, out, &mut Scratch::default(), self.threads);
            } else {
                x.par_chunks(rows * dm)
                    .zip(out.par_chunks_mut(rows * width))
                    .for_each_init(Scratch::default, |s, (xc, oc)| {
                        f(xc, xc.len() / dm, oc, s, 1)
                    });
            }
        });
    }
}

/// Index (into the LLM list) of the candidate `rule` picks from one row of probabilities.
fn choose(p: &[f32], cands: &[usize], cost: Option<&[f32]>, rule: Rule) -> usize {
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
        (Rule::Margin(delta), Some(c)) => {
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
        assert_eq!(choose(&p, &all, Some(&cost), Rule::Margin(0.1)), 1);
        assert_eq!(choose(&p, &all, Some(&cost), Rule::Margin(0.0)), 0);
        assert_eq!(choose(&p, &all, Some(&cost), Rule::Margin(0.5)), 2);
        assert_eq!(choose(&p, &all, Some(&cost), Rule::Penalty(0.0)), 0);
        assert_eq!(choose(&p, &all, Some(&cost), Rule::Penalty(0.01)), 1);
        assert_eq!(choose(&p, &all, Some(&cost), Rule::Penalty(1.0)), 2);
    }
}
