"""Compile a metadata filter to a SQL fragment with bound parameters.

Field names never reach the SQL text: built-in fields map through an allow-list to columns,
and any other key is a bound parameter into the jsonb metadata."""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.errors import InvalidInput
from domain.retrieval.error_codes import SearchErrorCode

OPS = ("EQ", "NE", "IN", "GT", "GTE", "LT", "LTE", "CONTAINS", "EXISTS")
_CMP = {"EQ": "=", "NE": "<>", "GT": ">", "GTE": ">=", "LT": "<", "LTE": "<="}
MAX_CONDITIONS = 32
# The typed columns' ranges: integer (year) and double precision (rating).
INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1
MAX_NUMBER = 1e300
_META_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class MetadataFilter:
    all: tuple[Condition, ...] = ()
    any: tuple[Condition, ...] = ()


@dataclass
class CompiledFilter:
    """`sql` is empty or starts with ' AND ', ready to append to a WHERE clause."""

    sql: str = ""
    params: dict[str, Any] = field(default_factory=dict)


# column, kind
_BUILTIN: dict[str, tuple[str, str]] = {
    "genre": ("genre", "text"),
    "source": ("source", "text"),
    "tags": ("tags", "array"),
    "rating": ("rating", "number"),
    "year": ("year", "integer"),
    "createdAt": ("created_at", "timestamp"),
}


