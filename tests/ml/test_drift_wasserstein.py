"""The normed Wasserstein distance: counted, it is the number scipy.stats.wasserstein_distance
gives (over the reference's standard deviation, as Evidently norms it) on continuous, tied,
skewed, missing and infinite data; as a third effect size it catches a shift of the tail that
PSI and Jensen–Shannon on decile bins cannot see, and stays quiet on sampling noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from edumlops.ml import binning, drift


def evidently_normed(reference, current) -> float:
    """Evidently's "wasserstein" drift test, written out: NaN and ±inf dropped (its
    data_drift.py), then wasserstein_distance / max(np.std(reference), 0.001)."""
    r = pd.Series(reference, dtype=float).replace([np.inf, -np.inf], np.nan).dropna()
    c = pd.Series(current, dtype=float).replace([np.inf, -np.inf], np.nan).dropna()
    return stats.wasserstein_distance(r, c) / max(float(np.std(r)), 0.001)


def samples():
    rng = np.random.default_rng(11)
    yield "same", rng.normal(size=30_000), rng.normal(size=30_000)
    yield "shifted", rng.normal(size=30_000), rng.normal(0.5, 1, 25_000)
    yield "counts", rng.poisson(4, 30_000) * 1.0, rng.poisson(4.05, 20_000) * 1.0
    yield "rounded", np.round(rng.normal(size=30_000), 1), np.round(rng.normal(size=30_000), 1)
    yield "skewed", rng.lognormal(1, 0.5, 40_000), rng.lognormal(1.01, 0.5, 40_000)
    yield "rates", rng.random(30_000), rng.random(30_000) ** 1.02
    wild = np.concatenate([rng.lognormal(0, 2, 20_000), [np.inf, -np.inf, -1e150]])
    yield "wild", wild, np.concatenate([rng.lognormal(0.01, 2, 15_000), [np.inf, np.inf]])
    x = rng.normal(size=20_000)
    yield "tail", rng.normal(size=20_000), np.where(x > 1.64, x + 3, x)
    yield "uneven", rng.normal(size=50_000), rng.normal(size=301)
    zeros = np.where(rng.random(30_000) < 0.4, 0.0, rng.lognormal(0, 1, 30_000))
    yield "zeros", zeros, np.where(rng.random(30_000) < 0.45, 0.0, rng.lognormal(0, 1, 30_000))
    yield "far from zero", rng.normal(1e9, 1e3, 30_000), rng.normal(1e9 + 10, 1e3, 30_000)


def finite(x: np.ndarray) -> np.ndarray:
    return x[np.isfinite(x)]


@pytest.mark.parametrize("cells", [None, 8, 1])  # the grid detect uses, a coarse one, one cell
@pytest.mark.parametrize("case", list(samples()), ids=lambda c: c[0])
def test_the_counted_distance_is_scipys(case, cells):
    name, a, b = case
    both = np.concatenate([a, b])
    grid = binning.grid_for(a, b) if cells is None else binning.Grid.over(both, cells)
    ca, cb = binning.Counted.of(a, grid), binning.Counted.of(b, grid)
    expected = stats.wasserstein_distance(finite(a), finite(b))
    # the sums of a cell's numbers round at the numbers' magnitude: 1e9 ± 1e3 keeps ten digits
    rel = 1e-9 if name == "far from zero" else 1e-12
    assert drift.wasserstein_statistic(ca, cb) == pytest.approx(expected, rel=rel)
    assert drift.wasserstein_statistic(cb, ca) == pytest.approx(expected, rel=rel)


@pytest.mark.parametrize("case", list(samples()), ids=lambda c: c[0])
def test_the_bounds_before_the_open_cells_are_read_hold_the_distance(case):
    _, a, b = case
    grid = binning.grid_for(a, b)
    area = drift._Area(binning.Counted.of(a, grid), binning.Counted.of(b, grid))
    least, most = area.between()
    exact = stats.wasserstein_distance(finite(a), finite(b))
    assert least <= exact * (1 + 1e-9) and exact <= most * (1 + 1e-9)
    assert area.total() == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize("case", list(samples()), ids=lambda c: c[0])
def test_the_normed_distance_is_evidentlys(case):
    _, a, b = case
    assert drift.wasserstein(a, b) == pytest.approx(evidently_normed(a, b), rel=1e-9)
    # below 10,000 rows a side scipy sorts them
    assert drift.wasserstein(a[:900], b[:700]) == pytest.approx(
        evidently_normed(a[:900], b[:700]), rel=1e-12
    )


def test_evidentlys_own_test_gives_the_same_number():
    norm = pytest.importorskip("evidently.legacy.calculations.stattests.wasserstein_distance_norm")
    rng = np.random.default_rng(3)
    reference, current = pd.Series(rng.gamma(2, 3, 20_000)), pd.Series(rng.gamma(2, 3.3, 20_000))
    value, drifted = norm._wasserstein_distance_norm(reference, current, "num", 0.1)
    assert drift.wasserstein(reference, current) == pytest.approx(value, rel=1e-9)
    assert norm.wasserstein_stat_test.default_threshold == drift.WASSERSTEIN_THRESHOLD
    constant = pd.Series(np.full(5_000, 2.0))  # no spread: Evidently's floor, 0.001
    value, _ = norm._wasserstein_distance_norm(constant, constant + 0.01, "num", 0.1)
    assert drift.wasserstein(constant, constant + 0.01) == pytest.approx(value, rel=1e-9)


def test_missing_and_infinite_numbers_are_left_out_and_nothing_left_gives_none():
    rng = np.random.default_rng(4)
    a = rng.normal(size=12_000)
    b = rng.normal(0.2, 1, 12_000)
    a[:300], b[:50] = np.nan, np.inf
    b[50:60] = -np.inf
    assert drift.wasserstein(a, b) == pytest.approx(evidently_normed(a, b), rel=1e-9)
    assert drift.wasserstein(a, [np.nan, np.inf, None, "x"]) is None
    assert drift.wasserstein([], b) is None
    grid = binning.grid_for(a[300:], b)
    only_inf = binning.Counted.of(np.full(20_000, np.inf), grid)
    assert np.isnan(drift.wasserstein_statistic(binning.Counted.of(a[300:], grid), only_inf))


# --- the verdict --------------------------------------------------------------------------------
def frames(rows: int, seed: int, tail: bool):
    """A reference and a current window of one normal feature; with `tail`, the top 5% of the
    current rows jump 3 standard deviations (absences exploding in one group)."""
    rng = np.random.default_rng(seed)
    reference = pd.DataFrame({"x": rng.normal(size=rows)})
    x = rng.normal(size=rows)
    if tail:
        x[x > 1.6449] += 3.0
    return reference, pd.DataFrame({"x": x})


@pytest.mark.parametrize("rows", [5_000, 60_000])  # sorted by scipy, and counted
def test_a_tail_of_a_few_percent_jumping_far_drifts_by_the_wasserstein_distance(rows):
    reference, current = frames(rows, seed=1, tail=True)
    bins = drift.build_reference(reference, ["x"], [])
    report = drift.detect(bins, current, baseline=reference, n_boot=0)
    (x,) = report.features
    # the jumped values stay in the reference's top decile bin: PSI and JS hardly move
    assert x.psi < 0.2 and x.js < 0.1
    assert x.wasserstein > drift.WASSERSTEIN_THRESHOLD
    assert x.wasserstein == round(evidently_normed(reference["x"], current["x"]), 4)
    assert x.drifted and report.drifted == ["x"]
    assert "Wasserstein above 0.1 sd" in x.reason and "PSI above" not in x.reason
    assert report.to_dict()["features"][0]["wasserstein"] == x.wasserstein
    assert report.settings["wasserstein_threshold"] == drift.WASSERSTEIN_THRESHOLD
    # a higher bar leaves it to PSI and JS, which keep quiet
    calm = drift.detect(bins, current, baseline=reference, n_boot=0, wasserstein_threshold=0.5)
    assert calm.drifted == []


def test_sampling_noise_at_100k_rows_is_not_drift():
    rng = np.random.default_rng(8)

    def window():
        missing = np.where(rng.random(100_000) < 0.02, np.nan, rng.normal(size=100_000))
        return pd.DataFrame(
            {
                "normal": rng.normal(size=100_000),
                "skewed": rng.lognormal(1, 0.5, 100_000),
                "logins": rng.poisson(4, 100_000).astype(float),
                "rate": rng.random(100_000),
                "missing": missing,
                "grade": rng.integers(9, 13, 100_000),  # integers: not counted, sorted by scipy
            }
        )

    reference, current = window(), window()
    bins = drift.build_reference(reference, list(reference.columns), [])
    report = drift.detect(bins, current, baseline=reference, n_boot=0)
    assert report.status == "no_drift", [f.reason for f in report.features]
    for f in report.features:
        if f.name == "grade":  # four values: judged by its shares alone
            assert f.wasserstein is None
            continue
        assert f.wasserstein < 0.02, f.reason  # noise moves values about 1/sqrt(n) sd
        assert f.wasserstein == round(evidently_normed(reference[f.name], current[f.name]), 4)


def test_the_reported_distance_is_scipys_rounded_whichever_way_it_was_settled():
    # the fourth decimal is settled by the bounds (the open cells' numbers unread) or, when
    # they leave it open, exactly: both happen here (a coarse grid at 12,000 rows leaves more
    # open), and both report scipy's number
    settled_by = set()
    for rows, seed in [(12_000, 0), (12_000, 1), *((50_000, s) for s in range(4))]:
        rng = np.random.default_rng(seed)
        reference = pd.DataFrame(
            {"a": rng.normal(size=rows), "b": rng.lognormal(0, 1, rows), "c": rng.random(rows)}
        )
        current = pd.DataFrame(
            {
                "a": rng.normal(0.01, 1, rows),
                "b": rng.lognormal(0, 1.01, rows),
                "c": rng.random(rows),
            }
        )
        bins = drift.build_reference(reference, ["a", "b", "c"], [])
        report = drift.detect(bins, current, baseline=reference, n_boot=0)
        for f in report.features:
            assert f.wasserstein == round(evidently_normed(reference[f.name], current[f.name]), 4)
            r, c = reference[f.name].to_numpy(), current[f.name].to_numpy()
            grid = binning.grid_for(r, c)
            area = drift._Area(binning.Counted.of(r, grid), binning.Counted.of(c, grid))
            least, most = (round(x / drift._spread(r), 4) for x in area.between())
            settled_by.add("bounds" if least == most else "numbers")
    assert settled_by == {"bounds", "numbers"}


def test_histograms_alone_and_categories_have_no_wasserstein_distance():
    reference, current = frames(20_000, seed=2, tail=True)
    reference["c"] = current["c"] = "a"
    bins = drift.build_reference(reference, ["x"], ["c"])
    on_histograms = drift.detect(bins, drift.histograms(bins, current), n_boot=0)
    assert [f.wasserstein for f in on_histograms.features] == [None, None]
    assert on_histograms.drifted == []  # unchanged: without rows, PSI and JS decide
    on_rows = drift.detect(bins, current, baseline=reference, n_boot=0)
    assert on_rows.features[1].wasserstein is None and on_rows.features[0].wasserstein > 0.1
    against_training = drift.detect(bins, current, n_boot=0)  # rows, but not the baseline's
    assert against_training.features[0].wasserstein is None


def test_a_numeric_flag_is_judged_by_its_shares_not_by_how_far_values_moved():
    """0/1 features (and other numbers with at most five values) get no Wasserstein distance:
    a share moving from 30% to 35% is not a drift by distance, as Evidently treats them."""
    import numpy as np
    import pandas as pd

    from edumlops.ml import drift

    rng = np.random.default_rng(3)
    base = pd.DataFrame({"flag": (rng.random(60_000) < 0.30).astype(float)})
    cur = pd.DataFrame({"flag": (rng.random(60_000) < 0.35).astype(float)})
    ref = drift.build_reference(base, ["flag"], [])
    report = drift.detect(ref, cur, baseline=base, n_boot=0)
    (feature,) = report.features
    assert feature.wasserstein is None
    assert not feature.drifted  # PSI and JS stay under their thresholds
    assert drift._few_values(pd.Series([1.0, 2.0, 3.0, 4.0, 5.0] * 300))
    assert not drift._few_values(pd.Series([1.0, 2.0, 3.0, 4.0, 5.0] * 300 + [6.0]))
