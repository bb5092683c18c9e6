//! Batched inference on a thread pool: predict_proba, item_params, route, predict_accuracy.
//!
//! A batch is cut into chunks of rows. With enough rows, chunks run in parallel, one per thread,
//! each with single-threaded products (no synchronisation inside a chunk). With few rows (one
//! query, a handful) the work is memory-bound, so the batch is one chunk and every product is
//! split over output columns instead, so that each thread streams its own part of the weights.
//! Working memory is per chunk, so it does not grow with the number of queries; every output
//! buffer is reserved fallibly, so a result too large for memory is `Error::Memory`, not an abort.

use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kernels::{ftz, Dtype};
use crate::model::{Model, Scratch};
use crate::pool::Pool;
use crate::route::choose;
pub use crate::route::{RouteSpec, Rule};
use crate::weights::{flush_subnormals, Answers, Weights};

/// Below `threads × MIN_ROWS_PER_THREAD` rows, split columns instead of rows. Measured on the
/// reference model with 2 threads: column split is faster up to ~256 rows, row split from ~512.
pub const MIN_ROWS_PER_THREAD: usize = 192;
/// Most worker threads an engine starts (irt_fast.inputs.MAX_THREADS checks the same bound
/// first, with the argument's name).
pub const MAX_THREADS: usize = 1024;
/// predict_accuracy holds the probabilities of at most this many (row, LLM) pairs at once.
const ACCURACY_WINDOW_VALUES: usize = 1 << 22;

/// A loaded model and the thread pool it runs on.
pub struct Engine {
    pub model: Model,
    /// Shared by the engines `with_llms` derives from this one.
    pool: Arc<Pool>,
    threads: usize,
    /// Subnormal values set to zero: the file's at load, plus those of LLMs added later.
    flushed_subnormals: usize,
}

/// A zero-filled buffer of `rows × width` values, or `Error::Memory` naming `what`.
pub(crate) fn zeros<T: Clone + Default>(rows: usize, width: usize, what: &str) -> Result<Vec<T>> {
    let too_big = || Error::Memory(format!("cannot allocate {what} ({rows} × {width} values)"));
    let len = rows.checked_mul(width).ok_or_else(too_big)?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| too_big())?;
    v.resize(len, T::default());
    Ok(v)
}

impl Engine {
    /// Loads and validates a weights file. `threads = None` uses every available core.
    pub fn load(path: &Path, threads: Option<usize>) -> Result<Engine> {
        Engine::load_with(path, threads, Dtype::F32)
    }

    /// `load`, with the item network's large matrices stored in `dtype`.
    /// Subnormal values in the file are set to zero (counted in `flushed_subnormals`).
    pub fn load_with(path: &Path, threads: Option<usize>, dtype: Dtype) -> Result<Engine> {
        let w = Weights::load(path)?;
        let flushed = w.flushed_subnormals;
        let mut e = Engine::new(Model::with_dtype(w, dtype), threads)?;
        e.flushed_subnormals = flushed;
        Ok(e)
    }

