"""Model cards: one plain dict (the JSON download) and its Markdown rendering.

The card says what the model is for, where its data came from, how well it does overall and per
group (with intervals), what the bias gate found, its limits, and who approved it so far.
"""

from __future__ import annotations

import math
from typing import Any

from edumlops.ml.fairness import metric_name

# For each group metric, which count is its denominator (so a Wilson interval can be drawn).
DENOMINATORS = {
    "false_negative_rate": "positives",
    "recall": "positives",
    "selection_rate": "n",
    "false_positive_rate": "negatives",
}
# What a model of each task type is for, when the workflow's Model card block did not say.
INTENDED_USE = {
    "binary_risk": "Flag students who may be at risk so that staff can offer support early.",
    "ordinal_score": (
        "Suggest a score for a short written answer, for a teacher to confirm; answers the model "
        "is unsure about go to a teacher. Not the only basis of a grade."
    ),
    "forecast": (
        "Plan staff, rooms and budgets per school and grade for the coming terms. It counts "
        "students; it says nothing about any one student."
    ),
    "mastery": (
        "Suggest which skill a student practises next. Not for grades, placement or reports "
        "about a student."
    ),
}
TASK_LABELS = {
    "binary_risk": "Yes/no risk",
    "ordinal_score": "Score on a scale",
    "forecast": "Enrollment forecast",
    "mastery": "Skill mastery (knowledge tracing)",
}
METRIC_LABELS = {
    "auc": "ROC AUC",
    "recall": "Recall",
    "precision": "Precision",
    "f1": "F1",
    "brier": "Brier score",
    "accuracy": "Accuracy",
}


