"""Feeding observed (LLM, query, label) pairs to torch, query-major.

A ``PairMatrix`` holds the pairs of a set of queries sorted by query (CSR: ``ptr`` gives each
query's slice of ``llm``/``y``). Query-major batching runs the item network once per query and
scores every LLM observed on it: the same loss as random row batches for far less compute, and
memory proportional to the number of observed pairs, never to queries × LLMs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from training.metrics import MISSING


@dataclass
class PairMatrix:
    """Observed pairs of ``n_queries`` queries, grouped by query."""

    emb: np.ndarray  # float32 [n_queries, embed_dim]
    ptr: np.ndarray  # int64 [n_queries + 1]
    llm: np.ndarray  # int64 [n_pairs]
    y: np.ndarray  # float32 [n_pairs]
    query_rows: np.ndarray  # rows of these queries in the source dataset
    n_llms: int

    @property
    def n_queries(self) -> int:
        return len(self.ptr) - 1

    @property
    def n_pairs(self) -> int:
        return len(self.llm)

    def query_of_pair(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_queries), np.diff(self.ptr))

    def dense_labels(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """int8 [stop-start, n_llms] labels with -1 where unobserved (for a chunk of queries)."""
        stop = self.n_queries if stop is None else stop
        lo, hi = self.ptr[start], self.ptr[stop]
        out = np.full((stop - start, self.n_llms), MISSING, dtype=np.int8)
        q = np.repeat(np.arange(stop - start), np.diff(self.ptr[start : stop + 1]))
        out[q, self.llm[lo:hi]] = self.y[lo:hi].astype(np.int8)
        return out

    def llm_base_rates(self, smoothing: float = 1.0) -> np.ndarray:
        """Per-LLM accuracy on these pairs, shrunk toward 0.5 by ``smoothing`` pseudo-counts."""
        n = np.bincount(self.llm, minlength=self.n_llms).astype(np.float64)
        k = np.bincount(self.llm, weights=self.y, minlength=self.n_llms)
        return (k + 0.5 * smoothing) / (n + smoothing)


def build_pair_matrix(
    embeddings: np.ndarray,
    q_idx: np.ndarray,
    llm_idx: np.ndarray,
    correct: np.ndarray,
    query_rows: np.ndarray,
    n_llms: int,
) -> PairMatrix:
    """Pairs of the queries ``query_rows`` (rows of ``embeddings``), from flat pair arrays
    (``q_idx`` = row of each pair's query). O(n_pairs log n_pairs), no dense matrix."""
    query_rows = np.asarray(query_rows, dtype=np.int64)
    n_total = embeddings.shape[0]
    local = np.full(n_total, -1, dtype=np.int64)
    local[query_rows] = np.arange(len(query_rows))
    lq = local[np.asarray(q_idx, dtype=np.int64)]
    keep = lq >= 0
    lq = lq[keep]
    order = np.argsort(lq, kind="stable")
    counts = np.bincount(lq, minlength=len(query_rows))
    ptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    return PairMatrix(
        emb=np.ascontiguousarray(embeddings[query_rows], dtype=np.float32),
        ptr=ptr,
        llm=np.asarray(llm_idx, dtype=np.int64)[keep][order],
        y=np.asarray(correct, dtype=np.float32)[keep][order],
        query_rows=query_rows,
        n_llms=n_llms,
    )


class DeviceMatrix:
    """A PairMatrix moved to a device once, with batch gathering in torch."""

    def __init__(self, m: PairMatrix, device: torch.device) -> None:
        self.m = m
        self.emb = torch.from_numpy(m.emb).to(device)
        self.ptr = torch.from_numpy(m.ptr).to(device)
        self.llm = torch.from_numpy(m.llm).to(device)
        self.y = torch.from_numpy(m.y).to(device)
        self.device = device

    def query_batch(self, queries: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """For a batch of local query indices: (embeddings [B, D], pair's position in the batch
        [n], LLM index [n], label [n]) over every pair observed on those queries."""
        starts = self.ptr[queries]
        counts = self.ptr[queries + 1] - starts
        pos = torch.repeat_interleave(torch.arange(len(queries), device=self.device), counts)
        offsets = torch.cumsum(counts, 0) - counts
        rows = starts[pos] + torch.arange(int(counts.sum()), device=self.device) - offsets[pos]
        return self.emb[queries], pos, self.llm[rows], self.y[rows]

    def pair_count(self, queries: Tensor) -> int:
        """Observed pairs of these queries (a global batch's, whichever share a rank computes)."""
        return int((self.ptr[queries + 1] - self.ptr[queries]).sum())

    def query_batches(self, batch_queries: int, generator: torch.Generator) -> Iterator[Tensor]:
        perm = torch.randperm(self.m.n_queries, generator=generator).to(self.device)
        for i in range(0, len(perm), batch_queries):
            yield perm[i : i + batch_queries]

    def row_batches(self, batch_rows: int, generator: torch.Generator) -> Iterator[Tensor]:
        """Random batches of pair indices (the paper's row batching, for comparison)."""
        perm = torch.randperm(self.m.n_pairs, generator=generator).to(self.device)
        for i in range(0, len(perm), batch_rows):
            yield perm[i : i + batch_rows]

    def pair_query(self) -> Tensor:
        return torch.from_numpy(self.m.query_of_pair()).to(self.device)


def random_split_matrices(
    ds: Any, fractions: tuple[float, float] = (0.7, 0.15), seed: int = 0
) -> list[PairMatrix]:
    """Train/val/test PairMatrices of a random split of ``ds``'s queries (the rest after the
    two fractions is test). For tests and quick experiments; ``training.fit`` uses irt_fast.splits."""
    perm = np.random.default_rng(seed).permutation(ds.n_queries)
    a = int(fractions[0] * len(perm))
    b = int((fractions[0] + fractions[1]) * len(perm))
    r = ds.responses
    args = (r["q_idx"].to_numpy(), r["llm_idx"].to_numpy(), r["correct"].to_numpy())
    return [
        build_pair_matrix(ds.embeddings, *args, rows, ds.n_llms)
        for rows in (perm[:a], perm[a:b], perm[b:])
    ]
