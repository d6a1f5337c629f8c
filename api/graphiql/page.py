"""The GraphiQL page: Strawberry's template with local asset URLs and ragql's first query.

Only the URLs change, never the integrity attributes, so the browser still checks each file
against the hash Strawberry published. The files come from api/graphiql/static/ (assets.py).
"""

from __future__ import annotations

import json
import re
from functools import cache

from api.graphiql.assets import manifest, template_html

# Opens in the editor: what ragql is for, on the demo film catalogue, runnable as is.
DEFAULT_QUERY = """\
# ragql: hybrid search (dense + BM25, fused) over the demo films.
# Run it with the button (or Ctrl-Enter). Development mode needs
# no token; in production add under Headers below:
#   {"Authorization": "Bearer <token>"}   (see `ragql dev-token`)
#
# Answers stream over the websocket. Replace this with:
#   subscription {
#     answerStream(question: "Which films are about time travel?") {
#       __typename
#       ... on AnswerDelta { text }
#       ... on AnswerDone { citations { number title } tookMs }
#     }
#   }

query FirstSearch {
  search(
    query: "I love sci-fi movies with time travel"
    first: 5
    options: {
      mode: HYBRID
      filter: { all: [{ field: "year", op: GTE, value: 1980 }] }
    }
  ) {
    tookMs
    fusion
    hits {
      snippet
      document { title genre year rating }
      scores { dense keyword fused denseRank keywordRank }
    }
  }
}
"""

_EXAMPLE_QUERY = re.compile(r"const EXAMPLE_QUERY = `.*?`;", re.DOTALL)


@cache
def graphiql_html() -> str:
    html = template_html()
    for asset in manifest(html):
        html = html.replace(asset.cdn_url, asset.local_url)
    html = html.replace("<title>Strawberry GraphiQL</title>", "<title>ragql · GraphiQL</title>")
    # A JSON string is a valid JS string literal; `</` is escaped so the query can't end the script.
    literal = json.dumps(DEFAULT_QUERY).replace("</", "<\\/")
    html, replaced = _EXAMPLE_QUERY.subn(lambda _: f"const EXAMPLE_QUERY = {literal};", html, count=1)
    if replaced != 1:
        raise RuntimeError("Strawberry's GraphiQL template has no EXAMPLE_QUERY; update api/graphiql/page.py")
    return html