def wilson(rate: float | None, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of a proportion observed on n rows."""
    if rate is None or n <= 0:
        return None
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


def group_metrics(bias_report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-group rows of the bias report with a 95% interval on each rate; a rate is marked
    not judged where its denominator (e.g. the at-risk students) is under the gate's minimum."""
    minimum = (bias_report.get("settings") or {}).get("min_group_size", 0)
    rows = []
    for group in bias_report.get("groups", []):
        counts = {
            "n": group["n"],
            "positives": group.get("positives", 0),
            "negatives": group["n"] - group.get("positives", 0),
        }
        metrics = {}
        for name, value in (group.get("metrics") or {}).items():
            n = counts[DENOMINATORS.get(name, "n")]
            metrics[name] = {
                "value": value,
                # a rate has a Wilson interval; a scoring model's score difference has none
                "interval": wilson(value, n) if name in DENOMINATORS else None,
                "denominator": n,
                "judged": n >= minimum and not group.get("insufficient", False),
            }
        rows.append(
            {
                "attribute": group["attribute"],
                "group": group["group"],
                "n": group["n"],
                "insufficient": group.get("insufficient", False),
                "metrics": metrics,
            }
        )
    return rows


def build_card(
    *,
    model: dict[str, Any],
    intended_use: str,
    training: dict[str, Any],
    validation: dict[str, Any],
    bias_report: dict[str, Any],
    bundle: dict[str, Any],
    approvals: list[dict[str, Any]],
    extra_limitations: str = "",
    task_type: str = "binary_risk",
) -> dict[str, Any]:
    task_type = task_type or "binary_risk"
    metrics = validation.get("metrics") or {}
    intervals = validation.get("intervals") or {}
    overall = {
        key: {"value": metrics.get(key), "interval": intervals.get(key)}
        for key in METRIC_LABELS
        if key in metrics
    }
    return {
        "model": model,
        "task": {"type": task_type, "label": TASK_LABELS.get(task_type, task_type)},
        "intended_use": intended_use or INTENDED_USE.get(task_type, INTENDED_USE["binary_risk"]),
        "data": {
            "dataset": training.get("dataset"),
            "dataset_sha256": training.get("dataset_sha256"),
            # a mastery model counts answers, not rows
            "rows": training.get("rows", training.get("answers")),
            "positives": training.get("positives"),
            "label": training.get("label"),
            "positive_class": training.get("positive"),
            "sensitive_attributes": training.get("sensitive")
            or (_bias_attributes(bias_report) if task_type == "ordinal_score" else []),
            "schools": training.get("schools", []),
            "period": training.get("period", {}),
            "outcome": training.get("outcome"),
        },
        "evaluation": {
            "test_rows": validation.get("test_rows"),
            "threshold": validation.get("threshold"),
            "overall": overall,
            "champion": validation.get("champion"),
            "calibration": metrics.get("calibration"),
        },
        "fairness": {
            "outcome": bias_report.get("outcome", "not checked"),
            "summary": bias_report.get("summary", ""),
            "checks": bias_report.get("checks", []),
            "groups": group_metrics(bias_report),
        },
        "privacy": privacy_section(training),
        "federated": federated_section(training.get("federated")),
        "forecast": forecast_section(training, validation) if task_type == "forecast" else None,
        "scoring": (
            scoring_section(training, validation) if task_type == "ordinal_score" else None
        ),
        "mastery": mastery_section(training, validation) if task_type == "mastery" else None,
        "bundle": {
            "signed": bool(bundle),
            "files": (bundle.get("manifest") or {}).get("files", {}),
            "signing_key_id": (bundle.get("manifest") or {}).get("signing_key_id"),
        },
        "limitations": limitations(
            training, validation, bias_report, extra_limitations, task_type=task_type
        ),
        "approvals": approvals,
    }


def _bias_attributes(bias_report: dict[str, Any]) -> list[str]:
    """The sensitive attributes a scorer's bias gate compared (its training does not list them)."""
    return list(dict.fromkeys(g["attribute"] for g in bias_report.get("groups", [])))


def forecast_section(training: dict[str, Any], validation: dict[str, Any]) -> dict[str, Any]:
    """What a forecast's card says: the method, what it forecasts and how sure, the schools that
    got a simpler forecast, and the backtest against the seasonal naive (None before one)."""
    info = training.get("forecast") or {}
    gate = (validation.get("gate") or {}) if validation.get("kind") == "backtest" else {}
    from edumlops.ml.forecast import LABELS, calibration_words

    return {
        "calibration": (
            calibration_words(info.get("calibration"), info.get("level") or 0.8)
            if "calibrate" in info
            else None
        ),
        "method": info.get("method"),
        "method_label": LABELS.get(info.get("method"), info.get("method")),
        "by": info.get("by"),
        "horizon": info.get("horizon"),
        "level": info.get("level"),
        "first_period": info.get("first_period"),
        "last_period": info.get("last_period"),
        "series": info.get("series") or training.get("series"),
        "fallbacks": info.get("fallbacks", 0),
        "fallback_reasons": list(info.get("fallback_reasons") or []),
        "fallback_series": list(info.get("fallback_series") or []),
        "total_next_term": info.get("total_next_term"),
        "students_last_term": training.get("students_last_term"),
        "backtest": (
            {
                "origins": len(validation.get("origins") or []),
                "first_origin": (validation.get("origins") or [None])[0],
                "last_origin": (validation.get("origins") or [None])[-1],
                "mape": gate.get("mape"),
                "baseline_mape": gate.get("baseline_mape"),
                "mase": gate.get("mase"),
                "baseline_mase": gate.get("baseline_mase"),
                "mase_ratio": gate.get("ratio"),
                "max_ratio": gate.get("max_ratio"),
                "coverage": gate.get("coverage"),
                "raw_coverage": gate.get("raw_coverage"),
                "passed": validation.get("passed"),
                "failures": list(validation.get("failures") or []),
            }
            if gate
            else None
        ),
    }


def forecast_lines(section: dict[str, Any] | None) -> list[str]:
    if not section:
        return []
    lines = [
        "",
        "## Forecast",
        "",
        f"- Method: {section['method_label']}, per "
        f"{'school and grade' if section['by'] == 'grade' else 'school'} "
        f"({section['series']} series)",
        f"- Forecasts {section['horizon']} term(s): {section['first_period']} to "
        f"{section['last_period']}, with {_share(section['level'])} intervals",
        *([f"- {section['calibration']}"] if section.get("calibration") else []),
        f"- Next term, all schools: {_fmt(section['total_next_term'])} students "
        f"(last term: {_fmt(section['students_last_term'])})",
    ]
    if section["fallbacks"]:
        lines.append(
            f"- {section['fallbacks']} series got a simpler forecast "
            f"({', '.join(section['fallback_series'][:10]) or 'not recorded'}): "
            + "; ".join(section["fallback_reasons"][:5])
        )
    bt = section.get("backtest")
    if bt:
        lines += [
            "",
            f"Backtest on {bt['origins']} past registration cycles ({bt['first_origin']} to "
            f"{bt['last_origin']}): **{'passed' if bt['passed'] else 'failed'}**",
            "",
            "| | This forecast | Seasonal naive |",
            "|---|---|---|",
            f"| MAPE | {_share(bt['mape'], 2)} | {_share(bt['baseline_mape'], 2)} |",
            f"| MASE | {_fmt(bt['mase'])} | {_fmt(bt['baseline_mase'])} |",
            "",
            f"MASE ratio {_fmt(bt['mase_ratio'])} (must be below {_fmt(bt['max_ratio'])}); "
            f"{_share(bt['coverage'])} of actual counts fell inside the intervals"
            + (
                f" (the model's own, before calibration: {_share(bt['raw_coverage'])})."
                if bt.get("raw_coverage") is not None
                else "."
            ),
        ]
    else:
        lines += ["", "Not backtested yet."]
    return lines


def _share(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}%}"


