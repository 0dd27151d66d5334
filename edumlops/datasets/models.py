"""Datasets and their immutable, content-addressed versions.

A version is identified by the SHA-256 of the uploaded bytes: the original file is kept as
`<sha256>.csv` beside a Parquet copy of the parsed frame (fast to load, types preserved). Its
roles (label, positive class, sensitive attributes, school/grade/time columns) are marked after
upload; every block that reads the version snapshots the roles it used.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from django.conf import settings
from django.db import models, transaction
from django.db.models import Max

from edumlops.audit import models as audit
from edumlops.ml.datasets import (
    OUTCOME_YES,
    DatasetError,
    Limits,
    Minimisation,
    Outcome,
    Roles,
    apply_minimisation,
    check_outcome,
    check_roles,
    describe_outcome,
    infer_schema,
    read_csv,
    split_indices,
    with_outcome,
)
from edumlops.schools.models import District


class Dataset(models.Model):
    class Source(models.TextChoices):
        UPLOAD = "upload", "Uploaded"
        GENERATED = "generated", "Generated (synthetic district)"
        OULAD = "oulad", "Open University Learning Analytics Dataset"

    district = models.ForeignKey(District, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.UPLOAD)
    description = models.TextField(blank=True)
    attribution = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["district", "name"], name="unique_dataset_name")
        ]

    def __str__(self) -> str:
        return self.name

    def permission_scope(self) -> District:
        return self.district

    def latest(self) -> DatasetVersion | None:
        return self.versions.order_by("-number").first()


class DatasetVersion(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    district = models.ForeignKey(District, on_delete=models.CASCADE, related_name="+")
    number = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    original_name = models.CharField(max_length=300, blank=True)
    size = models.PositiveBigIntegerField()
    rows = models.PositiveIntegerField()
    delimiter = models.CharField(max_length=2)
    encoding = models.CharField(max_length=20)
    schema = models.JSONField(default=list)
    roles = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset__name", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["district", "sha256"], name="unique_version_content"),
            models.UniqueConstraint(
                fields=["dataset", "number"], name="unique_dataset_version_number"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dataset.name} v{self.number}"

    def permission_scope(self) -> District:
        return self.district

    @property
    def csv_path(self) -> Path:
        return Path(settings.DATASET_DIR) / f"{self.sha256}.csv"

    @property
    def parquet_path(self) -> Path:
        return Path(settings.DATASET_DIR) / f"{self.sha256}.parquet"

    @property
    def role_set(self) -> Roles:
        return Roles.from_dict(self.roles)

    def column_names(self) -> list[str]:
        return [c["name"] for c in self.schema]

    def columns_of_kind(self, *kinds: str) -> list[str]:
        return [c["name"] for c in self.schema if c["kind"] in kinds]

    def frame(self) -> pd.DataFrame:
        """The parsed rows (a copy: callers may change it)."""
        return _read_parquet(str(self.parquet_path), self.sha256).copy()

    @property
    def outcome(self) -> Outcome | None:
        return self.role_set.outcome

    def set_roles(self, roles: Roles) -> None:
        """Mark the label, positive class, sensitive attributes... (DatasetError if they do not
        fit the data). An outcome rule's counts and excluded columns are worked out again."""
        frame = self.frame()
        check_roles(frame, roles)
        if roles.outcome is not None:
            roles.outcome = describe_outcome(frame, roles)
        self.roles = roles.to_dict()
        self.save(update_fields=["roles"])

    def change_roles(self, changes: dict[str, Any], user: Any = None) -> None:
        """Apply a change of roles from the page or the API, and audit it. `changes` holds the
        roles to change; "outcome" (when present) is a rule {name, column, op, value,
        keep_leaky} — the derived column becomes the label with positive class "yes" — or None
        to remove the rule. DatasetError (nothing saved) when anything does not fit the data."""
        before = self.role_set
        merged = {**self.roles, **{k: v for k, v in changes.items() if k != "outcome"}}
        roles = Roles.from_dict(merged)
        if "outcome" in changes:
            old = before.outcome
            if changes["outcome"] is None:
                roles.outcome = None
                if old is not None and roles.label == old.name:
                    roles.label, roles.positive = None, []
            else:
                rule = changes["outcome"]
                roles.outcome = check_outcome(
                    self.frame(),
                    Outcome(
                        name=str(rule.get("name", "")),
                        column=str(rule.get("column", "")),
                        op=str(rule.get("op", "")),
                        value=rule.get("value"),
                        keep_leaky=list(rule.get("keep_leaky") or []),
                    ),
                )
                roles.label, roles.positive = roles.outcome.name, [OUTCOME_YES]
                if roles.outcome.keep_leaky:
                    _check_kept_leaks(self.frame(), roles)
        with transaction.atomic():
            locked = DatasetVersion.objects.select_for_update().get(pk=self.pk)
            self.roles = locked.roles
            self.set_roles(roles)
            audit.record(
                action=audit.AuditRecord.Action.DATASET_ROLES,
                actor=user,
                target=self,
                before=_audited(before),
                after=_audited(self.role_set),
                reason="outcome rule changed" if "outcome" in changes else "roles changed",
            )

    def reference(self) -> dict[str, Any]:
        """What travels between workflow steps: ids and small JSON, never rows."""
        return {
            "version": self.pk,
            "dataset": self.dataset.name,
            "number": self.number,
            "sha256": self.sha256,
            "roles": self.roles,
            "rows": self.rows,
        }


