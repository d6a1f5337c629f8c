"""The layering rule, enforced: api -> schema -> resolvers -> domain, imports go down only.
(resolvers may import schema *type* modules, never schema.root.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "domain": ("api", "schema", "resolvers", "bench"),
    "resolvers": ("api", "schema.root", "bench"),
    "schema": ("api", "bench"),
    # bench/ is not in the wheel or the image: a served module importing it would fail in production.
    "api": ("bench",),
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_go_down_only(layer: str) -> None:
    offenders = []
    files = list((ROOT / layer).rglob("*.py"))
    assert files, f"no python files under {layer}/"
    for file in files:
        for module in imported_modules(file):
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN[layer]):
                offenders.append(f"{file.relative_to(ROOT)} imports {module}")
    assert offenders == []
