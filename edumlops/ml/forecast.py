"""Enrollment forecasts per school (and grade) for the next registration cycles, their
rolling-origin backtest against the seasonal-naive baseline, the gate, and the error once actual
counts arrive.

History is one row per school (and grade) and term: columns school, grade, year, term and
enrollment (`enrollment_synth.simulate_enrollment` makes one). A series is a school and grade
(`by="grade"`) or a school's total (`by="school"`). The season is the number of terms a year.
Terms are ordered fall (autumn), winter, spring, summer when they are named so, else sorted.

Methods:

- `seasonal_naive`, the baseline: the count one season (one school year) earlier. Its interval is
  normal with sigma_h = sigma * sqrt(floor((h - 1) / m) + 1), sigma the root mean square of the
  in-sample seasonal-naive residuals (Hyndman & Athanasopoulos, *Forecasting: principles and
  practice*, 3rd ed., §5.5).
- `ets`: statsmodels' `ETSModel` with additive error, damped additive trend and additive season,
  ETS(A,Ad,A), fitted per series by maximum likelihood, with its exact prediction intervals
  (`get_prediction(...).summary_frame(alpha)`).
- `gbm`: one scikit-learn `HistGradientBoostingRegressor` pooled across all series, direct
  multi-step: from the counts known at the origin (growth over the last year at lag 1 and lag 2,
  the year before's growth, the last count, the step, the term) it predicts the log growth of
  the target term over the same term a year (or k years) earlier. Intervals come from **quantile
  loss**: the point is the median model, the ends two more models at (1 - level) / 2 and
  (1 + level) / 2; where quantiles cross, the interval is widened to hold the point.

Short history. A series starts at its first non-zero count (zeros before are a school not yet
open). A series too short for the chosen method falls back, and says why on its rows (`method`
is the method used, `reason` the why): ETS needs max(3 seasons, 10 terms), GBM 2 seasons and a
term, the seasonal naive a season and a term; shorter goes to the naive forecast (the last
count, sigma_h = sigma * sqrt(h), sigma from the term-to-term changes), and one term only gets a
point with no interval (NaN ends). A series with no students yet forecasts 0. Counts and
interval ends are clipped at 0.

Calibrated intervals (`calibrate=N`): the model's own intervals are often too narrow (ETS's
assume its model is right). With calibration, the forecasts made at each of the last N origins
before the one that matters are compared with what happened; per step ahead, the factor that
stretches the intervals' half on the actual's side until `level` of them hold it (the split
conformal quantile, rank ceil((n + 1) * level) of n) scales both halves of that step's
intervals. A step with fewer than `CALIBRATION_MIN` such forecasts takes the factor of all
steps together; with fewer still, the intervals stay as the model gives them and `calibration`
says why. In the backtest each origin is calibrated on the N origins before it only, so its
coverage is what a user would have had (`raw_coverage` is the model's own).

Backtest: one origin per registration cycle over the last `origins` cycles whose whole horizon
is known; each method is fitted on the history up to the origin. MAPE skips actuals of 0 (a
school not yet open); MASE scales each error by that series' in-sample seasonal-naive MAE at the
origin (Hyndman & Koehler 2006) and skips series where that MAE is 0 or undefined.

The fits run with BLAS and OpenMP on one thread (`_one_thread`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

METHODS = ("seasonal_naive", "ets", "gbm")
LABELS = {
    "seasonal_naive": "seasonal naive",
    "naive": "naive (last count)",
    "ets": "exponential smoothing (ETS)",
    "gbm": "gradient boosting on lags",
    "none": "no forecast model (not open)",
}
KEYS = {"grade": ("school", "grade"), "school": ("school",)}
TERM_RANK = {"fall": 0, "autumn": 0, "winter": 1, "spring": 2, "summer": 3}
GBM_MIN_ROWS = 50
CALIBRATION_MIN = 30  # forecasts with an interval and an actual a step's factor needs
Method = Literal["seasonal_naive", "ets", "gbm"]


def ets_minimum(season: int) -> int:
    """Terms of history ETS(A,Ad,A) needs: its 6 + m parameters need three school years."""
    return max(3 * season, 10)


# --- the history as a matrix ---------------------------------------------------------------
@dataclass(frozen=True)
class _Panel:
    keys: pd.DataFrame  # one row per series
    values: np.ndarray  # (series, periods): counts, 0 before a series' first row
    start: np.ndarray  # each series' first non-zero period (n_periods when it has none)
    first_year: int
    first_pos: int  # the first period's term, as a position in `terms`
    terms: tuple[str, ...]
    season: int

    def period(self, i: int) -> tuple[int, str]:
        pos = self.first_pos + i
        return self.first_year + pos // len(self.terms), self.terms[pos % len(self.terms)]


def _label(year: int, term: str) -> str:
    return f"{year}-{(year + 1) % 100:02d} {term}"


def _describe(row: pd.Series, keys: Sequence[str]) -> str:
    return " ".join(f"grade {row[k]}" if k == "grade" else str(row[k]) for k in keys)


def _ordered_terms(values: Sequence[str]) -> tuple[str, ...]:
    terms = sorted({str(v) for v in values})
    if all(t.lower() in TERM_RANK for t in terms):
        return tuple(sorted(terms, key=lambda t: TERM_RANK[t.lower()]))
    return tuple(terms)


def _panel(history: pd.DataFrame, by: str, season: int | None) -> _Panel:
    if not isinstance(history, pd.DataFrame):
        raise ValueError("history must be a pandas DataFrame with one row per series and term.")
    if by not in KEYS:
        raise ValueError("by must be 'grade' (a series per school and grade) or 'school'.")
    keys = list(KEYS[by])
    need = [*keys, "year", "term", "enrollment"]
    missing = [c for c in need if c not in history.columns]
    if missing:
        raise ValueError(
            f"history is missing the column(s) {', '.join(missing)}: it needs one row per "
            f"{' and '.join(keys)} and term, with columns {', '.join(need)}."
        )
    if history.empty:
        raise ValueError("history has no rows: give at least two school years of enrollment.")
    frame = history[list(dict.fromkeys([*need, *(["grade"] if "grade" in history else [])]))]
    frame = frame.copy()
    count = pd.to_numeric(frame["enrollment"], errors="coerce")
    if count.isna().any():
        row = frame[count.isna()].iloc[0]
        raise ValueError(
            f"enrollment is missing or not a number in {count.isna().sum()} row(s), e.g. "
            f"{_describe(row, keys)} {_label(row['year'], row['term'])}: give a count for "
            "every row (0 when there were no students)."
        )
    if (count < 0).any():
        row = frame[count < 0].iloc[0]
        raise ValueError(
            f"enrollment has {(count < 0).sum()} negative count(s), e.g. {row['enrollment']} "
            f"for {_describe(row, keys)} in {_label(row['year'], row['term'])}: counts must be "
            "0 or more."
        )
    frame["enrollment"] = count.astype(float)
    frame["year"] = pd.to_numeric(frame["year"], errors="coerce")
    if frame["year"].isna().any() or (frame["year"] % 1 != 0).any():
        raise ValueError("year must be a whole number (the calendar year a school year starts).")
    frame["year"] = frame["year"].astype(int)
    frame["term"] = frame["term"].astype(str)
    row_keys = [*keys, *(["grade"] if by == "school" and "grade" in frame else [])]
    dup = frame.duplicated([*row_keys, "year", "term"], keep=False)
    if dup.any():
        row = frame[dup].iloc[0]
        raise ValueError(
            f"history has {dup.sum()} rows that repeat a period, e.g. "
            f"{_describe(row, row_keys)} in {_label(row['year'], row['term'])}: keep one row "
            f"per {' and '.join(row_keys)} and term."
        )
    if by == "school" and "grade" in frame:
        frame = frame.groupby([*keys, "year", "term"], as_index=False)["enrollment"].sum()
    terms = _ordered_terms(frame["term"])
    season = len(terms) if season is None else season
    if not isinstance(season, int | np.integer) or season < 1:
        raise ValueError(f"season must be a whole number of terms, 1 or more (got {season}).")
    rank = {t: i for i, t in enumerate(terms)}
    absolute = frame["year"].to_numpy() * len(terms) + frame["term"].map(rank).to_numpy()
    first = int(absolute.min())
    frame["i"] = absolute - first
    n_periods = int(frame["i"].max()) + 1
    wide = frame.pivot(index=keys, columns="i", values="enrollment")
    wide = wide.reindex(columns=range(n_periods))
    values = wide.to_numpy(dtype=float)
    seen = ~np.isnan(values)
    first_row = seen.argmax(axis=1)
    gap = ~seen & (np.arange(n_periods)[None, :] > first_row[:, None])
    key_frame = wide.index.to_frame(index=False)
    if gap.any():
        s, i = np.argwhere(gap)[0]
        year, term = divmod(first + int(i), len(terms))
        raise ValueError(
            f"history has no row for {_describe(key_frame.iloc[s], keys)} in "
            f"{_label(year, terms[term])}: give every term from a series' first row to the "
            "last period (0 when there were no students)."
        )
    values = np.nan_to_num(values, nan=0.0)
    positive = values > 0
    start = np.where(positive.any(axis=1), positive.argmax(axis=1), n_periods)
    year, pos = divmod(first, len(terms))
    return _Panel(key_frame, values, start, year, pos, terms, int(season))


# --- the methods, on a matrix cut at the origin -------------------------------------------
def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


def _naive_like(y: np.ndarray, horizon: int, lag: int, z: float):
    """Seasonal naive (lag = season) or naive (lag = 1), with the fpp3 intervals."""
    steps = np.arange(1, horizon + 1)
    k = (steps - 1) // lag + 1
    point = y[len(y) - 1 + steps - lag * k]
    residuals = y[lag:] - y[:-lag]
    if not len(residuals):
        return point, np.full(horizon, np.nan), np.full(horizon, np.nan)
    sigma = float(np.sqrt(np.mean(residuals**2)))
    spread = z * sigma * np.sqrt(k if lag > 1 else steps)
    return point, point - spread, point + spread


def _ets(y: np.ndarray, horizon: int, season: int, level: float):
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    seasonal = season > 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # a pandas Series: statsmodels 0.15's get_prediction fails on a bare ndarray
        model = ETSModel(
            pd.Series(y),
            error="add",
            trend="add",
            damped_trend=True,
            seasonal="add" if seasonal else None,
            seasonal_periods=season if seasonal else None,
        )
        fitted = model.fit(disp=False)
        frame = fitted.get_prediction(start=len(y), end=len(y) + horizon - 1).summary_frame(
            alpha=1 - level
        )
    out = [frame[c].to_numpy(dtype=float) for c in ("mean", "pi_lower", "pi_upper")]
    if not all(np.isfinite(a).all() for a in out):
        raise ValueError("the fit gave non-finite forecasts")
    return tuple(out)


def _gbm_features(logs, s, origin, h, season, first_pos):
    k = (h - 1) // season + 1
    base = origin + h - season * k
    features = np.column_stack(
        [
            logs[s, origin] - logs[s, origin - season],
            logs[s, origin - 1] - logs[s, origin - 1 - season],
            logs[s, origin - season] - logs[s, origin - 2 * season],
            logs[s, base] - logs[s, origin],
            logs[s, origin],
            np.full(len(s), h),
            (first_pos + origin + h) % season,
        ]
    )
    return features, base


def _gbm(values, start, horizon, season, level, first_pos, eligible):
    """Point, lower and upper (series x horizon) for the eligible series, or a reason."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    logs = np.log1p(values)
    n_series, n_periods = values.shape
    X, y = [], []
    for h in range(1, horizon + 1):
        s, origin = np.nonzero(
            (np.arange(n_periods)[None, :] >= start[:, None] + 2 * season)
            & (np.arange(n_periods)[None, :] <= n_periods - 1 - h)
        )
        features, base = _gbm_features(logs, s, origin, h, season, first_pos)
        X.append(features)
        y.append(logs[s, origin + h] - logs[s, base])
    X_train, y_train = np.concatenate(X), np.concatenate(y)
    if len(y_train) < GBM_MIN_ROWS:
        return None, (
            f"only {len(y_train)} training rows for the pooled GBM (it needs {GBM_MIN_ROWS})"
        )
    s = np.flatnonzero(eligible)
    out = np.full((3, n_series, horizon), np.nan)
    for j, q in enumerate((0.5, (1 - level) / 2, (1 + level) / 2)):
        model = HistGradientBoostingRegressor(
            loss="quantile",
            quantile=q,
            max_iter=100,
            learning_rate=0.1,
            max_leaf_nodes=15,
            min_samples_leaf=20,
            early_stopping=False,
        ).fit(X_train, y_train)
        for h in range(1, horizon + 1):
            origin = np.full(len(s), n_periods - 1)
            features, base = _gbm_features(logs, s, origin, h, season, first_pos)
            out[j, s, h - 1] = np.expm1(logs[s, base] + model.predict(features))
    point, lower, upper = out
    return (point, np.minimum(lower, point), np.maximum(upper, point)), ""


