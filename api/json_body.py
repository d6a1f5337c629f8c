"""Request JSON with bounds: nesting depth and number size.

Python's json module recurses per nesting level and refuses integers over 4,300 digits with a
ValueError; both escaped Strawberry's JSON error handling (a RecursionError at 990 levels, a
plain-text 500 for a 5,000-digit integer), and 900 levels parsed but later blew graphql-core's
recursion (a masked INTERNAL). Everything here fails as `json.JSONDecodeError`, which Strawberry
answers with a 400 (HTTP; the guard gives it a code) or a 4400 close (websockets).
"""

from __future__ import annotations

import json

MAX_JSON_DEPTH = 64


def _depth_exceeds(value: object, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def decode_bounded_json(data: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> object:
    try:
        value = json.loads(data)
    except json.JSONDecodeError:
        raise
    except (RecursionError, ValueError) as exc:  # too deep for the parser, or an integer too long
        raise json.JSONDecodeError(f"request JSON is not acceptable ({type(exc).__name__})", "", 0) from exc
    if _depth_exceeds(value, max_depth):
        raise json.JSONDecodeError(f"request JSON is nested more than {max_depth} levels deep", "", 0)
    return value