def privacy_section(training: dict[str, Any]) -> dict[str, Any] | None:
    """What a differentially private model's card says about its privacy and its price: ε (and
    δ), the mechanism, the bounds and where each came from, and accuracy/AUC against the
    non-private model of the same family trained on the same split (None for other models)."""
    info = training.get("privacy")
    if not info:
        return None
    sources = info.get("bounds_from") or {}
    return {
        "epsilon": info.get("epsilon"),
        "delta": info.get("delta") or 0.0,
        "mechanism": info.get("mechanism"),
        "bounds": [
            {"feature": name, "lower": pair[0], "upper": pair[1], "from": sources.get(name, "")}
            for name, pair in (info.get("bounds") or {}).items()
        ],
        "bounds_read_from_data": list(info.get("bounds_read_from_data") or []),
        "categories_from": info.get("categories_from") or "",
        "data_norm": info.get("data_norm"),
        "non_private_algorithm": info.get("non_private_algorithm"),
        "comparison": info.get("comparison"),
    }


def privacy_limitations(training: dict[str, Any]) -> list[str]:
    section = privacy_section(training)
    if section is None:
        return []
    found = [
        f"Trained with differential privacy (ε = {section['epsilon']:g}): its noise costs "
        "accuracy, and often most for small groups — read the fairness table with that in mind."
    ]
    read = section["bounds_read_from_data"]
    if read:
        found.append(
            f"The bounds of {', '.join(read)} were read from the data, not given: that leaks a "
            "little beyond ε (the range of the values). Give the bounds to avoid it."
        )
    found.append(
        "The drift monitor's reference (histograms of the training rows, kept with the model "
        "and its bundle for district staff and school servers) is exact: it is not covered by ε."
    )
    if section["categories_from"]:
        found.append(
            f"The category lists were read from the {section['categories_from']}: which values "
            "occur is not protected by ε."
        )
    return found


def limitations(
    training: dict[str, Any],
    validation: dict[str, Any],
    bias_report: dict[str, Any],
    extra: str = "",
    *,
    task_type: str = "binary_risk",
) -> list[str]:
    if task_type == "forecast":
        return forecast_limitations(training, validation, extra)
    if task_type == "ordinal_score":
        return scoring_limitations(training, validation, bias_report, extra)
    if task_type == "mastery":
        return mastery_limitations(training, validation, extra)
    found = []
    if extra.strip():
        found.append(extra.strip())
    found += privacy_limitations(training)
    period = training.get("period") or {}
    if period:
        found.append(
            f"Trained on {period.get('from')} to {period.get('to')}: later cohorts may differ; "
            "watch the drift monitor."
        )
    schools = training.get("schools") or []
    if schools:
        found.append(
            f"Learned from {len(schools)} school(s) ({', '.join(schools[:8])}); schools not "
            "among them may see other error rates."
        )
    small = [
        f"{g['attribute']}={g['group']} (n={g['n']})"
        for g in bias_report.get("groups", [])
        if g.get("insufficient")
    ]
    if small:
        found.append(
            "Too few held-out students to judge fairness for: " + ", ".join(small[:10]) + "."
        )
    if not bias_report:
        found.append("The bias gate has not checked this model version.")
    if not validation:
        found.append("This model version has not been validated on held-out rows.")
    found.append(
        "A risk score supports a conversation with the student; it is not a decision about them."
    )
    return found


