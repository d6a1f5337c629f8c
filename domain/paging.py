"""The one rule every list follows: `first` is capped, and asking for more is an error, not a
silent cut (api.md)."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

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


def encode_cursor(created_at: datetime, ident: uuid.UUID) -> str:
    """An opaque keyset cursor for lists ordered by (created_at, id)."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{ident}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, ident = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), uuid.UUID(ident)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            CommonErrorCode.INVALID_CURSOR, "`after` is not a cursor returned by this API", field="after"
        ) from exc
