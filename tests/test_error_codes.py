"""Every code the domain can raise reaches a client as a GraphQL ErrorCode member, not as INTERNAL.

The codes are found two ways, so neither a new Enum nor a stray string slips past: every StrEnum
in the served packages' `error_codes.py` modules, and every code argument of an `InvalidInput(...)`
call or `code = ...` class attribute in the source (which must be an Enum member, never a string)."""

from __future__ import annotations

import ast
import importlib
from enum import StrEnum
from pathlib import Path

from domain.error_codes import RequestErrorCode, StartupErrorCode
from domain.evaluation.error_codes import EvaluationErrorCode
from schema.error_codes import PAYLOAD_AREAS, ErrorCode

ROOT = Path(__file__).resolve().parent.parent
SERVED = ("domain", "schema", "resolvers", "api")
# Request refusals travel as GraphQL errors' extensions.code; start-up codes and `ragql eval`'s
# dataset codes never reach a client.
NOT_IN_PAYLOADS: tuple[type[StrEnum], ...] = (RequestErrorCode, StartupErrorCode, EvaluationErrorCode)


def area_enums() -> list[type[StrEnum]]:
    found = []
    for path in sorted((ROOT / "domain").rglob("error_codes.py")):
        module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        enums = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, StrEnum)]
        found += [e for e in enums if e is not StrEnum]
    return found


def raised_code_expressions() -> list[tuple[str, ast.expr]]:
    """(where, expression) for each InvalidInput(code, ...) call in served code, and each
    `code = ...` / `code: T = ...` on a class in domain/ (where the error classes live)."""
    found = []
    for layer in SERVED:
        for path in (ROOT / layer).rglob("*.py"):
            where = str(path.relative_to(ROOT))
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "InvalidInput" and node.args:
                    found.append((f"{where}:{node.lineno}", node.args[0]))
                elif isinstance(node, ast.ClassDef) and layer == "domain":
                    for stmt in node.body:
                        if isinstance(stmt, ast.Assign) and [ast.unparse(t) for t in stmt.targets] == ["code"]:
                            found.append((f"{where}:{stmt.lineno}", stmt.value))
                        elif isinstance(stmt, ast.AnnAssign) and ast.unparse(stmt.target) == "code" and stmt.value:
                            found.append((f"{where}:{stmt.lineno}", stmt.value))
    return found


def test_every_payload_code_has_a_graphql_member() -> None:
    enums = area_enums()
    payload = [e for e in enums if e not in NOT_IN_PAYLOADS]
    assert set(payload) == set(PAYLOAD_AREAS), "a domain error_codes Enum is missing from schema.error_codes"
    graphql = {m.name for m in ErrorCode}
    codes = [m for e in payload for m in e]
    missing = [f"{type(m).__name__}.{m.name}" for m in codes if m.name not in graphql]
    assert missing == []
    assert len(codes) == len(graphql), "ErrorCode carries a member no domain Enum defines"
    assert len(codes) >= 47  # every code the schema had as strings before it was built from the Enums


def test_raised_codes_are_enum_members_the_api_knows() -> None:
    enums = {e.__name__: e for e in area_enums()}
    sites = raised_code_expressions()
    assert len(sites) > 50
    strings = [where for where, expr in sites if isinstance(expr, ast.Constant)]
    assert strings == [], "raise codes as members of the area's Enum, not as strings"
    unknown = []
    for where, expr in sites:
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id in enums:
            member = enums[expr.value.id][expr.attr]
            if type(member) not in NOT_IN_PAYLOADS and member.name not in ErrorCode.__members__:
                unknown.append(f"{where}: {expr.value.id}.{expr.attr}")
        elif not isinstance(expr, ast.Name):  # a parameter passed on (e.g. `code`) is checked at its caller
            unknown.append(f"{where}: {ast.unparse(expr)}")
    assert unknown == []


def test_an_unknown_code_falls_back_to_internal_without_failing() -> None:
    from schema.error_codes import to_graphql

    assert to_graphql("NO_SUCH_CODE") is ErrorCode.INTERNAL
    assert to_graphql(RequestErrorCode.FORBIDDEN) is ErrorCode.INTERNAL
    assert to_graphql("EMPTY_QUERY") is ErrorCode.EMPTY_QUERY
