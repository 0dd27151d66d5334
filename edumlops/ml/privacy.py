"""Differentially private training with diffprivlib: logistic regression (objective
perturbation) and Gaussian naive Bayes (Laplace noise on counts, means and variances).

What the mechanism protects is the classifier's fit on the training rows, so nothing before it
may be learnt from those rows beyond what the model card declares:

- each numeric feature is clipped to bounds and scaled to [-1, 1] with a scaler fitted on the
  bounds themselves (two rows: lower, upper), never on the students; a gap becomes 0 (the middle
  of the bounds) after scaling; the bounds are the user's, or read from the dataset's profile or
  the training rows when none are given — the card then says so, since bounds read from the data
  leak a little;
- categories are one-hot encoded against a fixed list (what the training rows hold: that list is
  also read from the data and the card says so);
- the data norm the logistic regression needs then follows from the layout, not from the rows:
  every numeric value is in [-1, 1] and each categorical feature sets at most one 1, so no row is
  longer than sqrt(n_numeric + n_categorical); Gaussian naive Bayes gets the bounds [-1, 1] and
  [0, 1] of the same columns.

The fitted diffprivlib model is then post-processed into the plain scikit-learn estimator with
the same parameters (coef_/intercept_, theta_/var_/class_prior_): post-processing never weakens
differential privacy, and the plain estimator is what skl2onnx converts, so the private model
goes through the same export, parity check and serving as any other. A fresh diffprivlib
BudgetAccountant capped at ε watches every fit, so a model that tried to spend more than the ε
it was given would fail rather than be released.

diffprivlib 0.6.6 (its latest release) does not import with scikit-learn 1.9: its forest module
imports `DOUBLE` and `DTYPE` from sklearn.tree._tree (gone in 1.9) and its LogisticRegression
passes `multi_class` (removed in 1.8). `_diffprivlib()` restores the two dtype names (never read
by the models used here) and `_DPLogisticRegression` builds the same estimator without
`multi_class`; its fit is diffprivlib's own, unchanged.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from edumlops.ml.training import FeatureSpec

DP_ALGORITHMS = {
    "dp_logistic_regression": "Private logistic regression (differential privacy)",
    "dp_gaussian_nb": "Private Gaussian naive Bayes (differential privacy)",
}
MECHANISMS = {
    "dp_logistic_regression": (
        "objective perturbation (Chaudhuri, Monteleoni & Sarwate 2011), "
        "diffprivlib LogisticRegression"
    ),
    "dp_gaussian_nb": (
        "Laplace mechanism on class counts, means and variances (Vaidya, Shafiq, Basu & Hong "
        "2013), diffprivlib GaussianNB"
    ),
}
# the non-private model of the same family, trained on the same split for the card
NON_PRIVATE = {
    "dp_logistic_regression": "Logistic regression",
    "dp_gaussian_nb": "Gaussian naive Bayes",
}
MIN_EPSILON = 0.01
MAX_EPSILON = 50.0
DEFAULT_EPSILON = 1.0
# Regularisation strength of both logistic regressions (diffprivlib's default; the objective
# perturbation's noise is calibrated to it).
C = 1.0
# Noisy variances can come out (almost) zero; a Gaussian that narrow makes one feature decide
# everything and float32 (ONNX) disagree with float64. Raising them to this floor (on features
# scaled to [-1, 1]) is post-processing of the private output.
VAR_FLOOR = 1e-3


class PrivacyError(ValueError):
    """The private training cannot run as asked; the message names the parameter and the fix."""


def is_private(algorithm: str) -> bool:
    return algorithm in DP_ALGORITHMS


def diffprivlib_ready() -> None:
    """Let diffprivlib 0.6.6 import on scikit-learn 1.9 (see the module's docstring): any
    diffprivlib import loads its forest module, which reads two dtype names 1.9 dropped."""
    import sklearn.tree._tree as tree

    for name, dtype in (("DOUBLE", np.float64), ("DTYPE", np.float32)):
        if not hasattr(tree, name):
            setattr(tree, name, dtype)


def _diffprivlib() -> Any:
    """Import diffprivlib.models on scikit-learn 1.9."""
    diffprivlib_ready()
    import diffprivlib.models

    return diffprivlib.models


def _dp_logistic_regression() -> type:
    from sklearn import linear_model

    models = _diffprivlib()
    from diffprivlib.accountant import BudgetAccountant

    class _DPLogisticRegression(models.LogisticRegression):
        """diffprivlib's LogisticRegression, built without the `multi_class` argument
        scikit-learn 1.8 removed (binary targets: one-vs-rest is the only choice anyway)."""

        def __init__(  # noqa: PLR0913 - the estimator's own parameters
            self,
            *,
            epsilon: float = 1.0,
            data_norm: float | None = None,
            tol: float = 1e-4,
            C: float = 1.0,  # noqa: N803
            fit_intercept: bool = True,
            max_iter: int = 100,
            verbose: int = 0,
            warm_start: bool = False,
            n_jobs: int | None = None,
            random_state: Any = None,
            accountant: Any = None,
        ) -> None:
            try:
                models.LogisticRegression.__init__(
                    self,
                    epsilon=epsilon,
                    data_norm=data_norm,
                    tol=tol,
                    C=C,
                    fit_intercept=fit_intercept,
                    max_iter=max_iter,
                    verbose=verbose,
                    warm_start=warm_start,
                    n_jobs=n_jobs,
                    random_state=random_state,
                    accountant=accountant,
                )
            except TypeError:  # scikit-learn without multi_class
                linear_model.LogisticRegression.__init__(
                    self,
                    tol=tol,
                    C=C,
                    fit_intercept=fit_intercept,
                    random_state=random_state,
                    solver="lbfgs",
                    max_iter=max_iter,
                    verbose=verbose,
                    warm_start=warm_start,
                    n_jobs=n_jobs,
                )
                self.epsilon = epsilon
                self.data_norm = data_norm
                self.accountant = BudgetAccountant.load_default(accountant)

    return _DPLogisticRegression


# --- bounds ------------------------------------------------------------------------------------
GIVEN = "given"
PROFILE = "dataset profile"
ROWS = "training rows"


@dataclass(frozen=True)
class PrivacySetup:
    """ε and everything the mechanism is told about the data instead of learning it."""

    epsilon: float
    bounds: dict[str, tuple[float, float]]  # numeric feature → (lower, upper), raw units
    bounds_from: dict[str, str]  # numeric feature → GIVEN / PROFILE / ROWS
    categories: dict[str, list[str]] = field(default_factory=dict)
    categories_from: str = ROWS

    @property
    def data_norm(self) -> float:
        """Largest length a prepared row can have: numbers in [-1, 1], one 1 per category."""
        return math.sqrt(max(1, len(self.bounds) + len(self.categories)))

    @property
    def read_from_data(self) -> list[str]:
        return [name for name, source in self.bounds_from.items() if source != GIVEN]

    def to_dict(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon,
            "delta": 0.0,
            "bounds": {k: [lo, hi] for k, (lo, hi) in self.bounds.items()},
            "bounds_from": dict(self.bounds_from),
            "bounds_read_from_data": self.read_from_data,
            "categories": {k: list(v) for k, v in self.categories.items()},
            "categories_from": self.categories_from if self.categories else "",
            "data_norm": self.data_norm,
        }


def check_epsilon(epsilon: Any) -> float:
    try:
        value = float(epsilon)
    except (TypeError, ValueError):
        raise PrivacyError(f"ε must be a number, not {epsilon!r}: use e.g. 1.") from None
    if not math.isfinite(value) or not MIN_EPSILON <= value <= MAX_EPSILON:
        raise PrivacyError(
            f"ε = {epsilon!r} is outside {MIN_EPSILON:g}–{MAX_EPSILON:g}: a smaller ε is more "
            "private and less accurate; 1 is a common choice."
        )
    return value


def parse_bounds(given: Any) -> dict[str, tuple[float, float]]:
    """{"attendance_rate": [0, 1]} (or "attendance_rate: 0..1" lines) as checked floats."""
    if not given:
        return {}
    if isinstance(given, str):
        parsed: dict[str, Any] = {}
        for line in given.replace(";", "\n").splitlines():
            if not line.strip():
                continue
            name, sep, rest = line.partition(":")
            low, dots, high = rest.partition("..")
            if not sep or not dots:
                raise PrivacyError(
                    f"Cannot read the bounds {line.strip()!r}: write one feature per line as "
                    "'name: lower..upper', e.g. 'attendance_rate: 0..1'."
                )
            parsed[name.strip()] = [low.strip(), high.strip()]
        given = parsed
    if not isinstance(given, dict):
        raise PrivacyError('Bounds must map a feature to [lower, upper], e.g. {"gpa": [0, 4]}.')
    out = {}
    for name, pair in given.items():
        try:
            low, high = (float(v) for v in pair)
        except (TypeError, ValueError):
            raise PrivacyError(
                f"The bounds of '{name}' must be two numbers [lower, upper], not {pair!r}."
            ) from None
        if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
            raise PrivacyError(
                f"The bounds of '{name}' must be finite with lower < upper, not {pair!r}: "
                "e.g. [0, 1] for a rate."
            )
        out[str(name)] = (low, high)
    return out


def resolve(
    spec: FeatureSpec,
    rows: pd.DataFrame,
    epsilon: Any,
    given: Any = None,
    profile: dict[str, tuple[float | None, float | None]] | None = None,
) -> PrivacySetup:
    """ε and the bounds of every numeric feature: the given ones, else the dataset profile's
    min/max, else the training rows' (`rows` prepared by training.prepare_frame). Categories are
    listed from the training rows."""
    eps = check_epsilon(epsilon)
    wanted = parse_bounds(given)
    unknown = [name for name in wanted if name not in spec.numeric]
    if unknown:
        raise PrivacyError(
            f"Bounds given for {', '.join(unknown)}, which the model does not use as a number "
            f"(numeric features: {', '.join(spec.numeric) or 'none'}): remove them or fix the "
            "name."
        )
    bounds, sources = {}, {}
    for name in spec.numeric:
        if name in wanted:
            bounds[name], sources[name] = wanted[name], GIVEN
            continue
        low, high = (profile or {}).get(name, (None, None))
        source = PROFILE
        if low is None or high is None or not math.isfinite(low) or not math.isfinite(high):
            values = rows[name].dropna()
            if values.empty:
                raise PrivacyError(
                    f"'{name}' has no values to read bounds from: give its bounds, e.g. "
                    f"'{name}: 0..1'."
                )
            low, high, source = float(values.min()), float(values.max()), ROWS
        if low >= high:  # a constant column: any interval around it will do
            low, high = low - 0.5, high + 0.5
        bounds[name], sources[name] = (float(low), float(high)), source
    categories = {
        name: sorted({str(v) for v in rows[name].dropna().unique()}) for name in spec.categorical
    }
    return PrivacySetup(eps, bounds, sources, categories, ROWS)


# --- pipelines ---------------------------------------------------------------------------------
def preprocessing(spec: FeatureSpec, setup: PrivacySetup) -> Any:
    """The ColumnTransformer of a private pipeline, fitted on the bounds and category lists
    alone (never on rows): numbers clipped to their bounds and scaled to [-1, 1], a gap set to
    0, categories one-hot encoded against the fixed list (an unknown one sets no column)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder

    parts: list[tuple[str, Any, list[str]]] = []
    if spec.numeric:
        numeric = Pipeline(
            [
                ("scale", MinMaxScaler(feature_range=(-1.0, 1.0), clip=True)),
                ("impute", SimpleImputer(strategy="constant", fill_value=0.0)),
            ]
        )
        parts.append(("numeric", numeric, list(spec.numeric)))
    if spec.categorical:
        cats = [setup.categories.get(name) or ["missing"] for name in spec.categorical]
        onehot = OneHotEncoder(categories=cats, handle_unknown="ignore", sparse_output=False)
        parts.append(("categorical", onehot, list(spec.categorical)))
    pre = ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)
    size = max([2, *(len(c) for c in setup.categories.values())])
    frame = pd.DataFrame(index=range(size))
    for name in spec.numeric:
        low, high = setup.bounds[name]
        frame[name] = [low if i % 2 == 0 else high for i in range(size)]
    for i, name in enumerate(spec.categorical):
        values = cats[i]
        frame[name] = [values[j % len(values)] for j in range(size)]
    return pre.fit(frame[spec.columns])


