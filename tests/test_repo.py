"""The README's commands are the ones CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command() -> None:
    ci = [
        ln
        for ln in (ROOT / ".ci" / "run").read_text().splitlines()
        if ln and not ln.startswith(("#", "set ", "cd ", "df "))
    ]
    assert len(ci) == 1
    assert f"```bash\n{ci[0]}\n```" in (ROOT / "README.md").read_text()


def test_readme_main_job_is_dmon_cluster() -> None:
    readme = (ROOT / "README.md").read_text()
    assert '.venv/bin/pip install -e ".[jax,cluster]" && .venv/bin/dmon cluster\n' in readme


def test_dmon_modules_import_without_cycles() -> None:
    """The modules form layers: no module imports (at any depth, function-level imports
    included) one that imports it back. Backends count as `dmon.backends.<name>`."""
    import ast

    files = {
        f"dmon.{p.relative_to(ROOT / 'dmon').with_suffix('')}".replace("/", "."): p
        for p in (ROOT / "dmon").rglob("*.py")
    }
    files.update({f"dmon.backends.{p.stem}": p for p in (ROOT / "backends").glob("*.py")})
    files = {k.removesuffix(".__init__"): v for k, v in files.items()}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in files and t != name and t != "dmon"}
        graph[name] = deps

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for dep in graph[node]:
                if dep == start:
                    return [*path, start]
                if dep not in path:
                    stack.append((dep, [*path, dep]))
        return None

    cycles = [c for c in map(cycle_from, sorted(graph)) if c]
    assert not cycles, cycles[0]