class _Compiler:
    def __init__(self, alias: str, path: str) -> None:
        self.alias = alias
        self.path = path
        self.params: dict[str, Any] = {}
        self._names = itertools.count()

    def bind(self, value: Any) -> str:
        name = f"f{next(self._names)}"
        self.params[name] = value
        return f":{name}"

    def bad(self, where: str, message: str) -> InvalidInput:
        return InvalidInput(SearchErrorCode.INVALID_FILTER_VALUE, message, field=f"{self.path}.{where}")

    def scalar(self, kind: str, value: Any, where: str, cond: Condition) -> Any:
        ok: bool
        if kind == "text" or kind == "array":
            ok = isinstance(value, str)
        elif kind == "number":
            # The column is a double: out of its range is a user error, not a database one.
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            ok = ok and abs(value) <= MAX_NUMBER
        elif kind == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool) and INT4_MIN <= value <= INT4_MAX
        else:  # timestamp
            if isinstance(value, str):
                try:
                    parsed = datetime.fromisoformat(value)
                    # A day of margin each side: time zones can push year 1 or 9999 out of range.
                    if (
                        datetime.min.replace(year=1, day=2)
                        <= parsed.replace(tzinfo=None)
                        <= datetime.max.replace(year=9999, day=30)
                    ):
                        return parsed
                    ok = False
                except ValueError:
                    ok = False
            else:
                ok = False
        if not ok:
            expected = {
                "text": "a string",
                "array": "a string",
                "number": "a finite number",
                "integer": f"a whole number in {INT4_MIN}..{INT4_MAX}",
                "timestamp": "an ISO-8601 date-time string between years 1 and 9999",
            }[kind]
            raise self.bad(where, f"{cond.field} {cond.op} needs {expected}, got {json.dumps(value)}")
        return value

    def values(self, kind: str, value: Any, where: str, cond: Condition) -> list[Any]:
        if not isinstance(value, list) or not value or len(value) > 1000:
            raise self.bad(where, f"{cond.field} {cond.op} needs a non-empty list of at most 1000 values")
        return [self.scalar(kind, v, where, cond) for v in value]

    def builtin(self, cond: Condition, where: str) -> str:
        column, kind = _BUILTIN[cond.field]
        op_path = where.rsplit(".", 1)[0] + ".op"
        col = f"{self.alias}.{column}"
        op, value = cond.op, cond.value
        if op == "EXISTS":
            present = f"{col} IS NOT NULL" if kind != "array" else f"cardinality({col}) > 0"
            return present if value in (None, True) else f"NOT ({present})"
        if kind == "array":
            if op in ("EQ", "CONTAINS"):
                items = value if isinstance(value, list) else [value]
                return f"{col} @> {self.bind(self.values('array', items, where, cond))}"
            if op == "NE":
                return f"NOT ({col} @> {self.bind([self.scalar('array', value, where, cond)])})"
            if op == "IN":
                return f"{col} && {self.bind(self.values('array', value, where, cond))}"
            raise self.bad(op_path, f"tags supports EQ, NE, IN, CONTAINS and EXISTS, not {op}")
        if op == "IN":
            return f"{col} = ANY({self.bind(self.values(kind, value, where, cond))})"
        if op == "CONTAINS":
            if kind != "text":
                raise self.bad(op_path, f"CONTAINS applies to text fields and tags, not {cond.field}")
            needle = self.scalar(kind, value, where, cond)
            escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            return f"{col} ILIKE {self.bind(f'%{escaped}%')}"
        if kind == "text" and op not in ("EQ", "NE"):
            raise self.bad(op_path, f"{cond.field} is text: use EQ, NE, IN, CONTAINS or EXISTS, not {op}")
        rendered = self.bind(self.scalar(kind, value, where, cond))
        return f"{col} IS DISTINCT FROM {rendered}" if op == "NE" else f"{col} {_CMP[op]} {rendered}"

    def metadata(self, cond: Condition, where: str) -> str:
        if not _META_KEY.match(cond.field):
            raise InvalidInput(
                SearchErrorCode.INVALID_FILTER_FIELD,
                f"filter field {cond.field!r} is not a built-in field ({', '.join(_BUILTIN)}) nor a metadata key "
                f"matching {_META_KEY.pattern}",
                field=f"{self.path}.{where.rsplit('.', 1)[0]}.field",
            )
        ref = f"({self.alias}.metadata -> {self.bind(cond.field)})"
        op, value = cond.op, cond.value
        if op == "EXISTS":
            present = f"{ref} IS NOT NULL"
            return present if value in (None, True) else f"{ref} IS NULL"
        if op == "IN":
            if not isinstance(value, list) or not value:
                raise self.bad(where, f"{cond.field} IN needs a non-empty list")
            return f"{ref} IN (SELECT jsonb_array_elements(CAST({self.bind(json.dumps(value))} AS jsonb)))"
        if op == "CONTAINS":
            if isinstance(value, str):
                escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                like = self.bind(f"%{escaped}%")
                arr = self.bind(json.dumps([value]))
                return (
                    f"(CASE jsonb_typeof({ref}) WHEN 'array' THEN {ref} @> CAST({arr} AS jsonb) "
                    f"WHEN 'string' THEN ({ref} #>> '{{}}') ILIKE {like} ELSE false END)"
                )
            return f"{ref} @> CAST({self.bind(json.dumps(value if isinstance(value, list) else [value]))} AS jsonb)"
        if value is None or isinstance(value, dict | list):
            raise self.bad(where, f"{cond.field} {op} needs a string, number or boolean")
        bound = f"CAST({self.bind(json.dumps(value))} AS jsonb)"
        if op == "EQ":
            return f"{ref} = {bound}"
        if op == "NE":
            return f"{ref} IS DISTINCT FROM {bound}"
        # Ordering only between values of the same JSON type (numbers with numbers, strings with strings).
        return f"(jsonb_typeof({ref}) = jsonb_typeof({bound}) AND {ref} {_CMP[op]} {bound})"

    def condition(self, cond: Condition, where: str) -> str:
        if cond.op not in OPS:
            raise InvalidInput(
                SearchErrorCode.UNKNOWN_FILTER_OPERATOR,
                f"unknown operator {cond.op!r}; use one of {', '.join(OPS)}",
                field=f"{self.path}.{where.rsplit('.', 1)[0]}.op",
            )
        if cond.field in _BUILTIN:
            return self.builtin(cond, where)
        return self.metadata(cond, where)


def compile_filter(flt: MetadataFilter | None, *, alias: str, path: str = "filter") -> CompiledFilter:
    if flt is None or (not flt.all and not flt.any):
        return CompiledFilter()
    if len(flt.all) + len(flt.any) > MAX_CONDITIONS:
        raise InvalidInput(SearchErrorCode.FILTER_TOO_COMPLEX, f"use at most {MAX_CONDITIONS} conditions", field=path)
    c = _Compiler(alias, path)
    parts = [c.condition(cond, f"all.{i}.value") for i, cond in enumerate(flt.all)]
    if flt.any:
        parts.append("(" + " OR ".join(c.condition(cond, f"any.{i}.value") for i, cond in enumerate(flt.any)) + ")")
    return CompiledFilter(sql="".join(f" AND {p}" for p in parts), params=c.params)
