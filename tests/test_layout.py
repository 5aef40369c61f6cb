"""The package's import graph has no circle: data flows one way (ops -> layers -> models -> entry
points), counting imports made inside functions too (a deferred import still ties two modules)."""
import ast
import os

import recbole_lru

PACKAGE = os.path.dirname(os.path.abspath(recbole_lru.__file__))


def _modules() -> dict:
    mods = {}
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
                mods[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return mods


def _targets(mods, module, node):
    """The plugin modules an import statement names (the longest existing prefix of each)."""
    if isinstance(node, ast.ImportFrom):
        package = module if mods[module].endswith("__init__.py") else module.rsplit(".", 1)[0]
        if node.level:
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1]) + (f".{node.module}" if node.module else "")
        else:
            base = node.module or ""
        names = [f"{base}.{a.name}" for a in node.names] + [base]
    else:
        names = [a.name for a in node.names]
    for name in names:
        while name and name not in mods:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        # a package importing its own submodules (its __init__) is not a circle
        if name and name != module and not module.startswith(name + "."):
            yield name


def _import_graph() -> dict:
    mods = _modules()
    graph = {m: set() for m in mods}
    for module, path in mods.items():
        with open(path) as fh:
            tree = ast.parse(fh.read())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[module].update(_targets(mods, module, node))
    return graph


def _cycles(graph) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_sees_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_in_the_package():
    graph = _import_graph()
    assert "recbole_lru.models.lrurec" in graph and "recbole_lru.ops" in graph["recbole_lru.layers.lru"]
    assert _cycles(graph) == []


def test_model_files_import_layers_and_ops_never_the_harness():
    graph = _import_graph()
    for model in ("recbole_lru.models.lrurec", "recbole_lru.models.linrec", "recbole_lru.models.sasrec_ws"):
        assert not {m for m in graph[model] if m.startswith(("recbole_lru.compare", "recbole_lru.serving",
                                                             "recbole_lru.quick_start", "recbole_lru.cli"))}
