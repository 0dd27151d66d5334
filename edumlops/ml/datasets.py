"""Reading uploaded CSV files, inferring their schema, and the row/column operations the data
blocks apply (minimise, split).

Everything here works on bytes and pandas frames; storing versions is the Django side's job.
A bad file raises DatasetError with one sentence that names the problem and the fix.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import hmac
import io
import math
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

DELIMITERS = ",;\t|"
SNIFF_BYTES = 64 * 1024
ColumnKind = Literal["numeric", "categorical", "boolean", "date", "identifier", "text"]
BOOLEAN_SETS = [
    {"true", "false"},
    {"yes", "no"},
    {"y", "n"},
    {"t", "f"},
    {"0", "1"},
]
ID_NAME = re.compile(
    r"(^|[_\s-])(id|uuid|guid|name|first_?name|last_?name|surname|email|e-?mail|phone|address|"
    r"ssn|dob|birth_?date|student_?number|upn)($|[_\s-])",
    re.IGNORECASE,
)


class DatasetError(ValueError):
    """The uploaded data cannot be used; the message says why and what to do. `line` is the
    file's line (1-based) at fault, when there is one: the message then starts "line N: ".
    `field` names what is wrong: "file", or the role marked wrongly ("label", "positive"…)."""

    def __init__(self, message: str, line: int | None = None, field: str = "file") -> None:
        self.line = line
        self.field = field  # what the error is about: "file", or a role ("label", ...)
        self.message = message
        super().__init__(f"line {line}: {message}" if line is not None else message)


class DatasetTooLarge(DatasetError):
    """The file (or what a gzip file unpacks to) is over the size limit."""


GZIP_MAGIC = b"\x1f\x8b"
NOT_TEXT_FIX = 'save it as a CSV file in UTF-8 (in Excel: Save As → "CSV UTF-8") and upload that'


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 100 * 1024 * 1024
    min_rows: int = 20


@dataclass
class ParsedCSV:
    frame: pd.DataFrame
    delimiter: str
    encoding: str
    sha256: str  # of `data`: the CSV bytes (unpacked when the upload was gzip)
    size: int
    data: bytes = b""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def gunzip(data: bytes, limit: int) -> bytes:
    """The bytes a gzip file (one or more members) unpacks to, never more than `limit + 1` of
    them in memory: DatasetTooLarge past `limit`, DatasetError for a broken or cut file."""
    out = bytearray()
    rest = data
    while rest:
        unpacker = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += unpacker.decompress(rest, limit - len(out) + 1)
        except zlib.error as exc:
            raise DatasetError(
                f"The file starts like a gzip file but is not a valid one ({exc}): compress the "
                "CSV again, or upload it uncompressed."
            ) from None
        if len(out) > limit or unpacker.unconsumed_tail:
            raise DatasetTooLarge(
                f"The gzip file unpacks to more than the {_mb(limit)} limit: upload a smaller "
                "extract (fewer years or schools) or ask an administrator to raise "
                "EDUMLOPS_DATASET_MAX_MB."
            )
        if not unpacker.eof:
            raise DatasetError(
                "The gzip file is cut short (it ends before its data does): compress the CSV "
                "again and upload the whole file."
            )
        rest = unpacker.unused_data
        if rest and not rest.startswith(GZIP_MAGIC):
            if rest.strip(b"\x00"):
                raise DatasetError(
                    "The gzip file has bytes after its end that are not gzip data: compress the "
                    "CSV again, or upload it uncompressed."
                )
            break
    return bytes(out)


def _not_text(data: bytes, offset: int, codec: str, what: str) -> DatasetError:
    prefix = data[:offset].decode(codec, errors="replace")
    return DatasetError(
        f"byte {offset} is not valid {what}, and the file is not in another encoding we read "
        f"(UTF-8, UTF-16 with a byte-order mark, Windows-1252): {NOT_TEXT_FIX}.",
        line=prefix.count("\n") + 1,
    )


def decode(data: bytes) -> tuple[str, str]:
    """The text and the encoding's name: UTF-8 with or without a byte-order mark, UTF-16 with a
    byte-order mark, else Windows-1252 (spreadsheet exports). DatasetError, naming the byte and
    its line, for bytes that are none of these (and for NUL characters: binary files)."""
    if data.startswith(codecs.BOM_UTF8):
        try:
            text, encoding = data[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as exc:
            raise _not_text(
                data, exc.start + 3, "utf-8", "UTF-8 (the file starts with a UTF-8 byte-order mark)"
            ) from None
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        codec = "utf-16-le" if data.startswith(codecs.BOM_UTF16_LE) else "utf-16-be"
        try:
            text, encoding = data[2:].decode(codec), "utf-16"
        except UnicodeDecodeError as exc:
            raise _not_text(
                data,
                exc.start + 2,
                "utf-16",
                "UTF-16 (the file starts with a UTF-16 byte-order mark)",
            ) from None
    else:
        try:
            text, encoding = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError as utf8:
            try:
                text, encoding = data.decode("cp1252"), "cp1252"
            except UnicodeDecodeError:
                raise _not_text(data, utf8.start, "utf-8", "UTF-8") from None
    nul = text.find("\x00")
    if nul >= 0:
        raise DatasetError(
            "the file holds a NUL character, so it is not a text CSV file (a spreadsheet such as "
            f".xlsx, or a CSV saved as UTF-16 without a byte-order mark?): {NOT_TEXT_FIX}.",
            line=text.count("\n", 0, nul) + 1,
        )
    return text, encoding


def sniff_delimiter(text: str) -> str:
    sample = text[:SNIFF_BYTES]
    lines = [ln for ln in sample.splitlines() if ln.strip()][:50]
    if len(lines) > 1 and lines[-1] and not sample.endswith(("\n", "\r")):
        lines = lines[:-1]  # the last line of the sample may be cut in half
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except csv.Error:
        header = lines[0] if lines else ""
        counts = {d: header.count(d) for d in DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","


def _looks_like_value(name: str) -> bool:
    try:
        float(name.replace(",", "."))
        return True
    except ValueError:
        return False


def read_csv(data: bytes, limits: Limits = Limits()) -> ParsedCSV:
    """Parse an uploaded CSV (plain, or gzip-compressed: told by its first bytes), or raise
    DatasetError naming the problem, its line and the fix."""
    size = len(data)
    if size > limits.max_bytes:
        raise DatasetTooLarge(
            f"The file is {_mb(size)}, over the {_mb(limits.max_bytes)} limit: upload a smaller "
            "extract (fewer years or schools) or ask an administrator to raise "
            "EDUMLOPS_DATASET_MAX_MB."
        )
    if data.startswith(GZIP_MAGIC):
        data = gunzip(data, limits.max_bytes)
        size = len(data)
    if not data.strip():
        raise DatasetError(
            "the file is empty: export the table again with a header row and the data rows.",
            line=1,
        )
    text, encoding = decode(data)
    delimiter = sniff_delimiter(text)
    header, rows = _check_rows(text, delimiter)
    if rows < limits.min_rows:
        raise DatasetError(
            f"the file ends after {rows} data row{'s' if rows != 1 else ''}; at least "
            f"{limits.min_rows} are needed to train and check a model: upload a bigger extract.",
            line=text.count("\n") + (0 if text.endswith("\n") else 1),
        )
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            skip_blank_lines=True,
            skipinitialspace=True,
            low_memory=False,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        found = re.search(r"(?:line|row) (\d+)", str(exc))
        raise DatasetError(
            f"the file cannot be read as CSV ({str(exc)[:200]}): check the quotes and separators "
            "around this line.",
            line=int(found[1]) if found else 1,
        ) from None
    frame.columns = header
    if delimiter == ";":
        frame = _comma_decimals(frame)
    return ParsedCSV(frame, delimiter, encoding, sha256_of(data), size, data)


def _check_rows(text: str, delimiter: str) -> tuple[list[str], int]:
    """The header and the number of data rows; DatasetError with the line of the first bad
    record (a wrong number of values, a quote never closed, a value too long)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    rows = 0
    while True:
        start = reader.line_num + 1  # the line this record starts on
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise DatasetError(
                    f"a value is longer than {csv.field_size_limit()} characters: usually a quote "
                    '(") that is never closed, so the rest of the file runs into one value. Close '
                    "the quote or remove it.",
                    line=start,
                ) from None
            raise DatasetError(f"the line is not valid CSV ({exc}).", line=start) from None
        if not any(cell.strip() for cell in record):
            continue  # blank lines
        spans = reader.line_num > start
        if spans and _unclosed_quote(text, start, delimiter):
            raise DatasetError(
                'a quote (") opens a value here and is never closed, so the rest of the file '
                f"(to line {reader.line_num}) runs into one value: close the quote or remove it.",
                line=start,
            )
        if header is None:
            header = [h.strip() for h in record]
            _check_header(header, start)
            continue
        if len(record) != len(header):
            raise DatasetError(
                f"the row has {len(record)} values but the header has {len(header)} columns: fix "
                f"that line (a missing or extra '{_show(delimiter)}', or a value with the "
                "separator inside it that needs quotes"
                + (", or a quote that is never closed" if spans else "")
                + ").",
                line=start,
            )
        rows += 1
    if header is None:
        raise DatasetError(
            "the file holds only blank lines: export the table again with a header row and the "
            "data rows.",
            line=1,
        )
    return header, rows


