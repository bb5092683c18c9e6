"""The pool of LLMs of a Model: adding a new LLM from its answers, dropping LLMs, the prior.

An LLM is one row (θ, b) beside the item network, so changing the pool never touches the
network: the Rust engine's ``with_llms`` builds a new engine sharing it. The model keeps, for
every LLM added after training, the item parameters of the questions it answered and its
answers, so that later answers can be merged and the fit redone from all of them.

``PoolMixin`` gives ``irt_fast.Model`` these methods; this module does not import the engine
module (no import circle): the new Model is built with ``type(model)(...)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from irt_fast import inputs
from irt_fast.errors import InputError, UnknownLLMError, WeightsFormatError

if TYPE_CHECKING:
    from irt_fast.onboard.fit import Posterior
    from irt_fast.onboard.prior import Prior

Answers = tuple[np.ndarray, np.ndarray, np.ndarray]  # alpha [k, d], beta [k], correct [k]


class PoolMixin:
    """``Model``'s methods for changing its pool of LLMs (see :class:`irt_fast.Model`)."""

    _engine: Any
    _prior: Prior | None
    _index: dict[str, int]
    llm_names: list[str]
    config: dict[str, Any]
    d: int

    @property
    def llm_info(self) -> list[dict[str, Any]]:
        """Per LLM, in ``llm_names`` order: ``{"name", "origin": "trained"|"added",
        "n_answers": int or None}`` (a fresh copy)."""
        raw = self._engine.llm_info_json
        if raw is None:  # format v1: every LLM was trained
            return [{"name": n, "origin": "trained", "n_answers": None} for n in self.llm_names]
        return [dict(e) for e in json.loads(raw)]  # validated by the Rust loader

    @property
    def prior(self) -> Prior:
        """The population prior over (θ, b) of the trained LLMs: from the weights file, or
        (files without one) ``Prior.from_population`` of the trained LLMs' rows, at first use.
        Models derived by add/drop keep their parent's prior."""
        if self._prior is None:
            self._prior = _population_prior(self)
        return self._prior

    @property
    def population(self) -> np.ndarray:
        """The trained LLMs' (θ, b) rows ``[n_trained, d (+ 1)]`` (b last when the model has
        offsets): the population prior of the probe's ``strategy="population"``."""
        trained = [i for i, e in enumerate(self.llm_info) if e["origin"] == "trained"]
        theta = np.asarray(self._engine.theta, dtype=np.float64)[trained]
        if not self._has_bias:
            return theta
        bias = np.asarray(self._engine.llm_bias, dtype=np.float64)[trained]
        return np.column_stack([theta, bias])

    def add_llm(
        self,
        name: str,
        x: Any,
        correct: Any,
        *,
        replace: bool = False,
        embedder: str | os.PathLike[str] | None = None,
    ) -> Any:
        """A new model with LLM ``name`` fitted from its answers (MAP of θ, b under the prior).

        Args:
            name: the LLM's name. A new name is appended to ``llm_names``. The name of an LLM
                added earlier is re-fitted from all its answers (the earlier ones and these)
                and keeps its position; with ``replace=True``, from these answers only.
                A trained LLM's name is refused unless ``replace=True`` (it then becomes an
                added LLM fitted from these answers, at the same position).
            x: the questions it answered: an array ``[k, embed_dim]`` or a list of k texts.
            correct: its k answers, 0/1 (or bools). All-equal answers are allowed (the prior
                keeps the fit finite).
            replace: overwrite an existing LLM of that name instead of merging/refusing.
            embedder: embedder name or path for text input (default: the model's).

        Returns:
            A new Model; this one is unchanged.

        Raises:
            InputError: no answers, a length mismatch, a value that is not 0/1 (NaN included),
                a bad name, a trained LLM's name without ``replace=True``.
        """
        return self._add_llm(name, x, correct, replace=replace, embedder=embedder)[0]

    def add_fitted_llm(
        self,
        name: str,
        posterior: Posterior,
        alpha: Any,
        beta: Any,
        correct: Any,
        *,
        replace: bool = False,
    ) -> Any:
        """A new model with an LLM already fitted (e.g. by a Probe) from the given answers.

        Args:
            name: the LLM's name; an existing name (trained or added) needs ``replace=True``,
                since the posterior was fitted from these answers alone.
            posterior: the fitted ``irt_fast.onboard.fit.Posterior`` (θ ``[d]``, bias).
            alpha: item parameters ``[k, d]`` of the questions it answered.
            beta: item difficulties ``[k]``.
            correct: its 0/1 answers ``[k]`` (recorded, so later answers can be merged).
            replace: overwrite an existing LLM of that name.

        Returns:
            A new Model; this one is unchanged.

        Raises:
            InputError: no Posterior, a bad name, a clash without ``replace=True``, answers or
                item parameters of the wrong shape or not finite.
        """
        from irt_fast.onboard.fit import Posterior

        name = inputs.llm_name(name)
        replace = _flag("replace", replace)
        if not isinstance(posterior, Posterior):
            raise InputError(
                "posterior must be an irt_fast.onboard.fit.Posterior (from fit_llm or "
                f"Probe.posterior, which is None before any answer), got {type(posterior).__name__}"
            )
        self._check_clash(name, replace, allow_added=False)
        c = inputs.binary_answers(correct)
        a = _float_array("alpha", alpha, (c.shape[0], self.d))
        b = _float_array("beta", beta, (c.shape[0],))
        n_post = getattr(posterior, "n_answers", c.shape[0])
        if n_post != c.shape[0]:
            raise InputError(f"the posterior was fitted from {n_post} answers, {c.shape[0]} given")
        return self._with_llm(name, posterior, a, b, c)

    def drop_llms(self, names: Iterable[str]) -> Any:
        """A new model without the LLMs ``names``.

        Args:
            names: LLM names to remove (unknown names, repeats and dropping every LLM are
                refused). The prior stays that of the trained population.

        Returns:
            A new Model; this one is unchanged.
        """
        drop = inputs.name_list("names", names)
        if len(set(drop)) != len(drop):
            raise InputError("names contains a name twice")
        unknown = [n for n in drop if n not in self._index]
        if unknown:
            raise UnknownLLMError(f"cannot drop unknown LLM(s) {unknown}")
        if len(drop) == len(self.llm_names):
            raise InputError("cannot drop every LLM: a model needs at least one")
        keep = [i for i, n in enumerate(self.llm_names) if n not in set(drop)]
        info = self.llm_info
        return self._rebuild(
            [self.llm_names[i] for i in keep],
            self._engine.theta[keep],
            self._engine.llm_bias[keep],
            [info[i] for i in keep],
            {n: a for n, a in self._recorded_answers().items() if n not in set(drop)},
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this model as a weights file (format v2), atomically.

        The item network is read back from the file this model was loaded from, which must be
        unchanged since (size, mtime and inode are checked). The written file is loaded once
        before it replaces ``path``; nothing is written on any failure.

        Args:
            path: the target ``.safetensors`` path.

        Returns:
            The path written.
        """
        from irt_fast.model_io import save

        return save(self, path)

    # ---------------------------------------------------------------- internals

    def _add_llm(
        self, name: Any, x: Any, correct: Any, *, replace: Any, embedder: Any
    ) -> tuple[Any, Posterior, np.ndarray, np.ndarray, np.ndarray]:
        """``add_llm``, also returning the posterior and all the answers it was fitted from."""
        from irt_fast.onboard.fit import fit_llm

        name = inputs.llm_name(name)
        replace = _flag("replace", replace)
        c = inputs.binary_answers(correct)
        self._check_clash(name, replace, allow_added=True)
        if inputs.is_texts(x) and len(x) != c.shape[0]:  # before the (slow) embedding
            raise InputError(f"{len(x)} questions in x but {c.shape[0]} answers in correct")
        q = self._queries(x, embedder)  # type: ignore[attr-defined]
        if q.shape[0] != c.shape[0]:
            raise InputError(f"{q.shape[0]} questions in x but {c.shape[0]} answers in correct")
        alpha, beta = self._engine.item_params(q)
        if name in self._index and not replace:
            earlier = self._recorded_answers().get(name)
            if earlier is None:
                raise InputError(
                    f"{name!r} was added without its answers being recorded, so new answers "
                    "cannot be merged with them: pass replace=True to fit from these alone"
                )
            alpha = np.concatenate([earlier[0], alpha])
            beta = np.concatenate([earlier[1], beta])
            c = np.concatenate([earlier[2], c])
        post = fit_llm(alpha, beta, c, self.prior, has_bias=self._has_bias)
        return self._with_llm(name, post, alpha, beta, c), post, alpha, beta, c

    @property
    def _has_bias(self) -> bool:
        return bool(self.config.get("llm_bias", True))

    def _check_clash(self, name: str, replace: bool, *, allow_added: bool) -> None:
        i = self._index.get(name)
        if i is None or replace:
            return
        origin = self.llm_info[i]["origin"]
        if origin == "trained":
            raise InputError(
                f"{name!r} is a trained LLM of this model: pass replace=True to replace it "
                "with a fit from these answers, or choose another name"
            )
        if not allow_added:
            raise InputError(
                f"{name!r} is already in the model: pass replace=True, or use add_llm to "
                "merge new answers with its earlier ones"
            )

    def _recorded_answers(self) -> dict[str, Answers]:
        """The added LLMs' recorded answers by name (``answers.*`` in θ-row order)."""
        rec = self._engine.answers
        if rec is None:
            return {}
        alpha, beta, correct = rec
        out: dict[str, Answers] = {}
        off = 0
        for e in self.llm_info:
            if e["origin"] == "added" and e["n_answers"]:
                k = int(e["n_answers"])
                out[e["name"]] = (alpha[off : off + k], beta[off : off + k], correct[off : off + k])
                off += k
        return out

    def _with_llm(
        self, name: str, post: Any, alpha: np.ndarray, beta: np.ndarray, c: np.ndarray
    ) -> Any:
        row = np.asarray(post.theta, dtype=np.float64)
        b = float(post.bias) if self._has_bias else 0.0
        if row.shape != (self.d,) or not (np.isfinite(row).all() and np.isfinite(b)):
            raise InputError(f"the fitted θ must be finite with shape [{self.d}], got {row.shape}")
        names, info = list(self.llm_names), self.llm_info
        theta, bias = self._engine.theta.copy(), self._engine.llm_bias.copy()
        entry = {"name": name, "origin": "added", "n_answers": int(c.shape[0])}
        i = self._index.get(name)
        if i is None:
            names.append(name)
            info.append(entry)
            theta = np.concatenate([theta, row[None, :].astype(np.float32)])
            bias = np.concatenate([bias, np.float32([b])])
        else:
            info[i] = entry
            theta[i] = row
            bias[i] = b
        answers = self._recorded_answers()
        answers[name] = (alpha, beta, c)
        return self._rebuild(names, theta, bias, info, answers)

    def _rebuild(
        self,
        names: list[str],
        theta: np.ndarray,
        bias: np.ndarray,
        info: list[dict[str, Any]],
        answers: dict[str, Answers],
    ) -> Any:
        prior = self.prior  # of the trained population: computed before any trained row goes
        rows = [answers[e["name"]] for e in info if e["origin"] == "added" and e["name"] in answers]
        packed = None
        if rows:
            packed = tuple(
                np.ascontiguousarray(np.concatenate([r[j] for r in rows]), dtype=np.float32)
                for j in range(3)
            )
        engine = self._engine.with_llms(
            list(names),
            np.ascontiguousarray(theta, dtype=np.float32),
            np.ascontiguousarray(bias, dtype=np.float32),
            json.dumps(info),
            packed,
        )
        return type(self)(engine, self.path, source=self._source, prior=prior)  # type: ignore[call-arg]


def _population_prior(model: PoolMixin) -> Prior:
    from irt_fast.onboard.prior import Prior

    stored = model._engine.prior
    if stored is not None:
        return Prior(mean=stored[0], cov=stored[1])
    rows = model.population
    if len(rows) < 2:
        raise WeightsFormatError(
            f"the weights file records no prior and has {len(rows)} trained LLM(s); a "
            "population prior needs at least 2"
        )
    if model._has_bias:
        return Prior.from_population(rows[:, :-1], rows[:, -1])
    return Prior.from_population(rows, None)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _float_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    value = inputs.unmasked(name, value)
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{name} must be a float array of shape {list(shape)}: {exc}") from exc
    if arr.shape != shape:
        raise InputError(f"{name} must have shape {list(shape)}, got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise InputError(f"{name} holds NaN or Inf")
    return np.ascontiguousarray(arr)
