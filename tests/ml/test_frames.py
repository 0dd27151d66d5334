"""Rows stored once and read back by their content hash (edumlops.ml.frames)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from edumlops.ml import frames
from edumlops.ml.synth import generate_district

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def rows() -> pd.DataFrame:
    return generate_district(500, seed=0).iloc[50:450]  # a part: its index does not start at 0


def test_rows_come_back_as_written_named_by_the_hash_of_the_file(rows, tmp_path):
    sha256 = frames.write(rows, tmp_path)
    path = tmp_path / f"{sha256}.parquet"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    pd.testing.assert_frame_equal(frames.read(tmp_path, sha256), rows.reset_index(drop=True))


def test_writing_the_same_rows_again_gives_the_same_file_and_leaves_no_temporary_one(
    rows, tmp_path
):
    first = frames.write(rows, tmp_path)
    assert frames.write(rows.copy(), tmp_path) == first
    assert [p.name for p in tmp_path.iterdir()] == [f"{first}.parquet"]


def test_other_rows_get_another_hash(rows, tmp_path):
    assert frames.write(rows, tmp_path) != frames.write(rows.head(10), tmp_path)


def test_the_folder_is_made_when_missing(rows, tmp_path):
    sha256 = frames.write(rows, tmp_path / "var" / "frames")
    assert (tmp_path / "var" / "frames" / f"{sha256}.parquet").exists()


def test_missing_rows_raise_frame_error(rows, tmp_path):
    sha256 = frames.write(rows, tmp_path)
    (tmp_path / f"{sha256}.parquet").unlink()
    with pytest.raises(frames.FrameError, match="are missing"):
        frames.read(tmp_path, sha256)


def test_changed_rows_are_refused(rows, tmp_path):
    sha256 = frames.write(rows, tmp_path)
    other = frames.write(rows.head(10), tmp_path)
    # a valid Parquet file, but not the one the hash names
    (tmp_path / f"{other}.parquet").replace(tmp_path / f"{sha256}.parquet")
    with pytest.raises(frames.FrameError, match="do not match their hash"):
        frames.read(tmp_path, sha256)


def test_a_truncated_file_is_refused(rows, tmp_path):
    sha256 = frames.write(rows, tmp_path)
    path = tmp_path / f"{sha256}.parquet"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(frames.FrameError, match="do not match their hash"):
        frames.read(tmp_path, sha256)


@pytest.mark.parametrize("name", ["", "../../etc/passwd", "ABC", None, "0" * 63])
def test_a_name_that_is_not_a_hash_is_refused(tmp_path, name):
    with pytest.raises(frames.FrameError, match="is not the SHA-256"):
        frames.read(tmp_path, name)


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    bad = pd.DataFrame({"mixed": [1, "two", 3.0]})  # pyarrow cannot store mixed objects
    with pytest.raises(frames.FrameError, match="cannot be stored"):
        frames.write(bad, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_made_raises_frame_error(rows, tmp_path):
    (tmp_path / "var").write_text("a file where the folder should be")
    with pytest.raises(frames.FrameError, match="cannot be stored"):
        frames.write(rows, tmp_path / "var" / "frames")


def test_frames_imports_no_django():
    code = "import json, sys\nimport edumlops.ml.frames\nprint(json.dumps('django' in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) is False


def test_prune_deletes_only_frames_unused_for_longer_than_the_retention(tmp_path):
    import os
    import time

    old = frames.write(pd.DataFrame({"a": [1, 2]}), tmp_path)
    kept = frames.write(pd.DataFrame({"a": [3, 4]}), tmp_path)
    week_ago = time.time() - 8 * 86400
    os.utime(frames.path_for(tmp_path, old), (week_ago, week_ago))
    os.utime(frames.path_for(tmp_path, kept), (week_ago, week_ago))
    frames.read(tmp_path, kept)  # a read counts as use
    assert frames.prune(tmp_path, 7 * 86400) == 1
    assert not frames.path_for(tmp_path, old).exists()
    assert frames.read(tmp_path, kept)["a"].tolist() == [3, 4]
    assert frames.prune(tmp_path / "none", 1) == 0
