"""Log records made inside tasks carry the run names and reach the driver's handlers."""

from __future__ import annotations

import logging

import pytest

from conveyor import flow, get_run_logger, task
from conveyor.run_logging import RUN_FORMAT


@task
def chatty(x: int) -> int:
    logging.getLogger("user.code").info("stdlib record %d", x)
    get_run_logger().info("run logger record %d", x)
    return x


@pytest.mark.parametrize("runner", ["sequential", "concurrent"])
def test_task_records_carry_run_names(runner: str, caplog: pytest.LogCaptureFixture) -> None:
    """Records from stdlib loggers and the run logger carry flow-run and task-run names."""

    @flow(runner=runner)
    def logs() -> list[int]:
        logging.getLogger("user.code").info("from the body")
        return [fut.result() for fut in chatty.map([1, 2])]

    with caplog.at_level(logging.INFO):
        assert logs() == [1, 2]
    records = [r for r in caplog.records if r.name in {"user.code", "conveyor.runs"}]
    by_message = {r.getMessage(): r for r in records}
    body = by_message["from the body"]
    assert body.flow_run_name.startswith("logs-")  # type: ignore[attr-defined]
    assert body.task_run_name is None  # type: ignore[attr-defined]
    for x in (1, 2):
        for text in (f"stdlib record {x}", f"run logger record {x}"):
            record = by_message[text]
            assert record.flow_run_name == body.flow_run_name  # type: ignore[attr-defined]
            assert record.task_run_name == f"chatty-{x}"  # type: ignore[attr-defined]


def test_run_format_renders_the_names() -> None:
    """RUN_FORMAT shows the run names in a handler's output."""
    captured: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(self.format(record))

    handler = ListHandler()
    handler.setFormatter(logging.Formatter(RUN_FORMAT))
    logger = logging.getLogger("user.fmt")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    @task
    def talk() -> None:
        logger.info("hi")

    @flow(runner="sequential")
    def fmt() -> None:
        talk()

    try:
        fmt()
    finally:
        logger.removeHandler(handler)
    assert len(captured) == 1
    assert "/talk-1] user.fmt: hi" in captured[0]
    assert "[fmt-" in captured[0]


def test_records_outside_runs_have_empty_names() -> None:
    """Outside any run the attributes exist and are None, so formats never break."""
    get_run_logger()  # installs the record factory
    record = logging.getLogger("x").makeRecord("x", logging.INFO, __file__, 1, "m", (), None)
    assert record.flow_run_name is None and record.task_run_name is None  # type: ignore[attr-defined]