def forecast_limitations(
    training: dict[str, Any], validation: dict[str, Any], extra: str = ""
) -> list[str]:
    found = [extra.strip()] if extra.strip() else []
    period = training.get("period") or {}
    if period:
        found.append(
            f"Learned from {period.get('from')} to {period.get('to')}: a new school, a boundary "
            "change or a new housing estate that the history does not show is not in the "
            "forecast; watch the Forecast error monitor as each term's counts arrive."
        )
    info = training.get("forecast") or {}
    if info.get("fallbacks"):
        found.append(
            f"{info['fallbacks']} series had too little history for the method and got a "
            "simpler forecast (the seasonal naive or a trend): read their ranges as rough."
        )
    if validation.get("kind") != "backtest":
        found.append("This forecast has not been backtested on past registration cycles.")
    found.append(
        "The ranges hold the actual count as often as the interval level says only when the "
        "coming terms behave like the past ones."
    )
    return found


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _interval(interval: Any) -> str:
    if not interval:
        return ""
    return f" ({_fmt(interval[0])}–{_fmt(interval[1])})"


def to_markdown(card: dict[str, Any]) -> str:
    model, data, ev, fair = card["model"], card["data"], card["evaluation"], card["fairness"]
    lines = [
        f"# Model card: {model.get('name')} version {model.get('version')}",
        "",
        f"- Algorithm: {model.get('algorithm')}",
        f"- Aliases: {', '.join(model.get('aliases') or []) or 'none'}",
        f"- MLflow run: {model.get('run_id')}",
        "",
        f"- Predicts: {(card.get('task') or {}).get('label', TASK_LABELS['binary_risk'])}",
        "",
        "## Intended use",
        "",
        card["intended_use"],
        "",
        "## Data",
        "",
        f"- Dataset: {data.get('dataset')} (SHA-256 `{data.get('dataset_sha256')}`)",
        f"- Training rows: {_rows(data)}",
        *_label_lines(data, card),
        *outcome_lines(data.get("outcome")),
        f"- Schools: {', '.join(data.get('schools') or []) or 'not recorded'}",
    ]
    period = data.get("period") or {}
    if period:
        lines.append(f"- Period: {period.get('from')} to {period.get('to')}")
    lines += federated_lines(card.get("federated"))
    if card.get("forecast"):
        lines += forecast_lines(card["forecast"])
        return "\n".join([*lines, *_closing_markdown(card)]) + "\n"
    if card.get("mastery"):
        lines += mastery_lines(card["mastery"])
        return "\n".join([*lines, *_closing_markdown(card)]) + "\n"
    if card.get("scoring"):
        lines += scoring_lines(card["scoring"])
        lines += _fairness_markdown(fair)
        return "\n".join([*lines, *_closing_markdown(card)]) + "\n"
    lines += [
        "",
        "## Evaluation",
        "",
        f"On {ev.get('test_rows') or '—'} held-out rows at threshold {_fmt(ev.get('threshold'))}"
        " (95% bootstrap intervals):",
        "",
        "| Metric | Value |",
        "|---|---|",
    ]
    for key, entry in ev.get("overall", {}).items():
        lines.append(
            f"| {METRIC_LABELS.get(key, key)} | {_fmt(entry['value'])}"
            f"{_interval(entry.get('interval'))} |"
        )
    if ev.get("champion"):
        lines += ["", f"Champion comparison: {ev['champion'].get('verdict')}"]
    lines += privacy_markdown(card.get("privacy"))
    lines += _fairness_markdown(fair)
    return "\n".join([*lines, *_closing_markdown(card)]) + "\n"