    /// Wraps a model with a pool of `threads` workers.
    pub fn new(model: Model, threads: Option<usize>) -> Result<Engine> {
        let threads = match threads {
            Some(0) => return Err(Error::Input("threads must be at least 1".into())),
            Some(t) if t > MAX_THREADS => {
                return Err(Error::Input(format!(
                    "threads = {t}: at most {MAX_THREADS} worker threads"
                )))
            }
            Some(t) => t,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        Ok(Engine {
            model,
            pool: Arc::new(Pool::new(threads)?),
            threads,
            flushed_subnormals: 0,
        })
    }

    /// A new engine with another pool of LLMs (see `Model::with_llms`), sharing this one's item
    /// network and threads. Subnormal values among the new ones are set to zero, as at load.
    /// `self` is unchanged.
    pub fn with_llms(
        &self,
        names: Vec<String>,
        mut theta: Vec<f32>,
        mut bias: Vec<f32>,
        llm_info_json: &str,
        mut answers: Option<Answers>,
    ) -> Result<Engine> {
        let mut flushed = flush_subnormals(&mut theta) + flush_subnormals(&mut bias);
        if let Some(a) = answers.as_mut() {
            flushed += flush_subnormals(&mut a.alpha) + flush_subnormals(&mut a.beta);
        }
        Ok(Engine {
            model: self
                .model
                .with_llms(names, theta, bias, llm_info_json, answers)?,
            pool: Arc::clone(&self.pool),
            threads: self.threads,
            flushed_subnormals: self.flushed_subnormals + flushed,
        })
    }

    /// Subnormal values set to zero so far: those of the weights file at load (by `load` and
    /// `load_with`; 0 for an engine built by `new`, whose `Weights::flushed_subnormals` holds
    /// them), plus those among LLMs added by `with_llms`.
    pub fn flushed_subnormals(&self) -> usize {
        self.flushed_subnormals
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// P(correct) for `b` queries: `[b, n_llms]` row-major.
    pub fn predict_proba(&self, x: &[f32], b: usize) -> Result<Vec<f32>> {
        self.check_input(x, b)?;
        let n = self.model.config.n_llms;
        let mut out = zeros(b, n, "the probabilities")?;
        self.for_chunks(x, b, &mut out, n, |xc, m, oc, s, t| {
            self.model.predict_proba(xc, m, oc, s, t)
        })?;
        check_finite(&out, n, 0, "probability")?;
        Ok(out)
    }

    /// α (`[b, d]`) and β (`[b]`) for `b` queries.
    pub fn item_params(&self, x: &[f32], b: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        self.check_input(x, b)?;
        let d = self.model.config.d;
        // α and β of a row travel together so that one output slice describes a chunk.
        let mut packed = zeros(b, d + 1, "the item parameters")?;
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
        })?;
        check_finite(&packed, d + 1, 0, "item parameter")?;
        let mut alpha = zeros(b, d, "alpha")?;
        let mut beta = zeros(b, 1, "beta")?;
        for ((row, a), be) in packed
            .chunks_exact(d + 1)
            .zip(alpha.chunks_exact_mut(d))
            .zip(beta.iter_mut())
        {
            a.copy_from_slice(&row[..d]);
            *be = row[d];
        }
        Ok((alpha, beta))
    }

    /// The chosen LLM (index into `llm_names`) and its probability for each of `b` queries.
    pub fn route(&self, x: &[f32], b: usize, spec: &RouteSpec) -> Result<(Vec<u32>, Vec<f32>)> {
        self.check_input(x, b)?;
        let n = self.model.config.n_llms;
        let cost = spec.validate(n)?;
        // One output row per query: [choice as f32 bits, probability]; a NaN probability in a
        // row makes its choice meaningless, so it is flagged in place of the choice.
        let mut packed = zeros(b, 2, "the routing result")?;
        self.for_chunks(x, b, &mut packed, 2, |xc, m, oc, s, t| {
            let mut p = vec![0.0f32; m * n];
            self.model.predict_proba(xc, m, &mut p, s, t);
            for (row, o) in p.chunks_exact(n).zip(oc.chunks_exact_mut(2)) {
                if row.iter().any(|v| !v.is_finite()) {
                    o[1] = f32::NAN;
                    continue;
                }
                let c = choose(row, &spec.candidates, cost, spec.rule);
                o[0] = f32::from_bits(c as u32);
                o[1] = row[c];
            }
        })?;
        check_finite(&packed, 2, 0, "probability")?;
        let choice = packed.chunks_exact(2).map(|o| o[0].to_bits()).collect();
        let proba = packed.chunks_exact(2).map(|o| o[1]).collect();
        Ok((choice, proba))
    }

