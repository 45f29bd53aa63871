"""The domain library's imports: one way between its modules, and no torch where models only run."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MLOPS = ROOT / "mlops"
TORCH = ("torch", "pytorch_lightning", "lightning")


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def mlops_imports(path: Path) -> set[str]:
    """Return the mlops modules a file imports, at its top or lazily inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mlops.")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mlops."):
            found.add(str(node.module))
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one import cycle of the graph, or None when its imports go one way."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for imported in sorted(graph.get(module, ())):
            cycle = visit(imported, [*path, module])
            if cycle:
                return cycle
        done.add(module)
        return None

    return next((c for m in sorted(graph) if (c := visit(m, []))), None)


def test_modules_of_the_domain_library_import_each_other_one_way() -> None:
    graph = {module_name(p): mlops_imports(p) for p in MLOPS.rglob("*.py")}

    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_find_cycle_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(
    "module", ["mlops.inference.scoring", "mlops.inference.model", "mlops.batch_scoring"]
)
def test_running_a_model_imports_neither_torch_nor_lightning(module: str) -> None:
    code = f"import sys, {module}; print(sorted(set({TORCH!r}) & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )

    assert done.stdout.strip() == "[]", f"importing {module} imports {done.stdout.strip()}"
