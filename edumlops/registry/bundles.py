"""The server's local copy of each model version's signed bundle (`var/edge-bundles/<id>/`):
what edge nodes download (edumlops.fleet) and what central serving loads
(edumlops.deployments.serving), so a bundle is fetched from MLflow once per version.

Filled once per version from the model's MLflow artifacts (into a temporary folder beside it,
then renamed, so a half copy never appears) and kept as stored: it is not verified here — central
serving verifies it against this server's key before loading it, and an edge agent verifies
every bundle against the district's public key and refuses (and reports) one that does not
match. A marker file says which MLflow run the copy came from, so a copy left from another
database (same id, other model) is replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from django.conf import settings

from edumlops.ml import tracking
from edumlops.ml.bundle_files import BUNDLE_FILES
from edumlops.registry.models import mlflow_ready

ORIGIN = ".origin.json"


class BundleUnavailable(RuntimeError):
    """This version has no bundle, or it cannot be fetched from MLflow now."""


def root() -> Path:
    return Path(settings.VAR_DIR) / "edge-bundles"


def _origin(model: Any) -> dict[str, str]:
    return {
        "name": model.name,
        "version": str(model.version),
        "run_id": model.run_id,
        "artifact_path": (model.bundle or {}).get("artifact_path", "bundle"),
    }


def _current(folder: Path, model: Any) -> bool:
    try:
        same = json.loads((folder / ORIGIN).read_text()) == _origin(model)
    except (OSError, ValueError):
        return False
    return same and all((folder / name).is_file() for name in BUNDLE_FILES)


def bundle_dir(model: Any) -> Path:
    """The folder holding this version's manifest.json, manifest.sig and model.onnx."""
    if not (model.bundle or {}).get("manifest"):
        raise BundleUnavailable(f"{model} has no signed ONNX bundle: export it first.")
    target = root() / str(model.pk)
    if _current(target, model):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    origin = _origin(model)
    try:
        mlflow_ready()
        folder = Path(tracking.download(model.run_id, origin["artifact_path"]))
    except Exception as exc:  # MLflow raises many kinds; the caller answers 503 with the reason
        raise BundleUnavailable(
            f"The bundle of {model} cannot be fetched from the model store: {exc}"
        ) from exc
    tmp = Path(tempfile.mkdtemp(prefix=f".fill-{model.pk}-", dir=target.parent))
    try:
        for name in BUNDLE_FILES:
            if not (folder / name).is_file():
                raise BundleUnavailable(f"The bundle of {model} has no {name}: export it again.")
            shutil.copyfile(folder / name, tmp / name)
        (tmp / ORIGIN).write_text(json.dumps(origin))
        if target.exists():  # a stale copy (another model under this id): move it away first
            stale = target.with_name(f".stale-{model.pk}-{os.getpid()}-{threading.get_ident()}")
            try:
                os.replace(target, stale)
                shutil.rmtree(stale, ignore_errors=True)
            except OSError:
                pass
        try:
            os.replace(tmp, target)
        except OSError:
            if not _current(target, model):  # not a parallel fill that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if folder.parent.name.startswith("edumlops-artifact-"):
            shutil.rmtree(folder.parent, ignore_errors=True)
    return target
