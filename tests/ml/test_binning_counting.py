"""Counting on a grid (edumlops.ml.binning.Grid, Counted): the same histograms and order
statistics as a search or a sort, on data with ties, infinities and values on the edges."""

from __future__ import annotations

import numpy as np
import pytest

from edumlops.ml import binning


def datasets():
    rng = np.random.default_rng(7)
    normal = rng.normal(size=20_000)
    counts = rng.poisson(4, 20_000).astype(float)  # a few values, each many times
    rounded = np.round(rng.normal(size=20_000), 1)
    wild = np.concatenate(
        [rng.lognormal(0, 3, 20_000), [np.inf, -np.inf, 1e300, -1e300, 0.0, -0.0, 5e-324]]
    )
    constant = np.full(5_000, 3.25)
    return {
        "normal": normal,
        "counts": counts,
        "rounded": rounded,
        "wild": wild,
        "constant": constant,
    }


@pytest.mark.parametrize("name", list(datasets()))
def test_a_larger_number_never_lands_in_a_lower_cell(name):
    x = np.sort(datasets()[name])
    grid = binning.grid_for(x)
    cells = grid.cells(x)
    assert np.all(np.diff(cells) >= 0)
    assert cells.min() >= 0 and cells.max() <= grid.size + 1


def test_a_degenerate_span_still_gives_cells():
    for sample in (np.array([np.inf, -np.inf]), np.array([2.0, 2.0]), np.array([-1e308, 1e308])):
        grid = binning.Grid.over(sample, 100)
        cells = grid.cells(np.array([-np.inf, -1e308, 0.0, 2.0, 1e308, np.inf]))
        assert np.all(np.diff(cells) >= 0)


@pytest.mark.parametrize("name", list(datasets()))
def test_histograms_on_cells_equal_a_search_per_number(name):
    x = datasets()[name]
    finite = x[np.isfinite(x)]
    deciles = sorted({float(q) for q in np.quantile(finite, np.linspace(0, 1, 11)[1:-1])})
    on_values = sorted({float(v) for v in x[:7]})  # edges that are values of the data
    crowded = [float(v) for v in np.unique(x)[:3]]  # several edges, maybe in one cell
    counted = binning.Counted.of(x, binning.grid_for(x))
    for edges in (deciles, on_values, crowded, [], [0.0], [-np.inf, 1.0], [1.0, np.inf]):
        expected = np.bincount(np.searchsorted(edges, x, "right"), minlength=len(edges) + 1)
        assert binning.bin_counts(edges, counted).tolist() == expected.tolist(), edges


def test_numeric_counts_match_the_bins_with_missing_values():
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=30_000), 2)
    x[rng.random(30_000) < 0.05] = np.nan
    x[:4] = [np.inf, -np.inf, 0.5, -0.5]
    edges = [-1.0, -0.5, 0.0, 0.5, 1.0]
    expected = binning.counts(binning.numeric_bins(edges, x), binning.size(edges))
    assert binning.numeric_counts(edges, x).tolist() == expected.tolist()
    assert (
        binning.numeric_counts(edges, x[:100]).tolist()
        == binning.counts(binning.numeric_bins(edges, x[:100]), binning.size(edges)).tolist()
    )


@pytest.mark.parametrize("name", list(datasets()))
def test_order_statistics_equal_the_sorted_numbers(name):
    x = datasets()[name]
    counted = binning.Counted.of(x, binning.grid_for(x))
    n = len(x)
    ranks = np.array([0, 1, n // 10, n // 2, n // 2 + 1, n - 2, n - 1])
    assert binning.order_statistics(counted, ranks).tolist() == np.sort(x)[ranks].tolist()


@pytest.mark.parametrize("name", ["normal", "counts", "wild"])
def test_cells_span_their_numbers_to_rounding(name):
    x = datasets()[name]
    x = x[np.isfinite(x)]
    grid = binning.grid_for(x)
    start, end = grid.bounds()
    cells = grid.cells(x)
    slack = 1e-12 * np.maximum(np.abs(x), np.abs(end[cells]))  # the bounds are rounded
    inner = (cells > 0) & (cells < grid.size + 1)
    assert np.all(start[cells][inner] - slack[inner] <= x[inner])
    assert np.all(x[inner] <= end[cells][inner] + slack[inner])
    assert np.all(x[cells == 0] <= end[0] + slack[cells == 0])  # below the first inner cell
    top = cells == grid.size + 1
    assert np.all(x[top] >= start[-1] - slack[top])
    assert np.array_equal(start[1:], end[:-1])  # cells meet: sums over them telescope


def test_numbers_kept_at_hand_are_taken_as_from_all_of_them():
    x = datasets()["wild"]
    grid = binning.grid_for(x)
    plain, kept = binning.Counted.of(x, grid), binning.Counted.of(x, grid)
    rng = np.random.default_rng(3)
    wanted = rng.random(grid.n_cells) < 0.05
    wanted[[0, -1]] = True
    kept.keep(wanted)
    some = wanted & (rng.random(grid.n_cells) < 0.5)
    outside = np.zeros(grid.n_cells, dtype=bool)
    outside[np.flatnonzero(~wanted & (plain.counts > 0))[:3]] = True
    for chosen in (wanted, some, outside, some | outside, np.zeros(grid.n_cells, dtype=bool)):
        assert np.array_equal(kept.take(chosen), plain.take(chosen), equal_nan=True)
    assert len(kept.kept[1]) == int(plain.counts[wanted].sum())  # only the wanted cells kept
