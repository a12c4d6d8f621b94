"""
Checked by mypy (strict) in test_typing.py, never imported by the suite: the types the API
promises, written as `assert_type` lines.
"""

from __future__ import annotations

from typing_extensions import assert_type

from conveyor import RunFuture, RunStream, State, flow, task


@task
def fetch(url: str) -> bytes:
    return url.encode()


@task
async def parse(raw: bytes) -> dict[str, int]:
    return {"length": len(raw)}


@flow
def etl(urls: list[str]) -> int:
    pages = fetch.map(urls)
    assert_type(pages, list[RunFuture[bytes]])
    docs = [parse.submit(p) for p in pages]
    assert_type(docs[0], RunFuture[dict[str, int]])
    assert_type(docs[0].result(), dict[str, int])
    streamed = parse.map(iter([b"a", b"b"]))
    assert_type(streamed, RunStream[dict[str, int]])
    assert_type(fetch.submit("x"), RunFuture[bytes])
    return sum(d.result()["length"] for d in docs)


@flow
async def aetl(urls: list[str]) -> int:
    value = await parse.submit(b"x")
    assert_type(value, dict[str, int])
    return len(urls)


assert_type(etl(["a"]), int)
assert_type(etl(["a"], return_state=True), State[int])
assert_type(etl.with_options(runner="sequential")(["a"]), int)


async def caller() -> None:
    assert_type(await aetl(["a"]), int)
    assert_type(await aetl(["a"], return_state=True), State[int])
