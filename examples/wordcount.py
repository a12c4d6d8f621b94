"""
A small map-reduce: count words over text files that the example writes itself.

    python examples/wordcount.py [FOLDER]
    conveyor run examples/wordcount.py:wordcount --runner sequential

It makes ``files`` text files, counts the words of each in its own task run (the map), merges
the counts pairwise in a tree of task runs whose arguments are futures (the reduce), and
returns the ten most common words. Every step is a task, so the same flow runs on threads, a
Dask cluster or Ray unchanged.
"""

from __future__ import annotations

import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

from conveyor import RunFuture, flow, get_run_logger, task

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
]


@task
def write_corpus(folder: str, files: int, words_per_file: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    paths = []
    for i in range(files):
        path = Path(folder) / f"part-{i:03d}.txt"
        path.write_text(" ".join(rng.choice(WORDS) for _ in range(words_per_file)))
        paths.append(str(path))
    get_run_logger().info("wrote %d files to %s", files, folder)
    return paths


@task(retries=2, retry_delay_seconds=0.1)
def count_words(path: str) -> Counter[str]:
    return Counter(Path(path).read_text().split())


@task
def merge(left: Counter[str], right: Counter[str]) -> Counter[str]:
    return left + right


@flow
def wordcount(
    folder: str = "", files: int = 16, words_per_file: int = 2_000
) -> list[tuple[str, int]]:
    with tempfile.TemporaryDirectory() as scratch:
        paths = write_corpus(folder or scratch, files, words_per_file, seed=7)
        level: list[RunFuture[Counter[str]]] = count_words.map(paths)
        while len(level) > 1:  # a tree of merges; each merge starts when its inputs are done
            pairs = [level[i : i + 2] for i in range(0, len(level), 2)]
            level = [merge.submit(*p) if len(p) == 2 else p[0] for p in pairs]
        total = level[0].result()
    assert sum(total.values()) == files * words_per_file
    return total.most_common(10)


if __name__ == "__main__":
    for word, n in wordcount(sys.argv[1] if len(sys.argv) > 1 else ""):
        print(f"{word:10} {n}")
