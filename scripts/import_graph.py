"""Print the import graph of microcalcai, statically (ast: nothing is imported, nothing heavy loads).

    python scripts/import_graph.py [SRC]            # between subpackages: `models -> data, io`
    python scripts/import_graph.py [SRC] --modules  # between modules, with every import cycle

Top-level modules (microcalcai/roi.py) count as nodes of their own; imports of the Slicer
Logic package show as `microcalcai_logic`. Imports inside functions count too: a lazy import
is still a dependency.
"""

import ast
import sys
from pathlib import Path


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(root: Path, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(root, path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            # `from microcalcai.models import artifact` imports a module, not only a package.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def node_of(modules: set[str], name: str, by_module: bool) -> str | None:
    if name.split(".")[0] == "microcalcai_logic":
        return "microcalcai_logic"
    if name.split(".")[0] != "microcalcai":
        return None
    while name and name not in modules:
        name = name.rpartition(".")[0]
    if by_module or not name:
        return name or None
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "microcalcai"


def graph(root: Path, by_module: bool) -> dict[str, set[str]]:
    paths = sorted((root / "microcalcai").rglob("*.py"))
    modules = {module_name(root, path) for path in paths}
    edges: dict[str, set[str]] = {}
    for path in paths:
        source = node_of(modules, module_name(root, path), by_module)
        targets = edges.setdefault(source, set())
        for imported in imports_of(root, path):
            target = node_of(modules, imported, by_module)
            if target and target != source and not (by_module and source.startswith(target + ".")):
                targets.add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan): each is a set of nodes
    that import one another round a circle."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def main() -> None:
    args = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    by_module = "--modules" in sys.argv
    edges = graph(Path(args[0] if args else "src"), by_module)
    if not by_module:
        for source in sorted(edges):
            print(f"{source} -> {', '.join(sorted(edges[source])) or '-'}")
    found = cycles(edges)
    print(f"cycles: {len(found)}")
    for component in found:
        print("  " + " <-> ".join(component))


if __name__ == "__main__":
    main()
