"""Values for strict JSON (RFC 8259), which has no inf or NaN: metrics and results files."""

from __future__ import annotations

import math
from typing import Any


def json_safe(tree: Any) -> Any:
    """`tree` with inf and NaN replaced by None and dict keys by strings, through dicts and lists."""
    if isinstance(tree, dict):
        return {str(key): json_safe(value) for key, value in tree.items()}
    if isinstance(tree, list | tuple):
        return [json_safe(item) for item in tree]
    if isinstance(tree, float) and not math.isfinite(tree):
        return None
    return tree
