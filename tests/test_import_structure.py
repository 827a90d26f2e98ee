"""The package's import structure: nothing below `cli/` imports it, and no two modules import each other
(directly or through a chain), counting imports inside functions too (only `if TYPE_CHECKING:` blocks are
left out). A circle or a library module reaching up into the command line fails here with the modules named."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
                node.body = []
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = name.split(".") if is_package else name.split(".")[:-1]
                if node.level:
                    base = base[: len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                candidates = [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in modules else prefix
                              for alias in node.names]
            else:
                continue
            for target in candidates:
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in modules and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def test_nothing_below_cli_imports_it():
    graph = _import_graph()
    offenders = {m: sorted(t for t in targets if t.startswith("hf_vlmdrive.cli"))
                 for m, targets in graph.items() if not m.startswith("hf_vlmdrive.cli")}
    offenders = {m: t for m, t in offenders.items() if t}
    assert not offenders, f"modules outside cli/ that import it: {offenders}"


def test_no_import_circles():
    graph = _import_graph()

    def related(a: str, b: str) -> bool:  # a package and its own submodules import each other by design
        return a.startswith(b + ".") or b.startswith(a + ".")

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if related(v, w):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    assert not circles, f"import circles: {circles}"


def test_the_graph_sees_imports():  # the checks above would pass on an empty graph
    graph = _import_graph()
    assert "hf_vlmdrive.arguments" in graph["hf_vlmdrive.trainers.waypoint_config"]
    assert "hf_vlmdrive.arguments" in graph["hf_vlmdrive.cli.waypoint"]
    assert len(graph) > 100
