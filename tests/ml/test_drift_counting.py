"""Drift at the speed of counting gives the answers of the slow way: KS statistics and p-values
as scipy.stats.ks_2samp computes them, histograms and references as the code before it did (a
search per number, text per value, np.quantile, value_counts), on awkward data; references
stored as dicts load and answer as before."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from edumlops.ml import binning, drift


# --- the code before, kept here as the yardstick ------------------------------------------------
def old_histogram(ref: drift.FeatureReference, values) -> list[int]:
    series = pd.Series(values)
    if ref.kind == "numeric":
        numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
        bins = binning.numeric_bins(ref.edges, numbers)
        return binning.counts(bins, binning.size(ref.edges)).tolist()
    present = series.notna().to_numpy()
    texts = series.astype(str).to_numpy(dtype=object)
    bins = binning.categorical_bins(
        ref.categories, (t if p else None for t, p in zip(texts, present, strict=True))
    )
    return binning.counts(bins, binning.size(ref.categories)).tolist()


def old_reference(frame, numeric, categorical, bins=10, max_categories=50):
    out = {}
    for name in numeric:
        values = pd.to_numeric(frame[name], errors="coerce").dropna().to_numpy(dtype=float)
        qs = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]) if len(values) else []
        ref = drift.FeatureReference(name, "numeric", edges=sorted({float(q) for q in qs}))
        ref.counts = old_histogram(ref, frame[name])
        out[name] = ref
    for name in categorical:
        top = frame[name].dropna().astype(str).value_counts().index[:max_categories]
        ref = drift.FeatureReference(name, "categorical", categories=sorted(top))
        ref.counts = old_histogram(ref, frame[name])
        out[name] = ref
    return out


# --- data ---------------------------------------------------------------------------------------
def awkward(rows: int, seed: int = 0) -> pd.DataFrame:
    """Numbers with NaN, ±inf, ties and values exactly on the edges; categories with None, NaN,
    pd.NA, unknown ones, values that are one key but several texts (1, 1.0, True), and the
    dtypes a frame may hold them in; shared objects (as read_csv gives) and one per row."""
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=rows)
    normal[rng.random(rows) < 0.03] = np.nan
    normal[:4] = [np.inf, -np.inf, 0.0, -0.0]
    counts = rng.poisson(3, rows).astype(float)  # the edges are values of the data
    texts = np.array(["a", "b", "c", "zz", None, np.nan, pd.NA], dtype=object)
    mixed = np.array([1, 1.0, True, "1", "b", None, 2.5], dtype=object)
    many = np.array([f"s{k}" for k in range(70)], dtype=object)  # more than max_categories
    return pd.DataFrame(
        {
            "normal": normal,
            "counts": counts,
            "ints": rng.integers(-3, 40, rows),
            "number_texts": np.array(["1.5", "2", "x", None], dtype=object)[
                rng.integers(0, 4, rows)
            ],
            "text": texts[rng.choice(7, rows, p=[0.4, 0.3, 0.15, 0.05, 0.04, 0.03, 0.03])],
            "mixed": mixed[rng.integers(0, 7, rows)],
            "many": many[rng.integers(0, 70, rows)],
            "category": pd.Categorical(
                np.array(["p", "q", None], dtype=object)[rng.integers(0, 3, rows)]
            ),
            "string": pd.array(
                np.array(["u", "v", None], dtype=object)[rng.integers(0, 3, rows)], dtype="string"
            ),
            "grade": rng.integers(9, 13, rows),
            # an object per row (as rows read from JSON): no object is shared
            "fresh": [f"g{v}" if v < 3 else None for v in rng.integers(0, 4, rows)],
            "flag": rng.random(rows) < 0.3,
        }
    )


NUMERIC = ["normal", "counts", "ints", "number_texts"]
CATEGORICAL = ["text", "mixed", "many", "category", "string", "grade", "flag", "fresh"]


# --- references and histograms ------------------------------------------------------------------
@pytest.mark.parametrize("rows", [300, 6_000, 40_000])  # below and above binning.SMALL
def test_references_and_histograms_are_the_old_ones(rows):
    train, later = awkward(rows, seed=1), awkward(rows // 2 + 7, seed=2)
    later.loc[later.index[:50], "text"] = "never seen"
    expected = old_reference(train, NUMERIC, CATEGORICAL, max_categories=40)
    built = drift.build_reference(train, NUMERIC, CATEGORICAL, max_categories=40)
    assert {k: r.to_dict() for k, r in built.items()} == {
        k: r.to_dict() for k, r in expected.items()
    }
    for name, ref in built.items():
        assert ref.histogram(later[name]).tolist() == old_histogram(ref, later[name]), name
        assert ref.histogram(later[name].tolist()).tolist() == old_histogram(ref, later[name])
    assert drift.histograms(built, later) == {
        name: old_histogram(ref, later[name]) for name, ref in built.items()
    }


def test_categories_that_tie_are_cut_as_value_counts_cuts_them():
    # 60 categories, counts tied in groups, first seen in a shuffled order: which 50 are kept
    # depends on how value_counts orders ties
    rng = np.random.default_rng(5)
    values = np.repeat([f"c{k:02d}" for k in range(60)], [30 + k % 3 for k in range(60)])
    frame = pd.DataFrame({"c": rng.permutation(values)})
    assert (
        drift.build_reference(frame, [], ["c"])["c"].categories
        == old_reference(frame, [], ["c"])["c"].categories
    )


def test_a_stored_reference_loads_and_answers_as_before():
    train, later = awkward(20_000, seed=3), awkward(20_000, seed=4)
    stored = json.loads(
        json.dumps({k: r.to_dict() for k, r in old_reference(train, NUMERIC, CATEGORICAL).items()})
    )
    loaded = {k: drift.FeatureReference.from_dict(v) for k, v in stored.items()}
    built = drift.build_reference(train, NUMERIC, CATEGORICAL)
    assert set(next(iter(stored.values()))) == {"name", "kind", "edges", "categories", "counts"}
    assert {k: r.to_dict() for k, r in built.items()} == stored  # nothing new is stored
    a = drift.detect(loaded, later, baseline=train, n_boot=0).to_dict()
    b = drift.detect(built, later, baseline=train, n_boot=0).to_dict()
    assert a == b


# --- Kolmogorov–Smirnov -------------------------------------------------------------------------
def samples():
    rng = np.random.default_rng(11)
    yield "same", rng.normal(size=30_000), rng.normal(size=30_000)
    yield "shifted", rng.normal(size=30_000), rng.normal(0.5, 1, 25_000)
    yield "slightly", rng.normal(size=40_000), rng.normal(0.04, 1, 40_000)
    yield "counts", rng.poisson(4, 30_000) * 1.0, rng.poisson(4.05, 20_000) * 1.0
    yield "rounded", np.round(rng.normal(size=30_000), 1), np.round(rng.normal(size=30_000), 1)
    wild = np.concatenate([rng.lognormal(0, 2, 20_000), [np.inf, -np.inf, 1e300]])
    yield "wild", wild, np.concatenate([rng.lognormal(0.01, 2, 15_000), [np.inf, np.inf]])
    yield "tail", rng.normal(size=20_000), np.where((x := rng.normal(size=20_000)) > 1.64, x + 3, x)
    yield "uneven", rng.normal(size=50_000), rng.normal(size=301)


@pytest.mark.parametrize("cells", [None, 8, 1])  # the grid bench uses, a coarse one, one cell
@pytest.mark.parametrize("case", list(samples()), ids=lambda c: c[0])
def test_the_ks_statistic_is_the_float_ks_2samp_computes(case, cells):
    _, a, b = case
    both = np.concatenate([a, b])
    grid = binning.grid_for(a, b) if cells is None else binning.Grid.over(both, cells)
    ca, cb = binning.Counted.of(a, grid), binning.Counted.of(b, grid)
    expected = stats.ks_2samp(a, b).statistic
    assert drift.ks_statistic(ca, cb) == expected
    assert drift.ks_statistic(cb, ca) == expected
    assert drift.ks_statistic(ca, cb, bound_only=True) <= expected


@pytest.mark.parametrize("case", list(samples()), ids=lambda c: c[0])
def test_p_values_are_those_of_ks_2samp(case):
    _, a, b = case
    expected = stats.ks_2samp(a, b).pvalue  # "auto": asymptotic above 10,000 rows a side
    assert drift.ks_p(a, b) == pytest.approx(expected, rel=1e-8, abs=1e-300)
    assert drift.ks_p(a[:800], b[:600]) == stats.ks_2samp(a[:800], b[:600]).pvalue  # exact


def test_the_p_values_span_the_fast_and_the_delegated_branches():
    found = {
        "p = 0": False,
        "Smirnov series": False,
        "scipy": False,
    }
    for _, a, b in samples():
        p = stats.ks_2samp(a, b).pvalue
        found["p = 0"] |= p == 0
        found["Smirnov series"] |= 1e-160 < p < 0.02
        found["scipy"] |= p > 0.03
    assert all(found.values()), found


def test_the_ks_distribution_matches_scipy():
    for n in (1013.0, 20_000.0, 60_000.0):  # scipy takes a second per point at 500,000
        for d in np.geomspace(0.2 / np.sqrt(n), min(0.6, 25 / np.sqrt(n)), 16):
            assert drift.kstwo_sf(d, n) == pytest.approx(stats.kstwo.sf(d, n), rel=1e-8)
    assert drift.kstwo_sf(0.2, 50.0) == stats.kstwo.sf(0.2, 50.0)


def test_detect_on_rows_reports_ks_2samp_and_the_old_histograms():
    rng = np.random.default_rng(2)
    train = pd.DataFrame({"x": rng.normal(size=30_000), "c": rng.choice(["a", "b"], 30_000)})
    later = pd.DataFrame(
        {"x": rng.normal(0.03, 1, 20_000), "c": rng.choice(["a", "b", "n"], 20_000)}
    )
    later.loc[:9, "x"] = np.nan
    reference = drift.build_reference(train, ["x"], ["c"])
    report = drift.detect(reference, later, baseline=train, n_boot=50)
    x, c = report.features
    assert x.p_value == pytest.approx(
        stats.ks_2samp(train["x"], later["x"].dropna()).pvalue, rel=1e-8
    )
    base, cur = old_histogram(reference["x"], train["x"]), old_histogram(reference["x"], later["x"])
    assert x.psi == round(drift.psi(base, cur), 4) and x.js == round(
        drift.jensen_shannon(base, cur), 4
    )
    assert x.psi_interval == drift.bootstrap_psi(base, cur, 50, 0)
    base, cur = old_histogram(reference["c"], train["c"]), old_histogram(reference["c"], later["c"])
    assert c.p_value == drift.chi_square_p(base, cur)


def test_too_few_rows_is_told_before_anything_is_counted_and_a_missing_column_is_an_error():
    train = pd.DataFrame({"x": np.arange(100.0)})
    reference = drift.build_reference(train, ["x"], [])
    report = drift.detect(reference, train.head(10), baseline=train)
    assert (report.status, report.rows, report.reference_rows) == ("insufficient_data", 10, 100)
    with pytest.raises(KeyError):
        drift.detect(reference, pd.DataFrame({"y": [1.0]}), baseline=train)
