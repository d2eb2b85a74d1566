"""The package's import structure: no cycles, and the layers the README's layout section describes."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "dtrl_jax"


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every dtrl_jax module -> the dtrl_jax modules it imports anywhere (function-local imports too)."""
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dtrl_jax"):
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("dtrl_jax")}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_no_import_cycles():
    graph, state, cycles = _imports(), {}, []

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_core_imports_nothing_built_on_it():
    graph = _imports()
    upper = ("dtrl_jax.experiment", "dtrl_jax.population", "dtrl_jax.async_qlearning", "dtrl_jax.distributed")
    core = [m for m in graph if m != "dtrl_jax" and not m.startswith(upper)]
    assert len(core) > 20
    bad = {m: sorted(d for d in graph[m] if d.startswith(upper)) for m in core}
    assert {m: d for m, d in bad.items() if d} == {}
    # environments and agents know nothing of each other, of the twin or of the loop
    for low, forbidden in (("dtrl_jax.envs", ("dtrl_jax.agents", "dtrl_jax.twin", "dtrl_jax.train")),
                           ("dtrl_jax.agents", ("dtrl_jax.envs", "dtrl_jax.twin", "dtrl_jax.train"))):
        for m in graph:
            if m.startswith(low):
                assert not [d for d in graph[m] if d.startswith(forbidden)], m
