"""The school side of federated training: the `edumlops-edge federated` command and the
ClientApp's answers (only aggregates, groups only from the run's config)."""

from __future__ import annotations

import csv
import json

import numpy as np

from edumlops.edge import cli
from edumlops.edge.federated import SchoolClient
from edumlops.ml import federated_protocol as proto

SPEC = proto.EncodingSpec(
    numeric=["attendance"],
    categorical={"ses": ["low", "high"]},
    label="at_risk",
    positive=["yes"],
    sensitive={"ses": ["low", "high"]},
    holdout=0.5,
    seed=1,
)


def _records(path, rows):
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["student_id", "attendance", "ses", "at_risk"])
        writer.writeheader()
        writer.writerows(rows)


def test_the_command_refuses_a_missing_records_file(tmp_path, capsys):
    code = cli.main(
        [
            "federated",
            "--superlink",
            "127.0.0.1:9",
            "--records",
            str(tmp_path / "no.csv"),
            "--school",
            "rhs",
        ]
    )
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_client_sends_statistics_and_group_counts_only(tmp_path):
    path = tmp_path / "school.csv"
    rows = [
        {"student_id": f"SECRET{i}", "attendance": str(0.5 + i / 100), "ses": s, "at_risk": y}
        for i, (s, y) in enumerate([("low", "yes"), ("high", "no"), ("SECRET-SES", "no")] * 20)
    ]
    rows[3]["attendance"] = ""
    _records(path, rows)
    client = SchoolClient(str(path), "rhs")
    config = {proto.KEY_PHASE: proto.PHASE_STATS, proto.KEY_SPEC: proto.dumps(SPEC.to_dict())}
    arrays, n, metrics = client.fit([], config)
    assert metrics == {proto.METRIC_SCHOOL: "rhs"}
    assert [a.shape for a in arrays] == [(1,), (1,), (1,)]
    assert 0 < arrays[0][0] <= 1 and 0.5 < arrays[1][0] / arrays[0][0] < 1.1
    transform = proto.Transform([0.8], [0.2])
    config[proto.KEY_TRANSFORM] = proto.dumps(transform.to_dict())
    loss, held, metrics = client.evaluate([np.array([1.0, 0.5, -0.5]), np.array([0.1])], config)
    counts = json.loads(metrics[proto.METRIC_COUNTS])
    assert set(counts["groups"]["ses"]) <= {"low", "high", proto.OTHER_GROUP}
    assert sum(counts["overall"].values()) == held == n_held(path)
    assert "SECRET" not in json.dumps(metrics)


def n_held(path):
    with path.open(newline="") as handle:
        rows = proto.parse_rows(list(csv.DictReader(handle)), SPEC, "rhs")
    return int(rows.holdout.sum())
