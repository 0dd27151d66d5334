"""The drift reference's bins (edumlops.ml.binning), shared by drift and the edge agent."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from edumlops.edge.models import Bins
from edumlops.ml import binning, drift

EDGES = [1.0, 4.0, 9.0]


def test_numbers_fall_right_of_an_edge_and_missing_last():
    values = [-1e9, 0.5, 1.0, 3.9, 4.0, 9.0, 1e9, math.inf, math.nan]
    assert binning.numeric_bins(EDGES, values).tolist() == [0, 0, 1, 1, 2, 3, 3, 3, 4]
    assert binning.size(EDGES) == 5


def test_categories_by_index_then_other_then_missing():
    bins = binning.categorical_bins(["9", "10"], ["10", "9", "12", None, 10])
    assert bins.tolist() == [1, 0, 2, 3, 1]  # compared as text: 10 is "10"


def test_counts_have_every_bin_even_empty_ones():
    assert binning.counts(np.array([0, 0, 3]), 5).tolist() == [2, 0, 0, 1, 0]
    assert binning.counts(binning.categorical_bins(["a"], []), 3).tolist() == [0, 0, 0]


def test_drift_and_the_edge_count_the_same_rows_alike():
    frame = pd.DataFrame(
        {
            "absences": [0.0, 1.0, 2.5, 4.0, None, 12.0, 9.0, 3.0],
            "grade": ["9", "10", "11", None, "9", "10", "13", "9"],
        }
    )
    reference = {
        name: ref.to_dict()
        for name, ref in drift.build_reference(frame, ["absences"], ["grade"], bins=3).items()
    }
    rows = [
        {"absences": 4.0, "grade": "10"},
        {"absences": None, "grade": None},
        {"absences": -3.0, "grade": "a school nobody has heard of"},
        {"absences": 100.0, "grade": "9"},
    ]
    edge = Bins(reference).histograms(rows, [])
    for name, ref in reference.items():
        central = drift.FeatureReference.from_dict(ref).histogram([r[name] for r in rows])
        assert edge[name] == central.tolist(), name
        assert sum(edge[name]) == len(rows)
    # and the reference counts are the training rows in those same bins
    ref = drift.FeatureReference.from_dict(reference["absences"])
    numbers = frame["absences"].to_numpy(dtype=float)
    expected = binning.counts(binning.numeric_bins(ref.edges, numbers), binning.size(ref.edges))
    assert ref.counts == expected.tolist()


# --- moving counts onto a retrained model's bins -----------------------------------------------
def test_rebin_numeric_keeps_every_count_and_shares_a_bin_by_overlap():
    import pytest

    from edumlops.ml.binning import rebin_numeric

    # old bins: (-inf,0) [0,10) [10,20) [20,inf) missing
    moved = rebin_numeric([0, 10, 20], [1, 10, 4, 2, 3], [5, 10, 30])
    # new bins: (-inf,5) [5,10) [10,30) [30,inf) missing; the open top bin [20, inf) reaches
    # half of [10,30) and all of [30,inf): shared 1 : 2 with equal weights
    assert moved.tolist() == pytest.approx([1 + 5, 5, 4 + 2 / 3, 4 / 3, 3])
    assert moved.sum() == pytest.approx(20)
    # with the new reference's training counts as weights, the empty [30, inf) gets nothing
    weighted = rebin_numeric([0, 10, 20], [1, 10, 4, 2, 3], [5, 10, 30], [1, 1, 1, 0, 1])
    assert weighted.tolist() == pytest.approx([6, 5, 6, 0, 3])
    assert rebin_numeric([1, 2], [1, 2, 3, 4], [1, 2]).tolist() == [1, 2, 3, 4]


def test_rebin_numeric_refuses_counts_of_another_shape():
    import pytest

    from edumlops.ml.binning import rebin_numeric

    with pytest.raises(ValueError, match="3 counts for 5 bins"):
        rebin_numeric([0, 10, 20], [1, 2, 3], [5])


def test_rebin_categorical_sends_unknown_categories_to_other():
    from edumlops.ml.binning import rebin_categorical

    # old: a b c other missing → new: b d other missing
    moved = rebin_categorical(["a", "b", "c"], [1, 2, 3, 4, 5], ["b", "d"])
    assert moved.tolist() == [2, 0, 1 + 3 + 4, 5]
