"""Private aggregates: counts from student rows shown to people who cannot see the rows.

A table (rows of named integer counts, e.g. {"ses=low": {"positives": 14, "found": 9}}) is
published under a key: the first time it is asked for, its counts are noised with diffprivlib's
two-sided geometric mechanism (the integer Laplace), the ε is spent through `ledger.spend`
(kind "aggregate", with the key), and the noisy counts are stored in the release's `details`.
Every later view reuses them: post-processing (rates from the noisy counts, clipping to [0, 1])
costs nothing, so looking at a page never spends budget twice for the same numbers.

When the counts change (a new check, new predictions) a new release is made if the budget
allows; otherwise the last published table is shown again, and a row it does not hold falls
back to the small-cell rule: counts below the cohort's minimum cell size are suppressed ("fewer
than 10"), larger ones shown as they are — the rule statistics offices publish by.

`small_only` tables (the model card's group table) noise only the rows with a small count (of
`small_columns`, e.g. the group's sizes) and show the others exact. The caller states the
table's sensitivity: how much one student can change all its counts together (L1), e.g. 2
counts × 4 attributes a student has one group in.

Whether the counts changed is told by an HMAC of them under the site's secret key, stored with
the release: it says nothing about the counts to whoever reads the ledger.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from edumlops.datasets.models import Dataset
from edumlops.privacy import ledger
from edumlops.privacy.models import PrivacyBudget, PrivacyRelease
from edumlops.schools.models import District

# The ε one published table spends, unless the cohort's maximum per release is lower.
AGGREGATE_EPSILON = 0.5
MECHANISM = "two-sided geometric (diffprivlib Geometric)"

Table = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Cell:
    """One published count: noised, exact (large enough, or not sensitive) or suppressed."""

    value: int | None
    state: str  # "noised" | "exact" | "suppressed"
    epsilon: float = 0.0
    min_cell: int = 0

    @property
    def text(self) -> str:
        if self.state == "suppressed":
            return f"fewer than {self.min_cell}"
        return f"≈ {self.value}" if self.state == "noised" else str(self.value)

    @property
    def note(self) -> str:
        if self.state == "noised":
            return f"noised, ε {self.epsilon:g}"
        if self.state == "suppressed":
            return "suppressed: no privacy budget left to noise it"
        return ""


@dataclass(frozen=True)
class Rate:
    """A rate derived from published counts (free post-processing), clipped to [0, 1]."""

    value: float | None
    state: str
    epsilon: float = 0.0
    min_cell: int = 0

    @property
    def text(self) -> str:
        if self.value is None:
            return (
                f"not shown: fewer than {self.min_cell} students"
                if self.state == "suppressed"
                else "—"
            )
        return f"≈ {self.value:.2f}" if self.state == "noised" else f"{self.value:.2f}"

    @property
    def note(self) -> str:
        return Cell(None, self.state, self.epsilon, self.min_cell).note


@dataclass
class Published:
    """A table as it may be shown, and where it came from."""

    key: str
    cells: dict[str, dict[str, Cell]]
    state: str  # "noised" (this view released it), "reused", "stale", "suppressed", "exact"
    min_cell: int
    release: PrivacyRelease | None = None
    refusal: str = ""  # why no new release could be made
    notes: list[str] = field(default_factory=list)

    def cell(self, row: str, column: str) -> Cell:
        return self.cells[row][column]

    def rate(self, row: str, numerator: str, denominator: str) -> Rate:
        num, den = self.cell(row, numerator), self.cell(row, denominator)
        states = {num.state, den.state}
        state = (
            "suppressed" if "suppressed" in states else "noised" if "noised" in states else "exact"
        )
        eps = max(num.epsilon, den.epsilon)
        if state == "suppressed" or not den.value or num.value is None:
            return Rate(None, state, eps, self.min_cell)
        return Rate(min(1.0, max(0.0, num.value / den.value)), state, eps, self.min_cell)

    @property
    def summary(self) -> str:
        """One line for the page: how these numbers were published."""
        if self.state == "exact":
            return ""
        if self.state == "suppressed":
            return (
                f"Counts below {self.min_cell} are not shown: no privacy budget is left to "
                "publish them noised. " + self.refusal
            ).strip()
        when = f"{self.release.created_at:%Y-%m-%d}" if self.release else ""
        eps = f"ε {self.release.epsilon:g}" if self.release else ""
        text = f"Published with differential privacy ({eps}, {when}): counts marked ≈ are noised."
        if self.state == "stale":
            text += f" Newer numbers are not published: {self.refusal}"
        return text


def _fingerprint(table: Table) -> str:
    payload = json.dumps(table, sort_keys=True).encode()
    return hmac.new(settings.SECRET_KEY.encode(), payload, hashlib.sha256).hexdigest()


def _geometric(epsilon: float, sensitivity: int) -> Any:
    """diffprivlib's geometric mechanism."""
    from edumlops.ml.privacy import diffprivlib_ready

    diffprivlib_ready()
    from diffprivlib.mechanisms import Geometric

    return Geometric(epsilon=epsilon, sensitivity=sensitivity)