def _one_thread():
    """BLAS and OpenMP on one thread: the fits are small, and on busy cores their threads spin
    and crawl (measured on a loaded 2-core box: a 2,000-row quantile GBM 35 s on two threads
    against 1.2 s on one; an ETS fit 0.97 s against 0.18 s)."""
    # threadpoolctl limits only the libraries already loaded: load them first
    import sklearn.ensemble  # noqa: F401
    import statsmodels.tsa.exponential_smoothing.ets  # noqa: F401
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _forecast_matrix(values, start, method, horizon, season, level, first_pos):
    """Forecasts of every series from the whole of `values`: point, lower, upper (series x
    horizon), and per series the method used and the reason for a fallback."""
    n_series, n_periods = values.shape
    z = _z(level)
    out = np.full((3, n_series, horizon), np.nan)
    used = [method] * n_series
    reason = [""] * n_series
    history = n_periods - np.minimum(start, n_periods)
    gbm_ok = history >= 2 * season + 1
    gbm_failed = ""
    if method == "gbm" and gbm_ok.any():
        result, gbm_failed = _gbm(values, start, horizon, season, level, first_pos, gbm_ok)
        if result is not None:
            out[:] = np.stack(result)
    needs = {"seasonal_naive": season + 1, "ets": ets_minimum(season), "gbm": 2 * season + 1}
    for s in range(n_series):
        n = int(history[s])
        y = values[s, n_periods - n :]
        if n == 0:
            out[:, s] = 0.0
            used[s], reason[s] = "none", "no students yet (not open): forecast 0"
            continue
        why = f"{n} term(s) of history ({LABELS[method]} needs {needs[method]})"
        if method == "ets" and n >= needs["ets"]:
            try:
                out[:, s] = np.stack(_ets(y, horizon, season, level))
                continue
            except (ValueError, np.linalg.LinAlgError) as exc:
                why = f"the ETS fit failed ({exc})"
        elif method == "gbm" and gbm_ok[s]:
            if not gbm_failed:
                continue
            why = gbm_failed
        used[s] = "seasonal_naive" if n > season else "naive"
        out[:, s] = np.stack(_naive_like(y, horizon, season if n > season else 1, z))
        if used[s] != method:
            reason[s] = f"{why}: {LABELS[used[s]]} used" + (", no interval" if n == 1 else "")
    point, lower, upper = np.clip(out, 0, None)
    return point, lower, upper, used, reason