    /// Sums of P per (group, LLM) and query counts per group, for `b` queries labelled by
    /// `groups` (`None`: one group). Returns `(sums [n_groups, n_llms], counts [n_groups])`;
    /// dividing gives predicted accuracies. Sums are f64 and added row by row in query order,
    /// so the result does not depend on the thread count; working memory is one window of
    /// probabilities besides the result itself.
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
        let mut sums = zeros::<f64>(n_groups, n, "the per-group sums")?;
        let mut counts = zeros::<u64>(n_groups, 1, "the per-group counts")?;
        let dm = self.model.config.embed_dim;
        let window = (self.model.max_chunk_rows() * self.threads * 4)
            .min((ACCURACY_WINDOW_VALUES / n).max(1))
            .min(b);
        let mut p = zeros::<f32>(window, n, "the probabilities of one window")?;
        let mut start = 0;
        while start < b {
            let m_win = window.min(b - start);
            let pw = &mut p[..m_win * n];
            self.for_chunks(
                &x[start * dm..(start + m_win) * dm],
                m_win,
                pw,
                n,
                |xc, m, oc, s, t| self.model.predict_proba(xc, m, oc, s, t),
            )?;
            check_finite(pw, n, start, "probability")?;
            for (r, row) in pw.chunks_exact(n).enumerate() {
                let g = groups.map_or(0, |(g, _)| g[start + r] as usize);
                for (acc, v) in sums[g * n..(g + 1) * n].iter_mut().zip(row) {
                    *acc += *v as f64;
                }
                counts[g] += 1;
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
    /// none above the model's `max_chunk_rows`; the whole batch when it is too small to split
    /// by rows.
    fn rows_per_chunk(&self, b: usize) -> usize {
        if b < self.threads * MIN_ROWS_PER_THREAD {
            return b.max(1);
        }
        let n_chunks = b
            .div_ceil(self.model.max_chunk_rows())
            .next_multiple_of(self.threads);
        b.div_ceil(n_chunks)
    }

    /// The one chunk loop: runs `f(x_chunk, rows, out_chunk, scratch, column_threads)` over the
    /// chunks of a batch, where `out` holds `width` values per query.
    fn for_chunks<F>(&self, x: &[f32], b: usize, out: &mut [f32], width: usize, f: F) -> Result<()>
    where
        F: Fn(&[f32], usize, &mut [f32], &mut Scratch, usize) + Sync,
    {
        let dm = self.model.config.embed_dim;
        let rows = self.rows_per_chunk(b);
        if self.threads == 1 {
            // One thread: compute on the caller's (GIL-free) thread, chunk after chunk. Handing a
            // small batch to a pool worker and waking the caller again costs more than scoring
            // it (~60 µs against ~11 µs per row in a 32-row batch), and far more on a busy host.
            ftz::with_flush_to_zero(|| {
                let mut scratch = Scratch::default();
                for (xc, oc) in x.chunks(rows * dm).zip(out.chunks_mut(rows * width)) {
                    f(xc, xc.len() / dm, oc, &mut scratch, 1);
                }
            });
            return Ok(());
        }
        self.pool.get()?.install(|| {
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
        Ok(())
    }
}

/// `Error::Input` naming the query rows (offset by `first_row`) whose outputs are not finite: a
/// finite input or weight so large that float32 overflowed. Such a value must never become a
/// decision (an argmax over NaN, an accuracy of NaN).
fn check_finite(out: &[f32], width: usize, first_row: usize, what: &str) -> Result<()> {
    if out.iter().all(|v| v.is_finite()) {
        return Ok(());
    }
    let bad: Vec<usize> = out
        .chunks_exact(width)
        .enumerate()
        .filter(|(_, r)| r.iter().any(|v| !v.is_finite()))
        .map(|(i, _)| first_row + i)
        .collect();
    let shown: Vec<String> = bad.iter().take(10).map(|i| i.to_string()).collect();
    let more = if bad.len() > 10 { ", …" } else { "" };
    Err(Error::Input(format!(
        "non-finite {what} for {} query row(s) [{}{more}]: an input too large for float32 \
         arithmetic (every weight is bounded at load)",
        bad.len(),
        shown.join(", ")
    )))
}
