"""The Open University Learning Analytics Dataset (OULAD), `studentInfo.csv`: loading it with the
damage of its spreadsheet past repaired.

- `imd_band` '10-20%' appears as '20-Oct' (a spreadsheet read it as a date): put back.
- 1,111 rows have no `imd_band`: 'unknown', so that they form a visible group rather than
  vanishing from the fairness report.
- `at_risk` = 'yes' where `final_result` is Fail or Withdrawn.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

ATTRIBUTION = (
    "Kuzilek J., Hlosta M., Zdrahal Z. Open University Learning Analytics dataset. Scientific "
    "Data 4, 170171 (2017), doi:10.1038/sdata.2017.171. Licensed CC BY 4.0."
)
AT_RISK = ("Fail", "Withdrawn")
COLUMNS = (
    "code_module",
    "code_presentation",
    "id_student",
    "gender",
    "region",
    "highest_education",
    "imd_band",
    "age_band",
    "num_of_prev_attempts",
    "studied_credits",
    "disability",
    "final_result",
)
MANGLED_BANDS = {"20-Oct": "10-20%", "10-20": "10-20%"}


def default_path() -> Path:
    """The copy shipped with the project (data/oulad/studentInfo.csv at the repository root)."""
    return Path(__file__).resolve().parents[2] / "data" / "oulad" / "studentInfo.csv"


def repair_student_info(frame: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"This is not OULAD studentInfo.csv: it lacks {', '.join(missing)}. Use the file "
            "from the OULAD download (see data/oulad/README.md)."
        )
    out = frame.copy()
    band = out["imd_band"].astype("string").str.strip()
    out["imd_band"] = band.replace(MANGLED_BANDS).fillna("unknown").replace("", "unknown")
    out["imd_band"] = out["imd_band"].astype(object)
    out["at_risk"] = out["final_result"].isin(AT_RISK).map({True: "yes", False: "no"})
    return out


def load_student_info(path: Path | None = None) -> pd.DataFrame:
    path = Path(path) if path else default_path()
    if not path.exists():
        raise FileNotFoundError(
            f"OULAD studentInfo.csv is not at {path}: see data/oulad/README.md."
        )
    return repair_student_info(pd.read_csv(path, dtype={"imd_band": "string"}))


def repaired_csv_bytes(path: Path | None = None) -> bytes:
    buffer = io.StringIO()
    load_student_info(path).to_csv(buffer, index=False)
    return buffer.getvalue().encode()