# --- forecast ------------------------------------------------------------------------------
def _check(method: str, horizon: int, level: float) -> None:
    if method not in METHODS:
        raise ValueError(f"Unknown method '{method}': choose one of {', '.join(METHODS)}.")
    if not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ValueError(f"horizon must be 1 or more terms (got {horizon}).")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, e.g. 0.8 for 80% (got {level}).")


def forecast(
    history: pd.DataFrame,
    *,
    method: Method = "ets",
    horizon: int | None = None,
    season: int | None = None,
    level: float = 0.8,
    by: Literal["grade", "school"] = "grade",
    calibrate: int = 0,
) -> pd.DataFrame:
    """The next `horizon` terms (default: one season) of every series: one row per series and
    future term with its keys, year, term, period, step, point, lower, upper, level, the method
    used and the reason for a fallback ('' when none). With `calibrate` > 0 the intervals are
    calibrated on that many past origins; `rows.attrs["calibration"]` says how."""
    panel = _panel(history, by, season)
    horizon = panel.season if horizon is None else horizon
    _check(method, horizon, level)
    n_periods = panel.values.shape[1]
    longest = n_periods - int(panel.start.min())
    if longest < panel.season + 1:
        raise ValueError(
            f"history is too short: the longest series has {longest} term(s) since its first "
            f"student, and a forecast needs at least a season and a term ({panel.season + 1})."
        )
    _check_calibrate(calibrate)
    with _one_thread():
        point, lower, upper, used, reason = _forecast_matrix(
            panel.values, panel.start, method, horizon, panel.season, level, panel.first_pos
        )
        past = _past_forecasts(panel, method, horizon, level, n_periods - 1, calibrate)
    calibration = None
    if calibrate:
        factors, calibration = _factors(past, n_periods - 1, calibrate, horizon, level)
        if factors is not None:
            lower, upper = _stretch(point, lower, upper, factors)
    rows = _rows(panel, n_periods - 1, point, lower, upper, used, reason, level)
    rows.attrs["calibration"] = calibration
    return rows


