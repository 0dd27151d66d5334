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


# --- assessments as answer logs for knowledge tracing --------------------------------------------

ASSESSMENT_COLUMNS = ("id_assessment", "id_student", "date_submitted", "is_banked", "score")
ASSESSMENTS_COLUMNS = ("id_assessment", "code_module", "code_presentation", "assessment_type")
PASS_MARK = 40  # the OU's pass mark for an assessment


def default_assessment_paths() -> tuple[Path, Path]:
    """The copies shipped with the project: data/oulad/studentAssessment.csv and
    data/oulad/assessments.csv."""
    folder = default_path().parent
    return folder / "studentAssessment.csv", folder / "assessments.csv"


def load_oulad_assessments(
    student_assessment: Path | None = None,
    assessments: Path | None = None,
    *,
    pass_mark: float = PASS_MARK,
    keep_banked: bool = False,
) -> pd.DataFrame:
    """OULAD's scored assessments as an answer log for knowledge tracing: one row per
    submitted assessment with `student` (id_student), `skill` (the module and its assessment
    type, e.g. 'AAA TMA'), `item` (id_assessment), `presentation`, `date_submitted`, `score`,
    `correct` (1 when score >= `pass_mark`) and `order` (0, 1, ... per student, by
    presentation, then day submitted, then id_assessment; days count from each presentation's
    start, so presentations come first).

    Dropped, with their counts in `frame.attrs["dropped"]`: rows without a score, and banked
    rows (`is_banked` = 1: a result carried over from an earlier presentation of the module,
    not a new answer; most have their original row in that presentation) unless
    `keep_banked`.
    """
    defaults = default_assessment_paths()
    sa = _read_oulad(Path(student_assessment or defaults[0]), ASSESSMENT_COLUMNS)
    info = _read_oulad(Path(assessments or defaults[1]), ASSESSMENTS_COLUMNS)
    rows = len(sa)
    score = pd.to_numeric(sa["score"], errors="coerce")
    no_score = score.isna()
    banked = (sa["is_banked"] == 1) & ~no_score & (not keep_banked)
    sa = sa.assign(score=score)[~no_score & ~banked]
    joined = sa.merge(info, on="id_assessment", how="left", validate="many_to_one")
    unknown = int(joined["code_module"].isna().sum())
    if unknown:
        raise ValueError(
            f"{unknown} assessment row(s) name an id_assessment that assessments.csv lacks: use "
            "the two files from the same OULAD download."
        )
    out = pd.DataFrame(
        {
            "student": joined["id_student"].astype(str),
            "skill": joined["code_module"] + " " + joined["assessment_type"],
            "item": joined["id_assessment"].astype(str),
            "presentation": joined["code_presentation"],
            "date_submitted": joined["date_submitted"],
            "score": joined["score"],
            "correct": (joined["score"] >= pass_mark).astype(int),
            "id": joined["id_assessment"],
        }
    )
    out = out.sort_values(["student", "presentation", "date_submitted", "id"], kind="stable")
    out["order"] = out.groupby("student").cumcount()
    out = out.drop(columns="id").reset_index(drop=True)
    out.attrs["dropped"] = {
        "rows_read": rows,
        "without_score": int(no_score.sum()),
        "banked": int(banked.sum()),
    }
    return out


def _read_oulad(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"OULAD {path.name} is not at {path}: see data/oulad/README.md.")
    frame = pd.read_csv(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path.name} is not the OULAD file expected here: it lacks {', '.join(missing)}. "
            "Use studentAssessment.csv and assessments.csv from the OULAD download (see "
            "data/oulad/README.md)."
        )
    return frame