def _fairness_markdown(fair: dict[str, Any]) -> list[str]:
    lines = ["", "## Fairness", "", f"Bias gate: **{fair['outcome']}**. {fair['summary']}", ""]
    groups = fair.get("groups") or []
    if groups:
        names = sorted({m for g in groups for m in g["metrics"]})
        words = [metric_name(name) for name in names]
        lines.append("| Attribute | Group | held-out students | " + " | ".join(words) + " |")
        lines.append("|---|---|---|" + "---|" * len(names))
        for g in groups:
            cells = []
            for name in names:
                entry = g["metrics"].get(name) or {}
                cells.append(_fmt(entry.get("value")) + _interval(entry.get("interval")))
            flag = " (insufficient data)" if g["insufficient"] else ""
            lines.append(
                f"| {g['attribute']} | {g['group']}{flag} | {g['n']} | " + " | ".join(cells) + " |"
            )
    return lines


def _label_lines(data: dict[str, Any], card: dict[str, Any]) -> list[str]:
    """The label (none for a forecast, which counts students) and the sensitive attributes."""
    lines = []
    if data.get("label"):
        positive = ", ".join(data.get("positive_class") or [])
        lines.append(f"- Label: {data.get('label')} (positive: {positive})")
    if not card.get("forecast") and not card.get("mastery"):
        sensitive = ", ".join(data.get("sensitive_attributes") or []) or "none"
        lines.append(f"- Sensitive attributes: {sensitive}")
    return lines


def _closing_markdown(card: dict[str, Any]) -> list[str]:
    """Limitations, approvals and the bundle: the end of every card."""
    lines = ["", "## Limitations", ""] + [f"- {item}" for item in card["limitations"]]
    lines += ["", "## Approvals", ""]
    if card["approvals"]:
        for a in card["approvals"]:
            lines.append(f"- {a['decision']} by {a['by']} on {a['at'][:10]}: {a['comment']}")
    else:
        lines.append("- none yet")
    bundle = card.get("bundle") or {}
    if bundle.get("signed"):
        lines += ["", "## Bundle", "", f"Signed with key `{bundle.get('signing_key_id')}`:"]
        lines += [f"- {name}: `{digest}`" for name, digest in bundle.get("files", {}).items()]
    elif card.get("scoring") and card["scoring"].get("onnx_sha256"):
        lines += [
            "",
            "## Bundle",
            "",
            f"The scorer's ONNX file ({_fmt(card['scoring'].get('onnx_bytes'))} bytes), "
            f"SHA-256 `{card['scoring']['onnx_sha256']}`.",
        ]
    elif card.get("mastery"):
        lines += [
            "",
            "## Bundle",
            "",
            "None: a mastery model is served from its parameters (the table above), not from "
            "an ONNX bundle.",
        ]
    return lines


def privacy_markdown(section: dict[str, Any] | None) -> list[str]:
    if not section:
        return []
    lines = [
        "",
        "## Differential privacy",
        "",
        f"- ε = {section['epsilon']:g}, δ = {section['delta']:g}",
        f"- Mechanism: {section['mechanism']}",
        f"- Data norm: {_fmt(section['data_norm'])} (from the bounds, not the rows)",
        "",
        "| Feature | Lower | Upper | Bounds from |",
        "|---|---|---|---|",
    ]
    for b in section["bounds"]:
        lines.append(f"| {b['feature']} | {b['lower']:g} | {b['upper']:g} | {b['from']} |")
    comparison = section.get("comparison")
    if comparison:
        ours, theirs = comparison["private"], comparison["non_private"]
        lines += [
            "",
            f"Against {section['non_private_algorithm']} without privacy, trained on the same "
            f"split, on {comparison['rows']} held-out rows:",
            "",
            "| Model | Accuracy | ROC AUC |",
            "|---|---|---|",
            f"| private (ε = {section['epsilon']:g}) | {_fmt(ours.get('accuracy'))} | "
            f"{_fmt(ours.get('auc'))} |",
            f"| non-private | {_fmt(theirs.get('accuracy'))} | {_fmt(theirs.get('auc'))} |",
        ]
    else:
        lines += ["", "No held-out rows were given: no comparison with a non-private model."]
    return lines


def _rows(data: dict[str, Any]) -> str:
    if data.get("rows") is None:
        return "kept at the schools"
    positives = data.get("positives")
    return f"{data['rows']}" + (f" ({positives} positive)" if positives is not None else "")