def _unclosed_quote(text: str, line: int, delimiter: str) -> bool:
    """Whether the record starting on `line` runs to the end of the file inside quotes."""
    at = 0
    for _ in range(line - 1):
        at = text.find("\n", at) + 1
        if at == 0:
            return False
    rest = csv.reader(io.StringIO(text[at:], newline=""), delimiter=delimiter, strict=True)
    try:
        for _ in rest:
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _show(delimiter: str) -> str:
    return {"\t": "tab", ",": ",", ";": ";", "|": "|"}[delimiter]


def _check_header(header: list[str], line: int = 1) -> None:
    empty = [i + 1 for i, h in enumerate(header) if not h]
    if empty and len(header) > 1:
        raise DatasetError(
            f"column {empty[0]} of the header has no name: give every column a name in the "
            "first line.",
            line=line,
        )
    if all(_looks_like_value(h) for h in header):
        raise DatasetError(
            "the first line holds numbers, not column names: the file has no header. Add a "
            "first line with a name for each column.",
            line=line,
        )
    seen: dict[str, int] = {}
    for h in header:
        seen[h] = seen.get(h, 0) + 1
    dupes = [h for h, n in seen.items() if n > 1]
    if dupes:
        names = ", ".join(f"'{d}'" for d in dupes)
        raise DatasetError(
            f"duplicate column name{'s' if len(dupes) > 1 else ''} {names}: every column needs "
            "its own name; rename or remove the repeated one.",
            line=line,
        )


