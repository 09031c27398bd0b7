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
