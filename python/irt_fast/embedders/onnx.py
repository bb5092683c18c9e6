"""Transformer sentence embedder served by ONNX Runtime: no torch at inference.

An ONNX embedder directory holds

- ``model.onnx``: inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64
  ``[batch, seq]``), output ``sentence_embedding`` (float32 ``[batch, dim]``): the transformer,
  mean pooling over the attention mask and (when the source model has a Normalize module) L2
  normalisation, all inside the graph;
- ``tokenizer.json``: the HF ``tokenizers`` file of the source model;
- ``irt_fast_embedder.json``: ``{"kind": "onnx", "name", "dim", "normalize", "max_seq_length",
  "quantization": "none" | "int8-dynamic", "source"}``.

Built by :func:`export_onnx` (torch, at build time only) and :func:`quantize_int8`
(onnxruntime dynamic int8 quantisation of the weights); see ``irt-fast models setup``.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from ..errors import EmbedderError
from .base import MARKER, check_texts, marker_kind

KIND = "onnx"


def is_onnx_dir(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return (p / "model.onnx").is_file() and marker_kind(p) == KIND


class OnnxEmbedder:
    """``encode(texts, batch_size)`` -> float32 ``[n, dim]`` with onnxruntime + tokenizers."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        threads: int | None = None,
        sort_by_length: bool = True,
    ) -> None:
        p = Path(path)
        if not p.is_dir():
            raise EmbedderError(f"ONNX embedder directory {p} does not exist")
        try:
            meta = json.loads((p / MARKER).read_text())
        except FileNotFoundError as e:
            raise EmbedderError(f"{p} is not an ONNX embedder: no {MARKER}") from e
        except ValueError as e:
            raise EmbedderError(f"{p / MARKER} is not valid JSON: {e}") from e
        if meta.get("kind") != KIND:
            raise EmbedderError(f"{p / MARKER}: kind is {meta.get('kind')!r}, not {KIND!r}")
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as e:
            raise EmbedderError(
                f"the ONNX embedder needs onnxruntime and tokenizers ({e}); "
                "pip install 'irt_fast[fast]'"
            ) from e
        try:
            self.name: str = str(meta["name"])
            self.dim: int = int(meta["dim"])
            self.normalize: bool = bool(meta["normalize"])
            self.max_seq_length: int = int(meta["max_seq_length"])
        except (KeyError, TypeError, ValueError) as e:
            raise EmbedderError(f"{p / MARKER}: missing or bad key ({e})") from e
        self.quantization: str = str(meta.get("quantization", "none"))
        self.path = p
        try:
            tok = Tokenizer.from_file(str(p / "tokenizer.json"))
        except Exception as e:  # tokenizers raises a bare Exception on bad files
            raise EmbedderError(f"cannot load {p / 'tokenizer.json'}: {e}") from e
        tok.enable_truncation(self.max_seq_length)
        tok.no_padding()
        self._tok = tok
        self._pad_id = int(tok.token_to_id("[PAD]") or 0)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or min(os.cpu_count() or 1, 8)
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._sess = ort.InferenceSession(
                str(p / "model.onnx"), so, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise EmbedderError(f"cannot load {p / 'model.onnx'}: {e}") from e
        self._inputs = {i.name for i in self._sess.get_inputs()}
        out = self._sess.get_outputs()[0]
        if out.shape[-1] != self.dim:
            raise EmbedderError(f"{p}: model output dim {out.shape[-1]} != metadata dim {self.dim}")
        self._sort = sort_by_length

    def __repr__(self) -> str:
        return f"OnnxEmbedder({self.name!r}, dim={self.dim}, quantization={self.quantization!r})"

    def _run(self, encs: list) -> np.ndarray:
        n = len(encs)
        length = max(len(e.ids) for e in encs)
        ids = np.full((n, length), self._pad_id, dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.int64)
        for i, e in enumerate(encs):
            k = len(e.ids)
            ids[i, :k] = e.ids
            mask[i, :k] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return self._sess.run(None, feeds)[0]

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embed ``texts``; rows in input order. Batches are formed after sorting by token
        length (as sentence-transformers does) to minimise padding."""
        check_texts(texts)
        n = len(texts)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        encs = self._tok.encode_batch(list(texts), add_special_tokens=True)
        order = (
            np.argsort([-len(e.ids) for e in encs], kind="stable") if self._sort else np.arange(n)
        )
        bs = max(1, int(batch_size))
        for s in range(0, n, bs):
            idx = order[s : s + bs]
            out[idx] = self._run([encs[i] for i in idx])
        return out


# --------------------------------------------------------------------------------------------
# build (needs torch + transformers; not needed at inference)
# --------------------------------------------------------------------------------------------


def _st_meta(src: Path) -> tuple[int, bool, int]:
    """(dim, normalize, max_seq_length) of a sentence-transformers directory using mean pooling."""
    modules = json.loads((src / "modules.json").read_text())
    types = [m["type"] for m in modules]
    pool = next((m for m in modules if m["type"].endswith("Pooling")), None)
    if pool is None:
        raise EmbedderError(f"{src}: no Pooling module")
    pcfg = json.loads((src / pool["path"] / "config.json").read_text())
    if not pcfg.get("pooling_mode_mean_tokens"):
        raise EmbedderError(f"{src}: only mean pooling is supported for ONNX export")
    if any(not (t.endswith(("Transformer", "Pooling", "Normalize"))) for t in types):
        raise EmbedderError(f"{src}: unsupported modules {types}")
    normalize = any(t.endswith("Normalize") for t in types)
    sb = json.loads((src / "sentence_bert_config.json").read_text())
    return int(pcfg["word_embedding_dimension"]), normalize, int(sb.get("max_seq_length", 256))


def export_onnx(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, name: str, opset: int = 17
) -> Path:
    """Export the sentence-transformers model at ``src`` (transformer + mean pooling +
    normalise) to an ONNX embedder directory ``dst`` (fp32)."""
    import torch
    from transformers import AutoModel

    src, dst = Path(src), Path(dst)
    dim, normalize, max_len = _st_meta(src)
    model = AutoModel.from_pretrained(str(src)).eval()

    class Wrapper(torch.nn.Module):
        def __init__(self, m: torch.nn.Module) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            h = self.m(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            w = attention_mask.unsqueeze(-1).to(h.dtype)
            v = (h * w).sum(1) / w.sum(1).clamp(min=1e-9)
            if normalize:
                v = torch.nn.functional.normalize(v, p=2.0, dim=1)
            return v

    dst.mkdir(parents=True, exist_ok=True)
    ids = torch.randint(1000, 2000, (2, 16), dtype=torch.long)
    mask = torch.ones_like(ids)
    tt = torch.zeros_like(ids)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    # The TorchScript tracer warns about every Python-level shape test in transformers' mask
    # code; the parity test checks that the traced graph is right for every length and batch.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Wrapper(model),
            (ids, mask, tt),
            str(dst / "model.onnx"),
            input_names=names,
            output_names=["sentence_embedding"],
            dynamic_axes={
                **{k: {0: "batch", 1: "seq"} for k in names},
                "sentence_embedding": {0: "batch"},
            },
            opset_version=opset,
            dynamo=False,
        )
    shutil.copy(src / "tokenizer.json", dst / "tokenizer.json")
    meta = {
        "kind": KIND,
        "name": name,
        "dim": dim,
        "normalize": normalize,
        "max_seq_length": max_len,
        "quantization": "none",
        "source": src.name,
    }
    (dst / MARKER).write_text(json.dumps(meta, indent=2))
    return dst


def quantize_int8(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, name: str) -> Path:
    """onnxruntime dynamic int8 quantisation (weights int8, activations quantised at run time)
    of the ONNX embedder at ``src`` into ``dst``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    # Per-channel weight scales on the MatMuls keep cosine to fp32 ~0.993 on MMLU-Pro questions;
    # the per-tensor default drops it to ~0.957.
    quantize_dynamic(
        str(src / "model.onnx"),
        str(dst / "model.onnx"),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
    )
    shutil.copy(src / "tokenizer.json", dst / "tokenizer.json")
    meta = json.loads((src / MARKER).read_text())
    meta.update(name=name, quantization="int8-dynamic", source=meta.get("source"))
    (dst / MARKER).write_text(json.dumps(meta, indent=2))
    return dst
