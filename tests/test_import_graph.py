"""The package's import graph (every import statement, lazy ones included, read with ast): the library never
imports the synthetic worlds, and no module imports itself through others."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "align_lens"
WORLDS = "align_lens.worlds"
SERVES_A_WORLD = {"align_lens.cli.world", "align_lens.cli.two_hop"}  # the commands of the worlds


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Module → the align_lens modules it imports (`from P import m` counts as m when m is a module)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                source = ".".join(base + ([node.module] if node.module else []))
                targets |= {f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names}
        graph[name] = {t for t in targets if t.split(".")[0] == "align_lens"}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while not component or w != v:
                w = stack.pop()
                component.add(w)
            if len(component) > 1:
                found.append(component)

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_graph_reads_imports_of_every_kind():
    graph = import_graph()
    assert "align_lens.adapter.hook_points" in graph["align_lens.adapter"]  # from-import at the top
    assert "align_lens.cli.world" in graph["align_lens.cli.pipeline"]  # a lazy import inside a function
    assert "align_lens.ontology_files" in graph["align_lens.ontology"]  # `from align_lens import module`
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_the_library_never_imports_a_world():
    arrows = [
        f"{source} → {target}"
        for source, targets in import_graph().items()
        if not source.startswith(WORLDS) and source not in SERVES_A_WORLD
        for target in targets
        if target.startswith(WORLDS)
    ]
    assert not arrows, f"the library imports the worlds: {arrows}; move the code under worlds/"


def test_no_import_cycle():
    unknown = cycles(import_graph())
    assert not unknown, f"import cycles: {unknown}"


def test_importing_the_package_and_the_pipeline_commands_loads_no_world():
    code = (
        "import sys, align_lens, align_lens.cli.pipeline\n"
        f"print(sorted(m for m in sys.modules if m.startswith('{WORLDS}')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
