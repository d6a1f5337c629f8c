"""Query cost, in the spirit of Shopify's calculated query cost, in three parts:

- `weights`: the table, keyed by `Type.field`, and the work rules (`ingest_cost`, `upload_cost`,
  `selected_text_cost`) that make cost follow the size of what is sent;
- `estimator`: a pure function from a parsed document and its *coerced* variables to a cost;
- `extension`: the Strawberry extension that coerces the variables, rejects operations over the
  maximum, charges the rest (and a minimum for rejected ones) and marks HTTP replies 429.

Only `extension` imports Starlette or Strawberry.
"""

from schema.cost.estimator import Estimate, estimate, estimate_cost
from schema.cost.extension import QueryCost
from schema.cost.weights import DEFAULT_WEIGHTS, CostWeights, ingest_cost

__all__ = ["DEFAULT_WEIGHTS", "CostWeights", "Estimate", "QueryCost", "estimate", "estimate_cost", "ingest_cost"]