def outcome_lines(outcome: dict[str, Any] | None) -> list[str]:
    """How the label was made, when it was derived from a rule."""
    if not outcome:
        return []
    lines = [f"- Outcome rule: {outcome['name']} = yes where {outcome['rule']}, else no"]
    for excluded in outcome.get("excluded") or []:
        lines.append(f"- Not a feature: {excluded['column']} ({excluded['why']})")
    return lines


def federated_section(fed: dict[str, Any] | None) -> dict[str, Any] | None:
    """How a model trained across schools was trained: who took part in each round, and the
    privacy of its updates."""
    if not fed:
        return None
    dp = fed.get("dp") or None
    return {
        "schools": fed.get("schools", []),
        "rounds": [
            {"round": r.get("round"), "schools": r.get("schools", [])}
            for r in fed.get("rounds", [])
        ],
        "secure_aggregation": "SecAgg+ (the server saw only the sum of the schools' updates)",
        "privacy": (
            f"differential privacy on the updates: ε = {dp['epsilon']:.3g}"
            + (f", δ = {dp['delta']:g}" if dp.get("delta") else "")
            + f" per school ({dp.get('accounting', 'Gaussian mechanism')})"
            if dp and dp.get("epsilon")
            else "no noise on the updates (secure aggregation only)"
        ),
    }


def federated_lines(fed: dict[str, Any] | None) -> list[str]:
    if not fed:
        return []
    lines = [
        "",
        "## Trained across schools",
        "",
        "Trained federatedly with Flower: each school trained on its own records, which never "
        "left it; only model updates and counts did.",
        f"- Schools: {', '.join(fed['schools']) or 'none recorded'}",
        f"- Secure aggregation: {fed['secure_aggregation']}",
        f"- Privacy: {fed['privacy']}",
    ]
    lines += [f"- Round {r['round']}: {', '.join(r['schools'])}" for r in fed["rounds"]]
    return lines


# --- short-answer scoring (ordinal score) ---------------------------------------------------------


def scoring_section(training: dict[str, Any], validation: dict[str, Any]) -> dict[str, Any]:
    """What a short-answer scorer's card says: the scale and columns, the ONNX file and its
    parity check, and the validation against the teachers (None before one)."""
    config = training.get("scorer") or {}
    parity = config.get("parity") or {}
    scale = config.get("scale") or [None, None]
    checked = validation.get("kind") == "scoring"
    metrics = (validation.get("metrics") or {}) if checked else {}
    unsure = (validation.get("unsure") or {}) if checked else {}
    limits = (validation.get("limits") or {}) if checked else {}
    return {
        "scale": {"low": scale[0], "high": scale[-1]},
        "points": list(config.get("points") or []),
        "text_column": config.get("text_column"),
        "score_column": config.get("score_column"),
        "rows": training.get("rows"),
        "score_counts": dict(training.get("score_counts") or {}),
        "vocabulary": training.get("vocabulary"),
        "onnx_sha256": config.get("onnx_sha256"),
        "onnx_bytes": config.get("onnx_bytes"),
        "parity": {
            "rows": parity.get("rows"),
            "disagreeing_scores": parity.get("disagreeing_scores"),
            "max_prob_diff": parity.get("max_prob_diff"),
        }
        if parity
        else None,
        "validation": (
            {
                "test_rows": validation.get("test_rows"),
                "qwk": metrics.get("qwk"),
                "exact_agreement": metrics.get("exact_agreement"),
                "adjacent_agreement": metrics.get("adjacent_agreement"),
                "human_qwk": metrics.get("human_qwk"),
                "human_exact_agreement": metrics.get("human_exact_agreement"),
                "smd": metrics.get("smd", validation.get("smd")),
                "unsure_share": unsure.get("share", metrics.get("unsure_share")),
                "unsure_count": unsure.get("count"),
                "unsure_margin": unsure.get("margin"),
                "min_qwk": limits.get("min_qwk"),
                "max_unsure_share": limits.get("max_unsure_share"),
                "passed": validation.get("passed"),
                "failures": list(validation.get("failures") or []),
            }
            if checked
            else None
        ),
    }