def _check_kept_leaks(frame: pd.DataFrame, roles: Roles) -> None:
    """keep_leaky may name only columns that leak the outcome (anything else is kept anyway,
    and naming it is a mistake worth telling)."""
    assert roles.outcome is not None
    leaks = [leak["column"] for leak in describe_outcome(frame, roles).leaks]
    needless = [c for c in roles.outcome.keep_leaky if c not in leaks]
    if needless:
        found = f"(the leaking columns: {', '.join(leaks)})" if leaks else "(none leaks)"
        raise DatasetError(
            f"{', '.join(map(repr, needless))} does not predict {roles.outcome.name} almost "
            f"perfectly, so it stays a feature anyway {found}: remove it from keep_leaky.",
            field="outcome.keep_leaky",
        )


def _audited(roles: Roles) -> dict[str, Any]:
    """The roles as the audit trail keeps them: the rule as set, not the counts."""
    data = roles.to_dict()
    if roles.outcome is not None:
        data["outcome"] = {
            **roles.outcome.definition(),
            "rule": roles.outcome.rule,
            "excluded": [e["column"] for e in roles.outcome.excluded],
        }
    return data


@functools.lru_cache(maxsize=4)
def _read_parquet(path: str, sha256: str) -> pd.DataFrame:
    return pd.read_parquet(path)


def limits() -> Limits:
    return Limits(
        max_bytes=int(settings.DATASET_MAX_MB) * 1024 * 1024,
        min_rows=int(settings.DATASET_MIN_ROWS),
    )