def _comma_decimals(frame: pd.DataFrame) -> pd.DataFrame:
    """';'-separated exports usually write 3,5 for 3.5: convert such columns to numbers."""
    for col in frame.columns:
        series = frame[col]
        if series.dtype != object:
            continue
        values = series.dropna().astype(str)
        if values.empty or not values.str.fullmatch(r"-?\d+(,\d+)?").all():
            continue
        frame[col] = pd.to_numeric(
            series.astype(str).str.replace(",", ".", regex=False), errors="coerce"
        )
    return frame


# --- schema -----------------------------------------------------------------------------------
@dataclass
class ColumnInfo:
    name: str
    kind: ColumnKind
    missing: int
    distinct: int
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finite(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def infer_column(name: str, series: pd.Series) -> ColumnInfo:
    rows = len(series)
    present = series.dropna()
    if present.dtype == object:
        present = present[present.astype(str).str.strip() != ""]
    missing = rows - len(present)
    distinct = int(present.nunique())
    lowered = {str(v).strip().lower() for v in present.unique()[:3]} if distinct <= 2 else set()
    if distinct == 2 and any(lowered <= s for s in BOOLEAN_SETS):
        counts = present.astype(str).value_counts()
        return ColumnInfo(name, "boolean", missing, distinct, {"top": _top(counts)})
    if pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present):
        if (
            pd.api.types.is_integer_dtype(present)
            and len(present) >= 20
            and ID_NAME.search(name)
            and (distinct >= 0.95 * len(present) or _many_repeated_ids(distinct, len(present)))
        ):
            return ColumnInfo(
                name,
                "identifier",
                missing,
                distinct,
                {"distinct_share": round(distinct / max(len(present), 1), 4)},
            )
        return ColumnInfo(name, "numeric", missing, distinct, _numeric_stats(present))
    if pd.api.types.is_bool_dtype(present):
        counts = present.astype(str).value_counts()
        return ColumnInfo(name, "boolean", missing, distinct, {"top": _top(counts)})
    text = present.astype(str)
    if len(text) and _is_date(text):
        parsed = pd.to_datetime(text, errors="coerce", format="mixed")
        return ColumnInfo(
            name,
            "date",
            missing,
            distinct,
            {
                "min": parsed.min().date().isoformat(),
                "max": parsed.max().date().isoformat(),
                "top": _top(text.value_counts()),
            },
        )
    share = distinct / max(len(text), 1)
    mean_len = float(text.str.len().mean()) if len(text) else 0.0
    mean_words = float(text.str.count(r"\s+").mean() + 1) if len(text) else 0.0
    if mean_words >= 4 and mean_len >= 20 and share > 0.2:
        return ColumnInfo(
            name,
            "text",
            missing,
            distinct,
            {"mean_length": round(mean_len, 1), "example": text.iloc[0][:80]},
        )
    named_id = ID_NAME.search(name) and (share >= 0.5 or _many_repeated_ids(distinct, len(text)))
    if len(text) >= 20 and (share >= 0.95 or named_id):
        return ColumnInfo(
            name, "identifier", missing, distinct, {"distinct_share": round(share, 4)}
        )
    return ColumnInfo(name, "categorical", missing, distinct, {"top": _top(text.value_counts())})


