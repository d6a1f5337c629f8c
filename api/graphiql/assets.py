"""The files Strawberry's GraphiQL page loads from unpkg.com, vendored under api/graphiql/static/.

Strawberry's template (strawberry/static/graphiql.html) names each file with its npm package,
version and a sha384 Subresource Integrity hash. That template is the single source of truth:
the manifest is parsed from it, the vendored copies must hash to its SRI values (checked by
tests/test_graphiql_assets.py and by `python -m api.graphiql.refresh`), and the page keeps the
integrity attributes, so the browser checks every byte it runs as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import strawberry

from api.vendoring import sri

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Where the app mounts STATIC_DIR. Outside /graphql on purpose: api/guard.py admits and
# authenticates /graphql*, and a stylesheet has no business needing a token.
URL_PREFIX = "/static/graphiql"
TEMPLATE = Path(strawberry.__file__).resolve().parent / "static" / "graphiql.html"

_CDN_ASSET = re.compile(
    r'(?:src|href)="(?P<url>https://unpkg\.com/(?P<package>(?:@[^/@"]+/)?[^/@"]+)@(?P<version>[^/"]+)/(?P<path>[^"]+))"'
    r'\s+integrity="(?P<integrity>sha384-[A-Za-z0-9+/=]+)"'
)


@dataclass(frozen=True)
class Asset:
    cdn_url: str
    package: str
    version: str
    path: str  # inside the npm package
    integrity: str  # "sha384-<base64>", as in the template

    @property
    def relative(self) -> str:
        return f"{self.package}@{self.version}/{self.path}"

    @property
    def local_url(self) -> str:
        return f"{URL_PREFIX}/{self.relative}"

    @property
    def file(self) -> Path:
        return STATIC_DIR / self.relative


def manifest(template: str | None = None) -> list[Asset]:
    html = template if template is not None else template_html()
    assets = [Asset(m["url"], m["package"], m["version"], m["path"], m["integrity"]) for m in _CDN_ASSET.finditer(html)]
    if not assets or "https://unpkg.com" in _CDN_ASSET.sub("", html):
        # A Strawberry upgrade changed the template's shape: better to fail here than to serve a
        # page that quietly reaches for the CDN again.
        raise RuntimeError(
            f"{TEMPLATE} loads a CDN file this code does not recognise; update api/graphiql/assets.py "
            "and run `python -m api.graphiql.refresh`"
        )
    return assets


@cache
def template_html() -> str:
    return TEMPLATE.read_text(encoding="utf-8")


def problems() -> list[str]:
    """What is wrong with the vendored copies: missing files or hashes that differ from the SRI."""
    out = []
    for asset in manifest():
        if not asset.file.is_file():
            out.append(f"{asset.relative} is missing")
        elif (actual := sri(asset.file.read_bytes())) != asset.integrity:
            out.append(f"{asset.relative} hashes to {actual}, the page expects {asset.integrity}")
    return out