# --- calibrated intervals -----------------------------------------------------------------
def _check_calibrate(calibrate: int) -> None:
    if not isinstance(calibrate, int | np.integer) or not 0 <= calibrate <= 40:
        raise ValueError(
            f"calibrate must be a number of past origins from 0 (off) to 40 (got {calibrate})."
        )


def _past_forecasts(panel, method, horizon, level, origin, calibrate) -> pd.DataFrame:
    """The forecasts `method` would have made at each of the `calibrate` origins before
    `origin` (at least a season and a term into the history), with what happened: o (the origin's
    index), step, point, lower, upper, actual; only series open at that origin and steps whose
    actual is known at `origin`."""
    frames = []
    values, start, m = panel.values, panel.start, panel.season
    for o in range(max(m, origin - calibrate), origin):
        steps = min(horizon, origin - o)
        open_ = start <= o
        if not open_.any():
            continue
        point, lower, upper, _, _ = _forecast_matrix(
            values[:, : o + 1], start, method, horizon, m, level, panel.first_pos
        )
        frames.append(_scored(o, open_, point, lower, upper, values[:, o + 1 : o + 1 + steps]))
    if not frames:
        return pd.DataFrame(columns=["o", "step", "point", "lower", "upper", "actual"])
    return pd.concat(frames, ignore_index=True)


def _scored(o, open_, point, lower, upper, actual) -> pd.DataFrame:
    steps = actual.shape[1]
    keep = np.repeat(open_, steps)
    return pd.DataFrame(
        {
            "o": o,
            "step": np.tile(np.arange(1, steps + 1), len(open_))[keep],
            "point": point[:, :steps].ravel()[keep],
            "lower": lower[:, :steps].ravel()[keep],
            "upper": upper[:, :steps].ravel()[keep],
            "actual": actual.ravel()[keep],
        }
    )


