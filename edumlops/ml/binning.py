"""The drift reference's histogram bins, defined once for the drift checks (edumlops.ml.drift,
on rows or frames) and the edge agent (edumlops.edge.models, counting its telemetry). numpy
only: the edge agent has numpy (through onnxruntime) but not pandas.

- A number falls in bin `searchsorted(edges, x, "right")` of the inner edges fixed at training
  time: 0 below the first edge, len(edges) at or above the last (a value exactly on an edge goes
  to the bin above it); a missing number (NaN) in the last bin, len(edges) + 1.
- A category falls in the bin of its index in the reference's categories, an unknown one in the
  "other" bin (len(categories)), a missing one (None) in the last bin (len(categories) + 1).

So a numeric feature has len(edges) + 2 bins and a categorical one len(categories) + 2.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def size(edges_or_categories: Sequence[object]) -> int:
    """The number of bins of a feature with these inner edges or these categories."""
    return len(edges_or_categories) + 2


def numeric_bins(edges: Sequence[float], numbers: Sequence[float] | np.ndarray) -> np.ndarray:
    """The bin of each number (NaN: missing)."""
    x = np.asarray(numbers, dtype=float)
    index = np.searchsorted(np.asarray(edges, dtype=float), x, "right")
    return np.where(np.isnan(x), len(edges) + 1, index)


def categorical_bins(categories: Sequence[str], values: Iterable[str | None]) -> np.ndarray:
    """The bin of each category (compared as text; None: missing)."""
    known = {str(c): i for i, c in enumerate(categories)}
    other, missing = len(categories), len(categories) + 1
    return np.fromiter(
        (missing if v is None else known.get(str(v), other) for v in values), dtype=np.int64
    )


def counts(bins: np.ndarray, n_bins: int) -> np.ndarray:
    """How many values fell in each of `n_bins` bins."""
    return np.bincount(np.asarray(bins, dtype=np.int64), minlength=n_bins)