def _many_repeated_ids(distinct: int, rows: int) -> bool:
    """An id column of a table with several rows per person (e.g. one per term): many distinct
    values, each repeated a few times."""
    return distinct >= 100 and distinct >= 0.1 * rows


def _is_date(text: pd.Series) -> bool:
    sample = text.iloc[:500]
    if not sample.str.contains(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}", regex=True).mean() >= 0.95:
        return False
    parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() >= 0.95)


def _top(counts: pd.Series, n: int = 12) -> list[dict[str, Any]]:
    top = [{"value": str(k), "count": int(v)} for k, v in counts.iloc[:n].items()]
    rest = int(counts.iloc[n:].sum())
    if rest:
        top.append({"value": "(other)", "count": rest})
    return top


def _numeric_stats(values: pd.Series, bins: int = 12) -> dict[str, Any]:
    arr = values.to_numpy(dtype=float)
    arr = arr[np.isfinite(arr)]
    if not len(arr):
        return {}
    counts, edges = np.histogram(arr, bins=bins)
    return {
        "min": _finite(arr.min()),
        "max": _finite(arr.max()),
        "mean": _finite(arr.mean()),
        "std": _finite(arr.std()),
        "histogram": {"counts": counts.tolist(), "edges": [float(e) for e in edges]},
    }


def infer_schema(frame: pd.DataFrame) -> list[ColumnInfo]:
    return [infer_column(str(c), frame[c]) for c in frame.columns]


# --- roles: which column is what --------------------------------------------------------------
@dataclass
class Roles:
    label: str | None = None
    positive: list[str] = field(default_factory=list)
    sensitive: list[str] = field(default_factory=list)
    school: str | None = None
    grade: str | None = None
    time: str | None = None
    outcome: Outcome | None = None  # a label derived from a rule (label == outcome.name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def not_features(self) -> list[str]:
        """Columns a model never learns from because of the outcome (none without one)."""
        return self.outcome.not_features if self.outcome else []

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Roles:
        data = data or {}
        return cls(
            label=data.get("label") or None,
            positive=[str(v) for v in data.get("positive") or []],
            sensitive=list(data.get("sensitive") or []),
            school=data.get("school") or None,
            grade=data.get("grade") or None,
            time=data.get("time") or None,
            outcome=Outcome.from_dict(data.get("outcome")),
        )


def label_values(frame: pd.DataFrame, label: str) -> list[str]:
    return sorted({str(v) for v in frame[label].dropna().unique()})


def check_roles(frame: pd.DataFrame, roles: Roles) -> None:
    """Raise DatasetError when the marked roles do not fit the data (the outcome's rule, when
    there is one, is applied first: its name is then a column like any other)."""
    if roles.outcome is not None:
        if roles.outcome.column not in frame.columns:
            raise DatasetError(
                f"The outcome's column '{roles.outcome.column}' is not in the file.",
                field="outcome.column",
            )
        frame = with_outcome(frame, roles)
    columns = [str(c) for c in frame.columns]

    def need(col: str | None, what: str, field: str) -> None:
        if col is not None and col not in columns:
            raise DatasetError(
                f"The {what} column '{col}' is not in the file (columns: {', '.join(columns)}).",
                field=field,
            )

    need(roles.label, "label", "label")
    for col in roles.sensitive:
        need(col, "sensitive", "sensitive")
    need(roles.school, "school", "school")
    need(roles.grade, "grade", "grade")
    need(roles.time, "date/term", "time")
    if roles.label is None:
        if roles.positive:
            raise DatasetError(
                "A positive class was given without a label column: mark the label.",
                field="positive",
            )
        return
    if roles.label in roles.sensitive:
        raise DatasetError(
            f"'{roles.label}' is marked both as the label and as a sensitive attribute: "
            "a column can only be one of them.",
            field="sensitive",
        )
    values = label_values(frame, roles.label)
    if len(values) < 2:
        only = values[0] if values else "nothing"
        raise DatasetError(
            f"The label '{roles.label}' has one class only ({only}): a model needs examples of "
            "both outcomes. Pick another label column or upload data with both outcomes.",
            field="label",
        )
    if not roles.positive:
        raise DatasetError(
            f"Say which value(s) of '{roles.label}' mean the outcome to predict (the positive "
            f"class), e.g. one of: {', '.join(values[:10])}.",
            field="positive",
        )
    unknown = [p for p in roles.positive if p not in values]
    if unknown:
        raise DatasetError(
            f"The positive class {', '.join(unknown)} does not occur in '{roles.label}' "
            f"(values: {', '.join(values[:20])}).",
            field="positive",
        )
    if set(roles.positive) >= set(values):
        raise DatasetError(
            f"Every value of '{roles.label}' is marked positive, so there is nothing to tell "
            "apart: leave at least one value as the negative class.",
            field="positive",
        )


