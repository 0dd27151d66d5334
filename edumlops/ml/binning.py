"""The drift reference's histogram bins, defined once for the drift checks (edumlops.ml.drift,
on rows or frames) and the edge agent (edumlops.edge.models, counting its telemetry). numpy
only: the edge agent has numpy (through onnxruntime) but not pandas.

- A number falls in bin `searchsorted(edges, x, "right")` of the inner edges fixed at training
  time: 0 below the first edge, len(edges) at or above the last (a value exactly on an edge goes
  to the bin above it); a missing number (NaN) in the last bin, len(edges) + 1.
- A category falls in the bin of its index in the reference's categories, an unknown one in the
  "other" bin (len(categories)), a missing one (None) in the last bin (len(categories) + 1).

So a numeric feature has len(edges) + 2 bins and a categorical one len(categories) + 2.

For many numbers at once, `numeric_counts` (and `Grid`, `Counted`, `bin_counts`,
`order_statistics`) give the same counts by counting numbers in cells first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

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


# --- counting many numbers at once ------------------------------------------------------------
# A search per number (`numeric_bins`) costs about 20 ns even into 9 edges, and a sort of a
# million numbers about 55 ms. A multiply-add per number costs about 1 ns: equal-width cells
# whose index never decreases as the number grows are a coarse sort, and counts per cell settle
# most questions about order. What must be exact (a bin edge, an order statistic, the largest
# gap of two ECDFs) is then decided on the few cells where it can be, from their numbers alone.

SMALL = 4096  # below this many numbers, a search or a sort is cheaper than cells


@dataclass(frozen=True)
class Grid:
    """`size` equal-width cells over a span of numbers, cell 0 below it and `size + 1` above it.
    The cell of a number is fl(fl(x * scale) + offset) clipped and truncated: every step rounds
    monotonically, so a larger number never lands in a lower cell (±inf go to the end cells).
    Hence a number in a lower cell is smaller than any number in a higher cell."""

    scale: float
    offset: float
    size: int

    @classmethod
    def over(cls, sample: np.ndarray, size: int) -> Grid:
        """Cells spanning the finite numbers of `sample` (any span is exact, a span that fits
        the data is fast)."""
        finite = sample[np.isfinite(sample)]
        lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        if not hi > lo:
            hi = lo + 1.0
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            scale = size / (hi - lo)
            offset = 1.0 - lo * scale
        if not (np.isfinite(scale) and scale > 0 and np.isfinite(offset)):
            scale, offset = 1.0, 0.0
        return cls(float(scale), float(offset), int(size))

    @property
    def n_cells(self) -> int:
        return self.size + 2

    def cells(self, x: np.ndarray) -> np.ndarray:
        """The cell of each number (no NaN)."""
        t = self.position(x)
        np.clip(t, 0, self.size + 1, out=t)
        return t.astype(np.intp)

    def holding(self, numbers: np.ndarray) -> np.ndarray:
        """A mask of the cells holding these numbers."""
        out = np.zeros(self.n_cells, dtype=bool)
        out[self.cells(np.asarray(numbers, dtype=float))] = True
        return out

    def position(self, x: np.ndarray) -> np.ndarray:
        """fl(fl(x * scale) + offset), whose whole part is the cell of x (before clipping) and
        whose fraction says where in the cell x lies; never decreasing as x grows."""
        with np.errstate(over="ignore", invalid="ignore"):
            t = np.multiply(x, self.scale, dtype=float)
            np.add(t, self.offset, out=t)
        return t

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Where each cell begins and ends, as numbers: cell j of 1..size spans about
        [(j - offset) / scale, (j + 1 - offset) / scale). The open end cells get an empty span
        at their inner bound (cell 0 at the start of cell 1, the last at the end of cell size):
        whoever integrates over them takes their numbers as the bounds. A number may sit an
        ulp outside its cell's span: sums over cells that add whole spans still telescope."""
        k = np.arange(1, self.size + 2, dtype=float)
        inner = (k - self.offset) / self.scale  # the start of cells 1..size + 1
        start = np.concatenate([inner[:1], inner])
        end = np.concatenate([inner, inner[-1:]])
        return start, end


