"""Per-group sums of P(correct) and query counts, added batch by batch and merged across
processes: the state behind a streamed or distributed ``predict_accuracy``. Accuracy is
sum / count per (group, LLM); sums are float64, so the order in which batches arrive changes
the result only in the last bits."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from irt_fast.errors import InputError


class GroupSums:
    """Sums of P per (group, LLM) and queries per group.

    Groups are numbered in order of first appearance. Without labels everything goes into one
    group whose label is None.

    Args:
        n_llms: the number of LLMs (columns of P).
    """

    def __init__(self, n_llms: int) -> None:
        self.n_llms = n_llms
        self.index: dict[Any, int] = {}
        self._sums = np.zeros((0, n_llms))
        self._counts = np.zeros(0, dtype=np.int64)

    @property
    def n_groups(self) -> int:
        return len(self.index)

    @property
    def sums(self) -> np.ndarray:
        """float64 ``[n_groups, n_llms]``."""
        return self._sums[: self.n_groups]

    @property
    def counts(self) -> np.ndarray:
        """int64 ``[n_groups]``."""
        return self._counts[: self.n_groups]

    def ids(self, labels: pl.Series | None) -> np.ndarray | None:
        """Group numbers (uint32) of a batch's labels, registering new labels.

        Args:
            labels: one label per query (checked: no nulls), or None for the single group.

        Returns:
            uint32 ``[B]``, or None without labels.
        """
        if labels is None:
            self._register(None)
            return None
        uniq = labels.unique(maintain_order=True)
        nums = [self._register(v) for v in uniq.to_list()]
        if len(nums) == 1:
            return np.full(len(labels), nums[0], dtype=np.uint32)
        return (
            labels.replace_strict(uniq, pl.Series(nums, dtype=pl.UInt32), return_dtype=pl.UInt32)
            .to_numpy()
            .astype(np.uint32, copy=False)
        )

    def _register(self, label: Any) -> int:
        g = self.index.get(label)
        if g is None:
            g = self.index[label] = len(self.index)
            if g >= len(self._counts):
                grow = max(16, 2 * len(self._counts))
                self._sums = np.vstack([self._sums, np.zeros((grow, self.n_llms))])
                self._counts = np.concatenate([self._counts, np.zeros(grow, dtype=np.int64)])
        return g

    def add(self, sums: np.ndarray, counts: np.ndarray) -> None:
        """Add the engine's per-group sums (``[n, n_llms]``, n ≤ n_groups) and counts."""
        n = sums.shape[0]
        self._sums[:n] += sums
        self._counts[:n] += counts.astype(np.int64)

    def add_proba(self, proba: np.ndarray, gid: np.ndarray | None) -> None:
        """Add a batch's P matrix ``[B, n_llms]`` with its group numbers (None: one group)."""
        if gid is None:
            self._sums[0] += proba.sum(0, dtype=np.float64)
            self._counts[0] += proba.shape[0]
            return
        order = np.argsort(gid, kind="stable")
        g_sorted = gid[order]
        starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
        groups = g_sorted[starts]
        self._sums[groups] += np.add.reduceat(proba[order].astype(np.float64), starts, axis=0)
        self._counts[groups] += np.diff(np.r_[starts, len(gid)])

    def merge(self, other: GroupSums) -> None:
        """Add another GroupSums (e.g. from another block or process), matching groups by label."""
        if other.n_llms != self.n_llms:
            raise InputError(f"cannot merge sums over {other.n_llms} LLMs into {self.n_llms}")
        for label, g in other.index.items():
            mine = self._register(label)
            self._sums[mine] += other._sums[g]
            self._counts[mine] += other._counts[g]

    def accuracy(self) -> np.ndarray:
        """Mean P per (group, LLM): float64 ``[n_groups, n_llms]``."""
        if self.n_groups == 0 or self.counts.sum() == 0:
            raise InputError("no queries were scored")
        return self.sums / self.counts[:, None]

    def frame(self, llm_names: list[str], *, grouped: bool = True) -> pl.DataFrame:
        """The accuracy table: one row per (group, LLM).

        Args:
            llm_names: the model's LLM names, in column order.
            grouped: include the ``group`` column.

        Returns:
            polars DataFrame ``[group,] llm, accuracy, n`` (as ``Model.predict_accuracy`` with
            ``as_frame=True``).
        """
        acc = self.accuracy()
        n = self.n_llms
        cols: dict[str, Any] = {}
        if grouped:
            cols["group"] = pl.Series(list(self.index)).gather(
                np.repeat(np.arange(self.n_groups), n)
            )
        cols["llm"] = pl.Series(llm_names * self.n_groups, dtype=pl.String)
        cols["accuracy"] = acc.ravel()
        cols["n"] = np.repeat(self.counts, n)
        return pl.DataFrame(cols)

    def to_arrow(self) -> Any:
        """The state as rows ``group, n, sums`` (a pyarrow Table; ``sums`` a list of float64 per
        group), for shipping partial sums between processes; see :meth:`from_arrow`."""
        import pyarrow as pa

        return pa.table(
            {
                "group": pa.array(list(self.index)),
                "n": pa.array(self.counts),
                "sums": pa.FixedSizeListArray.from_arrays(pa.array(self.sums.ravel()), self.n_llms),
            }
        )

    @classmethod
    def from_arrow(cls, table: Any, n_llms: int) -> GroupSums:
        """The GroupSums written by :meth:`to_arrow` (rows of one label are added together)."""
        out = cls(n_llms)
        sums = np.asarray(table.column("sums").combine_chunks().flatten(), dtype=np.float64)
        sums = sums.reshape(table.num_rows, n_llms)
        counts = np.asarray(table.column("n"), dtype=np.int64)
        for i, label in enumerate(table.column("group").to_pylist()):
            g = out._register(label)
            out._sums[g] += sums[i]
            out._counts[g] += counts[i]
        return out