def _noise(table: Table, epsilon: float, sensitivity: int) -> Table:
    mechanism = _geometric(epsilon, sensitivity)
    # a count is never negative: clipping is post-processing
    return {
        row: {col: max(0, int(mechanism.randomise(int(v)))) for col, v in counts.items()}
        for row, counts in table.items()
    }


def _small(counts: dict[str, int], min_cell: int, columns: tuple[str, ...] = ()) -> bool:
    """Is a row small: one of its counts (or of `columns`, the group sizes) below min_cell?"""
    return any(v < min_cell for c, v in counts.items() if not columns or c in columns)


def _last(district: District, dataset: Dataset | None, key: str) -> PrivacyRelease | None:
    """The newest release under `key`, of any school year: a table already published may be
    shown again for free, whatever year it was paid from."""
    return (
        PrivacyRelease.objects.filter(district=district, dataset=dataset, key=key)
        .order_by("-created_at", "-id")
        .first()
    )


def publish(
    *,
    district: District,
    dataset: Dataset | None,
    key: str,
    what: str,
    table: Table,
    sensitivity: int,
    actor: Any,
    target: Any = None,
    small_only: bool = False,
    small_columns: tuple[str, ...] = (),
    epsilon: float | None = None,
) -> Published:
    """The table as it may be shown to people who cannot see the rows (see the module)."""
    budget = ledger.budget_for(district, dataset)
    min_cell = budget.min_cell
    private = {r: c for r, c in table.items() if _small(c, min_cell)} if small_only else dict(table)
    exact = {r: {k: Cell(v, "exact") for k, v in c.items()} for r, c in table.items()}
    if not private:
        return Published(key, exact, "exact", min_cell)
    source = _fingerprint(private)
    eps = min(epsilon or AGGREGATE_EPSILON, budget.max_per_release)
    sensitivity = max(1, math.ceil(sensitivity))
    last = _last(district, dataset, key)
    if last is not None and last.details.get("source") == source:
        return _shown(key, table, private, last, "reused", min_cell)
    try:
        with transaction.atomic():
            # one release per key: whoever holds the budget's lock first noises the table
            PrivacyBudget.objects.select_for_update().get(pk=budget.pk)
            last = _last(district, dataset, key)
            if last is not None and last.details.get("source") == source:
                return _shown(key, table, private, last, "reused", min_cell)
            release = ledger.spend(
                district=district,
                dataset=dataset,
                epsilon=eps,
                kind=PrivacyRelease.Kind.AGGREGATE,
                what=what,
                actor=actor,
                target=target,
                mechanism=f"{MECHANISM}, sensitivity {sensitivity}",
                key=key,
                details={
                    "source": source,
                    "cells": _noise(private, eps, sensitivity),
                    "sensitivity": sensitivity,
                    "min_cell": min_cell,
                    "small_only": small_only,
                },
            )
    except ledger.BudgetExceeded as refused:
        if last is not None:
            shown = _shown(key, table, private, last, "stale", min_cell)
            shown.refusal = str(refused)
            return shown
        return Published(key, _suppressed(table, private, min_cell), "suppressed", min_cell,
                         refusal=str(refused))  # fmt: skip
    return _shown(key, table, private, release, "noised", min_cell)


