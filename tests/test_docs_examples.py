"""The examples in README.md and docs/*.md run, so an example that breaks fails the suite.

Every fenced ``python`` and ``bash`` block is one test, in page order:
- the ``python`` blocks of one page share one namespace (a page reads as one session);
- a ``bash`` block runs in ``bash -eu`` with this checkout's interpreter standing in for
  ``python`` and ``irt-fast`` (the console script may belong to another install);
- a block preceded by the line ``<!-- docs-test: skip (reason) -->`` is skipped with that reason
  (long commands: training on the shared data, make targets, servers).
Blocks run in one temporary working directory holding the demo model at
``runs/demo/model.safetensors``, trained once per session by the README's own command
(``python -m training.fit --demo --out runs/demo``). docs/results/ (generated reports) is not
collected.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
LANGS = ("python", "bash")
_FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
_SKIP = re.compile(r"^\s*<!--\s*docs-test:\s*skip\s*\((.+)\)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced example: where it is, its language, its code and why it is skipped (if so)."""

    page: str
    line: int
    lang: str
    code: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}:{self.lang}"


def parse(text: str, page: str) -> list[Block]:
    """The ``python`` and ``bash`` blocks of a markdown text, in order.

    Args:
        text: the page's markdown.
        page: its name, for the test ids and tracebacks.

    Returns:
        The blocks; the skip marker counts only on the last non-blank line before the fence.
    """
    out: list[Block] = []
    lines = text.splitlines()
    i, prev = 0, ""
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            if lines[i].strip():
                prev = lines[i]
            i += 1
            continue
        indent, lang, start = len(m.group(1)), m.group(2).lower(), i + 1
        j = start
        while j < len(lines) and not _FENCE.match(lines[j]):
            j += 1
        if j == len(lines):
            raise ValueError(f"{page}:{i + 1}: a code fence is never closed")
        if lang in LANGS:
            code = "\n".join(ln[indent:] for ln in lines[start:j])
            skip = _SKIP.match(prev)
            out.append(Block(page, i + 1, lang, code, skip.group(1) if skip else None))
        prev, i = "", j + 1
    return out


def pages() -> list[Path]:
    """README.md and the docs pages a user reads (not the generated docs/results/)."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def all_blocks() -> list[Block]:
    return [b for p in pages() for b in parse(p.read_text(), str(p.relative_to(REPO)))]


def shell_command(code: str) -> str:
    """``code`` with ``python``/``python3`` and ``irt-fast`` pointing at this interpreter."""
    py = sys.executable
    code = re.sub(r"(^|[\s;&|(])python3?(?=\s)", rf"\g<1>{py}", code, flags=re.M)
    return re.sub(r"(^|[\s;&|(])irt-fast(?=\s|$)", rf"\g<1>{py} -m irt_fast", code, flags=re.M)


def run_block(block: Block, namespace: dict[str, Any], cwd: Path, timeout: float = 120) -> None:
    """Run one block in ``cwd`` (python: in ``namespace``); raises when the example fails."""
    if block.lang == "python":
        exec(compile(block.code, block.id, "exec"), namespace)  # noqa: S102 - the docs' own code
        return
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "python"), str(REPO)]),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    cmd = ["bash", "-euc", shell_command(block.code)]
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(
            f"{block.id} exited {r.returncode}\n--- stdout\n{r.stdout[-2000:]}\n"
            f"--- stderr\n{r.stderr[-3000:]}"
        )


# ----------------------------------------------------------------------------------------------
# the collector itself


def test_parse_finds_blocks_skip_markers_and_languages():
    text = (
        "# t\n\n```python\nx = 1\n```\n\n<!-- docs-test: skip (needs a server) -->\n"
        "```bash\ncurl localhost\n```\n\n```json\n{}\n```\n- item\n  ```python\n  y = x\n  ```\n"
    )
    got = parse(text, "p.md")
    assert [(b.line, b.lang, b.code, b.skip) for b in got] == [
        (3, "python", "x = 1", None),
        (8, "bash", "curl localhost", "needs a server"),
        (16, "python", "y = x", None),
    ]
    with pytest.raises(ValueError, match="never closed"):
        parse("```python\nx = 1\n", "p.md")


def test_a_broken_example_fails(tmp_path):
    ns: dict[str, Any] = {}
    run_block(Block("p.md", 1, "python", "import irt_fast\nz = 2", None), ns, tmp_path)
    assert ns["z"] == 2
    with pytest.raises(ZeroDivisionError):
        run_block(Block("p.md", 5, "python", "z / 0", None), ns, tmp_path)
    with pytest.raises(AssertionError, match="exited 3"):
        run_block(Block("p.md", 9, "bash", "echo ok\nexit 3", None), ns, tmp_path)


def test_shell_command_uses_this_interpreter():
    cmd = shell_command("python -m training.fit --demo\nirt-fast models path x && python3 -V")
    assert cmd.splitlines() == [
        f"{sys.executable} -m training.fit --demo",
        f"{sys.executable} -m irt_fast models path x && {sys.executable} -V",
    ]
    assert shell_command("pip install 'irt_fast[serve]'") == "pip install 'irt_fast[serve]'"


# ----------------------------------------------------------------------------------------------
# the pages


@pytest.fixture(scope="session")
def docs_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory with runs/demo/model.safetensors, made by the README's command."""
    torch = pytest.importorskip("torch")
    from training.fit import main as fit_main

    work = tmp_path_factory.mktemp("docs")
    cwd, threads = os.getcwd(), torch.get_num_threads()
    os.chdir(work)
    torch.set_num_threads(1)  # a small model: more threads only wait on each other
    try:
        assert fit_main(["--demo", "--out", "runs/demo", "--quiet"]) == 0
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    return work


@pytest.fixture(scope="session")
def namespaces() -> dict[str, dict[str, Any]]:
    """One namespace per page, shared by its python blocks."""
    return {}


@pytest.mark.parametrize("block", all_blocks(), ids=lambda b: b.id)
def test_doc_example(
    block: Block,
    docs_workdir: Path,
    namespaces: dict[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if block.skip:
        pytest.skip(block.skip)
    monkeypatch.chdir(docs_workdir)
    ns = namespaces.setdefault(block.page, {"__name__": f"docs:{block.page}"})
    run_block(block, ns, docs_workdir)
