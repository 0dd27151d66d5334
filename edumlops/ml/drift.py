"""Drift of model inputs and predictions, the education way: histograms on reference bins fixed
at training time, effect sizes first, p-values corrected across features, "insufficient data"
rather than a silent "no drift" for small schools, and baselines chosen by the academic calendar.

No Django here: the monitors pass frames or histograms in and store what comes out.

- Numeric features are binned on the reference's quantiles (edges fixed once; values outside
  fall in the open end bins; missing values get their own bin), categorical features on the
  reference's categories (unknown ones in an "other" bin, missing in their own).
- PSI and Jensen–Shannon distance are computed on those histograms for every type, so raw rows
  and the aggregates an edge node sends give the same answer. Where raw rows are at hand, a
  Kolmogorov–Smirnov test (numeric) or a chi-square test (categorical) adds a p-value; on
  histograms alone a chi-square test on the binned counts does. p-values are corrected across
  the features of one check (Benjamini–Hochberg).
- Where raw rows are at hand for a numeric feature, the normed Wasserstein distance (how far
  values moved, in reference standard deviations, as Evidently computes it) is a third effect
  size: when a few percent of the rows jump far into a tail, they stay in the reference's top
  decile bin, so PSI and JS on the bins barely move, but the values moved far.
- A feature drifts when an effect size passes its threshold and, where a p-value exists, the
  corrected p-value is below alpha: on large windows a p-value alone flags noise (FACTS.md).
- Fewer than `min_count` current rows: the result is *insufficient data*, never "no drift".

At the speed of counting (a million rows a side in milliseconds per feature), with the same
numbers as the plain way (np.quantile, a search per value, str() per value, ks_2samp):

- A numeric column is counted once on equal-width cells (edumlops.ml.binning.Grid: a
  multiply-add per number, no sort). Quantile edges, bin counts, the KS statistic and the
  Wasserstein distance (with the sum of each cell's numbers) are read from the counts; only the
  few cells where an answer is still open are sorted or compared.
- A categorical column is coded once (rows sharing one object by its address, else by
  pd.factorize); str() runs on its distinct values only.
- Work a verdict does not need is skipped: nothing is counted for a window with too few rows,
  and the exact KS statistic is not sought when its lower bound already gives p = 0.
- One feature at a time: no copy of a frame, nothing kept in the reference but what it
  stores (the JSON of a stored reference is unchanged).
"""

from __future__ import annotations

import ctypes
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from edumlops.ml import binning

MISSING = "__missing__"
OTHER = "__other__"
PREDICTION = "__prediction__"  # the column of the model's own output in monitored frames
Status = Literal["drift", "no_drift", "insufficient_data"]


@dataclass
class FeatureReference:
    """How one feature looked at training time, as the bins to count later data in."""

    name: str
    kind: Literal["numeric", "categorical"]
    edges: list[float] = field(default_factory=list)  # inner edges, numeric only
    categories: list[str] = field(default_factory=list)  # categorical only
    counts: list[int] = field(default_factory=list)  # the reference histogram

    @property
    def labels(self) -> list[str]:
        if self.kind == "numeric":
            bounds = ["-inf", *(f"{e:g}" for e in self.edges), "inf"]
            return [f"[{a}, {b})" for a, b in zip(bounds, bounds[1:], strict=False)] + [MISSING]
        return [*self.categories, OTHER, MISSING]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureReference:
        return cls(**data)

    def histogram(self, values: Any) -> np.ndarray:
        """Counts of `values` in this feature's bins (edumlops.ml.binning)."""
        series = values if isinstance(values, pd.Series) else pd.Series(values)
        if self.kind == "numeric":
            return binning.numeric_counts(self.edges, _numbers(series))
        return _Categories.of(series).histogram(self.categories)

    def rebin(self, counts: Sequence[float], source: FeatureReference) -> list[float]:
        """Counts kept on `source`'s bins (another model's reference for this feature), on these
        bins (edumlops.ml.binning)."""
        if source.kind != self.kind:
            raise ValueError(f"{self.name}: {source.kind} bins cannot become {self.kind} bins")
        if self.kind == "numeric":
            moved = binning.rebin_numeric(source.edges, counts, self.edges, self.counts or None)
        else:
            moved = binning.rebin_categorical(source.categories, counts, self.categories)
        return moved.tolist()


def school_year(day: dt.date) -> str:
    """The school year a day belongs to, as people write it: 2025–26 (from August)."""
    first = day.year if day.month >= 8 else day.year - 1
    return f"{first}–{(first + 1) % 100:02d}"


def add_histograms(*parts: dict[str, Sequence[float]]) -> dict[str, list[float]]:
    """Histograms on the same bins, added feature by feature (a feature missing from one part
    counts as zeros there)."""
    out: dict[str, list[float]] = {}
    for part in parts:
        for name, counts in part.items():
            if name in out and len(out[name]) == len(counts):
                out[name] = [a + b for a, b in zip(out[name], counts, strict=True)]
            elif name not in out:
                out[name] = list(counts)
    return out


def build_reference(
    frame: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    bins: int = 10,
    max_categories: int = 50,
) -> dict[str, FeatureReference]:
    """Reference bins and histograms from the training rows."""
    out: dict[str, FeatureReference] = {}
    for name in numeric:
        numbers = _numbers(frame[name])
        missing = np.isnan(numbers)
        n_missing = int(np.count_nonzero(missing))
        values = numbers[~missing] if n_missing else numbers
        if len(values) < binning.SMALL:
            qs = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]) if len(values) else []
            edges = sorted({float(q) for q in qs})
            out[name] = FeatureReference(name, "numeric", edges=edges)
            out[name].counts = out[name].histogram(numbers).tolist()
            continue
        counted = binning.Counted.of(values, binning.grid_for(values))
        qs = _quantiles(counted, np.linspace(0, 1, bins + 1)[1:-1])
        edges = sorted({float(q) for q in qs})
        counts = [*binning.bin_counts(edges, counted).tolist(), n_missing]
        out[name] = FeatureReference(name, "numeric", edges=edges, counts=counts)
    for name in categorical:
        seen = _Categories.of(frame[name])
        top = seen.most_frequent(max_categories)
        ref = FeatureReference(name, "categorical", categories=sorted(top))
        ref.counts = seen.histogram(ref.categories).tolist()
        out[name] = ref
    return out


