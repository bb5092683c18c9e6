"""No import circles: in the Python package and training (one graph: training imports irt_fast),
and between the Rust modules of rust/src; and training's three rooms import one way only.

Python edges come from ``import`` / ``from ... import`` statements parsed with ``ast``, at module
level AND inside functions: a function-level import is how a circle hides (one between the
embedder modules went only through function-level imports), and it is still a dependency both ways. Imports under ``if TYPE_CHECKING:`` are left out: they
never run, they only name types. ``from pkg import name`` is an edge to ``pkg.name`` when that is
a module, else to ``pkg``; importing a submodule is not counted as importing its package's
``__init__`` (that would make every package with re-exports a circle).

Rust edges come from ``crate::a::b`` and ``super::a`` paths (in ``use`` lines, brace groups
included, and inline), resolved to the longest existing module; ``#[cfg(test)] mod`` blocks,
comments and ``mod x;`` declarations are not edges (the module tree itself points parent ->
child; relative child paths such as ``irtnet::IrtNet`` inside ``model/mod.rs`` are not counted).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------
# graph helpers


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one node (or a self-loop), as a sorted
    list of names (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            child = next(it, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1 or node in graph.get(node, ()):
                    out.append(sorted(comp))
    return out


def test_find_cycles_finds_and_clears():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"a"}}) == [["a"]]
    assert find_cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


# ----------------------------------------------------------------------------------------------
# Python


def python_modules() -> dict[str, Path]:
    """module name -> file, for python/irt_fast (as irt_fast.*) and training (as training.*)."""
    mods: dict[str, Path] = {}
    for root, prefix in (
        (REPO / "python" / "irt_fast", "irt_fast"),
        (REPO / "training", "training"),
    ):
        for f in root.rglob("*.py"):
            rel = f.relative_to(root).with_suffix("")
            parts = [prefix, *rel.parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = f
        for f in root.rglob("*.pyi"):  # extension modules (irt_fast._core) are modules too
            rel = f.relative_to(root).with_suffix("")
            mods.setdefault(".".join([prefix, *rel.parts]), f)
    return mods


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            t = node.test
            name = t.id if isinstance(t, ast.Name) else getattr(t, "attr", None)
            if name == "TYPE_CHECKING":
                for sub in node.body:
                    skip.update(id(n) for n in ast.walk(sub))
    return skip


def python_imports(name: str, file: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that ``name`` imports (module level and in functions)."""
    tree = ast.parse(file.read_text(), filename=str(file))
    skip = _type_checking_nodes(tree)
    is_pkg = file.name in ("__init__.py", "__init__.pyi")
    out: set[str] = set()

    def add(mod: str) -> None:
        while mod and mod not in modules:  # `import a.b.c` where only a.b is ours
            mod = mod.rpartition(".")[0]
        if mod and mod != name:
            out.add(mod)

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                pkg = ".".join(base + ([node.module] if node.module else []))
            else:
                pkg = node.module or ""
            for alias in node.names:
                sub = f"{pkg}.{alias.name}"
                add(sub if sub in modules else pkg)
    return out


def python_graph() -> dict[str, set[str]]:
    modules = python_modules()
    return {n: python_imports(n, f, modules) for n, f in modules.items()}


def test_python_import_graph_sees_known_edges():
    """The walker finds real edges (so an empty cycle list means something)."""
    g = python_graph()
    assert "irt_fast.embedders.registry" in g["irt_fast.embed"]
    assert "irt_fast.data.assemble" in g["irt_fast.data.embedllm"]
    assert "irt_fast.embedders.st" in g["irt_fast.embedders.registry"]  # function-level
    assert any(d.startswith("irt_fast.") for d in g["training.fit"])  # training -> irt_fast


def test_python_walker_catches_a_function_level_circle(tmp_path):
    a = tmp_path / "a.py"
    b = tmp_path / "b.py"
    a.write_text("import b\n")
    b.write_text("def f():\n    from a import x\n")
    mods = {"a": a, "b": b}
    g = {n: python_imports(n, f, mods) for n, f in mods.items()}
    assert find_cycles(g) == [["a", "b"]]
    b.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from a import x\n")
    g = {n: python_imports(n, f, mods) for n, f in mods.items()}
    assert find_cycles(g) == []


def test_no_python_import_cycles():
    cycles = find_cycles(python_graph())
    assert not cycles, f"import circles (each list is one circle's modules): {cycles}"


# ----------------------------------------------------------------------------------------------
# training's rooms: experiments -> evaluation -> the front, never back up

# bottom to top; a module may import its own room and the rooms below it
ROOMS = ("training", "training.evaluation", "training.experiments")
# the commands that join rooms (training.evaluate hands the studies to the suite): they may
# import every room, and no module may import them
ENTRY_POINTS = {"training.evaluate"}


def room_of(module: str) -> int | None:
    """Index in ``ROOMS`` of a training module's room (None outside training)."""
    if module != "training" and not module.startswith("training."):
        return None
    parts = module.split(".")
    return ROOMS.index(".".join(parts[:2])) if ".".join(parts[:2]) in ROOMS[1:] else 0


