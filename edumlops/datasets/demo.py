"""The demo's datasets: a generated district and the real OULAD data, with their roles marked."""

from __future__ import annotations

from edumlops.datasets.models import Dataset, DatasetVersion, ingest, store_generated
from edumlops.ml import oulad
from edumlops.ml.datasets import Roles
from edumlops.ml.synth import generate_district
from edumlops.schools.models import District

GENERATED_NAME = "Riverside students (synthetic)"
OULAD_NAME = "Open University students (OULAD)"
OULAD_ROLES = Roles(
    label="final_result",
    positive=["Fail", "Withdrawn"],
    sensitive=["imd_band", "disability", "gender", "age_band"],
    time="code_presentation",
)


def seed_datasets(district: District, rows: int = 6000) -> list[tuple[DatasetVersion, bool]]:
    """Store both demo datasets (idempotent: the same bytes find the same versions)."""
    stored = [store_generated(district, GENERATED_NAME, generate_district(rows, seed=0))]
    path = oulad.default_path()
    if path.exists():
        frame = oulad.load_student_info(path).drop(columns=["at_risk"], errors="ignore")
        stored.append(
            ingest(
                district=district,
                name=OULAD_NAME,
                data=frame.to_csv(index=False).encode(),
                roles=OULAD_ROLES,
                original_name="studentInfo.csv",
                source=Dataset.Source.OULAD,
                description=(
                    "32,593 registrations on 7 Open University modules, 2013–2014. Loaded with "
                    "the spreadsheet damage repaired (imd_band '20-Oct' is '10-20%'; missing "
                    "bands are 'unknown'). At risk = Fail or Withdrawn."
                ),
                attribution=oulad.ATTRIBUTION,
            )
        )
    return stored