def transformed_bounds(spec: FeatureSpec, setup: PrivacySetup) -> tuple[list[float], list[float]]:
    """The bounds of each prepared column: [-1, 1] for numbers, [0, 1] for one-hot columns."""
    width = sum(len(setup.categories.get(name) or ["missing"]) for name in spec.categorical)
    lower = [-1.0] * len(spec.numeric) + [0.0] * width
    upper = [1.0] * (len(spec.numeric) + width)
    return lower, upper


@dataclass
class PrivateFit:
    pipeline: Any  # Pipeline(prepare → plain scikit-learn estimator), what is registered
    private_model: Any  # the fitted diffprivlib estimator
    epsilon_spent: float  # what diffprivlib's accountant recorded
    setup: PrivacySetup


def fit_private(
    spec: FeatureSpec,
    algorithm: str,
    setup: PrivacySetup,
    X: pd.DataFrame,
    y: Any,
    seed: int = 0,
) -> PrivateFit:
    """Fit the private model on prepared rows and post-process it into a plain pipeline."""
    from sklearn.pipeline import Pipeline

    if not is_private(algorithm):
        raise PrivacyError(
            f"'{algorithm}' is not a private algorithm: use one of {', '.join(DP_ALGORITHMS)}."
        )
    models = _diffprivlib()
    from diffprivlib.accountant import BudgetAccountant
    from diffprivlib.utils import PrivacyLeakWarning

    pre = preprocessing(spec, setup)
    Xt = pre.transform(X[spec.columns])
    target = np.asarray(y, dtype=int)
    if len(set(target.tolist())) < 2:
        raise PrivacyError("The training rows hold only one class of the label.")
    # capped at ε: a fit that spent more would raise instead of returning a model
    accountant = BudgetAccountant(epsilon=setup.epsilon, delta=0.0)
    rng = np.random.RandomState(seed)
    with warnings.catch_warnings():
        # a leak warning here would mean a bound or norm was read from the rows: make it fail
        warnings.simplefilter("error", PrivacyLeakWarning)
        warnings.filterwarnings("ignore", message=".*L-BFGS-B.*", category=DeprecationWarning)
        if algorithm == "dp_logistic_regression":
            private = _dp_logistic_regression()(
                epsilon=setup.epsilon,
                data_norm=setup.data_norm,
                C=C,
                max_iter=1000,
                random_state=rng,
                accountant=accountant,
            )
        else:
            private = models.GaussianNB(
                epsilon=setup.epsilon,
                bounds=transformed_bounds(spec, setup),
                random_state=rng,
                accountant=accountant,
            )
        private.fit(Xt, target)
    plain = to_plain(private)
    return PrivateFit(
        pipeline=Pipeline([("prepare", pre), ("model", plain)]),
        private_model=private,
        epsilon_spent=float(accountant.total()[0]),
        setup=setup,
    )


