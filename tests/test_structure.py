"""Package structure: no import cycles between modules, cheap CLI start-up."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import emu_dgl

PACKAGE = Path(emu_dgl.__file__).parent


def _module_imports() -> dict[str, set[str]]:
    """module -> emu_dgl modules it imports at module level (TYPE_CHECKING blocks excluded)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        deps: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("emu_dgl"):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("emu_dgl"))
        graph[name] = deps
    return graph


def test_no_module_level_import_cycle_outside_package_inits() -> None:
    graph = _module_imports()
    # A package __init__ re-exports its children, so edges into an __init__ are not followed.
    packages = {p for p in graph if (PACKAGE.parent / p.replace(".", "/") / "__init__.py").exists()}
    edges = {m: {d for d in deps if d in graph and d not in packages} for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in edges[node]:
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack, node, dep]))
            if dep not in state:
                visit(dep, [*stack, node])
        state[node] = 2

    for module in edges:
        if module not in state:
            visit(module, [])


def test_filtering_does_not_import_the_samplers_it_wraps() -> None:
    graph = _module_imports()
    assert "emu_dgl.sampling.negatives" not in graph["emu_dgl.sampling.filtering"]
    assert "emu_dgl.sampling.base" in graph["emu_dgl.sampling.filtering"]


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    return {m.split(".")[0] for m in out}


def test_help_and_datasets_list_do_not_import_torch_dgl_or_pandas() -> None:
    code = (
        "from click.testing import CliRunner\n"
        "from emu_dgl.cli import main\n"
        "for args in (['--help'], ['datasets', 'list'], ['train', '--help'], ['tune', '--help']):\n"
        "    result = CliRunner().invoke(main, args)\n"
        "    assert result.exit_code == 0, result.output\n"
    )
    loaded = _loaded_after(code)
    assert not loaded & {"torch", "dgl", "pandas"}, loaded & {"torch", "dgl", "pandas"}


def test_lazy_public_api_still_resolves() -> None:
    loaded = _loaded_after("import emu_dgl")
    assert "torch" not in loaded
    from emu_dgl import KGEModel, KnowledgeGraph, load_dataset

    assert KnowledgeGraph.__name__ == "KnowledgeGraph" and callable(load_dataset) and KGEModel
