"""The school server's part in federated training: a Flower ClientApp run by the school's
SuperNode (`edumlops-edge federated`), for the optional `federated` extra (flwr).

It reads the school's own records file (a CSV at the path in the SuperNode's node config,
`records`), keeps a seeded share of it as held-out rows, and answers the district's ServerApp:

- training messages go through Flower's `secaggplus_mod` (SecAgg+: the server only ever sees the
  sum of the schools' masked vectors) and, when the run asks for differential privacy, Flower's
  `fixedclipping_mod` (each update clipped to the run's norm before it is masked; the server adds
  the Gaussian noise);
- evaluation messages get confusion counts per sensitive group of the held-out rows.

Only parameters and aggregate metrics leave the school. numpy, flwr and the csv module only.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context, Message
from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import fixedclipping_mod, secaggplus_mod

from edumlops.ml import federated_protocol as proto

NODE_RECORDS = "records"
NODE_SCHOOL = "school"
CLIPPING_NORM = (
    "clipping_norm"  # the key Flower's DP wrapper sends (supercore.differential_privacy)
)

_cache: dict[tuple[str, str, float, str], proto.SchoolRows] = {}


def load_rows(path: str, spec: proto.EncodingSpec, school: str) -> proto.SchoolRows:
    """The school's rows, parsed once per file version and spec."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"The records file {path} does not exist on this school server: fix the path in "
            "`edumlops-edge federated --records`."
        )
    key = (str(file), school, file.stat().st_mtime, proto.dumps(spec.to_dict()))
    if key not in _cache:
        with file.open(newline="", encoding="utf-8") as handle:
            records = list(csv.DictReader(handle))
        _cache.clear()
        _cache[key] = proto.parse_rows(records, spec, school)
    return _cache[key]


class SchoolClient(NumPyClient):
    def __init__(self, records: str, school: str) -> None:
        self.records = records
        self.school = school

    def get_properties(self, config: dict[str, Any]) -> dict[str, Any]:
        return {proto.PROPERTY_SCHOOL: self.school}

    def _rows(self, config: dict[str, Any]) -> proto.SchoolRows:
        spec = proto.EncodingSpec.from_dict(json.loads(str(config[proto.KEY_SPEC])))
        return load_rows(self.records, spec, self.school)

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        rows = self._rows(config)
        n_train = int(rows.train.sum())
        metrics: dict[str, Any] = {proto.METRIC_SCHOOL: self.school}
        phase = config[proto.KEY_PHASE]
        if phase == proto.PHASE_STATS:
            return proto.statistics(rows), n_train, metrics
        if phase != proto.PHASE_TRAIN:
            raise ValueError(f"Unknown federated phase {phase!r}.")
        transform = proto.Transform.from_dict(json.loads(str(config[proto.KEY_TRANSFORM])))
        x = proto.encode(rows, transform)[rows.train]
        y = rows.y[rows.train]
        coef, intercept = proto.train_local(
            x,
            y,
            np.asarray(parameters[0], dtype=np.float64),
            float(np.asarray(parameters[1]).ravel()[0]),
            family=str(config[proto.KEY_FAMILY]),
            epochs=int(config[proto.KEY_EPOCHS]),
            learning_rate=float(config[proto.KEY_LEARNING_RATE]),
            proximal_mu=float(config.get(proto.KEY_PROXIMAL_MU, 0.0)),
            seed=int(config[proto.KEY_SEED]) + int(config[proto.KEY_ROUND]),
        )
        metrics[proto.METRIC_TRAIN_LOSS] = proto.log_loss(x, y, coef, intercept)
        return [coef, np.array([intercept])], n_train, metrics

    def evaluate(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[float, int, dict[str, Any]]:
        rows = self._rows(config)
        transform = proto.Transform.from_dict(json.loads(str(config[proto.KEY_TRANSFORM])))
        loss, n, counts = proto.evaluation_counts(
            rows, transform, np.asarray(parameters[0]), float(np.asarray(parameters[1])[0])
        )
        return loss, n, {proto.METRIC_SCHOOL: self.school, proto.METRIC_COUNTS: proto.dumps(counts)}


def client_fn(context: Context) -> Any:
    config = context.node_config
    records = str(config.get(NODE_RECORDS) or os.environ.get("EDUMLOPS_FEDERATED_RECORDS", ""))
    school = str(config.get(NODE_SCHOOL) or os.environ.get("EDUMLOPS_FEDERATED_SCHOOL", ""))
    if not records or not school:
        raise ValueError(
            "This SuperNode has no school or records file: start it with "
            "`edumlops-edge federated --school CODE --records PATH`."
        )
    return SchoolClient(records, school).to_client()


def dp_clipping_mod(msg: Message, ctxt: Context, call_next: Any) -> Message:
    """Flower's `fixedclipping_mod` on the training messages of runs that ask for differential
    privacy (their config carries the clipping norm); other messages pass untouched."""
    from flwr.app import MessageType

    if msg.metadata.message_type == MessageType.TRAIN:
        config = msg.content.config_records.get("fitins.config")
        if config is not None and CLIPPING_NORM in config:
            return fixedclipping_mod(msg, ctxt, call_next)
    return call_next(msg, ctxt)


app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod, dp_clipping_mod])
