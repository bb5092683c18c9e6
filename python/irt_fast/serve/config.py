"""The gateway's configuration (``router.toml``): parsed, checked key by key, checked against
the model's LLM names, and resolved (API keys read from the environment) into one frozen
:class:`ServeConfig`.

Everything that can be wrong is found here, before the server starts or a reload swaps: an
unknown key, a value of the wrong type, an LLM the model does not know, a missing environment
variable. The error is an :class:`~irt_fast.errors.InputError` naming the file, the section and
the key (never a key's value: secrets only ever live in the environment).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from irt_fast.errors import InputError
from irt_fast.serve.proxy import env_proxies, pick_proxy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class Secret:
    """A credential read from the environment. ``str``/``repr`` never show it; only
    :meth:`reveal` does, at the one place it is sent (an upstream's Authorization header, or
    the comparison with a client's bearer token)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoutingSection(_Section):
    """``[routing]``: the default decision rule of ``irt-router``."""

    lam: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    margin: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    candidates: list[str] = Field(default_factory=list)
    route_on: Literal["last_user", "conversation"] = "last_user"


class ServerSection(_Section):
    """``[server]``: batching, time limits, request limits, sessions."""

    batch_window_ms: float = Field(default=2.0, ge=0, le=1000, allow_inf_nan=False)
    max_batch: int = Field(default=256, ge=1, le=65536)
    timeout_s: float = Field(default=60.0, gt=0, le=86400, allow_inf_nan=False)
    attempt_timeout_s: float | None = Field(default=None, gt=0, le=86400, allow_inf_nan=False)
    max_fallbacks: int = Field(default=2, ge=0, le=100)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_texts: int = Field(default=256, ge=1, le=100_000)
    session_ttl_s: float = Field(default=3600.0, gt=0, allow_inf_nan=False)
    max_sessions: int = Field(default=100_000, ge=1)
    engine_threads: int = Field(default=1, ge=1, le=1024)
    engine_dtype: Literal["f32", "bf16"] = "f32"
    max_connections: int = Field(default=1000, ge=1)
    log_prompts: bool = False


class AuthSection(_Section):
    """``[auth]``: the clients' bearer tokens."""

    api_keys_env: str | None = None
    metrics_public: bool = False


class LlmSection(_Section):
    """``[llms."name"]``: one upstream of the pool."""

    base_url: str
    api_key_env: str | None = None
    model: str | None = None
    input_per_mtok: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    output_per_mtok: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    cost_per_query: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    expected_output_tokens: int = Field(default=300, ge=0)
    budget_usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    stream_usage: bool = True

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials: name them in api_key_env")
        return v.rstrip("/")


class ConfigFile(_Section):
    """The file's sections, each checked key by key (not yet against a model)."""

    routing: RoutingSection = RoutingSection()
    server: ServerSection = ServerSection()
    auth: AuthSection = AuthSection()
    llms: dict[str, LlmSection] = Field(default_factory=dict)


@dataclass(frozen=True)
class Upstream:
    """One LLM of the pool with its resolved endpoint, credentials and prices."""

    name: str
    url: str
    model_id: str
    api_key: Secret | None = field(repr=False)
    input_per_mtok: float
    output_per_mtok: float
    cost_per_query: float | None
    expected_output_tokens: int
    budget_usd: float | None
    stream_usage: bool
    #: The HTTP proxy from the environment (may carry credentials, so never shown).
    proxy: str | None = field(default=None, repr=False)

    @property
    def priced(self) -> bool:
        return (
            self.cost_per_query is not None or self.input_per_mtok > 0 or self.output_per_mtok > 0
        )

    def expected_cost(self, prompt_tokens: float) -> float:
        """Dollars one request is expected to cost before its answer exists."""
        if self.cost_per_query is not None:
            return self.cost_per_query
        return (
            prompt_tokens * self.input_per_mtok + self.expected_output_tokens * self.output_per_mtok
        ) / 1e6

    def cost_of(self, usage: Mapping[str, Any] | None) -> float:
        """Dollars an answer cost, from its ``usage`` (0 when absent or malformed)."""
        if self.cost_per_query is not None:
            return self.cost_per_query
        if not isinstance(usage, Mapping):
            return 0.0
        pin, pout = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
        return (pin * self.input_per_mtok + pout * self.output_per_mtok) / 1e6


def _count(v: Any) -> float:
    """A token count from ``usage`` (0 for anything that is not a finite number >= 0)."""
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
    return float(v) if ok else 0.0


@dataclass(frozen=True)
class ServeConfig:
    """The validated, resolved configuration."""

    path: str
    routing: RoutingSection
    server: ServerSection
    upstreams: dict[str, Upstream]
    candidates: tuple[str, ...]
    """The default candidates of ``irt-router`` (every upstream when the file names none)."""
    tokens: tuple[Secret, ...] = field(repr=False)
    """Accepted bearer tokens; empty: no authentication."""
    metrics_public: bool = False

    @property
    def attempt_timeout_s(self) -> float:
        """Time one upstream attempt may take before the next candidate is tried."""
        s = self.server
        return s.attempt_timeout_s or s.timeout_s / (s.max_fallbacks + 1)


def read_config(path: str | os.PathLike[str]) -> ConfigFile:
    """Read ``router.toml`` and check every key and value (not yet against a model).

    Args:
        path: the TOML file.

    Returns:
        The ConfigFile.

    Raises:
        FileNotFoundError: no such file.
        InputError: not TOML, an unknown key or a bad value.
    """
    p = Path(os.fspath(path))
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {p} not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: not a valid TOML file ({e})") from None
    return validate_config(raw, where=str(p))


def validate_config(raw: Mapping[str, Any], *, where: str = "config") -> ConfigFile:
    """Check a parsed TOML document key by key.

    Args:
        raw: the document.
        where: the file name used in messages.

    Returns:
        The ConfigFile.
    """
    if not isinstance(raw, Mapping):
        raise InputError(f"{where}: the configuration must be a table")
    try:
        f = ConfigFile.model_validate(raw)
    except ValidationError as e:
        raise InputError(f"{where}: {_describe(e)}") from None
    return f


def load_config(
    path: str | os.PathLike[str],
    llm_names: Sequence[str],
    environ: Mapping[str, str] | None = None,
) -> ServeConfig:
    """Read ``router.toml`` and check it against a model's LLM names.

    Args:
        path: the TOML file.
        llm_names: the model's LLM names (every ``[llms."name"]`` must be one of them).
        environ: where ``api_key_env``/``api_keys_env`` are looked up (default ``os.environ``).

    Returns:
        The ServeConfig.

    Raises:
        FileNotFoundError: no such file.
        InputError: the file is not TOML, has an unknown key or a bad value, names an LLM the
            model does not know, or names an environment variable that is not set.
    """
    return resolve_config(read_config(path), llm_names, environ, where=os.fspath(path))


def resolve_config(
    f: ConfigFile,
    llm_names: Sequence[str],
    environ: Mapping[str, str] | None = None,
    *,
    where: str = "config",
) -> ServeConfig:
    """Check a ConfigFile against a model's LLM names and read its keys from the environment.

    Args:
        f: the checked file.
        llm_names: the model's LLM names.
        environ: environment for the key variables (default ``os.environ``).
        where: the file name used in messages.

    Returns:
        The ServeConfig.
    """
    env = os.environ if environ is None else environ
    known = set(llm_names)
    unknown = [n for n in f.llms if n not in known]
    if unknown:
        raise InputError(
            f'{where}: [llms."{unknown[0]}"]: the model has no LLM named {unknown[0]!r} '
            f"(it has {len(known)}: {', '.join(list(llm_names)[:8])}"
            f"{', ...' if len(known) > 8 else ''})"
        )
    r = f.routing
    if r.lam is not None and r.margin is not None:
        raise InputError(f"{where}: [routing]: set lam or margin, not both")
    for n in r.candidates:
        if n not in f.llms:
            raise InputError(
                f'{where}: [routing] candidates: {n!r} has no [llms."{n}"] upstream'
                + ("" if n in known else " and is not an LLM of the model")
            )
    if len(set(r.candidates)) != len(r.candidates):
        raise InputError(f"{where}: [routing] candidates: a name appears twice")
    proxies = env_proxies(env)  # read once for the whole pool
    upstreams = {name: _upstream(name, s, env, proxies, where) for name, s in f.llms.items()}
    candidates = tuple(r.candidates) or tuple(upstreams)
    if r.lam is not None or r.margin is not None:
        rule = "lam" if r.lam is not None else "margin"
        for n in candidates:
            if not upstreams[n].priced:
                raise InputError(
                    f'{where}: [routing] {rule} trades accuracy against price, but [llms."{n}"] '
                    "has none: set cost_per_query or input_per_mtok/output_per_mtok"
                )
    tokens: tuple[Secret, ...] = ()
    if f.auth.api_keys_env is not None:
        value = _env(env, f.auth.api_keys_env, f"{where}: [auth] api_keys_env")
        tokens = tuple(Secret(t.strip()) for t in value.split(",") if t.strip())
        if not tokens:
            raise InputError(
                f"{where}: [auth] api_keys_env: {f.auth.api_keys_env} holds no token "
                "(comma-separated bearer tokens)"
            )
    return ServeConfig(
        path=where,
        routing=r,
        server=f.server,
        upstreams=upstreams,
        candidates=candidates,
        tokens=tokens,
        metrics_public=f.auth.metrics_public,
    )


def _upstream(
    name: str, s: LlmSection, env: Mapping[str, str], proxies: Mapping[str, str], where: str
) -> Upstream:
    here = f'{where}: [llms."{name}"]'
    if s.cost_per_query is not None and (
        s.input_per_mtok is not None or s.output_per_mtok is not None
    ):
        raise InputError(f"{here}: set cost_per_query or per-token prices, not both")
    key = None
    if s.api_key_env is not None:
        key = Secret(_env(env, s.api_key_env, f"{here} api_key_env"))
    up = Upstream(
        name=name,
        url=s.base_url + "/chat/completions",
        model_id=s.model or name,
        api_key=key,
        input_per_mtok=s.input_per_mtok or 0.0,
        output_per_mtok=s.output_per_mtok or 0.0,
        cost_per_query=s.cost_per_query,
        expected_output_tokens=s.expected_output_tokens,
        budget_usd=s.budget_usd,
        stream_usage=s.stream_usage,
        proxy=pick_proxy(s.base_url, proxies),
    )
    if s.budget_usd is not None and not up.priced:
        raise InputError(f"{here}: budget_usd needs prices (cost_per_query or per-token prices)")
    return up


def _env(env: Mapping[str, str], var: str, here: str) -> str:
    if not var or not var.replace("_", "a").isalnum():
        raise InputError(f"{here}: {var!r} is not an environment variable name")
    value = env.get(var)
    if value is None or not value.strip():
        raise InputError(f"{here}: environment variable {var} is not set")
    return value.strip()


_ALLOWED: dict[str, type[_Section]] = {
    "routing": RoutingSection,
    "server": ServerSection,
    "auth": AuthSection,
    "llms": LlmSection,
}


def _describe(e: ValidationError) -> str:
    """The first problem of a validation error, as ``[section] key: what is wrong``."""
    err = e.errors(include_url=False, include_input=False)[0]
    loc = [str(p) for p in err["loc"]]
    if not loc:
        return err["msg"]
    if loc[0] == "llms" and len(loc) >= 2:
        section, rest = f'[llms."{loc[1]}"]', loc[2:]
    elif loc[0] in _ALLOWED and len(loc) >= 2:
        section, rest = f"[{loc[0]}]", loc[1:]
    else:
        section, rest = "", loc
    key = ".".join(rest)
    if err["type"] == "extra_forbidden":
        if not section:
            return f"unknown section [{key}] (sections: {', '.join(_ALLOWED)})"
        allowed = ", ".join(_ALLOWED["llms" if loc[0] == "llms" else loc[0]].model_fields)
        return f"{section} {key}: unknown key (allowed: {allowed})"
    msg = err["msg"]
    if err["type"] == "missing":
        msg = "required key missing"
    return f"{section} {key}: {msg}".strip()
