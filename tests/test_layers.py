"""The layers point one way and stay so: trainer <- explorer.engine <- explorer.app/ui; facts the GUI needs import
no torch; no two modules import each other, directly or round a loop."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("trainer", "explorer")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, module_level_only: bool) -> set[str]:
    """Project modules that `path` imports; module level only (not inside functions or `if TYPE_CHECKING:`)
    when asked, which is what a loop at import time is made of."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes: list[ast.AST] = list(tree.body) if module_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.If) and module_level_only and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _graph(module_level_only: bool) -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m in _imports(path, module_level_only) if m in modules and m != name}
            for name, path in modules.items()}  # fmt: skip


def import_loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted.

    >>> import_loops({"a": {"b"}, "b": {"a"}, "c": {"a"}})
    [['a', 'b']]
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    loops: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                loops.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(loops)


def test_no_module_imports_itself_round_a_loop() -> None:
    assert import_loops(_graph(module_level_only=True)) == []  # at import time
    # and counting imports inside functions and type-checking blocks too (the wizard's pages once imported the
    # wizard for its type, and the wizard them: they now know only the `WizardHost` protocol)
    assert import_loops(_graph(module_level_only=False)) == []


def test_trainer_never_imports_explorer() -> None:
    offenders = {name: sorted(m for m in deps if m.startswith("explorer"))
                 for name, deps in _graph(module_level_only=False).items() if name.startswith("trainer")}  # fmt: skip
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize(
    "package", ["explorer/engine", "explorer/app", "explorer/paths.py", "explorer/cli.py", "trainer"]
)
def test_qt_free_layers_import_no_qt(package: str) -> None:
    paths = [ROOT / package] if package.endswith(".py") else sorted((ROOT / package).rglob("*.py"))
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] in ("PySide6", "pyqtgraph")], path


TORCH_FREE = """
import sys
import explorer.engine.session, explorer.paths, explorer.cli
import trainer.card, trainer.config, trainer.folders, trainer.recipe, trainer.estimate, trainer.backbone_specs
import explorer.app.analysis, explorer.app.export, explorer.app.fine_tune
from trainer.card import load_card
from trainer.paths import BUNDLED_MODEL
load_card(BUNDLED_MODEL)
print("torch" in sys.modules)
"""


def test_the_facts_the_gui_needs_and_the_engine_import_without_torch() -> None:
    done = subprocess.run([sys.executable, "-c", TORCH_FREE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_explorer_info_answers_without_loading_torch(tmp_path: Path) -> None:
    code = (
        "import sys; from explorer.cli import main; code = main(['info', sys.argv[1]]); "
        "print(code, 'torch' in sys.modules)"
    )
    env = {"RETRIEVAL_EXPLORER_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "0 False"
