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
- A feature drifts when its effect size passes its threshold and, where a p-value exists, the
  corrected p-value is below alpha: on large windows a p-value alone flags noise (FACTS.md).
- Fewer than `min_count` current rows: the result is *insufficient data*, never "no drift".
"""

from __future__ import annotations

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
        series = pd.Series(values)
        if self.kind == "numeric":
            numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
            bins = binning.numeric_bins(self.edges, numbers)
            return binning.counts(bins, binning.size(self.edges))
        present = series.notna().to_numpy()
        texts = series.astype(str).to_numpy(dtype=object)
        bins = binning.categorical_bins(
            self.categories, (t if p else None for t, p in zip(texts, present, strict=True))
        )
        return binning.counts(bins, binning.size(self.categories))

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
        values = pd.to_numeric(frame[name], errors="coerce").dropna().to_numpy(dtype=float)
        qs = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]) if len(values) else []
        edges = sorted({float(q) for q in qs})
        ref = FeatureReference(name, "numeric", edges=edges)
        ref.counts = ref.histogram(frame[name]).tolist()
        out[name] = ref
    for name in categorical:
        top = frame[name].dropna().astype(str).value_counts().index[:max_categories]
        ref = FeatureReference(name, "categorical", categories=sorted(top))
        ref.counts = ref.histogram(frame[name]).tolist()
        out[name] = ref
    return out


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


def ks_p(reference: Any, current: Any) -> float:
    from scipy.stats import ks_2samp

    r = pd.to_numeric(pd.Series(reference), errors="coerce").dropna().to_numpy()
    c = pd.to_numeric(pd.Series(current), errors="coerce").dropna().to_numpy()
    if len(r) == 0 or len(c) == 0:
        return 1.0
    return float(ks_2samp(r, c).pvalue)


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
) -> DriftReport:
    """Compare `current` (raw rows, or histograms on the reference bins) with the baseline (by
    default the training reference; or another window, e.g. the same weeks of last year)."""
    from scipy.stats import false_discovery_control

    raw_current = isinstance(current, pd.DataFrame)
    raw_base = isinstance(baseline, pd.DataFrame)
    cur = (
        histograms(reference, current) if raw_current else {k: list(v) for k, v in current.items()}
    )
    if baseline is None:
        base = {k: r.counts for k, r in reference.items()}
    else:
        base = histograms(reference, baseline) if raw_base else dict(baseline)
    rows = int(sum(next(iter(cur.values()), [0])))
    base_rows = int(sum(next(iter(base.values()), [0])))
    settings = {
        "min_count": min_count,
        "psi_threshold": psi_threshold,
        "js_threshold": js_threshold,
        "alpha": alpha,
        "tests": "KS / chi-square on raw rows"
        if raw_current and raw_base
        else "chi-square on the histograms",
    }
    if rows < min_count or base_rows < min_count:
        return DriftReport("insufficient_data", rows, base_rows, [], settings)
    features: list[FeatureDrift] = []
    pvalues: list[float] = []
    for name, ref in reference.items():
        p = None
        if raw_current and raw_base:
            if ref.kind == "numeric":
                p = ks_p(baseline[name], current[name])
            else:
                p = chi_square_p(base[name], cur[name])
        else:  # histograms only: chi-square on the binned counts, for every type
            p = chi_square_p(base[name], cur[name])
        features.append(
            FeatureDrift(
                name=name,
                kind=ref.kind,
                psi=round(psi(base[name], cur[name]), 4),
                js=round(jensen_shannon(base[name], cur[name]), 4),
                p_value=p,
                adjusted_p=None,
                psi_interval=bootstrap_psi(base[name], cur[name], n_boot, seed) if n_boot else [],
                drifted=False,
                reason="",
            )
        )
        if p is not None:
            pvalues.append(p)
    adjusted = iter(false_discovery_control(pvalues, method="bh") if pvalues else [])
    for f in features:
        if f.p_value is not None:
            f.adjusted_p = float(next(adjusted))
        big = f.psi > psi_threshold or f.js > js_threshold
        significant = f.adjusted_p is None or f.adjusted_p < alpha
        f.drifted = bool(big and significant)
        effect = f"PSI {f.psi:.3f}, JS {f.js:.3f}"
        test = f", corrected p {f.adjusted_p:.2g}" if f.adjusted_p is not None else ""
        if f.drifted:
            rules = [
                *([f"PSI above {psi_threshold:g}"] if f.psi > psi_threshold else []),
                *([f"Jensen–Shannon above {js_threshold:g}"] if f.js > js_threshold else []),
            ]
            f.reason = f"{shown(f.name)} drifted: {effect}{test} ({' and '.join(rules)})"
        elif big:
            f.reason = f"{shown(f.name)}: {effect} but not significant{test}"
        else:
            f.reason = f"{shown(f.name)}: stable ({effect}{test})"
    status: Status = "drift" if any(f.drifted for f in features) else "no_drift"
    return DriftReport(status, rows, base_rows, features, settings)


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
