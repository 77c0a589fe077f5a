"""The structure docs/architecture.md promises: no import cycle among mentor's modules, no
function over 80 lines, cheap in-package imports at module top, no process-wide tool routing."""

import ast
from pathlib import Path

import mentor

SRC = Path(mentor.__file__).resolve().parent
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = ["mentor", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(encoding="utf-8"), str(p)) for p in SRC.rglob("*.py")}


def _top_level_imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """mentor modules a module imports when it is imported: its top-level imports (including
    those under ``if``/``try``), each with the packages whose ``__init__`` runs on the way
    (except the module's own parent packages: Python has started those before the module)."""
    out: set[str] = set()
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")))}
    package = name if f"{name}.__init__" in known or any(k.startswith(name + ".") for k in known) else name.rsplit(".", 1)[0]

    def add(target: str) -> None:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in known and prefix != name and prefix not in ancestors:
                out.add(prefix)

    def visit(stmts) -> None:
        for node in stmts:
            if isinstance(node, ast.Import):
                for a in node.names:
                    add(a.name)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                add(base)
                for a in node.names:
                    add(f"{base}.{a.name}")
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for h in getattr(node, "handlers", []):
                    visit(h.body)

    visit(tree.body)
    return out


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state.get(nxt) is None and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for n in sorted(graph):
        if state.get(n) is None and (cycle := dfs(n)):
            return cycle
    return None


def test_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_among_mentor_modules():
    modules = _modules()
    known = set(modules)
    graph = {name: _top_level_imports(name, tree, known) for name, tree in modules.items()}
    assert graph["mentor.eval.runner"] >= {"mentor.tasks", "mentor.generation"}  # the graph is real
    assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph))


def test_no_function_longer_than_80_lines():
    long = [
        f"{_module_name(p)}.{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for p in SRC.rglob("*.py")
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long


def test_no_process_wide_tool_routing():
    """Where tool calls go is an Executor passed explicitly, never module state."""
    import mentor.tools as tools
    import mentor.tools.search as search

    for name in ("set_tool_server", "get_tool_server", "set_search_backend", "get_search_backend"):
        assert not hasattr(tools, name) and not hasattr(search, name), name
    assert not hasattr(search, "_BACKEND")
    offenders = [
        f"{_module_name(p)}:{node.lineno}"
        for p in SRC.rglob("*.py")
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, ast.Global)
    ]
    assert not offenders, offenders


def test_trl_reward_adapters_are_picklable_classes():
    """TRL (and multiprocessing data loaders) may pickle reward functions: classes, not closures."""
    import pickle

    from mentor.rewards import TRLReward, trl_reward_funcs
    from mentor.trajectory import Trajectory

    funcs, weights = trl_reward_funcs("mentor")
    assert all(isinstance(f, TRLReward) for f in funcs) and len(funcs) == len(weights)
    for f in funcs:
        g = pickle.loads(pickle.dumps(f))
        assert g.__name__ == f.__name__
    right = {"teacher_answer": ["42"], "teacher_tools": [["multiply"]]}
    completion = [{"role": "assistant", "content": "\\boxed{42}"}]
    correctness = pickle.loads(pickle.dumps(TRLReward("correctness")))
    assert correctness(prompts=[None], completions=[completion], **right) == [1.0]
    assert Trajectory.from_any(completion).final_answer == "42"


def test_cli_modules_import_no_heavy_library():
    """`mentor <command>` starts fast: the command modules (and what they import at top) load
    no torch, transformers, TRL or openai; those load when a model is used."""
    import subprocess
    import sys

    code = (
        "import sys, mentor.cli, mentor.pipeline, mentor.eval, mentor.tasks, mentor.generation, mentor.teacher.factory\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'peft', 'openai', 'datasets') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