def _needs(rows: pd.DataFrame) -> np.ndarray:
    """How far each interval's half on the actual's side must stretch to hold it (1: just)."""
    p, lo, up, a = (rows[c].to_numpy(float) for c in ("point", "lower", "upper", "actual"))
    ok = np.isfinite(p) & np.isfinite(lo) & np.isfinite(up) & np.isfinite(a)
    p, lo, up, a = p[ok], lo[ok], up[ok], a[ok]
    half = np.where(a >= p, up - p, p - lo)
    gap = np.abs(a - p)
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(half > 0, gap / half, np.where(gap > 0, np.inf, 0.0))
    return need


def _quantile(needs: np.ndarray, level: float) -> float | None:
    n = len(needs)
    if n < CALIBRATION_MIN:
        return None
    k = min(int(np.ceil((n + 1) * level)), n)
    factor = float(np.partition(needs, k - 1)[k - 1])
    return factor if np.isfinite(factor) else None


def _factors(past: pd.DataFrame, origin: int, window: int, horizon: int, level: float):
    """Per step, the factor from the forecasts of the `window` origins before `origin` whose
    actual is known at `origin`; and what the model card and the run say about it."""
    usable = past[(past["o"] >= origin - window) & (past["o"] < origin)]
    usable = usable[usable["o"] + usable["step"] <= origin]
    pooled = _needs(usable)
    overall = _quantile(pooled, level)
    factors, counts = [], []
    for h in range(1, horizon + 1):
        needs = _needs(usable[usable["step"] == h])
        counts.append(len(needs))
        factors.append(_quantile(needs, level) or overall)
    origins = int(usable["o"].nunique())
    if overall is None:
        why = (
            f"{len(pooled)} past forecast(s) with an interval from {origins} origin(s); "
            f"calibration needs {CALIBRATION_MIN}: the model's own intervals are used"
        )
        return None, {"applied": False, "origins": origins, "forecasts": len(pooled), "why": why}
    factors = [f if f is not None else overall for f in factors]
    return np.array(factors), {
        "applied": True,
        "origins": origins,
        "forecasts": len(pooled),
        "per_step": counts,
        "factors": [round(f, 4) for f in factors],
    }


def calibration_words(calibration: dict[str, Any] | None, level: float) -> str:
    """One sentence on how the intervals were calibrated, for the run's log and the card."""
    if not calibration:
        return "Ranges: the model's own (not calibrated)."
    if not calibration.get("applied"):
        return f"Ranges: the model's own, not calibrated ({calibration.get('why', '')})."
    factors = calibration["factors"]
    spread = (
        f"×{factors[0]:.2f}"
        if max(factors) - min(factors) < 0.005
        else f"×{min(factors):.2f} to ×{max(factors):.2f} by term ahead"
    )
    return (
        f"Ranges calibrated on {calibration['forecasts']:,} past forecasts from "
        f"{calibration['origins']} term(s) so that {level:.0%} held the actual count: the "
        f"model's own ranges scaled {spread}."
    )


def _stretch(point, lower, upper, factors):
    f = np.asarray(factors, dtype=float)[None, : point.shape[1]]
    return np.clip(point - f * (point - lower), 0, None), point + f * (upper - point)


def _rows(panel, origin, point, lower, upper, used, reason, level) -> pd.DataFrame:
    n_series, horizon = point.shape
    periods = [panel.period(origin + h) for h in range(1, horizon + 1)]
    rows = panel.keys.loc[np.repeat(np.arange(n_series), horizon)].reset_index(drop=True)
    rows["year"] = [y for y, _ in periods] * n_series
    rows["term"] = [t for _, t in periods] * n_series
    rows["period"] = [_label(y, t) for y, t in periods] * n_series
    rows["step"] = np.tile(np.arange(1, horizon + 1), n_series)
    rows["point"], rows["lower"], rows["upper"] = point.ravel(), lower.ravel(), upper.ravel()
    rows["level"] = level
    rows["method"] = np.repeat(used, horizon)
    rows["reason"] = np.repeat(reason, horizon)
    return rows