def sample(values: np.ndarray, k: int = 4096) -> np.ndarray:
    """Every n/k-th number: a span to build cells on (order does not matter for exactness)."""
    return values[:: max(1, len(values) // k)]


def grid_for(*samples: np.ndarray) -> Grid:
    """A grid for numbers like these (about 16 numbers per cell on average)."""
    n = sum(len(s) for s in samples)
    size = int(min(max(n // 16, 64), 1 << 16))
    return Grid.over(np.concatenate([sample(s) for s in samples]), size)


@dataclass
class Counted:
    """Numbers (no NaN) with their cells on a grid and how many fell in each cell (what is
    worked out from them once, such as `one_number`, is kept)."""

    values: np.ndarray
    grid: Grid
    cells: np.ndarray
    counts: np.ndarray
    kept: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(
        default=None, repr=False, compare=False
    )  # the cells kept at hand, their numbers and those numbers' cells (`keep`)

    @classmethod
    def of(cls, values: np.ndarray, grid: Grid) -> Counted:
        cells = grid.cells(values)
        return cls(values, grid, cells, np.bincount(cells, minlength=grid.n_cells))

    def __len__(self) -> int:
        return len(self.values)

    def before(self) -> np.ndarray:
        """How many numbers lie in the cells before each cell (and, last, in all of them)."""
        out = np.zeros(self.grid.n_cells + 1, dtype=np.int64)
        np.cumsum(self.counts, out=out[1:])
        return out

    @cached_property
    def one_number(self) -> tuple[np.ndarray, np.ndarray]:
        """A number of each cell (any one; 0 in an empty cell) and whether the cell holds more
        than one distinct number."""
        first = np.zeros(self.grid.n_cells)
        first[self.cells] = self.values
        mixed = np.zeros(self.grid.n_cells, dtype=bool)
        mixed[self.cells[self.values != first[self.cells]]] = True
        return first, mixed

    def sums(self) -> np.ndarray:
        """The sum of the numbers in each cell (±inf or NaN in an end cell holding infinities)."""
        with np.errstate(invalid="ignore"):
            return np.bincount(self.cells, weights=self.values, minlength=self.grid.n_cells)

    def keep(self, chosen: np.ndarray) -> None:
        """Keep the numbers of the chosen cells (a mask) at hand: a later `take` of cells among
        them reads these instead of every number, and gives the same numbers in the same
        order. Worth it when several questions need a few cells each."""
        at = np.flatnonzero(chosen[self.cells])
        self.kept = (chosen.copy(), self.values[at], self.cells[at])

    def take(self, chosen: np.ndarray) -> np.ndarray:
        """The numbers in the chosen cells (a mask over cells), in the order they come in."""
        if not chosen.any():
            return self.values[:0]
        if self.kept is not None and not np.any(chosen & ~self.kept[0]):
            _, values, cells = self.kept
            return values[chosen[cells]]
        return self.values[chosen[self.cells]]


def bin_counts(edges: Sequence[float], counted: Counted) -> np.ndarray:
    """`counts(numeric_bins(edges, values))` without the missing bin, for counted values: only
    the numbers in a cell that also holds an edge are compared with the edges."""
    e = np.asarray(edges, dtype=float)
    if len(e) == 0:
        return np.array([len(counted)], dtype=np.int64)
    if not np.isfinite(e).all() or np.any(e[1:] < e[:-1]):
        return np.bincount(np.searchsorted(e, counted.values, "right"), minlength=len(e) + 1)
    grid = counted.grid
    edge_cells = grid.cells(e)
    holds_edge = grid.holding(e)
    # a cell without an edge lies wholly above the edges of lower cells, below the others
    bin_of_cell = np.searchsorted(edge_cells, np.arange(grid.n_cells), "left")
    clear = np.where(holds_edge, 0, counted.counts)
    out = np.bincount(bin_of_cell, weights=clear, minlength=len(e) + 1).round().astype(np.int64)
    crowded = counted.counts[holds_edge].sum() > len(counted) // 8
    if not crowded or np.any(edge_cells[1:] == edge_cells[:-1]):
        near = counted.take(holds_edge)
        return out + np.bincount(np.searchsorted(e, near, "right"), minlength=len(e) + 1)
    # ties crowd the edges' cells (counts, rounded values: the edges are values of the data):
    # one edge per cell, so one comparison of every number with its cell's edge splits them
    edge_of_cell = np.full(grid.n_cells, -np.inf)
    edge_of_cell[edge_cells] = e
    at_or_above = counted.values >= edge_of_cell[counted.cells]
    above = np.bincount(counted.cells, weights=at_or_above, minlength=grid.n_cells)
    above = above[edge_cells].round().astype(np.int64)
    below = counted.counts[edge_cells] - above
    np.add.at(out, bin_of_cell[edge_cells], below)
    np.add.at(out, bin_of_cell[edge_cells] + 1, above)
    return out


def order_statistics(counted: Counted, ranks: np.ndarray) -> np.ndarray:
    """The numbers at these ranks (0-based) of the sorted numbers, partitioning only the cells
    they fall in."""
    ranks = np.asarray(ranks, dtype=np.int64)
    before = counted.before()
    cell = np.searchsorted(before, ranks, "right") - 1  # before[cell] <= rank < before[cell + 1]
    chosen = np.zeros(counted.grid.n_cells, dtype=bool)
    chosen[cell] = True
    taken = counted.take(chosen)
    # position in sorted `taken`: rank less the numbers before that cell that were not taken
    skipped = before[:-1] - np.concatenate([[0], np.cumsum(counted.counts * chosen)[:-1]])
    positions = ranks - skipped[cell]
    taken.partition(np.unique(positions))
    return taken[positions]


def numeric_counts(edges: Sequence[float], numbers: Sequence[float] | np.ndarray) -> np.ndarray:
    """`counts(numeric_bins(edges, numbers), size(edges))`, at the speed of counting on many
    numbers."""
    x = np.asarray(numbers, dtype=float)
    if len(x) < SMALL:
        return counts(numeric_bins(edges, x), size(edges))
    missing = np.isnan(x)
    n_missing = int(np.count_nonzero(missing))
    values = x[~missing] if n_missing else x
    counted = Counted.of(values, grid_for(values))
    return np.append(bin_counts(edges, counted), n_missing)
