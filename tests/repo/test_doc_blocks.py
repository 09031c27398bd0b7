"""Every Python code block of README.md and docs/ runs as written, so a snippet cannot rot.

The blocks of one page run in order in one fresh process (a page may build on its
earlier blocks), in a folder holding the datasets the docs name (`cora.npz`,
`citeseer.npz`, from `../shared/datasets` beside the checkout; pages that need them are
skipped where they are not). A block that needs what CI has not (a GPU,
several machines, a file the reader brings) is marked just above it with
`<!-- doc-test: skip (the reason) -->`; the marker must say why.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import installed, subprocess_env

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT.parent / "shared" / "datasets"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(
    r"(<!-- doc-test: skip \((?P<why>[^)]+)\) -->\n)?```python\n(?P<code>.*?)```", re.S
)
NEEDS = ("torch", "tensorflow", "jax", "keras", "torch_geometric", "matplotlib")


def blocks(page: Path) -> list[tuple[str, str | None]]:
    """`(code, reason to skip or None)` of each Python block of `page`."""
    return [(textwrap.dedent(m["code"]), m["why"]) for m in BLOCK.finditer(page.read_text())]


def test_every_skip_marker_says_why_and_precedes_a_block() -> None:
    for page in PAGES:
        text = page.read_text()
        markers = text.count("<!-- doc-test: skip")
        assert markers == sum(why is not None for _, why in blocks(page)), page.name


RUNNABLE = [p for p in PAGES if any(why is None for _, why in blocks(p))]


@pytest.mark.skipif(
    not all(installed(n) for n in NEEDS), reason="the docs use every framework: parity session"
)
@pytest.mark.parametrize("page", RUNNABLE, ids=[p.name for p in RUNNABLE])
def test_the_python_blocks_of_a_page_run(page: Path, tmp_path: Path) -> None:
    code = "\n\n".join(code for code, why in blocks(page) if why is None)
    work = tmp_path / "work"
    work.mkdir()
    for name in ("cora.npz", "citeseer.npz"):
        if name in code:
            source = DATASETS / name
            if not source.is_file():
                pytest.skip(f"{page.name} reads {name}, not beside the checkout here")
            (work / name).symlink_to(source)
    script = work / f"{page.stem}_blocks.py"
    script.write_text(code)
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=work,
        env=subprocess_env(MPLBACKEND="Agg"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, f"{page.name}:\n{out.stderr[-4000:]}"