def _suppressed(table: Table, private: Table, min_cell: int) -> dict[str, dict[str, Cell]]:
    """The small-cell rule: a count below `min_cell` is not shown."""
    return {
        row: {
            col: Cell(v, "exact")
            if row not in private or v >= min_cell
            else Cell(None, "suppressed", 0.0, min_cell)
            for col, v in counts.items()
        }
        for row, counts in table.items()
    }


def _shown(
    key: str, table: Table, private: Table, release: PrivacyRelease, state: str, min_cell: int
) -> Published:
    noisy: Table = release.details.get("cells") or {}
    fallback = _suppressed(table, private, min_cell)
    cells: dict[str, dict[str, Cell]] = {}
    for row, counts in table.items():
        if row in noisy and set(noisy[row]) >= set(counts):
            cells[row] = {c: Cell(noisy[row][c], "noised", release.epsilon) for c in counts}
        else:
            cells[row] = fallback[row]
    return Published(key, cells, state, min_cell, release=release)


# --- the model card's group table -----------------------------------------------------------------
# Each count a group row holds, and the rate each metric derives from them.
_RATES = {
    "recall": lambda c: _ratio(c.get("tp"), c["positives"]),
    "false_negative_rate": lambda c: _complement(_ratio(c.get("tp"), c["positives"])),
    "false_positive_rate": lambda c: _ratio(c.get("fp"), c["negatives"]),
    "selection_rate": lambda c: _ratio(c.get("pp"), c["positives"] + c["negatives"]),
}


# what a check counts (ml.fairness.COUNTED) → the count that is its denominator
_DENOMINATORS = {
    "held-out students": "n",
    "at-risk students": "positives",
    "students not at risk": "negatives",
}


def _ratio(numerator: int | None, denominator: int) -> float | None:
    if numerator is None or denominator <= 0:
        return None
    return round(min(1.0, max(0.0, numerator / denominator)), 4)


def _complement(value: float | None) -> float | None:
    return None if value is None else round(1.0 - value, 4)


def _group_counts(group: dict[str, Any]) -> dict[str, int]:
    """The integer counts behind a bias-report group's rates (the report keeps rates and the
    two sizes; the numerators follow from them exactly)."""
    n, positives = int(group.get("n", 0)), int(group.get("positives", 0))
    m = group.get("metrics") or {}
    counts = {"positives": positives, "negatives": n - positives}
    if m.get("recall") is not None:
        counts["tp"] = round(m["recall"] * positives)
    elif m.get("false_negative_rate") is not None:
        counts["tp"] = round((1 - m["false_negative_rate"]) * positives)
    if m.get("false_positive_rate") is not None:
        counts["fp"] = round(m["false_positive_rate"] * (n - positives))
    if m.get("selection_rate") is not None:
        counts["pp"] = round(m["selection_rate"] * n)
    return counts


def _count_text(group: str, count: int, n: int, counted: str) -> str:
    """How ml.fairness names a group left out of a check ("F: 4 at-risk students of 93
    held-out students"), so the exact counts can be replaced in the report's sentences."""
    from edumlops.ml.fairness import students

    if counted == "held-out students":
        return f"{group}: {students(n)}"
    return f"{group}: {students(count, counted)} of {students(n)}"


