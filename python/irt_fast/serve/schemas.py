"""Request bodies of the gateway's endpoints (pydantic v2) and the errors they answer with.

As vLLM keeps its OpenAI protocol apart from the serving logic, this module only says what a
well-formed request is; every malformed one becomes an :class:`ApiError` with a 4xx status and
a message that names the field, in OpenAI's error shape ``{"error": {"message", "type",
"param", "code"}}``.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from irt_fast.errors import InputError

#: The ``model`` of a chat completion that asks the gateway to choose.
ROUTER_MODEL = "irt-router"
ROUTE_ON = ("last_user", "conversation")


class ApiError(Exception):
    """An answer other than success: HTTP ``status`` with an OpenAI-shaped error body.

    Args:
        status: the HTTP status.
        message: what is wrong (never a secret, never a prompt).
        kind: the error ``type`` (``invalid_request_error``, ``authentication_error``, ...).
        param: the request field at fault, when one is.
    """

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.status,
            }
        }


def parse_json(raw: bytes) -> Any:
    """A request body as JSON (orjson; Python's json only for what orjson refuses, e.g. a NaN,
    which the input checks then name).

    Args:
        raw: the body.

    Returns:
        The parsed value.

    Raises:
        ApiError: 400 when it is not JSON.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ApiError(400, f"the request body is not valid JSON: {e}") from None


def validate(model: type[BaseModel], data: Any) -> Any:
    """``model.model_validate(data)``.

    Args:
        model: the request schema.
        data: the parsed body.

    Returns:
        The validated request.

    Raises:
        ApiError: 400 naming the first field at fault.
    """
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        raise ApiError(400, f"{where}: {msg}" if where else msg, param=where or None) from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RouteOptions(_Strict):
    """How ``irt-router`` decides (the ``irt`` field of a chat completion, or the options in
    its model string ``irt-router:lam=0.01``)."""

    lam: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    margin: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    candidates: list[str] | None = None
    route_on: Literal["last_user", "conversation"] | None = None


class RouteRequest(_Strict):
    """``POST /v1/route``."""

    texts: list[str] | None = None
    embeddings: list[Any] | None = None
    candidates: list[str] | None = None
    cost: dict[str, float] | list[float] | None = None
    lam: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    margin: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    proba: bool = False


class AccuracyRequest(_Strict):
    """``POST /v1/predict_accuracy``."""

    texts: list[str] | None = None
    embeddings: list[Any] | None = None
    groups: list[str | int] | None = None


class ChatMessage(BaseModel):
    """One message of a chat completion (other OpenAI fields pass through untouched)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``: what the gateway reads; every other OpenAI field is
    forwarded to the upstream as the client sent it."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    irt: RouteOptions | None = None


def model_options(model: str) -> RouteOptions | None:
    """The routing options in a chat ``model`` string, or None when it does not name the router.

    ``irt-router`` → default options; ``irt-router:lam=0.01``,
    ``irt-router:margin=0.02,candidates=a|b,route_on=conversation``.

    Raises:
        ApiError: 400 for an unknown option or a bad value.
    """
    if model != ROUTER_MODEL and not model.startswith(ROUTER_MODEL + ":"):
        return None
    spec = model[len(ROUTER_MODEL) + 1 :]
    raw: dict[str, Any] = {}
    for part in filter(None, spec.split(",")):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq:
            raise ApiError(400, f"model {model!r}: option {part!r} is not key=value", param="model")
        if key == "candidates":
            raw[key] = [c for c in value.split("|") if c]
        elif key in ("lam", "margin"):
            try:
                raw[key] = float(value)
            except ValueError:
                raise ApiError(
                    400, f"model {model!r}: {key} must be a number", param="model"
                ) from None
        else:
            raw[key] = value
    try:
        return RouteOptions.model_validate(raw)
    except ValidationError as e:
        err = e.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
        raise ApiError(400, f"model {model!r}: {where}: {msg}", param="model") from None


def merge_options(a: RouteOptions | None, b: RouteOptions | None) -> RouteOptions:
    """Routing options of a chat completion, from both places they may ride.

    Args:
        a: the model string's options.
        b: the body's ``irt`` field (wins key by key).

    Returns:
        The merged options.
    """
    out: dict[str, Any] = {}
    for opts in (a, b):
        if opts is not None:
            out.update(opts.model_dump(exclude_none=True))
    if out.get("lam") is not None and out.get("margin") is not None:
        raise ApiError(400, "pass lam or margin, not both", param="irt")
    return RouteOptions.model_validate(out)


def input_error(e: InputError | ValueError) -> ApiError:
    """A typed input error as a 400 carrying its message."""
    return ApiError(400, str(e))
