"""Schema as a contract: what the code serves may not break what was released.

schema/released.graphql is the schema of the last release (copy schema.graphql over it when you
release). graphql-core's find_breaking_changes compares it with the code's schema; a breaking
change passes only when it removes something the release had already marked @deprecated, so
clients had a release's notice. A changed type is never allowed: add a new field instead.
"""

from __future__ import annotations

import re
from pathlib import Path

from graphql import (
    BreakingChangeType,
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    build_schema,
    find_breaking_changes,
    get_named_type,
)

from schema.root import build_schema as build_code_schema

RELEASED = Path(__file__).resolve().parent.parent / "schema" / "released.graphql"

_FIELD = re.compile(r"Field (?P<type>\w+)\.(?P<field>\w+) was removed\.")
_ARG = re.compile(r"Argument (?P<type>\w+)\.(?P<field>\w+)\((?P<arg>\w+):\) was removed\.")
_ENUM_VALUE = re.compile(r"Enum value (?P<type>\w+)\.(?P<value>\w+) was removed\.")
_TYPE = re.compile(r"(?P<type>\w+) was removed\.|Standard scalar (?P<scalar>\w+) was removed because .*")


def _deprecated(thing: GraphQLField | GraphQLArgument | GraphQLInputField | None) -> bool:
    return thing is not None and thing.deprecation_reason is not None


def _only_deprecated_uses(released: GraphQLSchema, type_name: str) -> bool:
    """A type may go once every field, argument and input field that led to it was deprecated."""
    for named in released.type_map.values():
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType):
            for field in named.fields.values():
                if get_named_type(field.type).name == type_name and not _deprecated(field):
                    return False
                for arg in getattr(field, "args", {}).values():
                    if get_named_type(arg.type).name == type_name and not _deprecated(arg):
                        return False
    return True


def _allowed(released: GraphQLSchema, kind: BreakingChangeType, description: str) -> bool:
    if kind == BreakingChangeType.FIELD_REMOVED and (m := _FIELD.fullmatch(description)):
        owner = released.get_type(m["type"])
        fields = owner.fields if isinstance(owner, GraphQLObjectType | GraphQLInterfaceType) else {}
        inputs = owner.fields if isinstance(owner, GraphQLInputObjectType) else {}
        return _deprecated(fields.get(m["field"]) or inputs.get(m["field"]))
    if kind == BreakingChangeType.ARG_REMOVED and (m := _ARG.fullmatch(description)):
        owner = released.get_type(m["type"])
        assert isinstance(owner, GraphQLObjectType | GraphQLInterfaceType)
        return _deprecated(owner.fields[m["field"]].args.get(m["arg"]))
    if kind == BreakingChangeType.VALUE_REMOVED_FROM_ENUM and (m := _ENUM_VALUE.fullmatch(description)):
        enum = released.get_type(m["type"])
        assert isinstance(enum, GraphQLEnumType)
        value = enum.values.get(m["value"])
        return value is not None and value.deprecation_reason is not None
    if kind == BreakingChangeType.TYPE_REMOVED and (m := _TYPE.fullmatch(description)):
        return _only_deprecated_uses(released, m["type"] or m["scalar"])
    return False


def contract_violations(released: GraphQLSchema, current: GraphQLSchema) -> list[str]:
    return [
        f"{change.type.name}: {change.description}"
        for change in find_breaking_changes(released, current)
        if not _allowed(released, change.type, change.description)
    ]


def test_the_code_keeps_the_released_contract() -> None:
    violations = contract_violations(build_schema(RELEASED.read_text()), build_code_schema()._schema)
    assert violations == [], (
        "breaking changes against schema/released.graphql: deprecate first (@deprecated / "
        "strawberry.field(deprecation_reason=...)) and remove in a later release\n" + "\n".join(violations)
    )


# The check itself, on small schemas: it must catch removals and type changes, and let a
# removal through only after a deprecation.
RELEASE_1 = """
type Query {
  search(query: String!, first: Int = 10, legacyMode: Boolean @deprecated(reason: "use mode")): [Hit!]!
  oldHits: [OldHit!]! @deprecated(reason: "use search")
  serverInfo: String!
}
type Hit { title: String! score: Float! rank: Int @deprecated(reason: "use score") }
type OldHit { title: String! }
enum Mode { HYBRID DENSE LEGACY @deprecated(reason: "use HYBRID") }
input Filter { field: String! op: String @deprecated(reason: "use ops") }
type Mutation { noop(mode: Mode, filter: Filter): Boolean }
"""


def _violations(current: str) -> list[str]:
    return contract_violations(build_schema(RELEASE_1), build_schema(current))


def test_removing_only_what_was_deprecated_passes() -> None:
    current = """
    type Query { search(query: String!, first: Int = 10): [Hit!]! serverInfo: String! }
    type Hit { title: String! score: Float! }
    enum Mode { HYBRID DENSE }
    input Filter { field: String! }
    type Mutation { noop(mode: Mode, filter: Filter): Boolean }
    """
    assert _violations(current) == []


def test_removing_what_was_not_deprecated_fails() -> None:
    current = """
    type Query { search(query: String!): [Hit!]! oldHits: [OldHit!]! }
    type Hit { title: String! }
    type OldHit { title: String! }
    enum Mode { DENSE LEGACY }
    input Filter { op: String }
    type Mutation { noop(mode: Mode, filter: Filter): Boolean }
    """
    assert sorted(_violations(current)) == [
        "ARG_REMOVED: Argument Query.search(first:) was removed.",
        "FIELD_REMOVED: Field Filter.field was removed.",
        "FIELD_REMOVED: Field Hit.score was removed.",
        "FIELD_REMOVED: Field Query.serverInfo was removed.",
        # Nothing but `first` and `score` used them, and neither was deprecated.
        "TYPE_REMOVED: Standard scalar Float was removed because it is not referenced anymore.",
        "TYPE_REMOVED: Standard scalar Int was removed because it is not referenced anymore.",
        "VALUE_REMOVED_FROM_ENUM: Enum value Mode.HYBRID was removed.",
    ]


def test_changing_a_type_fails_even_when_deprecated() -> None:
    current = RELEASE_1.replace("rank: Int @deprecated", "rank: String @deprecated")
    assert _violations(current) == ["FIELD_CHANGED_KIND: Field Hit.rank changed type from Int to String."]


def test_removing_a_field_from_the_real_released_schema_is_caught() -> None:
    released = RELEASED.read_text()
    without = released.replace("  serverInfo: ServerInfo!\n", "", 1)
    assert without != released
    assert contract_violations(build_schema(released), build_schema(without)) == [
        "FIELD_REMOVED: Field Query.serverInfo was removed."
    ]
