"""The monitors' rules, one module per check: drift per group of schools (with the calendar's
baselines and the edge nodes' aggregates), performance once outcomes arrive, device latency, and
forecast error once actual enrollment arrives, and the drift of a knowledge-tracing model's
parameters from one retraining to the next, and new short answers against a scorer's
training answers.
Each check takes the district, typed parameters and its data, raises or refreshes alerts through
`edumlops.monitoring.services`, stores its reports, and returns a result object (verdicts, what
to log, the alerts and reports it made). The workflow blocks are typed parameters plus one call
here, so a page or the API calling the same function applies the same rule."""

from edumlops.monitoring.checks.answers import (
    AnswerDriftParams,
    AnswerDriftResult,
    Finding,
    check_answer_drift,
)
from edumlops.monitoring.checks.drift import DriftParams, DriftResult, GroupDrift, check_drift
from edumlops.monitoring.checks.forecast import (
    ForecastErrorParams,
    ForecastErrorResult,
    SchoolError,
    check_forecast_error,
)
from edumlops.monitoring.checks.latency import (
    LatencyParams,
    LatencyResult,
    ProfileLatency,
    check_latency,
)
from edumlops.monitoring.checks.mastery import (
    MasteryParams,
    MasteryResult,
    SkillCheck,
    check_mastery,
)
from edumlops.monitoring.checks.params import CheckError, CheckParams, PerSchoolParams
from edumlops.monitoring.checks.performance import (
    PerformanceParams,
    PerformanceResult,
    SchoolPerformance,
    check_performance,
)

__all__ = [
    "AnswerDriftParams",
    "AnswerDriftResult",
    "CheckError",
    "CheckParams",
    "DriftParams",
    "DriftResult",
    "Finding",
    "ForecastErrorParams",
    "ForecastErrorResult",
    "GroupDrift",
    "LatencyParams",
    "LatencyResult",
    "MasteryParams",
    "MasteryResult",
    "PerSchoolParams",
    "PerformanceParams",
    "PerformanceResult",
    "ProfileLatency",
    "SchoolError",
    "SchoolPerformance",
    "SkillCheck",
    "check_answer_drift",
    "check_drift",
    "check_forecast_error",
    "check_latency",
    "check_mastery",
    "check_performance",
]