def ingest(
    *,
    district: District,
    name: str,
    data: bytes,
    user: Any = None,
    roles: Roles | None = None,
    original_name: str = "",
    source: str = Dataset.Source.UPLOAD,
    description: str = "",
    attribution: str = "",
) -> tuple[DatasetVersion, bool]:
    """Store an uploaded CSV (plain or gzip-compressed) as a new version of dataset `name` (or
    find the version with the same content: a gzip file and its unpacked CSV are the same).
    Raises DatasetError, storing nothing, when the file or the roles are bad."""
    name = name.strip()
    if not name:
        raise DatasetError("The dataset needs a name: give one, e.g. 'Attendance 2025-26'.")
    if len(name) > 200 or "\x00" in name:
        raise DatasetError("The dataset name must be text of at most 200 characters.")
    original_name = original_name.replace("\x00", "")
    parsed = read_csv(data, limits())
    existing = (
        DatasetVersion.objects.filter(district=district, sha256=parsed.sha256)
        .select_related("dataset")
        .first()
    )
    if existing is not None:
        return existing, False
    if roles is not None:
        check_roles(parsed.frame, roles)
    schema = [c.to_dict() for c in infer_schema(parsed.frame)]
    folder = Path(settings.DATASET_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        with transaction.atomic():
            dataset, _ = Dataset.objects.get_or_create(
                district=district,
                name=name,
                defaults={"source": source, "description": description, "attribution": attribution},
            )
            Dataset.objects.select_for_update().filter(pk=dataset.pk).exists()
            number = (dataset.versions.aggregate(n=Max("number"))["n"] or 0) + 1
            version = DatasetVersion.objects.create(
                dataset=dataset,
                district=district,
                number=number,
                sha256=parsed.sha256,
                original_name=original_name[:300],
                size=parsed.size,
                rows=len(parsed.frame),
                delimiter=parsed.delimiter,
                encoding=parsed.encoding,
                schema=schema,
                roles=roles.to_dict() if roles else {},
                created_by=user if getattr(user, "is_authenticated", False) else None,
            )
            audit.record(
                action=audit.AuditRecord.Action.DATASET_UPLOAD,
                actor=user,
                target=version,
                after={"sha256": parsed.sha256, "rows": len(parsed.frame), "file": original_name},
                reason=f"{source} upload" if source != Dataset.Source.UPLOAD else "",
            )
            written.append(_atomic_write(version.csv_path, parsed.data))
            frame = parsed.frame.copy()
            frame.columns = [str(c) for c in frame.columns]
            written.append(_atomic_write_parquet(version.parquet_path, frame))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return version, True


GENERATED_ROLES = Roles(
    label="at_risk",
    positive=["yes"],
    sensitive=["ses", "english_learner", "disability", "sex"],
    school="school",
    grade="grade",
    time="term",
)


def store_generated(
    district: District, name: str, frame: pd.DataFrame, user: Any = None, labelled: bool = True
) -> tuple[DatasetVersion, bool]:
    """Store rows from the synthetic district generator, with their roles marked (all but the
    label when not `labelled`: rows with grades, whose outcome is defined by a rule)."""
    roles = GENERATED_ROLES
    if not labelled:
        roles = Roles.from_dict({**roles.to_dict(), "label": None, "positive": []})
    return ingest(
        district=district,
        name=name,
        data=frame.to_csv(index=False).encode(),
        user=user,
        roles=roles,
        original_name=f"{name}.csv",
        source=Dataset.Source.GENERATED,
        description="Synthetic district made by `manage.py generate_district_data`.",
    )


def _atomic_write(path: Path, data: bytes) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    return path


def _atomic_write_parquet(path: Path, frame: pd.DataFrame) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".frame-")
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


# --- references that travel between workflow steps --------------------------------------------
def load_reference(ref: dict[str, Any], pseudonym_key: bytes) -> tuple[pd.DataFrame, Roles]:
    """The rows a step's dataset reference stands for: the version, minimised, then the
    requested part of its split. Raises DatasetError when the version is gone."""
    version = DatasetVersion.objects.filter(pk=ref.get("version")).first()
    if version is None:
        raise DatasetError(
            f"Dataset version {ref.get('version')} no longer exists: pick another in the "
            "Dataset block."
        )
    roles = Roles.from_dict(ref.get("roles") or version.roles)
    frame = with_outcome(version.frame(), roles)
    if ref.get("minimise"):
        frame = apply_minimisation(frame, Minimisation(**ref["minimise"]), pseudonym_key)
    split = ref.get("split")
    if split:
        train, test = split_indices(
            frame,
            method=split["method"],
            test_share=split["test_share"],
            seed=split["seed"],
            label=roles.label,
            positive=roles.positive,
            school=roles.school,
            time=roles.time,
        )
        rows = train if split["part"] == "train" else test
        frame = frame.iloc[rows].reset_index(drop=True)
    return frame, roles