# --- backtest ------------------------------------------------------------------------------
@dataclass
class BacktestResult:
    """`table`: one row per method, origin, series and step (the forecast's columns, with the
    method used as `used`, then actual, scale, abs_error, ape, scaled_error and inside);
    `summary`: one row per method (MASE, its ratio to the seasonal naive's, MAPE, MAE, interval
    coverage, forecasts scored, of them with a MASE scale, series-origins that fell back);
    `per_origin`: the same per method and origin. MAPE and coverage are shares (0.05 = 5%);
    `seconds` is each method's fit and forecast time over all origins."""

    table: pd.DataFrame
    summary: pd.DataFrame
    per_origin: pd.DataFrame
    methods: tuple[str, ...]
    origins: list[str]
    horizon: int
    season: int
    level: float
    by: str
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    calibrate: int = 0  # past origins each origin's intervals were calibrated on (0: none)

    def metrics(self, method: str) -> dict[str, Any]:
        if method not in self.methods:
            raise ValueError(f"'{method}' was not backtested: {', '.join(self.methods)} were.")
        return self.summary.set_index("method").loc[method].to_dict()

    def as_dict(self) -> dict[str, Any]:
        """Everything but the table, JSON-ready (NaN as None): for a stored report."""

        def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
            return [
                {
                    k: None if isinstance(v, float) and not np.isfinite(v) else v
                    for k, v in r.items()
                }
                for r in frame.to_dict("records")
            ]

        return {
            "summary": records(self.summary),
            "per_origin": records(self.per_origin),
            "methods": list(self.methods),
            "origins": self.origins,
            "horizon": self.horizon,
            "season": self.season,
            "level": self.level,
            "by": self.by,
            "seconds": self.seconds,
            "notes": self.notes,
            "calibrate": self.calibrate,
        }


