"""The API's types hold: mypy checks the README's API examples and the promised types."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.console._support import ROOT

pytest.importorskip("mypy", reason="mypy is not installed (requirements-dev.txt has it)")
pytest.importorskip("typing_extensions", reason="typing_extensions is not installed")

HERE = Path(__file__).parent


def _api_snippets() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The API", 1)[1].split("\n## ", 1)[0]
    return [
        textwrap.dedent(body)
        for _, body in re.findall(r"^( *)```python\n(.*?)^\1```", section, flags=re.S | re.M)
    ]


def _mypy(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--python-version", "3.11", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_readme_api_examples_and_promised_types_check(tmp_path: Path) -> None:
    """mypy finds no error in the README's API examples, nor in the promised types
    (`.submit()` of an async task is `RunFuture[T]`, `.map()` and flow calls are typed)."""
    snippets = _api_snippets()
    assert len(snippets) >= 4
    files = []
    for i, body in enumerate(snippets):
        path = tmp_path / f"readme_api_{i}.py"
        path.write_text(body)
        files.append(str(path))
    proc = _mypy("--check-untyped-defs", *files, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    strict = _mypy("--strict", str(HERE / "typed_api.py"), cwd=ROOT)
    assert strict.returncode == 0, strict.stdout + strict.stderr