# --- minimisation -----------------------------------------------------------------------------
@dataclass
class Minimisation:
    keep: list[str]
    hashed: list[str]
    dropped: list[dict[str, str]]  # {"column", "why"}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_minimisation(
    schema: Sequence[ColumnInfo],
    roles: Roles,
    *,
    keep: Iterable[str] = (),
    identifiers: Literal["drop", "hash"] = "drop",
) -> Minimisation:
    """Which columns stay: the roles' columns and the features asked for (all non-personal
    ones when `keep` is empty); identifier-like and free-text columns are dropped or hashed."""
    wanted = list(keep)
    names = [c.name for c in schema]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise DatasetError(
            f"Column(s) {', '.join(unknown)} are not in the dataset (columns: {', '.join(names)})."
        )
    needed = {c for c in [roles.label, roles.school, roles.grade, roles.time] if c}
    needed |= set(roles.sensitive)
    result = Minimisation(keep=[], hashed=[], dropped=[])
    for col in schema:
        if col.kind in ("identifier", "text"):
            what = "identifier-like" if col.kind == "identifier" else "free text"
            if col.name in needed or (identifiers == "hash" and col.kind == "identifier"):
                result.hashed.append(col.name)
                result.keep.append(col.name)
            else:
                result.dropped.append(
                    {"column": col.name, "why": f"{what}: may identify a student"}
                )
            continue
        if col.name in needed or not wanted or col.name in wanted:
            result.keep.append(col.name)
        else:
            result.dropped.append({"column": col.name, "why": "not needed by the model"})
    if roles.outcome is not None and roles.outcome.name not in result.keep:
        result.keep.append(roles.outcome.name)  # derived before minimising: not in the schema
    return result


def keyed_hash(values: pd.Series, key: bytes) -> pd.Series:
    """HMAC-SHA256 pseudonyms (16 hex characters): stable for one key, not reversible."""

    def one(v: Any) -> Any:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return v
        return hmac.new(key, str(v).encode(), hashlib.sha256).hexdigest()[:16]

    uniques = values.dropna().unique()
    mapping = {u: one(u) for u in uniques}
    return values.map(mapping)


def apply_minimisation(frame: pd.DataFrame, plan: Minimisation, key: bytes) -> pd.DataFrame:
    out = frame[plan.keep].copy()
    for col in plan.hashed:
        out[col] = keyed_hash(out[col], key)
    return out


# --- splitting --------------------------------------------------------------------------------
SplitMethod = Literal["stratified", "school", "time"]


