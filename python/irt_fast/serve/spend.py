"""Dollars spent per LLM, and which LLMs are past their budget.

Each answer's ``usage`` × the LLM's prices is added here (and to the spend metric). An LLM whose
spend reaches its ``budget_usd`` leaves the candidates. The book is in memory, per worker
process, and survives hot reloads (budgets are read from the current configuration) but not
restarts. With N workers each one enforces ``budget_usd / N``, so the pool as a whole never
spends more than the budget; exact shared budgets need a store all workers see (see
docs/serving.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from irt_fast.serve.config import Upstream


class SpendBook:
    """Spend per LLM name, in dollars.

    Args:
        workers: how many worker processes share the budgets (each enforces its share).
    """

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, int(workers))
        self._spent: dict[str, float] = {}

    def add(self, llm: str, dollars: float) -> None:
        """Record ``dollars`` spent on ``llm`` (negative or non-finite amounts are ignored)."""
        if dollars > 0 and dollars != float("inf"):
            self._spent[llm] = self._spent.get(llm, 0.0) + dollars

    def spent(self, llm: str) -> float:
        """Dollars spent on ``llm`` by this worker."""
        return self._spent.get(llm, 0.0)

    def share(self, up: Upstream) -> float | None:
        """This worker's share of ``up``'s budget (None: no budget)."""
        return None if up.budget_usd is None else up.budget_usd / self.workers

    def exhausted(self, up: Upstream) -> bool:
        """Whether ``up`` has spent its (share of the) budget."""
        share = self.share(up)
        return share is not None and self.spent(up.name) >= share

    def available(self, names: Iterable[str], upstreams: Mapping[str, Upstream]) -> list[str]:
        """The names, in order, whose upstream exists and is within budget."""
        if not self._spent:  # nothing spent yet: only the names without an upstream go
            return [n for n in names if n in upstreams]
        return [n for n in names if n in upstreams and not self.exhausted(upstreams[n])]
