"""Package structure: no import cycles between modules, cheap CLI start-up."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import emu_dgl

PACKAGE = Path(emu_dgl.__file__).parent


#: The layers of the package, bottom first. A module may import (at module level or
#: inside a function) modules of lower layers, and of its own package; never a layer
#: above it, nor a sibling package of its own layer.
LAYERS: list[tuple[str, ...]] = [
    ("emu_dgl.errors", "emu_dgl.typing"),
    ("emu_dgl.anchors",),  # folders resolved once, reached through their descriptors
    # small shared pieces; files: safe reading and writing for data/ and training/ alike
    ("emu_dgl.registry", "emu_dgl._dgl", "emu_dgl.device", "emu_dgl.files"),
    ("emu_dgl.config",),  # types and ranges of a run's settings
    ("emu_dgl.data",),  # knowledge graphs, files, catalogue
    # decoders and mutations, losses and regularisers, neighbourhoods, ranks, trackers
    ("emu_dgl.graph", "emu_dgl.models", "emu_dgl.losses", "emu_dgl.evaluation", "emu_dgl.tracking"),
    ("emu_dgl.sampling",),  # negatives: builds on graph neighbourhoods
    ("emu_dgl.training",),  # build.py wires the pieces; the step and the loop
    ("emu_dgl.distributed",),
    ("emu_dgl.experiments",),  # compare, tune
    ("emu_dgl.cli",),
    ("emu_dgl", "emu_dgl.__main__", "emu_dgl.dgl"),  # the public face: lazy re-exports
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def _module_imports(*, function_level: bool = True) -> dict[str, set[str]]:
    """module -> emu_dgl modules it imports (``from x import y`` counts ``x`` and, when it is
    a module, ``x.y``); with ``function_level`` imports inside functions count too.
    ``if TYPE_CHECKING:`` blocks never count."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        skipped: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped.update(id(sub) for sub in ast.walk(node))
        nodes = ast.walk(tree) if function_level else iter(tree.body)
        deps: set[str] = set()
        for node in nodes:
            if id(node) in skipped:
                continue
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("emu_dgl")
            ):
                deps.add(node.module)
                deps.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("emu_dgl"))
        graph[_module_name(path)] = deps
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def _layer(module: str) -> tuple[int, str]:
    """(layer index, the layer entry the module belongs to) by longest matching prefix."""
    best: tuple[int, str] | None = None
    for index, entries in enumerate(LAYERS):
        for entry in entries:
            if (module == entry or module.startswith(entry + ".")) and (
                best is None or len(entry) > len(best[1])
            ):
                best = (index, entry)
    assert best is not None, f"{module} is in no layer of LAYERS; add it"
    return best


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(edges[node]):
            if state.get(dep) == 1:
                return [*stack, node, dep]
            if dep not in state and (found := visit(dep, [*stack, node])):
                return found
        state[node] = 2
        return None

    for module in sorted(edges):
        if module not in state and (found := visit(module, [])):
            return found
    return None


def test_every_import_goes_down_the_layers() -> None:
    problems = []
    for module, deps in sorted(_module_imports().items()):
        level, owner = _layer(module)
        for dep in sorted(deps):
            dep_level, dep_owner = _layer(dep)
            if dep_level > level or (dep_level == level and dep_owner != owner):
                problems.append(f"{module} imports {dep}")
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


def test_no_import_cycle_even_through_imports_inside_functions() -> None:
    cycle = _find_cycle(_module_imports())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_config_is_a_leaf_and_building_happens_in_one_place() -> None:
    graph = _module_imports()
    config = {m for m in graph if m == "emu_dgl.config" or m.startswith("emu_dgl.config.")}
    for module in config:  # the config reaches components only through their registries
        assert graph[module] <= {"emu_dgl.errors", "emu_dgl.registry", "emu_dgl.files", *config}
    builders = {
        m
        for m, deps in graph.items()
        if "emu_dgl.models" in deps and m.startswith("emu_dgl.training")
    }
    assert builders <= {"emu_dgl.training.build", "emu_dgl.training.memory"}, builders
    assert not any(
        m.startswith("emu_dgl.sampling.mutation") for m in graph
    )  # EMU lives with the models


def test_architecture_checks_can_fail() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _layer("emu_dgl.training.trainer")[0] > _layer("emu_dgl.config")[0]


def test_filtering_does_not_import_the_samplers_it_wraps() -> None:
    graph = _module_imports()
    assert "emu_dgl.sampling.negatives" not in graph["emu_dgl.sampling.filtering"]
    assert "emu_dgl.sampling.base" in graph["emu_dgl.sampling.filtering"]


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    # 'dgl.graphbolt' alone is the stand-in emu_dgl._dgl registers (DGL itself not imported)
    return {m.split(".")[0] for m in out if m != "dgl.graphbolt"}


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
