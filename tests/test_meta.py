"""What the tree promises about itself: layers that only point down, kernels a reader can
follow, and documentation that links every implementation of every type.

  - no import cycle between pyggml's subpackages, counting imports inside functions
    (each top-level module, errors.py say, is a node of its own);
  - continuation lines (multi-line macros) stay under 10% of each C, CUDA and header file
    in kernels/;
  - docs/quant-formats.md has one row per weight type of the registry, linking its
    reference decode, numba kernels, C reference, C SIMD and CUDA code: each a link whose
    text is a name defined in the file it points to (the plain numbers I8 .. F64, which
    have no product, only the reference and numba ones).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pyggml"
KERNELS = ROOT / "kernels"
QUANT_DOC = ROOT / "docs" / "quant-formats.md"

MAX_CONTINUATION_FRACTION = 0.10


# ----------------------------------------------------------------------------- imports

def _node_of(module: str) -> str | None:
    """pyggml.model.forward -> 'model'; pyggml.errors -> 'errors'; None for other packages
    and for names that are no module (``from pyggml import open``)."""
    parts = module.split(".")
    if parts[0] != "pyggml" or len(parts) < 2:
        return None
    node = parts[1]
    return node if (PACKAGE / node).is_dir() or (PACKAGE / f"{node}.py").is_file() else None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module path.py imports, at any depth of its code (absolute names)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # "from . import cpu_c" imports a module, not a name
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """subpackage or top-level module -> those it imports (pyggml/__init__.py, the public
    face above everything, is left out)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        source = _node_of(_module_name(path))
        if source is None:
            continue
        targets = {_node_of(module) for module in _imports(path)} - {None, source}
        graph.setdefault(source, set()).update(targets)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}               # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_subpackages():
    graph = import_graph()
    assert {"format", "quants", "model", "backends", "cli"} <= graph.keys()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# ----------------------------------------------------------------------------- kernels

KERNEL_SOURCES = sorted(p for ext in ("*.c", "*.h", "*.cu") for p in KERNELS.glob(ext))


@pytest.mark.parametrize("path", KERNEL_SOURCES, ids=lambda p: p.name)
def test_few_continuation_lines(path):
    lines = path.read_text().splitlines()
    continued = sum(line.rstrip().endswith("\\") for line in lines)
    assert continued <= MAX_CONTINUATION_FRACTION * len(lines), \
        f"{path.name}: {continued} of {len(lines)} lines are macro continuations"


# ----------------------------------------------------------------------------- docs

LAYERS = ["reference", "numba", "C reference", "C SIMD", "CUDA"]
_LINK = re.compile(r"\[`?([A-Za-z_][A-Za-z0-9_.]*)`?\]\(([^)#]+)\)")


def implementation_table() -> dict[str, dict[str, list[tuple[str, Path]]]]:
    """type name -> layer -> [(name, file)] from the table under '## Where each type lives'."""
    text = QUANT_DOC.read_text()
    section = text.split("## Where each type lives", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert header == ["type"] + LAYERS, header
    table = {}
    for row in rows[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        for type_name in re.split(r",\s*", cells[0].strip("`")):
            table[type_name] = {layer: [(name, (QUANT_DOC.parent / target).resolve())
                                        for name, target in _LINK.findall(cell)]
                                for layer, cell in zip(LAYERS, cells[1:])}
    return table


def _defines(path: Path, name: str) -> bool:
    """Whether the file defines name: a Python def/class, or a C/CUDA function or macro."""
    text = path.read_text()
    short = name.rsplit(".", 1)[-1]                  # Q4_K.dequantize_blocks -> the method
    if path.suffix == ".py":
        return re.search(rf"^\s*(def|class)\s+{re.escape(short)}\b", text, re.M) is not None
    return re.search(rf"\b{re.escape(short)}\s*\(", text) is not None or \
        re.search(rf"#define\s+{re.escape(short)}\b", text) is not None


def test_every_type_links_each_implementation():
    from pyggml.quants import TYPES
    table = implementation_table()
    missing = [t.name for t in TYPES if t.name not in table]
    assert not missing, f"no row in docs/quant-formats.md for {missing}"
    no_product = {t.name for t in TYPES.values() if t.vec_dot_type is None}
    for type_name, layers in table.items():
        for layer, links in layers.items():
            assert links or (type_name in no_product and layer not in ("reference", "numba")), \
                f"{type_name}: no link for the {layer} code"
            for name, path in links:
                assert path.is_file(), f"{type_name} {layer}: {path} does not exist"
                assert _defines(path, name), f"{type_name} {layer}: {path.name} defines no {name}"