def split_indices(
    frame: pd.DataFrame,
    *,
    method: SplitMethod,
    test_share: float,
    seed: int,
    label: str | None,
    positive: Sequence[str] = (),
    school: str | None = None,
    time: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of the training and test parts."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    positions = np.arange(len(frame))
    if method == "stratified":
        strata = None
        if label:
            strata = frame[label].astype(str).isin(list(positive)).to_numpy()
        train, test = train_test_split(
            positions, test_size=test_share, random_state=seed, stratify=strata
        )
        return np.sort(train), np.sort(test)
    if method == "school":
        if not school:
            raise DatasetError(
                "Splitting by school needs the dataset's school column: mark it on the "
                "dataset page."
            )
        groups = frame[school].astype(str).to_numpy()
        if len(set(groups)) < 2:
            raise DatasetError(
                "Splitting by school needs at least two schools in the data; this dataset has "
                "one. Use a stratified split instead."
            )
        splitter = GroupShuffleSplit(n_splits=1, test_size=test_share, random_state=seed)
        train, test = next(splitter.split(positions, groups=groups))
        return np.sort(train), np.sort(test)
    if not time:
        raise DatasetError(
            "Splitting by time needs the dataset's date/term column: mark it on the dataset page."
        )
    periods = frame[time].astype(str)
    ordered = sorted(periods.dropna().unique())
    if len(ordered) < 2:
        raise DatasetError(
            f"Splitting by time needs at least two periods in '{time}'; this dataset has one."
        )
    n_test = max(1, round(len(ordered) * test_share))
    n_test = min(n_test, len(ordered) - 1)
    test_periods = set(ordered[-n_test:])
    is_test = periods.isin(test_periods).to_numpy()
    return positions[~is_test], positions[is_test]


# --- outcomes derived from a rule -------------------------------------------------------------
NUMERIC_OPS = ("<", "<=", ">", ">=", "==", "between")
OUTCOME_OPS = (*NUMERIC_OPS, "in")
OUTCOME_YES, OUTCOME_NO = "yes", "no"
# A column that alone tells the outcome apart this well (ROC AUC of the column by itself, or
# 1 - AUC) is almost certainly recorded with or after the outcome: it is left out of features.
LEAK_AUC = 0.95
OUTCOME_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_ -]{0,62}$")
_OP_WORDS = {"<": "<", "<=": "≤", ">": ">", ">=": "≥", "==": "="}


@dataclass
class Outcome:
    """ "at risk = final grade < 10": a yes/no label derived from a rule on one column. The rule
    is what the user set; `excluded`, `leaks` and `counts` are what the data said when it was
    set (recomputed whenever the roles change)."""

    name: str
    column: str
    op: str
    value: Any  # a number; [lo, hi] for "between"; a list of values for "in"
    keep_leaky: list[str] = field(default_factory=list)
    excluded: list[dict[str, Any]] = field(default_factory=list)  # {"column", "why", "auc"?}
    leaks: list[dict[str, Any]] = field(default_factory=list)  # {"column", "auc", "kept"}
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def rule(self) -> str:
        """The rule in words, e.g. "G3 < 10", "G3 between 8 and 12", "Mjob is teacher or health"."""
        if self.op == "between":
            lo, hi = self.value
            return f"{self.column} between {_num(lo)} and {_num(hi)}"
        if self.op == "in":
            return f"{self.column} is {' or '.join(map(str, self.value))}"
        return f"{self.column} {_OP_WORDS[self.op]} {_num(self.value)}"

    def definition(self) -> dict[str, Any]:
        """What the user set (what the audit records and the API echoes)."""
        return {
            "name": self.name,
            "column": self.column,
            "op": self.op,
            "value": self.value,
            "keep_leaky": list(self.keep_leaky),
        }

    @property
    def not_features(self) -> list[str]:
        """Columns a model may not learn from: the derived label, its source, the leaks."""
        return list(dict.fromkeys([self.name, self.column, *(e["column"] for e in self.excluded)]))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Outcome | None:
        if not data:
            return None
        return cls(
            name=str(data["name"]),
            column=str(data["column"]),
            op=str(data["op"]),
            value=data["value"],
            keep_leaky=[str(c) for c in data.get("keep_leaky") or []],
            excluded=list(data.get("excluded") or []),
            leaks=list(data.get("leaks") or []),
            counts=dict(data.get("counts") or {}),
        )


def _num(x: Any) -> str:
    return f"{float(x):g}"


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DatasetError(f"{what} must be a number, e.g. 10.", field="outcome.value")
    try:
        number = float(value)
    except ValueError:
        raise DatasetError(
            f"{what} must be a number, not {str(value)[:40]!r}: e.g. 10.", field="outcome.value"
        ) from None
    if not math.isfinite(number):
        raise DatasetError(f"{what} must be a finite number, e.g. 10.", field="outcome.value")
    return number


