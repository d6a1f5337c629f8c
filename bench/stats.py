"""Summary statistics shared by the benches."""

from __future__ import annotations

import statistics


def percentile(values: list[float], q: int) -> float:
    """Inclusive method: with few samples, p95 stays within what was measured."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]
