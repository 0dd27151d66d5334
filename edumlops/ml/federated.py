"""Federated training across school servers on Flower: what a run asks for, how it is submitted
to the district's SuperLink, what it returns, and the scikit-learn model it becomes.

The ServerApp itself is in edumlops.ml.federated_server (packaged as a Flower App by
edumlops/ml/flower_app/), the schools' ClientApp in edumlops.edge.federated, and what the two
agree on in edumlops.ml.federated_protocol. No Django here; flwr is imported only when a run is
submitted, so the workflow block can import this module cheaply.

How a run goes (every training message is aggregated with SecAgg+: the server only learns sums):

1. the ServerApp asks each connected SuperNode which school it is (Flower's get_properties), and
   keeps the SuperNodes of the listed schools; it waits up to `join_timeout` for `min_schools`;
2. a statistics round gives the numeric features' mean and scale (no row leaves a school);
3. `rounds` rounds of FedAvg (or FedProx) over `fraction` of the schools online, each school
   running `local_epochs` of logistic regression from the global model; with DP, each update is
   clipped on the school (Flower's fixedclipping_mod) and the server adds Gaussian noise
   (DifferentialPrivacyClientSideFixedClipping);
4. each school evaluates the final model on its own held-out rows and returns confusion counts
   per sensitive group.

A round with fewer than `min_schools`, or too many dropouts for SecAgg+ to remove the masks,
ends the run with a FederatedError and no model.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edumlops.ml import federated_protocol as proto

FAMILIES = ("logistic_regression", "sgd_logistic")
STRATEGIES = ("fedavg", "fedprox")
APP_DIR = Path(__file__).resolve().parent / "flower_app"
CONNECTION = "district"
CONFIG_FILE = "config.json"
RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.jsonl"
ACCOUNTING = (
    "zCDP of the Gaussian mechanism at the school level: each round adds noise of standard "
    "deviation noise_multiplier × clipping_norm / sampled schools to the average of clipped "
    "updates (sensitivity clipping_norm / sampled schools), i.e. rho = 1 / (2 z²) per round; "
    "rounds compose additively and epsilon = rho + 2·sqrt(rho·ln(1/delta)) (Bun & Steinke 2016, "
    "Prop. 1.3). No amplification by sampling is claimed. The statistics round (means and "
    "spreads of the numeric features) is aggregated with SecAgg+ but not noised, and is not "
    "counted here."
)


class FederatedError(Exception):
    """A federated run that cannot go on; the message says why and what to do."""


@dataclass
class FederatedConfig:
    numeric: list[str]
    categorical: dict[str, list[str]]
    label: str
    positive: list[str]
    schools: list[str]
    sensitive: list[str] = field(default_factory=list)
    # groups of the sensitive attributes that are not categorical features
    sensitive_groups: dict[str, list[str]] = field(default_factory=dict)
    family: str = "logistic_regression"
    rounds: int = 5
    min_schools: int = 2
    fraction: float = 1.0
    strategy: str = "fedavg"
    proximal_mu: float = 0.0
    local_epochs: int = 5
    learning_rate: float = 0.5
    dp_clipping_norm: float | None = None
    dp_noise_multiplier: float | None = None
    dp_delta: float = 1e-5
    # SecAgg+: shares per school (share of the sampled schools) and the share of them needed to
    # remove a dropped school's masks
    secagg_shares: float = 1.0
    secagg_threshold: float = 0.67
    secagg_clipping_range: float = 8.0
    # |values| of numeric features (for the statistics rounds' quantisation grid)
    numeric_bound: float = 1000.0
    # the largest school's training rows (SecAgg+ weights are quantised relative to it)
    max_school_rows: int = 10000
    holdout: float = 0.2
    seed: int = 0
    join_timeout: float = 60.0
    round_timeout: float = 120.0

    @property
    def dp(self) -> bool:
        return self.dp_noise_multiplier is not None

    def validate(self) -> None:
        """Raise FederatedError listing every problem at once."""
        problems: list[str] = []
        if not self.numeric and not self.categorical:
            problems.append("Give at least one feature (numeric or categorical).")
        both = set(self.numeric) & set(self.categorical)
        if both:
            problems.append(f"{', '.join(sorted(both))} cannot be both numeric and categorical.")
        for name, categories in self.categorical.items():
            if not categories:
                problems.append(f"The categorical feature '{name}' needs its list of categories.")
        if not self.label:
            problems.append("Name the label column.")
        elif self.label in self.numeric or self.label in self.categorical:
            problems.append(f"The label '{self.label}' cannot also be a feature.")
        if not self.positive:
            problems.append("Mark the label's positive value(s), e.g. 'yes'.")
        for attr in self.sensitive:
            if attr not in self.categorical and not self.sensitive_groups.get(attr):
                problems.append(
                    f"The sensitive attribute '{attr}' needs its groups: make it a categorical "
                    "feature or list its groups in sensitive_groups."
                )
        if not self.schools:
            problems.append("List the schools that may take part (their codes).")
        elif len(set(self.schools)) != len(self.schools):
            problems.append("A school is listed twice.")
        if self.family not in FAMILIES:
            problems.append(f"Unknown model family '{self.family}': use {' or '.join(FAMILIES)}.")
        if self.strategy not in STRATEGIES:
            problems.append(f"Unknown strategy '{self.strategy}': use fedavg or fedprox.")
        if self.strategy == "fedprox" and self.proximal_mu <= 0:
            problems.append("FedProx needs a proximal term mu > 0 (e.g. 0.1).")
        if not 1 <= self.rounds <= 200:
            problems.append("Rounds must be between 1 and 200.")
        if self.min_schools < 2:
            problems.append("Secure aggregation needs at least 2 schools per round.")
        elif self.schools and self.min_schools > len(self.schools):
            problems.append(
                f"The minimum of {self.min_schools} schools per round is more than the "
                f"{len(self.schools)} listed: list more schools or lower the minimum."
            )
        if not 0 < self.fraction <= 1:
            problems.append("The fraction of schools per round must be above 0 and at most 1.")
        if not 1 <= self.local_epochs <= 100:
            problems.append("Local epochs must be between 1 and 100.")
        if not 0 < self.learning_rate <= 10:
            problems.append("The learning rate must be above 0 and at most 10.")
        if (self.dp_clipping_norm is None) != (self.dp_noise_multiplier is None):
            problems.append(
                "Differential privacy needs both a clipping norm and a noise multiplier."
            )
        if self.dp_clipping_norm is not None and self.dp_clipping_norm <= 0:
            problems.append("The DP clipping norm must be above 0 (e.g. 1.0).")
        if self.dp_noise_multiplier is not None and self.dp_noise_multiplier <= 0:
            problems.append("The DP noise multiplier must be above 0 (e.g. 1.0).")
        if not 0 < self.dp_delta < 1:
            problems.append("DP delta must be between 0 and 1 (e.g. 1e-5).")
        if not 0 < self.secagg_shares <= 1 or not 0 < self.secagg_threshold <= 1:
            problems.append("SecAgg+ shares and threshold are shares: above 0 and at most 1.")
        if self.numeric_bound <= 0 or self.max_school_rows < 1:
            problems.append("numeric_bound and max_school_rows must be positive.")
        if not 0 < self.holdout < 1:
            problems.append("The held-out share must be between 0 and 1 (e.g. 0.2).")
        if self.join_timeout <= 0 or self.round_timeout <= 0:
            problems.append("Timeouts must be positive (seconds).")
        if problems:
            raise FederatedError(" ".join(problems))

    def encoding_spec(self) -> proto.EncodingSpec:
        groups = {
            a: list(self.categorical.get(a) or self.sensitive_groups[a]) for a in self.sensitive
        }
        return proto.EncodingSpec(
            numeric=list(self.numeric),
            categorical={k: list(v) for k, v in self.categorical.items()},
            label=self.label,
            positive=[str(v) for v in self.positive],
            sensitive=groups,
            holdout=self.holdout,
            seed=self.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FederatedConfig:
        return cls(**data)


@dataclass
class FederatedResult:
    numeric: list[str]
    categorical: dict[str, list[str]]
    coef: list[float]
    intercept: float
    means: list[float]  # numeric features: fill value for missing, and centre
    scales: list[float]
    # {round, schools, sampled, dropped, rows, train_loss, seconds, coef, intercept}
    rounds: list[dict[str, Any]]
    evaluation: dict[str, Any]  # {schools, rows, loss, counts: {tp..}, accuracy}
    group_counts: dict[str, dict[str, dict[str, int]]]
    dp: dict[str, Any] | None
    secagg: dict[str, Any]
    schools: list[str]  # every school that took part in some round
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FederatedResult:
        return cls(**data)

    @property
    def coef_array(self) -> np.ndarray:
        return np.asarray(self.coef, dtype=np.float64)


def epsilon_spent(rounds: int, noise_multiplier: float, delta: float) -> float:
    """School-level (ε, δ) of `rounds` Gaussian releases with noise multiplier z (zCDP)."""
    rho = rounds / (2.0 * noise_multiplier**2)
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))


def dp_summary(config: FederatedConfig, rounds: int) -> dict[str, Any] | None:
    if not config.dp:
        return None
    assert config.dp_noise_multiplier is not None
    return {
        "clipping_norm": config.dp_clipping_norm,
        "noise_multiplier": config.dp_noise_multiplier,
        "rounds": rounds,
        "delta": config.dp_delta,
        "epsilon": epsilon_spent(rounds, config.dp_noise_multiplier, config.dp_delta),
        "level": "school",
        "accounting": ACCOUNTING,
    }


def to_sklearn_pipeline(result: FederatedResult) -> Any:
    """The federated model as the platform's usual Pipeline ("prepare" then "model") over
    training.prepare_frame's columns: numeric missing → the federated mean, then scaled; the
    config's categories one-hot ("ignore" for others); a LogisticRegression with the federated
    coefficients. Converts with skl2onnx like any trained pipeline."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric, categorical = list(result.numeric), dict(result.categorical)
    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        steps = [("impute", SimpleImputer(strategy="mean")), ("scale", StandardScaler())]
        parts.append(("numeric", Pipeline(steps), numeric))
    if categorical:
        onehot = OneHotEncoder(
            categories=[list(v) for v in categorical.values()],
            handle_unknown="ignore",
            sparse_output=False,
        )
        parts.append(("categorical", onehot, list(categorical)))
    pre = ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)
    # fit on a frame of two rows to set the shapes, then put the federated numbers in
    size = max([2, *(len(v) for v in categorical.values())])
    frame = pd.DataFrame({c: np.arange(size, dtype=np.float64) for c in numeric})
    for col, cats in categorical.items():
        frame[col] = pd.Series([cats[k % len(cats)] for k in range(size)], dtype=object)
    pre.fit(frame)
    if numeric:
        num = pre.named_transformers_["numeric"]
        num.named_steps["impute"].statistics_ = np.asarray(result.means, dtype=np.float64)
        scaler = num.named_steps["scale"]
        scaler.mean_ = np.asarray(result.means, dtype=np.float64)
        scaler.scale_ = np.asarray(result.scales, dtype=np.float64)
        scaler.var_ = scaler.scale_**2
    model = LogisticRegression()
    width = len(result.coef)
    model.fit(np.vstack([np.zeros(width), np.ones(width)]), np.array([0, 1]))
    model.coef_ = result.coef_array.reshape(1, -1)
    model.intercept_ = np.array([float(result.intercept)])
    return Pipeline([("prepare", pre), ("model", model)])


