"""The one rule every list follows: `first` is capped, and asking for more is an error, not a
silent cut (api.md)."""

from __future__ import annotations

from domain.error_codes import CommonErrorCode
from domain.errors import InvalidInput

MAX_FIRST = 100


def check_first(first: int, *, hint: str = "") -> None:
    if not 1 <= first <= MAX_FIRST:
        raise InvalidInput(
            CommonErrorCode.FIRST_OUT_OF_RANGE,
            f"first must be between 1 and {MAX_FIRST}, got {first}{hint}",
            field="first",
        )