def bias_report(
    *,
    district: District,
    dataset: Dataset | None,
    key: str,
    report: dict[str, Any] | None,
    actor: Any,
    target: Any = None,
) -> dict[str, Any] | None:
    """A stored bias report as the model card may show it to someone who cannot see the rows:
    the groups with fewer students than the minimum cell size (at-risk or not) are noised, or
    suppressed when no budget is left, and marked (`group["privacy"]`); the sentences that
    named their counts name the published ones. None when the report has no group."""
    groups = (report or {}).get("groups") or []
    if not groups:
        return None
    table = {f"{g['attribute']}|{g['group']}": _group_counts(g) for g in groups}
    min_cell = ledger.budget_for(district, dataset).min_cell
    small = {r for r, c in table.items() if min(c["positives"], c["negatives"]) < min_cell}
    # a student is in one group per attribute set, and changes there one of positives and
    # negatives, at most one of tp and fp, and pp
    per_row = max(
        1 + ("tp" in c or "fp" in c) + ("pp" in c) for r, c in table.items() if r in small
    ) if small else 1  # fmt: skip
    attribute_sets = {r.split("|", 1)[0] for r in small}
    shown = publish(
        district=district,
        dataset=dataset,
        key=key,
        what="the model card's small groups (counts and rates per group)",
        table=table,
        sensitivity=per_row * max(1, len(attribute_sets)),
        actor=actor,
        target=target,
        small_only=True,
        small_columns=("positives", "negatives"),
    )
    out = {**report, "groups": [dict(g) for g in groups]}
    out["checks"] = [dict(c) for c in (report or {}).get("checks") or []]
    texts: dict[str, str] = {}  # exact count sentences → published ones
    by_group: dict[tuple[str, str], dict[str, int | None]] = {}
    for g in out["groups"]:
        row = f"{g['attribute']}|{g['group']}"
        cells = shown.cells[row]
        states = {c.state for c in cells.values()}
        if states == {"exact"}:
            continue
        if "suppressed" in states:
            g["privacy"] = {
                "state": "suppressed",
                "note": Cell(None, "suppressed", 0.0, min_cell).note,
                "min_cell": min_cell,
            }
            g["metrics"] = {m: None for m in g.get("metrics") or {}}
            published = {"n": None, "positives": None, "negatives": None}
        else:
            counts = {c: cell.value or 0 for c, cell in cells.items()}
            eps = max(cell.epsilon for cell in cells.values())
            g["privacy"] = {"state": "noised", "note": f"noised, ε {eps:g}", "min_cell": min_cell}
            g["metrics"] = {m: _RATES[m](counts) for m in g.get("metrics") or {} if m in _RATES}
            published = {
                "n": counts["positives"] + counts["negatives"],
                "positives": counts["positives"],
                "negatives": counts["negatives"],
            }
        exact = {"n": int(g["n"]), "positives": int(g["positives"])}
        exact["negatives"] = exact["n"] - exact["positives"]
        g["n"], g["positives"] = published["n"], published["positives"]
        for counted, denominator in _DENOMINATORS.items():
            old = _count_text(g["group"], exact[denominator], exact["n"], counted)
            if g["privacy"]["state"] == "suppressed":
                new = f"{g['group']}: fewer than {min_cell} students (not shown)"
            elif counted == "held-out students":
                new = f"{g['group']}: ≈ {published['n']} held-out students (noised)"
            else:
                new = (
                    f"{g['group']}: ≈ {published[denominator]} {counted} of ≈ {published['n']} "
                    "held-out students (noised)"
                )
            texts[old] = new
        by_group[(g["attribute"], g["group"])] = published
    for check in out["checks"]:
        denominator = _DENOMINATORS.get(check.get("counted", ""), "n")
        check["not_judged"] = [
            {**d, "n": shown_counts["n"], "count": shown_counts[denominator]}
            if (shown_counts := by_group.get((check.get("attribute", ""), d.get("group", ""))))
            else d
            for d in check.get("not_judged") or []
        ]
        check["reason"] = _replace(check.get("reason", ""), texts)
    out["summary"] = _replace(out.get("summary", ""), texts)
    out["privacy"] = {"summary": shown.summary, "state": shown.state, "min_cell": min_cell}
    return out


def _replace(text: str, texts: dict[str, str]) -> str:
    # longest first, so "A: 4 at-risk students of 40 …" is not cut by "A: 40 held-out students"
    for old in sorted(texts, key=len, reverse=True):
        text = text.replace(old, texts[old])
    return text
