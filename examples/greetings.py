"""
The ancestor's greetings flow, unchanged in spirit: run it on any runner.

    python examples/greetings.py                      # the default runner (concurrent)
    CONVEYOR_RUNNER=sequential python examples/greetings.py
    conveyor run examples/greetings.py:greetings --runner dask -p names='["arthur"]'
"""

from __future__ import annotations

from conveyor import flow, task


@task
def say_hello(name: str) -> str:
    print(f"hello {name}")
    return name


@task
def say_goodbye(name: str) -> str:
    print(f"goodbye {name}")
    return name


@flow
def greetings(names: list[str] = ["arthur", "trillian", "ford", "marvin"]) -> list[str]:  # noqa: B006
    for name in names:
        say_hello.submit(name)
        say_goodbye.submit(name)
    return names


if __name__ == "__main__":
    greetings()
