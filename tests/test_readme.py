"""The README's "Extending iapo" examples are real: each is at most 40 lines and passes its
conformance suite when run as a test module of its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def readme_block(name: str) -> str:
    """The ```python block right after ``<!-- readme-test: NAME -->`` in the README."""
    text = README.read_text()
    m = re.search(rf"<!-- readme-test: {name} -->\s*```python\n(.*?)```", text, re.S)
    assert m, f"no block marked {name} in README.md"
    return m.group(1)


def test_extending_examples_are_short_and_pass_their_suites(tmp_path: Path) -> None:
    blocks = {name: readme_block(name) for name in ("new-algorithm", "new-backend")}
    for name, code in blocks.items():
        assert len(code.strip().splitlines()) <= 40, name
        (tmp_path / f"test_readme_{name.replace('-', '_')}.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    # a process of its own: the example registers an algorithm in the global registry
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    passed = re.search(r"(\d+) passed", out.stdout)
    assert passed and int(passed.group(1)) >= 15, out.stdout  # 6 algorithm + 9 backend tests
    assert "skipped" not in out.stdout and "failed" not in out.stdout