def room_violations(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) edges that go up the rooms or into an entry point."""
    bad = []
    for mod, deps in graph.items():
        here = room_of(mod)
        if here is None:
            continue
        for dep in deps:
            there = room_of(dep)
            if dep in ENTRY_POINTS or (
                there is not None and mod not in ENTRY_POINTS and there > here
            ):
                bad.append((mod, dep))
    return sorted(bad)


def test_room_check_catches_an_upward_import():
    g = {
        "training.fit": {"training.evaluation.report"},
        "training.evaluation.report": {"training.experiments.ood", "training.metrics"},
        "training.experiments.ood": {"training.evaluation.plots", "training.loop"},
        "training.evaluate": {"training.experiments.ood"},
        "training.loop": {"training.evaluate"},
    }
    assert room_violations(g) == [
        ("training.evaluation.report", "training.experiments.ood"),
        ("training.fit", "training.evaluation.report"),
        ("training.loop", "training.evaluate"),
    ]


def test_training_rooms_import_one_way():
    g = python_graph()
    for room in ROOMS[1:]:  # each room exists and holds modules, so the check means something
        assert any(m.startswith(room + ".") for m in g), room
    assert "training.evaluation.evaluate" in g["training.evaluate"]
    assert any(d.startswith("training.experiments.") for d in g["training.evaluate"])
    bad = room_violations(g)
    assert not bad, f"imports against the rooms' direction (importer, imported): {bad}"


# ----------------------------------------------------------------------------------------------
# Rust


def rust_modules(src: Path) -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] in ("lib", "main", "mod"):
            parts = parts[:-1]
        mods["::".join(["crate", *parts])] = f
    return mods


def _strip_rust(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    m = re.search(r"#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{", text)
    return text[: m.start()] if m else text


def _expand_use(tree: str) -> list[str]:
    """``a::{b, c::{d, e}}`` -> ``["a::b", "a::c::d", "a::c::e"]``."""
    tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+\w+", "", tree))
    brace = tree.find("{")
    if brace < 0:
        return [re.sub(r"::(\*|self)$", "", tree)]
    head, body = tree[:brace], tree[brace + 1 : tree.rfind("}")]
    items, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    items.append(cur)
    return [p for item in items if item for p in _expand_use(head + item)]


def rust_refs(name: str, file: Path, modules: dict[str, Path]) -> set[str]:
    text = _strip_rust(file.read_text())
    parent = name.split("::")[:-1]  # `super` of crate::m::x (m/x.rs) and of crate::m (m/mod.rs)
    paths: list[str] = []
    for m in re.finditer(r"\buse\s+((?:crate|super)::[^;]+);", text):
        paths += _expand_use(m.group(1))
    paths += re.findall(r"\b((?:crate|super)(?:::\w+)+)", text)
    out: set[str] = set()
    for p in paths:
        segs = p.split("::")
        if segs[0] == "super":
            base = list(parent)
            segs = segs[1:]
            while segs and segs[0] == "super":
                base = base[:-1]
                segs = segs[1:]
            segs = base + segs
        cand = None
        for k in range(len(segs), 0, -1):
            mod = "::".join(segs[:k])
            if mod in modules:
                cand = mod
                break
        if cand and cand != name:
            out.add(cand)
    return out


def rust_graph(src: Path = REPO / "rust" / "src") -> dict[str, set[str]]:
    modules = rust_modules(src)
    return {n: rust_refs(n, f, modules) for n, f in modules.items()}


def test_rust_graph_sees_known_edges():
    if not (REPO / "rust" / "src").is_dir():
        pytest.skip("no rust/src in this checkout")
    g = rust_graph()
    assert "crate::error" in g["crate::weights"]
    assert any(d.startswith("crate::") for d in g["crate::py::engine"])


def test_rust_walker_catches_a_circle(tmp_path):
    src = tmp_path / "rust" / "src"
    (src / "m").mkdir(parents=True)
    (src / "lib.rs").write_text("mod a;\nmod m;\n")
    (src / "a.rs").write_text("use crate::m::{x::Thing as T, Other};\n")
    (src / "m" / "mod.rs").write_text("mod x;\n// use crate::a::Nothing;\n")
    (src / "m" / "x.rs").write_text(
        "pub fn f() -> usize { crate::a::CONST }\n#[cfg(test)]\nmod tests { use super::*; }\n"
    )
    g = rust_graph(src)
    assert g["crate::a"] == {"crate::m::x", "crate::m"}
    assert g["crate::m"] == set()
    assert find_cycles(g) == [["crate::a", "crate::m::x"]]


def test_no_rust_module_cycles():
    if not (REPO / "rust" / "src").is_dir():
        pytest.skip("no rust/src in this checkout")
    cycles = find_cycles(rust_graph())
    assert not cycles, f"module circles in rust/src: {cycles}"