def check_outcome(frame: pd.DataFrame, outcome: Outcome) -> Outcome:
    """The rule with its value normalised (numbers as floats, categories as text), or
    DatasetError naming the field ("outcome.name", "outcome.column", "outcome.op",
    "outcome.value", "outcome.keep_leaky") and the fix."""
    columns = [str(c) for c in frame.columns]
    name = outcome.name.strip()
    if not OUTCOME_NAME.match(name):
        raise DatasetError(
            "Name the outcome with a letter followed by letters, digits, '_', '-' or spaces "
            "(at most 63 characters), e.g. at_risk.",
            field="outcome.name",
        )
    if name in columns:
        raise DatasetError(
            f"The file already has a column '{name}': name the outcome something else, e.g. "
            f"{name}_derived.",
            field="outcome.name",
        )
    if outcome.column not in columns:
        raise DatasetError(
            f"There is no column '{outcome.column}' (columns: {', '.join(columns)}).",
            field="outcome.column",
        )
    kind = infer_column(outcome.column, frame[outcome.column]).kind
    if outcome.op not in OUTCOME_OPS:
        raise DatasetError(
            f"Unknown rule '{outcome.op}': use one of {', '.join(OUTCOME_OPS)}.",
            field="outcome.op",
        )
    value: Any
    if outcome.op in NUMERIC_OPS:
        if kind != "numeric":
            raise DatasetError(
                f"'{outcome.column}' holds {kind} values, so '{outcome.op}' does not apply: "
                "use 'in' with the values that mean the outcome, or pick a numeric column.",
                field="outcome.op",
            )
        if outcome.op == "between":
            pair = outcome.value
            if not isinstance(pair, list) or len(pair) != 2:
                raise DatasetError(
                    "'between' takes two numbers, the lowest and the highest: e.g. [8, 12].",
                    field="outcome.value",
                )
            lo = _number(pair[0], "The lower bound")
            hi = _number(pair[1], "The upper bound")
            if lo > hi:
                raise DatasetError(
                    f"The lower bound {lo:g} is above the upper bound {hi:g}: swap them.",
                    field="outcome.value",
                )
            value = [lo, hi]
        else:
            if isinstance(outcome.value, list):
                raise DatasetError(
                    f"'{outcome.op}' takes one number, e.g. 10 (use 'between' for a range).",
                    field="outcome.value",
                )
            value = _number(outcome.value, "The value")
    else:
        if kind not in ("categorical", "boolean"):
            raise DatasetError(
                f"'{outcome.column}' holds {kind} values: 'in' is for categories; for numbers "
                "use <, <=, >, >=, == or between.",
                field="outcome.op",
            )
        wanted = outcome.value if isinstance(outcome.value, list) else None
        if not wanted or not all(isinstance(v, (str, int, float)) for v in wanted):
            raise DatasetError(
                f"'in' takes a list of the values of '{outcome.column}' that mean the outcome, "
                'e.g. ["yes"].',
                field="outcome.value",
            )
        wanted = list(dict.fromkeys(str(v) for v in wanted))
        present = label_values(frame, outcome.column)
        unknown = [v for v in wanted if v not in present]
        if unknown:
            raise DatasetError(
                f"{', '.join(map(repr, unknown))} does not occur in '{outcome.column}' (values: "
                f"{', '.join(present[:20])}).",
                field="outcome.value",
            )
        value = wanted
    keep = list(dict.fromkeys(str(c) for c in outcome.keep_leaky))
    unknown = [c for c in keep if c not in columns]
    if unknown:
        raise DatasetError(
            f"keep_leaky names {', '.join(map(repr, unknown))}, not a column of the file "
            f"(columns: {', '.join(columns)}).",
            field="outcome.keep_leaky",
        )
    if outcome.column in keep:
        raise DatasetError(
            f"'{outcome.column}' is what the outcome is made from, so it can never be a feature: "
            "remove it from keep_leaky.",
            field="outcome.keep_leaky",
        )
    checked = Outcome(name=name, column=outcome.column, op=outcome.op, value=value, keep_leaky=keep)
    derived = derive_outcome(frame, checked)
    classes = set(derived.dropna())
    if len(classes) < 2:
        every = "every" if classes == {OUTCOME_YES} else "no"
        raise DatasetError(
            f"The rule {checked.rule} holds for {every} row with a value, so the outcome has one "
            "class only: change the value so that some rows are positive and some are not.",
            field="outcome.value",
        )
    return checked


def derive_outcome(frame: pd.DataFrame, outcome: Outcome) -> pd.Series:
    """ "yes" where the rule holds, "no" where it does not, missing where the source column is."""
    source = frame[outcome.column]
    if outcome.op == "in":
        holds = source.astype(str).isin([str(v) for v in outcome.value])
    else:
        x = pd.to_numeric(source, errors="coerce")
        op, v = outcome.op, outcome.value
        if op == "between":
            holds = (x >= float(v[0])) & (x <= float(v[1]))
        else:
            v = float(v)
            holds = {
                "<": x < v,
                "<=": x <= v,
                ">": x > v,
                ">=": x >= v,
                "==": x == v,
            }[op]
        source = x
    out = pd.Series(np.where(holds, OUTCOME_YES, OUTCOME_NO), index=frame.index, dtype=object)
    return out.where(source.notna(), None)


