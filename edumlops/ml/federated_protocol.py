"""What the district's ServerApp and the schools' ClientApp agree on in federated training.

Standard library and numpy only: the school server's ClientApp (edumlops.edge.federated) imports
this, and the edge install has no pandas or scikit-learn.

A run has two kinds of training message, told apart by `phase` in the fit config:

- `stats`: a school returns, per numeric feature, the share of its training rows that have a
  value, the per-row average of the values (missing counted as 0) and its own standard
  deviation. Weighted by row counts through SecAgg+, the server gets the district's share and
  average, hence the mean, and the row-weighted average of the schools' standard deviations,
  which it uses as the scale (a within-school spread: a sound scale for conditioning, not the
  pooled standard deviation). Not E[x²]: SecAgg+ quantises every value to a fixed grid over
  [-range, range], which would destroy a variance computed as E[x²] − mean² for a feature such
  as attendance (0.9 ± 0.05).
- `train`: local epochs of logistic regression from the global parameters.

Evaluation messages carry the final global model; a school answers with confusion counts per
sensitive group of its own held-out rows. Categories and sensitive groups come from the
config, never from the data: a value outside the listed groups is counted as "other", so no
value of a school's own rows travels in a group name.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

PHASE_STATS = "stats"
PHASE_TRAIN = "train"

KEY_PHASE = "phase"
KEY_SPEC = "spec"  # JSON of EncodingSpec.to_dict()
KEY_TRANSFORM = "transform"  # JSON of Transform.to_dict()
KEY_EPOCHS = "local_epochs"
KEY_LEARNING_RATE = "learning_rate"
KEY_FAMILY = "family"
KEY_SEED = "seed"
KEY_ROUND = "round"
KEY_PROXIMAL_MU = "proximal_mu"  # the key Flower's FedProx strategy sends

METRIC_SCHOOL = "school"
METRIC_TRAIN_LOSS = "train_loss"
METRIC_COUNTS = "counts"  # JSON {"overall": {tp..}, "groups": {attr: {group: {tp..}}}}
PROPERTY_SCHOOL = "school"

OTHER_GROUP = "other"
MISSING = "missing"
BATCH_SIZE = 32
L2 = 1e-4


@dataclass(frozen=True)
class EncodingSpec:
    """Which columns a school reads from its records file and how it labels rows."""

    numeric: list[str]
    categorical: dict[str, list[str]]
    label: str
    positive: list[str]
    sensitive: dict[str, list[str]]  # attribute -> its groups (others count as "other")
    holdout: float
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": list(self.numeric),
            "categorical": {k: list(v) for k, v in self.categorical.items()},
            "label": self.label,
            "positive": list(self.positive),
            "sensitive": {k: list(v) for k, v in self.sensitive.items()},
            "holdout": self.holdout,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncodingSpec:
        return cls(
            numeric=list(data["numeric"]),
            categorical={k: list(v) for k, v in data["categorical"].items()},
            label=str(data["label"]),
            positive=[str(v) for v in data["positive"]],
            sensitive={k: list(v) for k, v in data["sensitive"].items()},
            holdout=float(data["holdout"]),
            seed=int(data["seed"]),
        )

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical, self.label, *self.sensitive]

    @property
    def width(self) -> int:
        return len(self.numeric) + sum(len(v) for v in self.categorical.values())


@dataclass(frozen=True)
class Transform:
    """Numeric features: missing → mean, then (x − mean) / scale. Categorical: one-hot over the
    config's categories (an unlisted value is all zeros, like OneHotEncoder's "ignore")."""

    means: list[float]
    scales: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"means": list(self.means), "scales": list(self.scales)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transform:
        return cls([float(v) for v in data["means"]], [float(v) for v in data["scales"]])


@dataclass
class SchoolRows:
    """A school's rows as arrays: raw numeric values (nan = missing), one-hot categoricals,
    labels, the sensitive groups per attribute, and the held-out mask."""

    numeric: np.ndarray  # (n, d_num) float64 with nan
    onehot: np.ndarray  # (n, d_cat) float64
    y: np.ndarray  # (n,) float64 0/1
    groups: dict[str, list[str]]
    holdout: np.ndarray  # (n,) bool

    @property
    def train(self) -> np.ndarray:
        return ~self.holdout


def parse_rows(records: list[dict[str, str]], spec: EncodingSpec, school: str) -> SchoolRows:
    """Rows read by csv.DictReader → arrays. Raises ValueError naming a missing column or a
    value that is not a number (the message stays on the school server)."""
    if records:
        absent = [c for c in dict.fromkeys(spec.columns) if c not in records[0]]
        if absent:
            raise ValueError(
                f"The records file lacks the column(s) {', '.join(absent)} the run needs."
            )
    n = len(records)
    numeric = np.full((n, len(spec.numeric)), np.nan)
    for j, col in enumerate(spec.numeric):
        for i, row in enumerate(records):
            text = (row.get(col) or "").strip()
            if text:
                try:
                    # float32 then float64, as training.prepare_frame does
                    numeric[i, j] = float(np.float32(float(text)))
                except ValueError:
                    raise ValueError(
                        f"'{col}' holds text in row {i + 2}: fix that value."
                    ) from None
    blocks = []
    for col, categories in spec.categorical.items():
        index = {c: k for k, c in enumerate(categories)}
        block = np.zeros((n, len(categories)))
        for i, row in enumerate(records):
            value = (row.get(col) or "").strip() or MISSING
            k = index.get(value)
            if k is not None:
                block[i, k] = 1.0
        blocks.append(block)
    onehot = np.hstack(blocks) if blocks else np.zeros((n, 0))
    wanted = set(spec.positive)
    y = np.array([1.0 if (row.get(spec.label) or "").strip() in wanted else 0.0 for row in records])
    groups = {}
    for attr, names in spec.sensitive.items():
        listed = set(names)
        values = [(row.get(attr) or "").strip() or MISSING for row in records]
        groups[attr] = [v if v in listed else OTHER_GROUP for v in values]
    rng = np.random.default_rng(spec.seed + zlib.crc32(school.encode()))
    holdout = rng.random(n) < spec.holdout
    return SchoolRows(numeric, onehot, y, groups, holdout)


def statistics(rows: SchoolRows) -> list[np.ndarray]:
    """[share present, per-row average, this school's standard deviation] per numeric feature."""
    x = rows.numeric[rows.train]
    n = max(len(x), 1)
    present = ~np.isnan(x)
    count = present.sum(axis=0)
    total = np.where(present, x, 0.0).sum(axis=0)
    mean = total / np.maximum(count, 1)
    spread = np.sqrt(np.where(present, (x - mean) ** 2, 0.0).sum(axis=0) / np.maximum(count, 1))
    return [count / n, total / n, spread]


def encode(rows: SchoolRows, transform: Transform) -> np.ndarray:
    means = np.asarray(transform.means)
    scales = np.asarray(transform.scales)
    x = np.where(np.isnan(rows.numeric), means, rows.numeric)
    return np.hstack([(x - means) / scales, rows.onehot])


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))