def _summarise(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    out = (
        table.assign(fallback=(table["reason"] != "") & (table["step"] == 1))
        .groupby(by, sort=False)
        .agg(
            mase=("scaled_error", "mean"),
            mape=("ape", "mean"),
            mae=("abs_error", "mean"),
            coverage=("inside", "mean"),
            raw_coverage=("raw_inside", "mean"),
            forecasts=("abs_error", "size"),
            scaled=("scaled_error", "count"),
            fallbacks=("fallback", "sum"),
        )
        .reset_index()
    )
    baseline = out.loc[out["method"] == "seasonal_naive", [*by[1:], "mase"]]
    baseline = baseline.rename(columns={"mase": "baseline_mase"})
    if by[1:]:
        out = out.merge(baseline, on=by[1:], how="left")
    else:
        out["baseline_mase"] = baseline["baseline_mase"].iloc[0]
    out.insert(len(by) + 1, "relative_mase", out["mase"] / out.pop("baseline_mase"))
    out["coverage"] = out["coverage"].astype(float)
    out["raw_coverage"] = out["raw_coverage"].astype(float)
    return out


def backtest(
    history: pd.DataFrame,
    *,
    methods: Sequence[Method] = METHODS,
    origins: int = 6,
    horizon: int | None = None,
    season: int | None = None,
    level: float = 0.8,
    by: Literal["grade", "school"] = "grade",
    calibrate: int = 0,
) -> BacktestResult:
    """Rolling origins, one per registration cycle: the last `origins` terms whose whole
    `horizon` (default: one season) is known. Each method is refitted on the history up to each
    origin; the seasonal naive always runs, as the baseline. With `calibrate` > 0 each origin's
    intervals are calibrated on that many origins before it, as `forecast` does."""
    panel = _panel(history, by, season)
    horizon = panel.season if horizon is None else horizon
    methods = tuple(dict.fromkeys(["seasonal_naive", *methods]))
    for m in methods:
        _check(m, horizon, level)
    if not isinstance(origins, int | np.integer) or origins < 1:
        raise ValueError(f"origins must be 1 or more (got {origins}).")
    _check_calibrate(calibrate)
    values, start, m = panel.values, panel.start, panel.season
    n_periods = values.shape[1]
    first = n_periods - horizon - origins
    if first < m:
        raise ValueError(
            f"Too little history for {origins} origin(s) of {horizon} term(s): the first origin "
            f"would have {max(first + 1, 0)} term(s) of history and needs at least {m + 1} "
            f"(a season and a term) out of {n_periods}. Use fewer origins or a shorter horizon."
        )
    frames, seconds = [], dict.fromkeys(methods, 0.0)
    past: dict[str, list[pd.DataFrame]] = {method: [] for method in methods}
    _z(level)  # scipy and the model libraries load before the clocks start
    with _one_thread():
        for origin in range(max(m, first - calibrate) if calibrate else first, first + origins):
            cut = values[:, : origin + 1]
            open_ = start <= origin
            scale = np.full(len(values), np.nan)
            for s in np.flatnonzero(open_):
                y = cut[s, start[s] :]
                if len(y) > m:
                    scale[s] = np.mean(np.abs(y[m:] - y[:-m]))
            scale[scale == 0] = np.nan
            for method in methods:
                clock = time.perf_counter()
                result = _forecast_matrix(cut, start, method, horizon, m, level, panel.first_pos)
                seconds[method] += time.perf_counter() - clock
                point, lower, upper, used, reason = result
                if calibrate:
                    known = values[:, origin + 1 : origin + 1 + horizon]
                    past[method].append(_scored(origin, open_, point, lower, upper, known))
                if origin < first:
                    continue
                raw = lower, upper
                if calibrate:
                    every = pd.concat(past[method], ignore_index=True)
                    factors, _ = _factors(every, origin, calibrate, horizon, level)
                    if factors is not None:
                        lower, upper = _stretch(point, lower, upper, factors)
                rows = _rows(panel, origin, point, lower, upper, used, reason, level)
                rows = rows.rename(columns={"method": "used"})
                rows["raw_lower"], rows["raw_upper"] = raw[0].ravel(), raw[1].ravel()
                rows.insert(0, "method", method)
                rows.insert(1, "origin", _label(*panel.period(origin)))
                rows["open"] = np.repeat(open_, horizon)
                rows["actual"] = values[:, origin + 1 : origin + 1 + horizon].ravel()
                rows["scale"] = np.repeat(scale, horizon)
                frames.append(rows)
    table = pd.concat(frames, ignore_index=True)
    closed = int((~table["open"]).sum()) // (len(methods) * horizon)
    table = table[table["open"]].drop(columns="open").reset_index(drop=True)
    error = table["point"] - table["actual"]
    table["abs_error"] = error.abs()
    table["ape"] = (error.abs() / table["actual"]).where(table["actual"] > 0)
    table["scaled_error"] = error.abs() / table["scale"]
    bounded = table["lower"].notna() & table["upper"].notna()
    inside = (table["actual"] >= table["lower"]) & (table["actual"] <= table["upper"])
    table["inside"] = inside.astype("boolean").where(bounded, pd.NA)
    raw = (table["actual"] >= table["raw_lower"]) & (table["actual"] <= table["raw_upper"])
    table["raw_inside"] = raw.astype("boolean").where(bounded, pd.NA)
    return BacktestResult(
        table=table,
        summary=_summarise(table, ["method"]),
        per_origin=_summarise(table, ["method", "origin"]),
        methods=methods,
        origins=[_label(*panel.period(o)) for o in range(first, first + origins)],
        horizon=horizon,
        season=m,
        level=level,
        by=by,
        seconds=seconds,
        notes=_notes(table, closed, m),
        calibrate=int(calibrate),
    )


def _notes(table: pd.DataFrame, closed: int, season: int) -> list[str]:
    notes = []
    baseline = table[table["method"] == "seasonal_naive"]
    zeros = int((baseline["actual"] == 0).sum())
    if zeros:
        notes.append(f"MAPE skips {zeros} forecast(s) per method whose actual count is 0.")
    unscaled = int(baseline["scaled_error"].isna().sum())
    if unscaled:
        notes.append(
            f"MASE skips {unscaled} forecast(s) per method of series whose in-sample "
            f"seasonal-naive error is 0 or undefined (fewer than {season + 1} terms)."
        )
    if closed:
        notes.append(f"{closed} series-origin(s) had no students yet at the origin: not scored.")
    first = table[(table["step"] == 1) & (table["reason"] != "")]
    for method, rows in first.groupby("method", sort=False):
        notes.append(
            f"{LABELS[method]} fell back on {len(rows)} series-origin(s), e.g. "
            f"{rows['reason'].iloc[0]}."
        )
    return notes


# --- the gate ------------------------------------------------------------------------------
@dataclass(frozen=True)
class GateResult:
    passed: bool
    method: str
    mase: float
    baseline_mase: float
    ratio: float
    below_one: bool  # MASE < 1: better than the in-sample one-step seasonal naive
    mape: float
    baseline_mape: float
    coverage: float
    reason: str


def forecast_gate(result: BacktestResult, *, method: Method = "ets") -> GateResult:
    """Pass when `method`'s backtest MASE is below the seasonal naive's on the same forecasts."""
    if method == "seasonal_naive":
        raise ValueError("The seasonal naive is the baseline: gate 'ets' or 'gbm' against it.")
    ours, base = result.metrics(method), result.metrics("seasonal_naive")
    mase, base_mase = float(ours["mase"]), float(base["mase"])
    ratio = mase / base_mase if base_mase > 0 else float("nan")
    name, origins = LABELS[method], len(result.origins)
    over = f"over {origins} origin(s) of {result.horizon} term(s)"
    if not np.isfinite(mase) or not np.isfinite(base_mase):
        passed = False
        reason = f"No forecast could be scored with MASE {over}: the gate cannot pass."
    else:
        passed = mase < base_mase
        one = "below" if mase < 1 else "not below"
        reason = (
            f"{name} has MASE {mase:.3f} against the seasonal naive's {base_mase:.3f} {over} "
            f"(ratio {ratio:.2f}): "
            + ("it beats the baseline" if passed else "it does not beat the baseline")
            + f"; its MASE is {one} 1, the in-sample one-step seasonal naive's error."
        )
    return GateResult(
        passed=bool(passed),
        method=method,
        mase=mase,
        baseline_mase=base_mase,
        ratio=ratio,
        below_one=bool(mase < 1),
        mape=float(ours["mape"]),
        baseline_mape=float(base["mape"]),
        coverage=float(ours["coverage"]),
        reason=reason,
    )


# --- monitoring: actual counts against their forecasts ----------------------------------------
@dataclass
class ErrorReport:
    """`table`: one row per series and term that has both a forecast and an actual count;
    `summary`: the overall numbers (MAE, MAPE, coverage, flags, the total's error, what is
    still pending and what had no forecast)."""

    table: pd.DataFrame
    summary: dict[str, Any]


def forecast_error(
    forecasts: pd.DataFrame, actuals: pd.DataFrame, *, tolerance: float | None = 0.1
) -> ErrorReport:
    """Match actual counts to forecasts (same school, grade when the forecasts have one, year
    and term) and flag each one outside its interval or off by more than `tolerance` (a share
    of the actual; None: the interval only). Actuals per grade are summed when the forecasts
    are per school."""
    keys = ["school", "grade"] if "grade" in forecasts.columns else ["school"]
    for name, frame, need in (
        ("forecasts", forecasts, [*keys, "year", "term", "point", "lower", "upper"]),
        ("actuals", actuals, [*keys, "year", "term", "enrollment"]),
    ):
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise ValueError(
                f"{name} is missing the column(s) {', '.join(missing)}: it needs {', '.join(need)}."
            )
    if tolerance is not None and not tolerance > 0:
        raise ValueError(f"tolerance must be a share above 0, e.g. 0.1, or None (got {tolerance}).")
    count = pd.to_numeric(actuals["enrollment"], errors="coerce")
    if count.isna().any() or (count < 0).any():
        raise ValueError("actual enrollment must be a count of 0 or more in every row.")
    actual = actuals.assign(enrollment=count.astype(float))
    row_keys = [*keys, *(["grade"] if "grade" not in keys and "grade" in actual else [])]
    if actual.duplicated([*row_keys, "year", "term"]).any():
        raise ValueError(
            f"actuals repeat a period: keep one row per {', '.join(row_keys)} and term."
        )
    actual = actual.groupby([*keys, "year", "term"], as_index=False)["enrollment"].sum()
    on = [*keys, "year", "term"]
    both = forecasts.merge(actual, on=on, how="outer", indicator=True)
    pending = int((both["_merge"] == "left_only").sum())
    unmatched = int((both["_merge"] == "right_only").sum())
    table = both[both["_merge"] == "both"].drop(columns="_merge").reset_index(drop=True)
    table = table.rename(columns={"enrollment": "actual"})
    table["error"] = table["actual"] - table["point"]
    table["abs_error"] = table["error"].abs()
    table["ape"] = (table["abs_error"] / table["actual"]).where(table["actual"] > 0)
    above, below = table["actual"] > table["upper"], table["actual"] < table["lower"]
    bounded = table["lower"].notna() & table["upper"].notna()
    table["inside"] = (~(above | below)).astype("boolean").where(bounded, pd.NA)
    off = table["ape"] > tolerance if tolerance is not None else pd.Series(False, table.index)
    table["flag"] = above | below | off
    table["flag_reason"] = [
        _flag_reason(row, tolerance) if flagged else ""
        for flagged, row in zip(table["flag"], table.itertuples(index=False), strict=True)
    ]
    total_point, total_actual = float(table["point"].sum()), float(table["actual"].sum())
    summary = {
        "compared": len(table),
        "mae": float(table["abs_error"].mean()) if len(table) else None,
        "mape": float(table["ape"].mean()) if table["ape"].notna().any() else None,
        "coverage": float(table["inside"].mean()) if table["inside"].notna().any() else None,
        "flagged": int(table["flag"].sum()),
        "flagged_share": float(table["flag"].mean()) if len(table) else None,
        "total_point": total_point,
        "total_actual": total_actual,
        "total_ape": abs(total_actual - total_point) / total_actual if total_actual else None,
        "pending": pending,
        "unmatched": unmatched,
        "tolerance": tolerance,
    }
    return ErrorReport(table, summary)


def _flag_reason(row: Any, tolerance: float | None) -> str:
    level = f"{getattr(row, 'level', 0) * 100:.0f}% " if hasattr(row, "level") else ""
    interval = f"the {level}interval [{row.lower:.0f}, {row.upper:.0f}]"
    parts = []
    if row.actual > row.upper:
        parts.append(f"actual {row.actual:.0f} is above {interval}")
    elif row.actual < row.lower:
        parts.append(f"actual {row.actual:.0f} is below {interval}")
    if tolerance is not None and pd.notna(row.ape) and row.ape > tolerance:
        parts.append(
            f"off by {row.ape:.0%} of the actual (forecast {row.point:.0f}, tolerance "
            f"{tolerance:.0%})"
        )
    return "; ".join(parts)
