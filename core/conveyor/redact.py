"""
Keeping secrets out of what conveyor prints: logs, ``conveyor run --json``, run reports.

>>> redact("tcp://alice:s3cret@10.0.0.5:8786")
'tcp://alice:***@10.0.0.5:8786'
>>> redact("invalid address 'alice:s3cret@10.0.0.5:8786'")
"invalid address 'alice:***@10.0.0.5:8786'"
>>> redact("ray://head:10001?token=abc&x=1")
'ray://head:10001?token=***&x=1'
>>> redact_options({"address": "tls://u:p@h:1", "password": "hunter2", "n_workers": 2})
{'address': 'tls://u:***@h:1', 'password': '***', 'n_workers': 2}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "redact", "redact_options"]

MASK = "***"

# scheme://user:password@host  ->  scheme://user:***@host
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)(?P<secret>[^\s@/]+)(?=@)")
# user:password@host without a scheme (what a parser left of an address), after a quote or space
_BARE_USERINFO = re.compile(
    r"(?P<head>(?:^|(?<=[\s'\"(=,]))[\w.~%+-]+:)(?P<secret>[^\s@/'\":]+)(?=@[\w.\[\]-]+)"
)
# ...?token=abc&...  (and key=, secret=, password=, auth=)
_QUERY = re.compile(
    r"(?P<head>[?&;](?:[a-z_-]*token|[a-z_-]*key|[a-z_-]*secret|password|passwd|auth)=)(?P<secret>[^&;#\s]+)",
    re.IGNORECASE,
)
_SECRET_KEYS = re.compile(
    r"password|passwd|secret|token|credential|private[_-]?key|api[_-]?key", re.I
)


def redact(text: str) -> str:
    """``text`` with the passwords of URLs and secret query parameters masked."""
    text = _USERINFO.sub(lambda m: m.group("head") + MASK, text)
    text = _BARE_USERINFO.sub(lambda m: m.group("head") + MASK, text)
    return _QUERY.sub(lambda m: m.group("head") + MASK, text)


def redact_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """
    Runner options fit to print: values under secret-sounding keys masked, strings redacted,
    nested tables and lists too.

    >>> redact_options({"initargs": ["tcp://u:p@h:1", 2], "env": {"API_TOKEN": "x"}})
    {'initargs': ['tcp://u:***@h:1', 2], 'env': {'API_TOKEN': '***'}}
    """
    out: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(key, str) and _SECRET_KEYS.search(key) and value is not None:
            out[key] = MASK
        else:
            out[key] = _masked(value)
    return out


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return redact_options(value)
    if isinstance(value, list | tuple):
        return type(value)(_masked(v) for v in value)
    return value