def scoring_lines(section: dict[str, Any] | None) -> list[str]:
    if not section:
        return []
    scale = section["scale"]
    lines = [
        "",
        "## Scoring",
        "",
        f"- Scores answers from {scale['low']} to {scale['high']} points "
        f"(answers in '{section['text_column']}', teachers' scores in "
        f"'{section['score_column']}')",
        f"- Trained on {_fmt(section['rows'])} answers scored by teachers",
    ]
    parity = section.get("parity")
    if parity:
        lines.append(
            f"- ONNX parity: {parity['disagreeing_scores']} of {parity['rows']} answers scored "
            f"differently from scikit-learn (largest probability difference "
            f"{_fmt(parity['max_prob_diff'])})"
        )
    v = section.get("validation")
    lines += ["", "## Evaluation", ""]
    if not v:
        return [*lines, "Not validated against the teachers yet."]
    ceiling = (
        f"two teachers agree at QWK {_fmt(v['human_qwk'])}"
        if v.get("human_qwk") is not None
        else "no second teacher's scores: the teacher–teacher ceiling was not measured"
    )
    lines += [
        f"Against the teachers on {v['test_rows']} held-out answers: "
        f"**{'passed' if v['passed'] else 'failed'}**",
        "",
        "| Agreement with the teachers | Value |",
        "|---|---|",
        f"| Quadratic weighted kappa (QWK: 1 = always the same score, 0 = chance) | "
        f"{_fmt(v['qwk'])} |",
        f"| Teacher–teacher QWK (the ceiling) | {_fmt(v['human_qwk'])} |",
        f"| Same score as the teacher | {_share(v['exact_agreement'])} |",
        f"| Within one point of the teacher | {_share(v['adjacent_agreement'])} |",
        f"| Mean score difference (standardized) | {_fmt(v['smd'])} |",
        "",
        f"The scorer agrees with the teachers at QWK {_fmt(v['qwk'])}; {ceiling}. "
        f"{_share(v['unsure_share'])} of the answers"
        + (f" ({v['unsure_count']})" if v.get("unsure_count") is not None else "")
        + " were too close to call and are sent to a teacher.",
    ]
    lines += [f"- {failure}" for failure in v["failures"]]
    return lines


def scoring_limitations(
    training: dict[str, Any],
    validation: dict[str, Any],
    bias_report: dict[str, Any],
    extra: str = "",
) -> list[str]:
    found = [extra.strip()] if extra.strip() else []
    dataset = training.get("dataset")
    found.append(
        "It learned the prompts and scores of its training answers"
        + (f" ({dataset})" if dataset else "")
        + ": answers to other questions, or to a changed rubric, get scores that mean nothing. "
        "Retrain it for each new prompt."
    )
    found.append(
        "Answers it is unsure about go to a teacher; the others are suggestions for a teacher "
        "to confirm, not grades."
    )
    found.append(
        "It reads words and letters, not reasoning: an answer written in another language, "
        "very short or very long, or unusually worded may be scored wrongly: have teachers "
        "score a sample of such answers now and then."
    )
    found.append(
        "When new answers grow longer or shorter, use other words, or leave it unsure more "
        "often, its scores mean less: watch the Answer drift monitor."
    )
    small = [
        f"{g['attribute']}={g['group']} (n={g['n']})"
        for g in bias_report.get("groups", [])
        if g.get("insufficient")
    ]
    if small:
        found.append(
            "Too few held-out answers to judge fairness for: " + ", ".join(small[:10]) + "."
        )
    if not bias_report:
        found.append("The bias gate has not compared its scores with the teachers' per group.")
    if validation.get("kind") != "scoring":
        found.append("This scorer has not been validated against teachers' scores.")
    return found


# --- mastery (Bayesian knowledge tracing) ---------------------------------------------------------


