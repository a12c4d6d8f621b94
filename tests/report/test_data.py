"""The report's data document: what it counts matches the flow run, and it stays compact."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conveyor import flow, task
from conveyor.report import SCHEMA, render_report_html, write_report
from conveyor.report._data import report_data
from conveyor.run_record import RunRecord
from conveyor.states import Completed
from tests.report._support import synthetic_record


@task(retries=1)
def flaky(i: int) -> int:
    if i % 3 == 0:
        raise ValueError(f"bad {i}")
    return i


@task
def add(values: list[int]) -> int:
    return sum(values)


@flow(runner="concurrent", record_runs=True)
def pipeline(n: int) -> int:
    futures = [flaky.submit(i) for i in range(n)]
    good = [f for i, f in enumerate(futures) if i % 3]
    return add.submit(good).result()


def _decode(data: dict) -> list[dict]:
    s, runs = data["strings"], data["runs"]
    return [
        {"name": runs["name"][i], "task": s[runs["task"][i]], "state": s[runs["state"][i]]}
        for i in range(len(runs["name"]))
    ]


def test_counts_match_the_flow_runs_states() -> None:
    """Per task and state, the document's runs are the flow run's; retries are attempts."""
    flow_run = pipeline.create_run()
    flow_run.run((9,))
    data = report_data(flow_run.record)
    assert data["schema"] == SCHEMA and data["recorded"]
    assert data["counts"] == {"Completed": 7, "Failed": 3}
    per_task: dict[str, dict[str, int]] = {}
    for run in _decode(data):
        states = per_task.setdefault(run["task"], {})
        states[run["state"]] = states.get(run["state"], 0) + 1
    assert per_task == {"add": {"Completed": 1}, "flaky": {"Completed": 6, "Failed": 3}}
    assert {t["name"]: t["states"] for t in data["tasks"]} == per_task
    # 6 completed flaky runs with one attempt, 3 failed ones with two, and add.
    assert len(data["attempts"]["run"]) == 6 + 3 * 2 + 1
    assert all(
        w >= 0 and data["strings"][w].startswith("thread ") for w in data["attempts"]["where"]
    )
    assert data["flow"]["state"] == "Failed" and data["flow"]["runner"] == "concurrent"
    assert len(data["failures"]) == 3
    assert all("ValueError: bad" in f["traceback"] for f in data["failures"])


def test_upstream_runs_are_indices() -> None:
    """add's upstream are exactly the completed flaky runs, as indices into the run columns."""
    flow_run = pipeline.create_run()
    flow_run.run((6,))
    data = report_data(flow_run.record)
    runs = _decode(data)
    add_index = next(i for i, r in enumerate(runs) if r["task"] == "add")
    fed = sorted(runs[u]["name"] for u in data["runs"]["upstream"][add_index])
    assert fed == sorted(f"flaky-{i + 1}" for i in range(6) if i % 3)


def test_times_are_milliseconds_from_the_start() -> None:
    flow_run = pipeline.create_run()
    flow_run.run((3,))
    data = report_data(flow_run.record)
    elapsed = data["flow"]["elapsed_ms"]
    starts = [t for t in data["attempts"]["start"] if t is not None]
    assert starts and all(0 <= t <= elapsed for t in starts)
    assert all(0 <= t <= elapsed for t in data["attempts"]["end"])


def test_runner_options_are_masked() -> None:
    """A password in an address and a secret-named option never reach the file."""
    record = RunRecord(
        "1", "f-1", "f", "dask", {"address": "tcp://me:hunter2@db:8786", "api_token": "s3cr3t"}
    )
    record.started, record.ended, record.state = 1.0, 2.0, Completed(None)
    page = render_report_html(record)
    assert "hunter2" not in page and "s3cr3t" not in page
    assert "db:8786" in page


def test_a_page_is_self_contained_and_no_string_closes_its_script() -> None:
    """No external resource is referenced; a message holding ``</script>`` stays data."""
    record = synthetic_record(20)
    record.failures[0] = record.failures[0]._replace(message="</script><img src=x onerror=1>")
    page = render_report_html(record)
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
    assert "http://" not in page and "https://" not in page
    assert page.count("</script>") == 2  # the data's and the code's own
    start = page.index('id="report-data">') + len('id="report-data">')
    data = json.loads(page[start : page.index("</script>", start)])
    assert data["failures"][0]["message"] == "</script><img src=x onerror=1>"


def test_ten_thousand_runs_stay_under_five_megabytes(tmp_path: Path) -> None:
    """The worst case, every tenth run failed with a traceback: the file is under 5 MB."""
    path = write_report(synthetic_record(10_000), tmp_path / "big.html")
    size = path.stat().st_size
    assert size < 5_000_000, size


def test_a_record_without_runs_still_reports_the_summary() -> None:
    """Without record_runs the document has the counts and no runs."""

    @flow(runner="concurrent")
    def plain() -> int:
        return sum(f.result() for f in flaky.map([1, 2]))

    flow_run = plain.create_run()
    flow_run.run()
    data = report_data(flow_run.record)
    assert not data["recorded"] and data["runs"]["name"] == []
    assert data["counts"] == {"Completed": 2}


def test_the_processes_runner_names_its_worker_processes() -> None:
    """On ``processes`` each attempt's place is its worker process."""
    flow_run = pipeline.with_options(runner="processes").create_run()
    flow_run.run((4,))
    data = report_data(flow_run.record)
    wheres = {data["strings"][w] for w in data["attempts"]["where"]}
    assert wheres and all(re.fullmatch(r"process \d+ on .+", w) for w in wheres), wheres