def to_plain(private: Any) -> Any:
    """The scikit-learn estimator with the private model's fitted parameters (post-processing:
    no further privacy cost)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB

    if hasattr(private, "coef_"):
        plain = LogisticRegression(C=private.C, fit_intercept=private.fit_intercept)
        plain.classes_ = np.asarray(private.classes_)
        plain.coef_ = np.asarray(private.coef_, dtype=float).copy()
        plain.intercept_ = np.asarray(private.intercept_, dtype=float).copy()
        plain.n_iter_ = np.asarray(private.n_iter_)
        plain.n_features_in_ = int(private.coef_.shape[1])
        return plain
    plain = GaussianNB()
    plain.classes_ = np.asarray(private.classes_)
    plain.theta_ = np.asarray(private.theta_, dtype=float).copy()
    plain.var_ = np.maximum(np.asarray(private.var_, dtype=float), VAR_FLOOR)
    plain.class_prior_ = np.asarray(private.class_prior_, dtype=float).copy()
    plain.class_count_ = np.asarray(private.class_count_, dtype=float).copy()
    plain.epsilon_ = float(private.epsilon_)
    plain.n_features_in_ = int(plain.theta_.shape[1])
    return plain


def fit_non_private(
    spec: FeatureSpec, algorithm: str, setup: PrivacySetup, X: pd.DataFrame, y: Any
) -> Any:
    """The non-private model of the same family on the same rows and the same preprocessing,
    to show what the privacy costs (never registered)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.pipeline import Pipeline

    pre = preprocessing(spec, setup)
    model: Any = (
        LogisticRegression(C=C, max_iter=2000)
        if algorithm == "dp_logistic_regression"
        else GaussianNB()
    )
    model.fit(pre.transform(X[spec.columns]), np.asarray(y, dtype=int))
    return Pipeline([("prepare", pre), ("model", model)])


def comparison(
    private: Any, non_private: Any, X: pd.DataFrame, y: Any, threshold: float = 0.5
) -> dict[str, Any]:
    """Accuracy and AUC of both pipelines on the same held-out rows (prepared)."""
    from edumlops.ml.evaluation import evaluate

    out: dict[str, Any] = {"rows": int(len(X)), "threshold": threshold}
    for key, pipeline in (("private", private), ("non_private", non_private)):
        metrics = evaluate(y, pipeline.predict_proba(X)[:, 1], threshold=threshold)
        out[key] = {m: metrics.get(m) for m in ("accuracy", "auc", "recall", "brier")}
    return out
