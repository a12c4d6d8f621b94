"""Secrets stay out of what conveyor prints."""

from __future__ import annotations

import pytest

from conveyor.redact import MASK, redact, redact_options


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("tcp://alice:s3cret@10.0.0.5:8786", "tcp://alice:***@10.0.0.5:8786"),
        ("tls://:only-a-password@host:1", "tls://:***@host:1"),
        (
            "connect to ray://head:10001?token=abc&x=1 now",
            "connect to ray://head:10001?token=***&x=1 now",
        ),
        (
            "s3://bucket/key?X-Amz-Security-Token=t0k&a=b",
            "s3://bucket/key?X-Amz-Security-Token=***&a=b",
        ),
        ("tcp://10.0.0.5:8786", "tcp://10.0.0.5:8786"),
        ("no url here", "no url here"),
    ],
)
def test_passwords_in_urls_are_masked(text: str, masked: str) -> None:
    """The password part of a URL and secret query parameters are masked; the rest stays."""
    assert redact(text) == masked


def test_options_with_secret_keys_are_masked() -> None:
    """Option values under secret-sounding keys are masked, nested tables too."""
    options = {
        "address": "tcp://u:p@h:1",
        "client_kwargs": {"security": None, "api_key": "k", "name": "x"},
        "auth_token": "t",
        "n_workers": 2,
    }
    assert redact_options(options) == {
        "address": "tcp://u:***@h:1",
        "client_kwargs": {"security": None, "api_key": MASK, "name": "x"},
        "auth_token": MASK,
        "n_workers": 2,
    }