def log_loss(x: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: float) -> float:
    p = np.clip(sigmoid(x @ coef + intercept), 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if len(y) else 0.0


def train_local(
    x: np.ndarray,
    y: np.ndarray,
    coef: np.ndarray,
    intercept: float,
    *,
    family: str,
    epochs: int,
    learning_rate: float,
    proximal_mu: float,
    seed: int,
) -> tuple[np.ndarray, float]:
    """Local epochs of gradient descent on the mean log loss (+ a small L2, + FedProx's
    mu/2·‖w − w_global‖² when mu > 0). `logistic_regression`: one full-batch step per epoch;
    `sgd_logistic`: shuffled mini-batches of 32."""
    w = np.append(coef, intercept).astype(np.float64)
    w_global = w.copy()
    xb = np.hstack([x, np.ones((len(x), 1))])
    rng = np.random.default_rng(seed)
    n = len(xb)
    if n == 0:
        return coef, intercept
    for _ in range(epochs):
        if family == "sgd_logistic":
            order = rng.permutation(n)
            batches = [order[k : k + BATCH_SIZE] for k in range(0, n, BATCH_SIZE)]
        else:
            batches = [np.arange(n)]
        for batch in batches:
            xs, ys = xb[batch], y[batch]
            grad = xs.T @ (sigmoid(xs @ w) - ys) / len(batch)
            grad[:-1] += L2 * w[:-1]
            if proximal_mu > 0:
                grad += proximal_mu * (w - w_global)
            w -= learning_rate * grad
    return w[:-1], float(w[-1])


def confusion(y: np.ndarray, predicted: np.ndarray) -> dict[str, int]:
    return {
        "tp": int(((predicted == 1) & (y == 1)).sum()),
        "fp": int(((predicted == 1) & (y == 0)).sum()),
        "tn": int(((predicted == 0) & (y == 0)).sum()),
        "fn": int(((predicted == 0) & (y == 1)).sum()),
    }


def evaluation_counts(
    rows: SchoolRows, transform: Transform, coef: np.ndarray, intercept: float
) -> tuple[float, int, dict[str, Any]]:
    """Log loss, held-out row count and confusion counts (overall and per sensitive group)
    of the model on the school's held-out rows."""
    mask = rows.holdout
    x = encode(rows, transform)[mask]
    y = rows.y[mask]
    predicted = (sigmoid(x @ coef + intercept) >= 0.5).astype(int)
    groups: dict[str, dict[str, dict[str, int]]] = {}
    for attr, values in rows.groups.items():
        held = np.array(values, dtype=object)[mask]
        groups[attr] = {
            str(g): confusion(y[held == g], predicted[held == g]) for g in sorted(set(held))
        }
    counts = {"overall": confusion(y, predicted), "groups": groups}
    return log_loss(x, y, coef, intercept), int(mask.sum()), counts


def dumps(data: Any) -> str:
    # no sort_keys: the order of the categorical features is the order of the one-hot columns
    return json.dumps(data, separators=(",", ":"))