def _flwr_env(flwr_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["FLWR_HOME"] = str(flwr_home)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _flwr(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    flwr = shutil.which("flwr", path=env["PATH"]) or "flwr"
    return subprocess.run(
        [flwr, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _run_status(run_id: str, env: dict[str, str]) -> str:
    done = _flwr(["ls", CONNECTION, "--run-id", run_id, "--format", "json"], env, 60)
    try:
        runs = json.loads(done.stdout).get("runs") or []
    except json.JSONDecodeError:
        return ""
    return str(runs[0].get("status", "")) if runs else ""


def run_federated(
    config: FederatedConfig,
    *,
    control_address: str,
    workdir: Path,
    timeout: float = 1800.0,
    on_round: Callable[[dict[str, Any]], None] | None = None,
    app_dir: Path = APP_DIR,
) -> FederatedResult:
    """Submit the run to the SuperLink whose Control API is at `control_address` (host:port,
    the SuperLink's one HTTP port in Flower 1.42), wait for it (at most `timeout` seconds) and
    return what the ServerApp wrote. `on_round` is called with each round's summary as it ends.
    The SuperLink must run on this machine (the ServerApp writes its result into `workdir`)."""
    config.validate()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for name in (RESULT_FILE, PROGRESS_FILE):
        (workdir / name).unlink(missing_ok=True)
    (workdir / CONFIG_FILE).write_text(json.dumps(config.to_dict()))
    home = workdir / "flwr-home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "{control_address}"\ninsecure = true\n'
    )
    overrides = workdir / "run-config.toml"
    overrides.write_text(f"workdir = {json.dumps(str(workdir))}\n")
    env = _flwr_env(home)
    started = _flwr(
        ["run", str(app_dir), CONNECTION, "--run-config", str(overrides), "--format", "json"],
        env,
        120,
    )
    run_id = ""
    with contextlib.suppress(json.JSONDecodeError):
        run_id = str(json.loads(started.stdout).get("run-id") or "")
    if started.returncode != 0 or not run_id:
        detail = (started.stdout + started.stderr).strip().splitlines()[-1:] or ["no output"]
        raise FederatedError(
            f"The district's federated server (Flower SuperLink) at {control_address} did not "
            f"take the run ({detail[0]}): check that it is running (`manage.py runstack` starts "
            "it) and that the address is right."
        )
    deadline = time.monotonic() + timeout
    seen = 0
    next_status = time.monotonic() + 5
    while True:
        progress = workdir / PROGRESS_FILE
        if progress.exists():
            lines = progress.read_text().splitlines()
            for line in lines[seen:]:
                if on_round is not None and line.strip():
                    on_round(json.loads(line))
            seen = len(lines)
        result_path = workdir / RESULT_FILE
        if result_path.exists():
            data = json.loads(result_path.read_text())
            if "error" in data:
                raise FederatedError(data["error"])
            return FederatedResult.from_dict(data)
        now = time.monotonic()
        if now > deadline:
            _flwr(["stop", run_id, CONNECTION], env, 60)
            raise FederatedError(
                f"The federated run {run_id} did not finish within {timeout:.0f} s and was "
                "stopped: give it more time, or fewer rounds or local epochs."
            )
        if now > next_status:
            next_status = now + 5
            status = _run_status(run_id, env)
            if status.startswith("finished") and not result_path.exists():
                time.sleep(1)
                if not result_path.exists():
                    raise FederatedError(
                        f"The federated run {run_id} ended ({status}) without a result: read "
                        f"its log with `flwr log {run_id} {CONNECTION}` on the district server."
                    )
        time.sleep(0.25)
