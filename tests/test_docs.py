"""The README's snippets and the examples run, so they never rot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SNIPPETS = [
    textwrap.dedent(body)
    for _, body in re.findall(r"^( *)```python\n(.*?)^\1```", README, flags=re.S | re.M)
    # "# file: NAME" blocks form the runner plugin of "Write your own runner", which
    # tests/test_third_party.py installs and tests as a whole.
    if not body.lstrip().startswith("# file:")
]


def _run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    full_env.update(env or {})
    return subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"readme-{i}" for i in range(len(SNIPPETS))])
def test_readme_snippet_runs(snippet: str, tmp_path: Path) -> None:
    """Every ```python block of the README runs as a script without error."""
    script = tmp_path / "snippet.py"
    script.write_text(snippet)
    proc = _run([sys.executable, str(script)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_readme_has_snippets() -> None:
    """The README shows the API in runnable snippets."""
    assert len(SNIPPETS) >= 4


def test_greetings_example(tmp_path: Path) -> None:
    """The ancestor's greetings flow runs on the default runner and says every line."""
    proc = _run([sys.executable, str(ROOT / "examples" / "greetings.py")], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # Threads may interleave their prints, so count words rather than lines.
    for name in ("arthur", "trillian", "ford", "marvin"):
        assert proc.stdout.count(f"hello {name}") == 1
        assert proc.stdout.count(f"goodbye {name}") == 1


@pytest.mark.parametrize("runner", ["sequential", "concurrent"])
def test_greetings_in_order_on_sequential(runner: str, tmp_path: Path) -> None:
    """On sequential the greetings come in order, as in the ancestor's docs."""
    proc = _run(
        [
            sys.executable,
            "-m",
            "conveyor",
            "run",
            str(ROOT / "examples" / "greetings.py") + ":greetings",
        ],
        cwd=tmp_path,
        env={"CONVEYOR_RUNNER": runner},
    )
    assert proc.returncode == 0, proc.stderr
    # Threads may interleave their prints, so count words, in what came before the report.
    printed = proc.stdout.split("\nflow run ")[0]
    assert printed.count("hello ") == printed.count("goodbye ") == 4, proc.stdout + proc.stderr
    if runner == "sequential":
        said = [line for line in printed.splitlines() if line.startswith(("hello", "goodbye"))]
        assert said[:2] == ["hello arthur", "goodbye arthur"]
        assert said[-1] == "goodbye marvin"
    assert "task runs: 8 Completed" in proc.stdout


def test_wordcount_example(tmp_path: Path) -> None:
    """The map-reduce example counts the words of the files it writes."""
    proc = _run(
        [sys.executable, str(ROOT / "examples" / "wordcount.py"), str(tmp_path)], cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert len(rows) == 10
    assert len(list(tmp_path.glob("part-*.txt"))) == 16
    counts = [int(n) for _, n in rows]
    assert counts == sorted(counts, reverse=True)


def test_wordcount_via_cli_on_sequential(tmp_path: Path) -> None:
    """The map-reduce flow runs unchanged on another runner from the CLI."""
    proc = _run(
        [
            sys.executable,
            "-m",
            "conveyor",
            "run",
            str(ROOT / "examples" / "wordcount.py") + ":wordcount",
            "--runner",
            "sequential",
            "-p",
            "files=4",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "task runs: 8 Completed" in proc.stdout


def test_readme_lists_every_crash_reason() -> None:
    """The README's crash-reason table has one row per CrashReason member, with its meaning."""
    from conveyor import CrashReason

    rows = re.findall(r"^\| `([a-z-]+)` \| `([A-Z_]+)` \| (.+) \|$", README, flags=re.M)
    assert rows == [(m.value, m.name, m.meaning) for m in CrashReason]


def test_readme_architecture_names_every_core_module() -> None:
    """The README's architecture tree has a line for every module of core/conveyor."""
    tree = README[README.index("## Architecture") :]
    tree = tree[tree.index("core/conveyor/") : tree.index("```", tree.index("core/conveyor/"))]
    named = set(re.findall(r"^\s+(\w+\.py)\s", tree, flags=re.M))
    modules = {
        p.name
        for p in (ROOT / "core" / "conveyor").rglob("*.py")
        if p.name not in {"__init__.py", "__main__.py", "_version.py"}
    }
    assert modules - named == set()