def _numbers(series: pd.Series) -> np.ndarray:
    """A column as float numbers, NaN where a value is missing or not a number."""
    if series.dtype == np.float64:
        return series.to_numpy()
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)


def _quantiles(counted: binning.Counted, qs: np.ndarray) -> np.ndarray:
    """`np.quantile(values, qs)` (its default "linear" method) from the two order statistics
    around each quantile, found by counting: the same interpolation, step for step."""
    n = len(counted)
    virtual = (n - 1) * qs
    previous = np.floor(virtual)
    gamma = virtual - previous
    below = previous.astype(np.intp)
    above = np.minimum(below + 1, n - 1)
    stats = binning.order_statistics(counted, np.concatenate([below, above]))
    a, b = stats[: len(qs)], stats[len(qs) :]
    diff_b_a = b - a
    with np.errstate(invalid="ignore"):  # inf - inf, as np.quantile meets it too
        return np.where(gamma >= 0.5, b - diff_b_a * (1 - gamma), a + diff_b_a * gamma)


@dataclass
class _Categories:
    """A column's values as categories, counted once: the text of each distinct value (its
    `astype(str)`, as `categorical_bins` compares them, in order of first appearance), how many
    rows hold it, and how many rows miss a value. The rows are coded in one pass; str() and
    notna() run on the distinct values only."""

    texts: list[str]
    counts: np.ndarray
    missing: int

    @classmethod
    def of(cls, series: pd.Series) -> _Categories:
        shared = _shared_objects(series)
        if shared is not None:
            codes, objects = shared
            return cls._tally(codes, pd.Series(objects, dtype=object))
        codes, uniques = pd.factorize(series)
        numpy_kind = series.dtype.kind if isinstance(series.dtype, np.dtype) else ""
        if numpy_kind in "iub" or all(isinstance(v, str) for v in np.asarray(uniques)):
            return cls._tally(codes, pd.Series(uniques))
        # a hash table takes 1, 1.0 and True for one key (and 0.0 for -0.0), but they are
        # three texts: code the texts themselves
        present = series.notna().to_numpy()
        as_text = series.astype(str).to_numpy(dtype=object, copy=True)
        as_text[~present] = None
        codes, uniques = pd.factorize(as_text)
        return cls._tally(codes, pd.Series(uniques, dtype=object))

    @classmethod
    def _tally(cls, codes: np.ndarray, distinct: pd.Series) -> _Categories:
        """Counts per text from codes into `distinct` (-1: missing); distinct values that are
        missing themselves (None, NaN) count as missing, equal texts are one category."""
        per_value = np.bincount(codes + 1, minlength=len(distinct) + 1)
        present = distinct.notna().to_numpy()
        position: dict[str, int] = {}
        counts: list[int] = []
        missing = int(per_value[0])
        for i, text in enumerate(distinct.astype(str).tolist()):
            n = int(per_value[i + 1])
            if not present[i]:
                missing += n
            elif text in position:
                counts[position[text]] += n
            else:
                position[text] = len(counts)
                counts.append(n)
        return cls(list(position), np.array(counts, dtype=np.int64), missing)

    def most_frequent(self, k: int) -> list[str]:
        """The k most frequent texts, ties in the order `value_counts` gives them."""
        ranked = pd.Series(self.counts, index=pd.Index(self.texts, dtype=object))
        return list(ranked.sort_values(ascending=False).index[:k])

    def histogram(self, categories: Sequence[str]) -> np.ndarray:
        """Counts in the bins of these categories (edumlops.ml.binning.categorical_bins)."""
        known = {str(c): i for i, c in enumerate(categories)}
        other = len(categories)
        bins = np.array([known.get(t, other) for t in self.texts], dtype=np.intp)
        out = np.bincount(bins, weights=self.counts, minlength=other + 1).round()
        return np.append(out.astype(np.int64), self.missing)


def _shared_objects(series: pd.Series, most: int = 4096) -> tuple[np.ndarray, np.ndarray] | None:
    """Codes of an object column by which object each row points to, and one row's object per
    code; None when rows mostly hold objects of their own (or the column is not one array of
    objects). Frames read by pandas (read_csv) and frames built from a few labels share one
    object per distinct text, so hashing the objects' addresses, as integers, codes a million
    rows in milliseconds where hashing the strings takes tens. The same object has one text,
    so this never merges values that `astype(str)` tells apart."""
    if series.dtype != object or len(series) < binning.SMALL:
        return None
    values = series.to_numpy()
    if values.ndim != 1 or not values.flags.c_contiguous:
        return None
    # the addresses, read (not kept) while `values` holds the objects alive
    addresses = np.ctypeslib.as_array(
        (ctypes.c_ssize_t * len(values)).from_address(values.ctypes.data)
    )
    codes, unique = pd.factorize(addresses)
    if len(unique) > most:
        return None
    one_row = np.empty(len(unique), dtype=np.intp)
    one_row[codes] = np.arange(len(codes))  # any row of a code holds the same object
    return codes, values[one_row]


# --- statistics on histograms -----------------------------------------------------------------
def _shares(counts: Any, eps: float = 1e-4) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    shares = counts / total if total else np.full(len(counts), 1 / len(counts))
    return np.clip(shares, eps, None)


def psi(expected: Any, actual: Any) -> float:
    """Population stability index of two histograms on the same bins."""
    e, a = _shares(expected), _shares(actual)
    return float(np.sum((a - e) * np.log(a / e)))


def jensen_shannon(expected: Any, actual: Any) -> float:
    """Jensen–Shannon distance (base 2: 0 same, 1 disjoint) of two histograms."""
    from scipy.spatial.distance import jensenshannon

    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.sum() == 0 or a.sum() == 0:
        return 0.0
    return float(jensenshannon(e / e.sum(), a / a.sum(), base=2))


