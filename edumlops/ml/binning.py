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


def rebin_numeric(
    old_edges: Sequence[float],
    counts: Sequence[float],
    new_edges: Sequence[float],
    new_counts: Sequence[float] | None = None,
) -> np.ndarray:
    """Counts kept on one model's numeric bins, moved onto another model's bins (a retrained
    model's quantiles differ). A finite old bin [a, b) is shared among the new bins it overlaps
    in proportion to the overlap (values taken as spread evenly inside a bin). An open end bin
    (below the first edge, above the last) is shared among the new bins it reaches in proportion
    to how many training rows each holds (`new_counts`, the new reference's histogram; equal
    shares without it), times the share of a straddling bin inside it. Missing stays missing;
    same edges give the same counts."""
    old = [float(e) for e in old_edges]
    new = np.asarray(new_edges, dtype=float)
    n_new = size(new_edges)
    out = np.zeros(n_new, dtype=float)
    counts = np.asarray(counts, dtype=float)
    if len(counts) != size(old):
        raise ValueError(f"{len(counts)} counts for {size(old)} bins")
    if list(new) == old:
        return counts.copy()
    weights = np.ones(n_new) if new_counts is None else np.asarray(new_counts, dtype=float)
    if len(weights) != n_new:
        raise ValueError(f"{len(weights)} reference counts for {n_new} bins")
    out[-1] += counts[-1]  # missing
    if not old:  # one bin for every number: spread like the new reference
        _spread(out, counts[0], {j: 1.0 for j in range(n_new - 1)}, weights)
        return out
    _spread(out, counts[0], _below(new, old[0]), weights)
    _spread(out, counts[len(old)], _above(new, old[-1]), weights)
    for i in range(1, len(old)):
        a, b, n = old[i - 1], old[i], counts[i]
        if n == 0:
            continue
        if b <= a:
            out[int(np.searchsorted(new, a, "right"))] += n
            continue
        cuts = [a, *(e for e in new if a < e < b), b]
        for lo, hi in zip(cuts, cuts[1:], strict=False):
            out[int(np.searchsorted(new, lo, "right"))] += n * (hi - lo) / (b - a)
    return out


def _below(new: np.ndarray, edge: float) -> dict[int, float]:
    """The new bins holding numbers below `edge`, each with the share of it that lies there."""
    k = int(np.searchsorted(new, edge, "left"))  # bins 0..k-1 lie wholly below
    shares = {j: 1.0 for j in range(k)}
    if k == 0:
        shares[0] = 1.0
    elif k < len(new):
        shares[k] = (edge - new[k - 1]) / (new[k] - new[k - 1])
    else:
        shares[k] = 0.5  # the open top bin: how much of it lies below is unknown
    return {j: s for j, s in shares.items() if s > 0}


def _above(new: np.ndarray, edge: float) -> dict[int, float]:
    """The new bins holding numbers at or above `edge`, with their shares."""
    m = int(np.searchsorted(new, edge, "right"))  # the bin holding `edge`
    shares = {j: 1.0 for j in range(m + 1, len(new) + 1)}
    if m == len(new):
        shares[m] = 1.0
    elif m == 0:
        shares[m] = 0.5  # the open bottom bin
    else:
        shares[m] = (new[m] - edge) / (new[m] - new[m - 1])
    return {j: s for j, s in shares.items() if s > 0}


def _spread(out: np.ndarray, n: float, shares: dict[int, float], weights: np.ndarray) -> None:
    if n == 0:
        return
    w = {j: weights[j] * s for j, s in shares.items()}
    total = sum(w.values())
    if total <= 0:
        w, total = dict(shares), sum(shares.values())
    for j, x in w.items():
        out[j] += n * x / total


def rebin_categorical(
    old_categories: Sequence[str], counts: Sequence[float], new_categories: Sequence[str]
) -> np.ndarray:
    """Counts on one model's categories moved onto another's: a category both know keeps its
    count; one the new model does not know (and the old "other") goes to "other"; missing stays
    missing."""
    counts = np.asarray(counts, dtype=float)
    if len(counts) != size(old_categories):
        raise ValueError(f"{len(counts)} counts for {size(old_categories)} bins")
    known = {str(c): i for i, c in enumerate(new_categories)}
    other, missing = len(new_categories), len(new_categories) + 1
    out = np.zeros(size(new_categories), dtype=float)
    for i, c in enumerate(old_categories):
        out[known.get(str(c), other)] += counts[i]
    out[other] += counts[len(old_categories)]
    out[missing] += counts[len(old_categories) + 1]
    return out
