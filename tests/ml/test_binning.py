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