def with_outcome(frame: pd.DataFrame, roles: Roles) -> pd.DataFrame:
    """The rows with the derived outcome as a column, when the roles define one. Rows whose
    source value is missing have no outcome and are left out."""
    outcome = roles.outcome
    if outcome is None or outcome.column not in frame.columns:
        return frame
    frame = frame.copy()
    frame[outcome.name] = derive_outcome(frame, outcome)
    return frame[frame[outcome.name].notna()].reset_index(drop=True)


def single_feature_auc(values: pd.Series, y: np.ndarray) -> float | None:
    """ROC AUC of one column by itself (numbers as they are; categories by their positive share
    among the other rows — out of fold, so a column of many rare values does not look like a
    leak by merely memorising rows); None when it cannot be measured."""
    from sklearn.metrics import roc_auc_score

    if len(set(y.tolist())) < 2:
        return None
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        x = pd.to_numeric(values, errors="coerce").astype(float)
        if x.notna().sum() == 0 or x.nunique() < 2:
            return None
        score = x.fillna(x.median()).to_numpy()
    else:
        text = values.astype(str).where(values.notna(), "(missing)").to_numpy()
        folds = np.arange(len(text)) % 5
        score = np.full(len(text), float(np.mean(y)))
        for fold in range(5):
            rest = folds != fold
            share = pd.Series(y[rest]).groupby(text[rest]).mean()
            here = pd.Series(text[~rest]).map(share).to_numpy(dtype=float)
            score[~rest] = np.where(np.isnan(here), float(np.mean(y[rest])), here)
    return float(roc_auc_score(y, score))


def find_leaks(
    frame: pd.DataFrame, y: np.ndarray, columns: Iterable[str], threshold: float = LEAK_AUC
) -> list[dict[str, Any]]:
    """Columns that alone predict `y` almost perfectly: AUC above `threshold` or below
    1 - `threshold`."""
    leaks = []
    for col in columns:
        auc = single_feature_auc(frame[col], y)
        if auc is not None and (auc > threshold or auc < 1 - threshold):
            leaks.append({"column": col, "auc": round(auc, 4)})
    return leaks


def describe_outcome(frame: pd.DataFrame, roles: Roles) -> Outcome:
    """The roles' outcome with what the data says about it: counts overall and per sensitive
    group, the columns left out of features (its source, and leaks unless kept) and why."""
    from edumlops.ml.training import infer_features

    outcome = roles.outcome
    assert outcome is not None
    derived = derive_outcome(frame, outcome)
    known = derived.notna()
    y = (derived[known] == OUTCOME_YES).to_numpy(dtype=int)
    rows = frame[known]
    by_group: dict[str, list[dict[str, Any]]] = {}
    for attribute in roles.sensitive:
        if attribute not in frame.columns:
            continue
        groups = rows[attribute].astype(str).where(rows[attribute].notna(), "(missing)")
        table = pd.Series(y, index=rows.index).groupby(groups).agg(["size", "sum"])
        by_group[attribute] = [
            {"group": str(g), "rows": int(r["size"]), "positive": int(r["sum"])}
            for g, r in table.iterrows()
        ]
    counts = {
        "rows": int(known.sum()),
        "positive": int(y.sum()),
        "negative": int(len(y) - y.sum()),
        "missing": int((~known).sum()),
        "by_group": by_group,
    }
    not_candidates = {outcome.column, outcome.name, roles.label, roles.time, roles.school}
    not_candidates |= set(roles.sensitive)
    candidates = infer_features(rows, exclude=not_candidates).columns
    leaks = find_leaks(rows, y, candidates)
    for leak in leaks:
        leak["kept"] = leak["column"] in outcome.keep_leaky
    excluded: list[dict[str, Any]] = [
        {
            "column": outcome.column,
            "why": f"the outcome {outcome.name} is made from it ({outcome.rule})",
        }
    ]
    for leak in leaks:
        if not leak["kept"]:
            excluded.append(
                {
                    "column": leak["column"],
                    "why": f"it alone predicts {outcome.name} almost perfectly (AUC "
                    f"{leak['auc']:.3f}): probably recorded with or after the outcome",
                    "auc": leak["auc"],
                }
            )
    return Outcome(
        name=outcome.name,
        column=outcome.column,
        op=outcome.op,
        value=outcome.value,
        keep_leaky=list(outcome.keep_leaky),
        excluded=excluded,
        leaks=leaks,
        counts=counts,
    )