def mastery_section(training: dict[str, Any], validation: dict[str, Any]) -> dict[str, Any]:
    """What a mastery model's card says: each skill's parameters (degenerate ones marked), what
    it learned from, and the validation on held-out students (None before one)."""
    parameters = training.get("parameters") or {}
    trained_on = training.get("skills") or {}
    skills = []
    for name in sorted(parameters):
        p = parameters[name]
        guess, slip = p.get("guess", 0.0), p.get("slip", 0.0)
        seen = trained_on.get(name) if isinstance(trained_on, dict) else None
        skills.append(
            {
                "skill": name,
                "prior": p.get("prior"),
                "learn": p.get("learn"),
                "guess": guess,
                "slip": slip,
                "forget": p.get("forget", 0.0),
                "degenerate": guess >= 1.0 - slip,
                "answers": (seen or {}).get("answers") if isinstance(seen, dict) else None,
            }
        )
    checked = validation.get("kind") == "mastery"
    limits = (validation.get("limits") or {}) if checked else {}
    split = (validation.get("split") or {}) if checked else {}
    return {
        "answers": training.get("answers"),
        "students": training.get("students"),
        "forgets": bool((training.get("fit") or {}).get("forgets")),
        "skills": skills,
        "degenerate": [s["skill"] for s in skills if s["degenerate"]],
        "validation": (
            {
                "auc": validation.get("auc"),
                "ece": validation.get("ece"),
                "base_rate_auc": validation.get("base_rate_auc"),
                "answers": validation.get("answers"),
                "students": validation.get("students"),
                "train_students": split.get("train_students"),
                "min_auc": limits.get("min_auc"),
                "max_ece": limits.get("max_ece"),
                "min_gain": limits.get("min_gain"),
                "passed": validation.get("passed"),
                "failures": list(validation.get("failures") or []),
            }
            if checked
            else None
        ),
    }


def mastery_lines(section: dict[str, Any] | None) -> list[str]:
    if not section:
        return []
    lines = [
        "",
        "## Mastery",
        "",
        f"Bayesian knowledge tracing, one model per skill, learned from "
        f"{_fmt(section['answers'])} answers of {_fmt(section['students'])} students.",
        "",
        "| Skill | Chance of knowing it before practice | Chance of learning it at each answer "
        "| Right by a guess (not known) | Wrong by a slip (known) | Forgetting |",
        "|---|---|---|---|---|---|",
    ]
    for s in section["skills"]:
        flag = " (degenerate: a right answer does not show it is known)" if s["degenerate"] else ""
        lines.append(
            f"| {s['skill']}{flag} | {_share(s['prior'])} | {_share(s['learn'])} | "
            f"{_share(s['guess'])} | {_share(s['slip'])} | {_share(s['forget'])} |"
        )
    v = section.get("validation")
    lines += ["", "## Evaluation", ""]
    if not v:
        return [*lines, "Not validated on held-out students yet."]
    lines += [
        f"On {_fmt(v['answers'])} answers of {_fmt(v['students'])} held-out students, each "
        f"predicted from the student's answers before it: **"
        f"{'passed' if v['passed'] else 'failed'}**",
        "",
        "| | Value | Limit |",
        "|---|---|---|",
        f"| AUC of the next-answer predictions | {_fmt(v['auc'])} | "
        f"at least {_fmt(v['min_auc'])} |",
        f"| AUC of each skill's pass rate alone (the baseline) | {_fmt(v['base_rate_auc'])} | "
        f"beaten by at least {_fmt(v['min_gain'])} |",
        f"| Calibration error (ECE) | {_fmt(v['ece'])} | at most {_fmt(v['max_ece'])} |",
    ]
    lines += [f"- {failure}" for failure in v["failures"]]
    return lines


def mastery_limitations(
    training: dict[str, Any], validation: dict[str, Any], extra: str = ""
) -> list[str]:
    found = [extra.strip()] if extra.strip() else []
    section = mastery_section(training, validation)
    if section["skills"]:
        found.append(
            "It knows only the skills it was trained on ("
            + ", ".join(s["skill"] for s in section["skills"][:10])
            + "): answers on other skills are refused, and items added to a skill later are "
            "assumed to be as hard as its old ones."
        )
    if section["degenerate"]:
        found.append(
            f"{', '.join(section['degenerate'])}: guess and slip are so high that a right "
            "answer does not show the skill is known; check the items before trusting its "
            "mastery, and it is never suggested as the next skill."
        )
    found.append(
        "P(mastered) is a guide for choosing practice, not a grade: one student's few answers "
        "leave it uncertain, and it assumes each skill is learned on its own."
    )
    found.append(
        "Each weekly retraining may move a skill's parameters: the Mastery monitor compares "
        "them with the version before and flags items that became too easy or too hard."
    )
    if validation.get("kind") != "mastery":
        found.append("This mastery model has not been validated on held-out students.")
    return found
