"""The repository's promises: the README's commands are CI's, the modules form the layers
of docs/architecture.md (no cycles, no import upwards), the core imports no framework,
no module outgrows one idea, and every public submodule is reachable from `dmon`."""

from __future__ import annotations

import ast
import fnmatch
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The layers of docs/architecture.md, lowest first: a module may import its own layer and
# the ones below. `*` stands for any framework's folder of backends/.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "leaves",
        (
            "dmon.version",
            "dmon.constants",
            "dmon.environment",
            "dmon.checks",
            "dmon.files",
            "dmon.memory",
            "dmon.sparse_graph",
            # the package files, which import nothing
            "dmon.backends",
            "dmon.backends.numpy",
            "dmon.backends.jax",
            "dmon.backends.tensorflow",
            "dmon.backends.torch",
        ),
    ),
    (
        "array ops",
        (
            "dmon.ops",
            "dmon.backends.array_api",
            "dmon.backends.*.ops",
            "dmon.backends.*.csr",
            "dmon.backends.torch.functions",
            "dmon.backends.jax.pytree",
        ),
    ),
    (
        "math",
        (
            "dmon.value_checking",
            "dmon.validation",
            "dmon.dispatch",
            "dmon.sparse",
            "dmon.node_sums",
            "dmon.objective",
            "dmon.pooling",
            "dmon.adjacency",
        ),
    ),
    (
        "sharding",
        (
            "dmon.partition",
            "dmon.partitioners",
            "dmon.halo",
            "dmon.distributed",
            "dmon.backends.*.collectives",
            "dmon.backends.torch.collective_functions",
        ),
    ),
    ("data", ("dmon.data", "dmon.data.*", "dmon.metrics", "dmon.checkpoint", "dmon.plots")),
    ("training", ("dmon.training", "dmon.training.*", "dmon.backends.*.engine")),
    (
        "layers and parity",
        (
            "dmon.layers",
            "dmon.layers.*",
            "dmon.parity",
            "dmon.parity.*",
            "dmon.backends.*.hooks",
            "dmon.backends.torch.counting",
        ),
    ),
    (
        "entry points",
        ("dmon", "dmon.__main__", "dmon.cli", "dmon.cli.*"),
    ),
]
FRAMEWORKS = ("torch", "tensorflow", "jax", "jaxlib", "keras")
# The core's framework imports (docs/architecture.md): the initial values Keras' layers
# draw, and the parity worker, which runs a Keras model.
CORE_FRAMEWORK_IMPORTS = {("dmon.training.model", "keras"), ("dmon.parity.worker", "keras")}
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    found = {
        f"dmon.{p.relative_to(ROOT / 'dmon').with_suffix('')}".replace("/", "."): p
        for p in (ROOT / "dmon").rglob("*.py")
    }
    found.update(
        {
            f"dmon.backends.{p.relative_to(ROOT / 'backends').with_suffix('')}".replace("/", "."): p
            for p in (ROOT / "backends").rglob("*.py")
        }
    )
    return {k.removesuffix(".__init__"): v for k, v in found.items()}


def _imports(path: Path) -> set[str]:
    """Every module named by an import statement, at any depth (function-level too)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def _layer(module: str) -> int:
    matches = [
        i for i, (_, names) in enumerate(LAYERS) for n in names if fnmatch.fnmatchcase(module, n)
    ]
    assert matches, f"{module} is in no layer of docs/architecture.md"
    return min(matches)


MODULES = _modules()
GRAPH = {
    name: {t for t in _imports(path) if t in MODULES and t not in (name, "dmon")}
    for name, path in MODULES.items()
}


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
    """No module imports (at any depth, function-level imports included) one that
    imports it back."""

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for dep in GRAPH[node]:
                if dep == start:
                    return [*path, start]
                if dep not in path:
                    stack.append((dep, [*path, dep]))
        return None

    cycles = [c for c in map(cycle_from, sorted(GRAPH)) if c]
    assert not cycles, cycles[0]


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{name} ({LAYERS[_layer(name)][0]}) imports {dep} ({LAYERS[_layer(dep)][0]})"
        for name, deps in sorted(GRAPH.items())
        for dep in sorted(deps)
        if _layer(dep) > _layer(name)
    ]
    assert not upward, upward


def test_the_core_imports_no_framework() -> None:
    """Outside `dmon/layers/` and `backends/`, only the named exceptions import a
    framework; and no core module imports a backend's module by name (the engines and
    hooks load them with importlib), except the registry, `dmon.ops`, each framework's
    ops by an import statement (which `torch.compile` can trace)."""
    found = set()
    for name, path in MODULES.items():
        if name.startswith(("dmon.layers", "dmon.backends")):
            continue
        for target in _imports(path):
            top = target.split(".")[0]
            if top in FRAMEWORKS:
                found.add((name, top))
            if name == "dmon.ops" and target.endswith(".ops"):
                continue
            assert not target.startswith("dmon.backends"), (name, target)
    assert found == CORE_FRAMEWORK_IMPORTS, found ^ CORE_FRAMEWORK_IMPORTS


def test_every_backend_folder_mirrors_the_others() -> None:
    """Each framework's folder has its ops and test hooks; the ones that train have an
    engine and their collectives."""
    for name in ("numpy", "torch", "tensorflow", "jax"):
        have = {p.stem for p in (ROOT / "backends" / name).glob("*.py")}
        assert {"__init__", "ops", "hooks"} <= have, name
        if name != "numpy":
            assert {"engine", "collectives"} <= have, name


def test_no_module_outgrows_one_idea() -> None:
    """Every module, of the package (dmon/, backends/) and of its tests, benchmarks and
    examples, stays under `MAX_LINES`."""
    sources = [*MODULES.values()] + [
        p for folder in ("tests", "benchmarks", "examples") for p in (ROOT / folder).rglob("*.py")
    ]
    long = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p in sources
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    ]
    assert not long, long


@pytest.mark.parametrize("name", __import__("dmon").SUBMODULES)
def test_every_public_submodule_is_reachable_from_dmon(name: str) -> None:
    """`import dmon; dmon.<name>` works for every public submodule, without importing a
    framework first (`dmon.layers` imports none until its framework's module)."""
    if name == "plots":
        pytest.importorskip("matplotlib")
    code = (
        "import sys, dmon\n"
        f"module = getattr(dmon, {name!r})\n"
        f"assert module.__name__ == 'dmon.{name}', module\n"
        f"assert {name!r} in dir(dmon) and {name!r} in dmon.__all__\n"
        f"assert not {{'torch', 'tensorflow', 'jax', 'keras'}} & set(sys.modules), sorted(sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