def chi_square_p(expected: Any, actual: Any) -> float:
    """p-value of a chi-square test that two histograms come from one distribution."""
    from scipy.stats import chi2_contingency

    table = np.vstack([np.asarray(expected, float), np.asarray(actual, float)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 1.0
    return float(chi2_contingency(table)[1])


EXACT_KS_ROWS = 10_000  # ks_2samp's method "auto" is exact up to this many rows a side


def ks_p(reference: Any, current: Any) -> float:
    """p-value of the two-sample Kolmogorov–Smirnov test, as scipy.stats.ks_2samp gives it:
    exact up to 10,000 rows a side, asymptotic beyond, where the statistic is found by
    counting (ks_statistic) rather than by sorting both samples."""
    from scipy.stats import ks_2samp

    r = pd.to_numeric(pd.Series(reference), errors="coerce").dropna().to_numpy()
    c = pd.to_numeric(pd.Series(current), errors="coerce").dropna().to_numpy()
    if len(r) == 0 or len(c) == 0:
        return 1.0
    if max(len(r), len(c)) <= EXACT_KS_ROWS or not (_floats_exact(r) and _floats_exact(c)):
        return float(ks_2samp(r, c).pvalue)
    r, c = r.astype(float, copy=False), c.astype(float, copy=False)
    grid = binning.grid_for(r, c)
    return _ks_asymptotic_p(binning.Counted.of(r, grid), binning.Counted.of(c, grid))


def _floats_exact(x: np.ndarray) -> bool:
    """Do these numbers keep their order and ties as float64?"""
    if x.dtype.kind == "f":
        return True
    if x.dtype.kind in "iub":
        return bool(np.abs(x.astype(float)).max() < 2.0**53)
    return False


def _ks_asymptotic_p(a: binning.Counted, b: binning.Counted) -> float:
    """ks_2samp's p-value for large samples (its "asymp" method: the two-sided one-sample KS
    distribution at the effective size n1·n2/(n1 + n2), rounded)."""
    m, n = sorted([float(len(a)), float(len(b))], reverse=True)
    size = float(np.round(m * n / (m + n)))
    # the gap at the cell boundaries is a lower bound of the statistic: when it already gives
    # p = 0 (a clear shift), the exact statistic cannot change the p-value
    if kstwo_sf(ks_statistic(a, b, bound_only=True), size) == 0.0:
        return 0.0
    return kstwo_sf(ks_statistic(a, b), size)


_MINLOG = -7.451332191019412076235e2  # log of the smallest double (subnormal)


def kstwo_sf(d: float, n: float) -> float:
    """scipy.stats.kstwo.sf(d, n), the same branches (Simard & L'Ecuyer, as scipy's _kolmogn
    takes them), with one made fast: where scipy sums Smirnov's one-sided series term by term
    (2.2 <= n·d² < 370, a p-value between about 0.02 and 1e-160: 0.7 s at n = 500,000), the
    same series is summed here as one array (agreeing to about 1e-9, relatively)."""
    from scipy.stats import kstwo

    if n < 1013 or not 0 < n * d < n - 1 or n * d <= 1 or d >= 0.5:
        return float(kstwo.sf(d, n))
    if n * d * d >= 370.0:
        return 0.0
    if n * d * d < 2.2:
        return float(kstwo.sf(d, n))
    return float(np.clip(2 * _smirnov(int(n), d), 0, 1))


def _smirnov(n: int, d: float) -> float:
    """P(D+_n >= d), the one-sided statistic's tail (Birnbaum & Tingey's sum), for n >= 1013:
    d · Σ_v C(n, v) (d + v/n)^(v-1) (1 - d - v/n)^(n-v) over v <= n(1 - d), in logarithms."""
    from scipy.special import gammaln, logsumexp

    if -2 * n * d * d < _MINLOG:
        return 0.0
    v = np.arange(int(np.floor(n * (1 - d))) + 1, dtype=float)
    up = d + v / n
    down = 1.0 - up
    v, up, down = v[down > 0], up[down > 0], down[down > 0]
    log_terms = (
        gammaln(n + 1.0)
        - gammaln(v + 1)
        - gammaln(n - v + 1)
        + (v - 1) * np.log(up)
        + (n - v) * np.log(down)
    )
    return float(np.exp(logsumexp(log_terms) + np.log(d)))


def ks_statistic(a: binning.Counted, b: binning.Counted, bound_only: bool = False) -> float:
    """The two-sample KS statistic of numbers counted on one grid: the largest gap between
    their ECDFs, the very float ks_2samp computes (count_a / n_a - count_b / n_b at a data
    point). The gaps just before each cell are exact; inside a cell a gap can grow at most by
    that cell's count on one side, so only the cells that could beat the largest boundary gap
    are sorted and searched. `bound_only`: the largest boundary gap, a lower bound."""
    n1, n2 = len(a), len(b)
    before_a, before_b = a.before(), b.before()
    gap = before_a / n1 - before_b / n2  # F_a - F_b just before each cell (last: after all)
    found = float(np.max(np.abs(gap)))
    if bound_only:
        return found
    open_ = _ks_open(a, b, gap, found)
    if int(a.counts[open_].sum() + b.counts[open_].sum()) > (n1 + n2) // 8:
        open_ &= _mixed_cells(a, b)  # e.g. counts of logins: each cell one repeated number
    if not open_.any():
        return found
    av, bv = np.sort(a.take(open_)), np.sort(b.take(open_))
    points = np.concatenate([av, bv])
    cells = a.grid.cells(points)
    fa = np.searchsorted(av, points, "right") + (before_a[:-1] - _taken_before(a, open_))[cells]
    fb = np.searchsorted(bv, points, "right") + (before_b[:-1] - _taken_before(b, open_))[cells]
    return max(found, float(np.max(np.abs(fa / n1 - fb / n2))))


def _ks_open(a: binning.Counted, b: binning.Counted, gap: np.ndarray, found: float) -> np.ndarray:
    """The cells where the ECDF gap could beat `found`, the largest gap at a cell boundary."""
    # a boundary gap is the gap at the largest data point below it, so it is attained; the
    # margin keeps a cell whose bound ties the largest one up to rounding
    reach = np.maximum(gap[:-1] + a.counts / len(a), b.counts / len(b) - gap[:-1])
    return reach > found - 1e-12


def _taken_before(counted: binning.Counted, chosen: np.ndarray) -> np.ndarray:
    """How many numbers of chosen cells lie in the cells before each cell."""
    return np.concatenate([[0], np.cumsum(counted.counts * chosen)[:-1]])


def _mixed_cells(a: binning.Counted, b: binning.Counted) -> np.ndarray:
    """Cells holding more than one distinct number. In a cell of one repeated number the ECDF
    gap is the gap before it, then the gap after it: both are boundary gaps."""
    return _one_number(a, b)[1]


def _one_number(a: binning.Counted, b: binning.Counted) -> tuple[np.ndarray, np.ndarray]:
    """A number of each cell (any one; 0 in an empty cell) and whether the cell holds more
    than one distinct number, on both sides together (each side's worked out once)."""
    (first_a, mixed_a), (first_b, mixed_b) = a.one_number, b.one_number
    both = (a.counts > 0) & (b.counts > 0)
    mixed = mixed_a | mixed_b | (both & (first_a != first_b))
    return np.where(b.counts > 0, first_b, first_a), mixed


# --- Wasserstein --------------------------------------------------------------------------------
WASSERSTEIN_THRESHOLD = 0.1  # Evidently's default for its normed Wasserstein distance
SPREAD_FLOOR = 0.001  # Evidently's floor under the reference's standard deviation


def wasserstein(reference: Any, current: Any) -> float | None:
    """How far the values moved, in standard deviations of the reference: the Wasserstein-1
    distance of the two samples over the reference's standard deviation, as Evidently's
    "normed" Wasserstein test computes it (scipy.stats.wasserstein_distance(ref, cur) /
    max(np.std(ref), 0.001), after dropping NaN and ±inf, as Evidently drops them). 0: the
    same values; 0.5: every value moved half a standard deviation, or a twentieth of them ten.
    None when a side has no finite number. Counted, not sorted, above 10,000 rows a side
    (wasserstein_statistic)."""
    r = pd.to_numeric(pd.Series(reference), errors="coerce").to_numpy(dtype=float)
    c = pd.to_numeric(pd.Series(current), errors="coerce").to_numpy(dtype=float)
    r, c = r[np.isfinite(r)], c[np.isfinite(c)]
    if len(r) == 0 or len(c) == 0:
        return None
    if max(len(r), len(c)) <= EXACT_KS_ROWS:
        from scipy.stats import wasserstein_distance

        return float(wasserstein_distance(r, c)) / _spread(r)
    grid = binning.grid_for(r, c)
    distance = wasserstein_statistic(binning.Counted.of(r, grid), binning.Counted.of(c, grid))
    return distance / _spread(r)


def _spread(reference: np.ndarray) -> float:
    """The standard deviation Evidently norms by (np.std: population, of the finite numbers),
    at least SPREAD_FLOOR. From the sum and the sum of squares (two reads of the numbers
    rather than np.std's five passes) where that keeps about ten digits: when the mean is
    within a thousand standard deviations of zero; else by np.std."""
    n = len(reference)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(np.sum(reference)) / n
        square = float(np.einsum("i,i->", reference, reference)) / n  # not BLAS: no threads
        variance = square - mean * mean
    if np.isfinite(square) and variance > 1e-6 * square:
        return max(float(np.sqrt(variance)), SPREAD_FLOOR)
    finite = reference if np.isfinite(square) else reference[np.isfinite(reference)]
    if len(finite) == 0:
        return SPREAD_FLOOR
    with np.errstate(over="ignore", invalid="ignore"):
        return max(float(np.std(finite)), SPREAD_FLOOR)


def wasserstein_statistic(a: binning.Counted, b: binning.Counted) -> float:
    """The Wasserstein-1 distance of the finite numbers counted on one grid, the area between
    their ECDFs ∫|F_a - F_b| dx, as scipy.stats.wasserstein_distance computes it on them, to
    rounding: it sums the gaps between sorted neighbours, this sums cells, and they agree to
    about 1e-15 relatively on data of about unit scale; the sums of a cell's numbers lose
    about 1e-16 of the numbers' magnitude, so on numbers far from zero against their spread
    (1e9 ± 1e3) the agreement is about 1e-10. ±inf are left out (NaN must be, before). NaN
    when a side has no finite number. How: _Area."""
    return _Area(a, b).total()


class _Area:
    """The area between the ECDFs of two sides counted on one grid, in steps: what the counts
    and the sums of each cell's numbers settle; bounds of the rest from the end cells'
    numbers (`between`); the exact rest (`total`) from the numbers of the cells still `open`.
    A caller may keep those cells' numbers at hand in between.

    Just before each cell the ECDF gap F_a - F_b is exact (from the counts); inside a cell it
    rises by 1/n_a at each of a's numbers and falls by 1/n_b at each of b's. Its signed
    integral over a cell is the gap before the cell times the cell's width plus each number's
    step times its distance to the cell's end: counts and the sum of the cell's numbers.
    Where the gap cannot change sign inside a cell (the counts bound how far it moves), that
    is the cell's share of the area. A cell of one repeated number (counts with ties) has the
    gap before it up to that number and the gap after it from there. Over an open cell the
    area lies between |signed integral| and the cell's width times the largest |gap| it can
    reach; exactly, the cell is cut in PIECES and counted again, and only the pieces where the
    gap may still change sign are sorted, with the end cells (their numbers bound them, not
    the grid)."""

    def __init__(self, a: binning.Counted, b: binning.Counted) -> None:
        self.a, self.b = a, b
        sums = a.sums(), b.sums()
        self.cells = cells = _Cells.of(a, b, _finite_counts(a, sums[0]), _finite_counts(b, sums[1]))
        n, last = cells.n, a.grid.n_cells - 1
        self.ends = np.zeros(a.grid.n_cells, dtype=bool)
        self.ends[[0, last]] = True
        self.open = open_ = cells.unsettled()
        if 0 in n:
            self.settled, self.slack = float("nan"), (0.0, 0.0)
            return
        signed = np.abs(cells.signed(*sums))
        self.settled = float(np.sum(signed, where=~open_))
        crowded = open_ & (cells.count_a + cells.count_b >= sum(n) // 1024)
        if int(cells.count_a[crowded].sum() + cells.count_b[crowded].sum()) > sum(n) // 8:
            number, mixed = _one_number(a, b)
            single = np.flatnonzero(open_ & ~mixed & ~self.ends)
            self.settled += cells.single_area(single, number[single])
            open_[single] = False
        # the inner open cells' area lies between these
        inner = np.flatnonzero(open_ & ~self.ends)
        width = cells.end[inner] - cells.start[inner]
        up, down = cells.high[inner], -cells.low[inner]
        least = signed[inner]
        most = np.minimum(width * np.maximum(up, down), least + 2 * width * np.minimum(up, down))
        self.slack = float(least.sum()), float(np.maximum(most, least).sum())

    def between(self) -> tuple[float, float]:
        """The area lies between these (from the end cells' numbers, not the open cells')."""
        if not np.isfinite(self.settled):
            return self.settled, self.settled
        a, b, ends = self.a, self.b, self.ends
        known = self.settled + _open_area(a.take(ends), b.take(ends), a.grid, ends, self.cells)
        return known + self.slack[0], known + self.slack[1]

    def total(self) -> float:
        """The area (NaN when a side has no finite number)."""
        a, b, open_ = self.a, self.b, self.open
        if not np.isfinite(self.settled) or not open_.any():
            return self.settled
        return self.settled + _open_area(a.take(open_), b.take(open_), a.grid, open_, self.cells)


def _finite_counts(counted: binning.Counted, sums: np.ndarray) -> np.ndarray:
    """Counts per cell without ±inf (they lie in the end cells, whose sums they make
    infinite or NaN)."""
    if np.isfinite(sums[0]) and np.isfinite(sums[-1]):
        return counted.counts
    ends = counted.values[(counted.cells == 0) | (counted.cells == counted.grid.n_cells - 1)]
    out = counted.counts.copy()
    out[0] -= int(np.count_nonzero(np.isneginf(ends)))
    out[-1] -= int(np.count_nonzero(np.isposinf(ends)))
    return out


@dataclass
class _Cells:
    """Consecutive cells of the line, in order: where each starts and ends, how many numbers
    of each side it holds, how many lie before it (of all n numbers of each side), and the
    gap F_a - F_b just before and just after it. The cells `kept_open` are never settled
    (the grid's end cells: their numbers bound them)."""

    start: np.ndarray
    end: np.ndarray
    count_a: np.ndarray
    count_b: np.ndarray
    before_a: np.ndarray
    before_b: np.ndarray
    n: tuple[int, int]
    kept_open: np.ndarray | None = None

    def __post_init__(self) -> None:
        n1, n2 = (max(k, 1) for k in self.n)
        self.rise, self.fall = self.count_a / n1, self.count_b / n2  # the gap's steps in a cell
        self.gap_before = self.before_a / n1
        self.gap_before -= self.before_b / n2
        # to rounding (1e-16, where two different shares differ by 1 / (n_a n_b) at least)
        self.gap_after = self.gap_before + self.rise
        self.gap_after -= self.fall

    @classmethod
    def of(
        cls, a: binning.Counted, b: binning.Counted, count_a: np.ndarray, count_b: np.ndarray
    ) -> _Cells:
        """The grid's cells, with these counts."""
        start, end = a.grid.bounds()
        ends = np.zeros(a.grid.n_cells, dtype=bool)
        ends[[0, -1]] = True
        before_a, before_b = np.cumsum(count_a), np.cumsum(count_b)
        n = int(before_a[-1]), int(before_b[-1])
        before_a -= count_a
        before_b -= count_b
        return cls(start, end, count_a, count_b, before_a, before_b, n, ends)

    def unsettled(self) -> np.ndarray:
        """A mask of the cells where the gap may change sign: from the gap before a cell it
        rises by at most count_a / n_a and falls by at most count_b / n_b, and it must end at
        the gap after it. (Rounding can only keep open a cell whose gap touches 0 exactly,
        which costs a sort, never settle one that crosses it.)"""
        if 0 in self.n:
            return np.zeros(len(self.start), dtype=bool)
        rise, fall = self.rise, self.fall
        # the least and the most the gap can be inside each cell
        self.low = low = np.maximum(self.gap_before - fall, self.gap_after - rise)
        self.high = high = np.minimum(self.gap_before + rise, self.gap_after + fall)
        out = low < 0
        out &= high > 0
        if self.kept_open is not None:
            out |= self.kept_open
        return out

    def signed(self, sums_a: np.ndarray, sums_b: np.ndarray) -> np.ndarray:
        """∫ F_a - F_b over each cell, from the sums of each cell's numbers (the area of a
        cell where the gap keeps one sign is its absolute value)."""
        with np.errstate(invalid="ignore", over="ignore"):  # the end cells' sums may be inf
            out = self.count_a * self.end  # each number's distance to its cell's end
            out -= sums_a
            out /= max(self.n[0], 1)
            out -= (self.count_b * self.end - sums_b) / max(self.n[1], 1)
            out += self.gap_before * (self.end - self.start)
        return out

    def single_area(self, i: np.ndarray, number: np.ndarray) -> float:
        """The area over cells i, each holding one repeated number."""
        return float(
            np.sum(np.abs(self.gap_before[i]) * (number - self.start[i]))
            + np.sum(np.abs(self.gap_after[i]) * (self.end[i] - number))
        )


def _sorted_area(av: np.ndarray, bv: np.ndarray, key: Any, cells: _Cells) -> float:
    """The area over the cells holding these numbers, from the numbers sorted (`key` gives
    the cell of sorted numbers, never decreasing): between neighbours the gap is
    count_a / n_a - count_b / n_b as scipy computes it; from a cell's start to its first
    number the gap before the cell, from its last number to its end the gap after it. ±inf
    are left out."""
    values = np.concatenate([av, bv])
    is_a = np.zeros(len(values), dtype=bool)
    is_a[: len(av)] = True
    finite = np.isfinite(values)
    if not finite.all():
        values, is_a = values[finite], is_a[finite]
    if len(values) == 0:
        return 0.0
    order = np.argsort(values, kind="stable")
    values, is_a = values[order], is_a[order]
    at = key(values)
    head = np.ones(len(values), dtype=bool)
    head[1:] = at[1:] != at[:-1]
    heads = np.flatnonzero(head)
    segment = np.cumsum(head) - 1
    seen_a = np.cumsum(is_a)  # a's numbers so far, this one included
    seen_b = np.arange(1, len(values) + 1) - seen_a
    in_a = seen_a - (seen_a - is_a)[heads][segment]  # ... in this cell
    in_b = seen_b - (seen_b - ~is_a)[heads][segment]
    n = cells.n
    gap = (cells.before_a[at] + in_a) / n[0] - (cells.before_b[at] + in_b) / n[1]
    following = np.empty_like(values)
    following[:-1] = values[1:]
    tails = np.append(heads[1:] - 1, len(values) - 1)
    following[tails] = cells.end[at[tails]]
    first = at[heads]
    return float(
        np.sum(np.abs(gap) * (following - values))
        + np.sum(np.abs(cells.gap_before[first]) * (values[heads] - cells.start[first]))
    )


PIECES = 16  # an open cell is cut in this many pieces


def _open_area(
    av: np.ndarray, bv: np.ndarray, grid: binning.Grid, open_: np.ndarray, cells: _Cells
) -> float:
    """The area over the open cells of the grid, from their numbers: the end cells' numbers
    sorted; each inner cell cut in PIECES equal pieces counted like cells (the settled ones
    add their area, the others are sorted). A number's piece is the fraction of its grid
    position (exact: position - cell, a cell >= 1), so pieces keep the order of the numbers."""
    last = grid.n_cells - 1
    chosen = np.flatnonzero(open_[1:last]) + 1
    rank = np.zeros(grid.n_cells, dtype=np.intp)
    rank[chosen] = np.arange(0, len(chosen) * PIECES, PIECES)

    def key(values: np.ndarray, t: np.ndarray | None = None) -> np.ndarray:
        t = grid.position(values) if t is None else t
        cell = t.astype(np.intp)
        t -= cell
        t *= PIECES
        piece = t.astype(np.intp)
        np.minimum(piece, PIECES - 1, out=piece)
        piece += rank[cell]
        return piece

    def split(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The numbers of the end cells, the others and the pieces of the others."""
        t = grid.position(values)
        inner = t >= 1
        inner &= t < last
        if inner.all():
            return values[:0], values, key(values, t)
        return values[~inner], values[inner], key(values[inner], t[inner])

    a_ends, av, ka = split(av)
    b_ends, bv, kb = split(bv)
    area = _sorted_area(a_ends, b_ends, grid.cells, cells) if len(a_ends) + len(b_ends) else 0.0
    if not len(chosen):
        return area
    m = len(chosen) * PIECES
    count_a, count_b = np.bincount(ka, minlength=m), np.bincount(kb, minlength=m)
    piece = np.arange(PIECES + 1, dtype=float) / PIECES
    bounds = (chosen.astype(float)[:, None] + piece - grid.offset) / grid.scale
    pieces = _Cells(
        bounds[:, :-1].ravel(),
        bounds[:, 1:].ravel(),
        count_a,
        count_b,
        np.repeat(cells.before_a[chosen], PIECES) + _before_in_cell(count_a),
        np.repeat(cells.before_b[chosen], PIECES) + _before_in_cell(count_b),
        cells.n,
    )
    still = pieces.unsettled()
    sums_a = np.bincount(ka, weights=av, minlength=m)
    sums_b = np.bincount(kb, weights=bv, minlength=m)
    area += float(np.sum(np.abs(pieces.signed(sums_a, sums_b)), where=~still))
    if still.any():
        area += _sorted_area(av[still[ka]], bv[still[kb]], key, pieces)
    return area


def _before_in_cell(counts: np.ndarray) -> np.ndarray:
    """How many numbers lie in the pieces of the same cell before each piece."""
    per_cell = counts.reshape(-1, PIECES)
    return (np.cumsum(per_cell, axis=1) - per_cell).ravel()


FEW_VALUES = 5  # a numeric feature with at most this many values is judged by its shares


def _few_values(values: Any, most: int = FEW_VALUES) -> bool:
    """At most `most` distinct finite numbers (a 0/1 flag, a small count): exact, and one pass
    over the column only when its first thousand rows hold that few."""
    numbers = _numbers(values)
    numbers = numbers[np.isfinite(numbers)]
    head = np.unique(numbers[:1024])
    if len(head) > most:
        return False
    return bool(np.isin(numbers, head).all())


def _numeric_side_by_side(
    ref: FeatureReference, baseline: pd.Series, current: pd.Series
) -> tuple[list[int], list[int], float, float | None]:
    """Both windows' histograms, the KS p-value and the normed Wasserstein distance of one
    numeric feature, each column counted once on a grid the two share."""
    base, cur = _numbers(baseline), _numbers(current)
    base_missing, cur_missing = np.isnan(base), np.isnan(cur)
    bv = base[~base_missing] if base_missing.any() else base
    cv = cur[~cur_missing] if cur_missing.any() else cur
    if max(len(bv), len(cv)) <= EXACT_KS_ROWS or min(len(bv), len(cv)) == 0:
        return (
            ref.histogram(base).tolist(),
            ref.histogram(cur).tolist(),
            ks_p(bv, cv),
            wasserstein(bv, cv),
        )
    grid = binning.grid_for(bv, cv)
    a, b = binning.Counted.of(bv, grid), binning.Counted.of(cv, grid)
    area, spread = _Area(a, b), _spread(bv)
    # the open cells' numbers are read only when the distance, as reported (4 decimals), is
    # still open once the rest is known: likely when the open cells leave much slack
    likely = area.slack[1] - area.slack[0] > REPORTED * spread
    _keep_what_is_asked(a, b, ref.edges, area.open if likely else area.ends)
    base_counts = [*binning.bin_counts(ref.edges, a).tolist(), int(base_missing.sum())]
    cur_counts = [*binning.bin_counts(ref.edges, b).tolist(), int(cur_missing.sum())]
    least, most = (_rounded(x / spread) for x in area.between())
    normed = least if least == most else _rounded(area.total() / spread)
    return base_counts, cur_counts, _ks_asymptotic_p(a, b), normed


def _keep_what_is_asked(
    a: binning.Counted, b: binning.Counted, edges: Sequence[float], wanted: np.ndarray
) -> None:
    """Keep at hand, in one pass over each side, the numbers of the cells the bins, the KS
    statistic and the Wasserstein distance (`wanted`) may each read, rather than one pass
    each, when they are few."""
    wanted = wanted.copy()
    e = np.asarray(edges, dtype=float)
    if len(e) and np.isfinite(e).all():
        wanted |= a.grid.holding(e)
    gap = a.before() / len(a) - b.before() / len(b)
    wanted |= _ks_open(a, b, gap, float(np.max(np.abs(gap))))
    if int(a.counts[wanted].sum() + b.counts[wanted].sum()) <= (len(a) + len(b)) // 4:
        a.keep(wanted)
        b.keep(wanted)


def bootstrap_psi(expected: Any, actual: Any, n_boot: int = 200, seed: int = 0) -> list[float]:
    """95% interval of PSI, resampling the current window's counts (multinomial)."""
    actual = np.asarray(actual, dtype=int)
    n = int(actual.sum())
    if n == 0:
        return [0.0, 0.0]
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, actual / n, size=n_boot)
    e = _shares(expected)
    a = np.clip(draws / n, 1e-4, None)
    values = np.sum((a - e) * np.log(a / e), axis=1)
    return [
        round(float(np.percentile(values, 2.5)), 4),
        round(float(np.percentile(values, 97.5)), 4),
    ]


# --- the check --------------------------------------------------------------------------------
@dataclass
class FeatureDrift:
    name: str
    kind: str
    psi: float
    js: float
    p_value: float | None
    adjusted_p: float | None
    psi_interval: list[float]
    drifted: bool
    reason: str
    # how far values moved, in reference standard deviations (normed Wasserstein distance):
    # numeric features compared on raw rows only, None on histograms and categories
    wasserstein: float | None = None


@dataclass
class DriftReport:
    status: Status
    rows: int
    reference_rows: int
    features: list[FeatureDrift]
    settings: dict[str, Any]

    @property
    def drifted(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "rows": self.rows,
            "reference_rows": self.reference_rows,
            "drifted": self.drifted,
            "features": [asdict(f) for f in self.features],
            "settings": self.settings,
        }


def shown(name: str) -> str:
    """A feature's name as people read it: the model's own output is "the predicted risk"."""
    return "the predicted risk" if name == PREDICTION else name


def histograms(reference: dict[str, FeatureReference], frame: pd.DataFrame) -> dict[str, list]:
    """The aggregates an edge node or a daily job keeps: counts per feature on the fixed bins."""
    return {name: ref.histogram(frame[name]).tolist() for name, ref in reference.items()}


def _counts(
    ref: FeatureReference, data: pd.DataFrame | dict[str, Sequence[int]], name: str
) -> list:
    """A feature's counts in one window: binned from rows, or as the histogram given."""
    if isinstance(data, pd.DataFrame):
        return ref.histogram(data[name]).tolist()
    return list(data[name])


def _rows(data: Any, reference: dict[str, FeatureReference]) -> int:
    """How many rows a window holds: a frame's length (when there is a feature to count), or
    the total of its first histogram (the reference's, when there is no window)."""
    if isinstance(data, pd.DataFrame):
        return len(data) if reference else 0
    if data is None:
        return int(sum(next(iter(reference.values())).counts)) if reference else 0
    return int(sum(next(iter(data.values()), [0])))


def detect(
    reference: dict[str, FeatureReference],
    current: pd.DataFrame | dict[str, Sequence[int]],
    *,
    baseline: pd.DataFrame | dict[str, Sequence[int]] | None = None,
    min_count: int = 30,
    psi_threshold: float = 0.2,
    js_threshold: float = 0.1,
    alpha: float = 0.05,
    n_boot: int = 200,
    seed: int = 0,
    wasserstein_threshold: float = WASSERSTEIN_THRESHOLD,
) -> DriftReport:
    """Compare `current` (raw rows, or histograms on the reference bins) with the baseline (by
    default the training reference; or another window, e.g. the same weeks of last year).

    A feature drifts when an effect size passes its threshold (PSI, Jensen–Shannon, or, for a
    numeric feature with raw rows on both sides, the normed Wasserstein distance: a shift of a
    few percent of the rows far into a tail moves few of them across the reference's decile
    bins, so PSI and JS stay quiet, but it moves the values far) and, where a p-value exists,
    its corrected p-value is below alpha."""
    from scipy.stats import false_discovery_control

    raw_current = isinstance(current, pd.DataFrame)
    raw_base = isinstance(baseline, pd.DataFrame)
    for frame in (f for f in (current, baseline) if isinstance(f, pd.DataFrame)):
        for name in reference:
            if name not in frame.columns:
                raise KeyError(name)
    rows = _rows(current, reference)
    base_rows = _rows(baseline, reference)
    settings = {
        "min_count": min_count,
        "psi_threshold": psi_threshold,
        "js_threshold": js_threshold,
        "wasserstein_threshold": wasserstein_threshold,
        "alpha": alpha,
        "tests": "KS / chi-square on raw rows"
        if raw_current and raw_base
        else "chi-square on the histograms",
    }
    if rows < min_count or base_rows < min_count:
        return DriftReport("insufficient_data", rows, base_rows, [], settings)
    features: list[FeatureDrift] = []
    pvalues: list[float] = []
    for name, ref in reference.items():  # one feature at a time: its columns, then let go
        p, distance = None, None
        if raw_current and raw_base and ref.kind == "numeric":
            if baseline[name].dtype == np.float64 and current[name].dtype == np.float64:
                base_counts, cur_counts, p, distance = _numeric_side_by_side(
                    ref, baseline[name], current[name]
                )
            else:
                base_counts, cur_counts = _counts(ref, baseline, name), _counts(ref, current, name)
                p = ks_p(baseline[name], current[name])
                distance = wasserstein(baseline[name], current[name])
        else:  # chi-square on the binned counts: categories, or histograms alone
            base_counts = ref.counts if baseline is None else _counts(ref, baseline, name)
            cur_counts = _counts(ref, current, name)
            p = chi_square_p(base_counts, cur_counts)
        if distance is not None and _few_values(baseline[name]):
            distance = None  # a flag or a small count: its shares say it (PSI, JS), as Evidently
        features.append(
            FeatureDrift(
                name=name,
                kind=ref.kind,
                psi=round(psi(base_counts, cur_counts), 4),
                js=round(jensen_shannon(base_counts, cur_counts), 4),
                p_value=p,
                adjusted_p=None,
                psi_interval=bootstrap_psi(base_counts, cur_counts, n_boot, seed) if n_boot else [],
                drifted=False,
                reason="",
                wasserstein=_rounded(distance),
            )
        )
        if p is not None:
            pvalues.append(p)
    adjusted = iter(false_discovery_control(pvalues, method="bh") if pvalues else [])
    for f in features:
        if f.p_value is not None:
            f.adjusted_p = float(next(adjusted))
        far = f.wasserstein is not None and f.wasserstein > wasserstein_threshold
        big = f.psi > psi_threshold or f.js > js_threshold or far
        significant = f.adjusted_p is None or f.adjusted_p < alpha
        f.drifted = bool(big and significant)
        effect = f"PSI {f.psi:.3f}, JS {f.js:.3f}"
        if f.wasserstein is not None:
            effect += f", values moved {f.wasserstein:.3f} sd (Wasserstein)"
        test = f", corrected p {f.adjusted_p:.2g}" if f.adjusted_p is not None else ""
        if f.drifted:
            rules = [
                *([f"PSI above {psi_threshold:g}"] if f.psi > psi_threshold else []),
                *([f"Jensen–Shannon above {js_threshold:g}"] if f.js > js_threshold else []),
                *([f"Wasserstein above {wasserstein_threshold:g} sd"] if far else []),
            ]
            f.reason = f"{shown(f.name)} drifted: {effect}{test} ({' and '.join(rules)})"
        elif big:
            f.reason = f"{shown(f.name)}: {effect} but not significant{test}"
        else:
            f.reason = f"{shown(f.name)}: stable ({effect}{test})"
    status: Status = "drift" if any(f.drifted for f in features) else "no_drift"
    return DriftReport(status, rows, base_rows, features, settings)


REPORTED = 1e-4  # statistics are reported to 4 decimals


def _rounded(distance: float | None) -> float | None:
    """A distance as reported: 4 decimals like PSI and JS; None when there is none (NaN: a side
    without a finite number), or when it overflowed (numbers near the float limit), which
    JSON could not store."""
    if distance is None or not np.isfinite(distance):
        return None
    return round(float(distance), 4)


# --- small schools ----------------------------------------------------------------------------
def pool_small_groups(
    counts: dict[str, int], locality: dict[str, str], min_count: int
) -> dict[str, list[str]]:
    """Groups of schools to check together: each school with enough rows alone; the others
    pooled with the small schools of the same locality ("rural (pooled)"), when the pool has
    enough rows. A pool that is still too small stays as its members, to be reported as
    insufficient data."""
    groups: dict[str, list[str]] = {}
    small: dict[str, list[str]] = {}
    for school, n in sorted(counts.items()):
        if n >= min_count:
            groups[school] = [school]
        else:
            small.setdefault(locality.get(school, "unknown"), []).append(school)
    for place, members in sorted(small.items()):
        if sum(counts[m] for m in members) >= min_count and len(members) > 1:
            groups[f"{place} (pooled)"] = members
        else:
            for m in members:
                groups[m] = [m]
    return groups


# --- calendar-aware baselines -----------------------------------------------------------------
@dataclass(frozen=True)
class Period:
    kind: str  # term / break / testing
    name: str
    start: dt.date
    end: dt.date  # inclusive

    def __contains__(self, day: dt.date) -> bool:
        return self.start <= day <= self.end


def masked(
    day: dt.date, periods: Iterable[Period], kinds: Sequence[str] = ("break", "testing")
) -> bool:
    """Is this day in a break or testing window (left out of drift windows)?"""
    return any(p.kind in kinds and day in p for p in periods)


def seasonal_baseline(
    start: dt.date, end: dt.date, periods: Sequence[Period]
) -> tuple[dt.date, dt.date] | None:
    """The same weeks of the matching term a year earlier: the window's offset from the start
    of its term, applied to the term of the previous school year that began closest to one year
    before. None when the calendar has no such term (then use the training reference)."""
    terms = sorted((p for p in periods if p.kind == "term"), key=lambda p: p.start)
    week = dt.timedelta(days=7)  # a window may open on the Monday before a term's first day
    current = next((t for t in terms if t.start - week < start <= t.end), None)
    if current is None:
        return None
    target = current.start - dt.timedelta(days=365)
    earlier = [t for t in terms if t.start < current.start - dt.timedelta(days=180)]
    if not earlier:
        return None
    match = min(earlier, key=lambda t: abs((t.start - target).days))
    offset = start - current.start
    length = end - start
    # keep the weekday: a Monday window maps to a Monday window
    candidate = match.start + offset
    begin = candidate + dt.timedelta(days=(start.weekday() - candidate.weekday()) % 7)
    return begin, begin + length


def previous_window(
    start: dt.date, end: dt.date, periods: Sequence[Period] = ()
) -> tuple[dt.date, dt.date]:
    """The naive baseline: the window of the same length that ends on the last term day before
    `start` (over a break or the summer, that is the end of the previous term)."""
    length = end - start
    last = start - dt.timedelta(days=1)
    terms = [p for p in periods if p.kind == "term"]
    for _ in range(400):
        if not terms or any(last in t for t in terms):
            break
        last -= dt.timedelta(days=1)
    return last - length, last
