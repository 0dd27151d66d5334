"""The manifest of a signed model bundle (`manifest.json`), defined once: the export block builds
it, `onnx_bundle.write_bundle` adds the file digests and the signing key's id, and central
serving, the edge agent and the tests read it back with `Manifest.from_dict`.

Standard library only, so the edge agent (onnxruntime, numpy and cryptography, no more) reads
manifests with this same code. The JSON keeps the keys bundles have always had: an optional field
that is None is left out (older bundles lack `model_version_id`, `explain` and the export's
report fields), and keys this version does not know are kept as they were, so a manifest read and
written again says the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


class ManifestError(ValueError):
    """A manifest lacks a field or holds a value of the wrong kind; the message names it."""


def _object(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ManifestError(f"manifest.json: {where} must be an object, got {_kind(data)}.")
    return data


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _text(data: dict[str, Any], key: str, where: str, *, required: bool) -> str | None:
    if key not in data or data[key] is None:
        if required:
            raise ManifestError(f"manifest.json lacks {where}{key}.")
        return None
    value = data[key]
    if not isinstance(value, str):
        raise ManifestError(f"manifest.json: {where}{key} must be text, got {_kind(value)}.")
    return value


def _names(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"manifest.json: features.{key} must be a list of column names.")
    return list(value)


@dataclass(frozen=True)
class ModelInfo:
    """Which registered model version the bundle holds."""

    name: str
    version: str
    algorithm: str | None = None
    model_version_id: int | None = None  # the registry's id (bundles before it lack it)
    run_id: str | None = None  # the MLflow run that trained it

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }

    @classmethod
    def from_dict(cls, data: Any) -> ModelInfo:
        data = _object(data, "model")
        version_id = data.get("model_version_id")
        if version_id is not None and (
            isinstance(version_id, bool) or not isinstance(version_id, int)
        ):
            raise ManifestError(
                f"manifest.json: model.model_version_id must be a whole number, got {version_id!r}."
            )
        return cls(
            name=_text(data, "name", "model.", required=True) or "",
            version=_text(data, "version", "model.", required=True) or "",
            algorithm=_text(data, "algorithm", "model.", required=False),
            model_version_id=version_id,
            run_id=_text(data, "run_id", "model.", required=False),
        )


# top-level fields that are objects, left out when None
_OBJECTS = ("feature_types", "metrics", "drift_reference", "explain", "files")
_TEXTS = ("dataset_sha256", "bias_outcome", "created_at", "signing_key_id")


@dataclass(frozen=True)
class Manifest:
    model: ModelInfo
    numeric: list[str]
    categorical: list[str]
    thresholds: dict[str, float] = field(default_factory=dict)  # "decision", maybe high/medium
    feature_types: dict[str, str] | None = None  # column → "float" or "string"
    dataset_sha256: str | None = None
    metrics: dict[str, Any] | None = None  # the validation metrics at export
    bias_outcome: str | None = None
    parity_max_abs_diff: float | None = None  # largest ONNX vs scikit-learn difference
    drift_reference: dict[str, Any] | None = None  # drift.FeatureReference.to_dict per feature
    created_at: str | None = None
    explain: dict[str, Any] | None = None  # logistic regression: serving_core.linear_terms
    # written by onnx_bundle.write_bundle
    format: int | None = None
    files: dict[str, str] | None = None  # file name → SHA-256
    signing_key_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **self.extra,
            "model": self.model.to_dict(),
            "features": {"numeric": list(self.numeric), "categorical": list(self.categorical)},
        }
        if self.thresholds:
            out["thresholds"] = dict(self.thresholds)
        for name in (*_OBJECTS, *_TEXTS, "parity_max_abs_diff", "format"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        data = _object(data, "the manifest")
        if "model" not in data:
            raise ManifestError("manifest.json lacks model.")
        if "features" not in data:
            raise ManifestError("manifest.json lacks features.")
        features = _object(data["features"], "features")
        thresholds = _object(data.get("thresholds") or {}, "thresholds")
        for key, value in thresholds.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ManifestError(
                    f"manifest.json: thresholds.{key} must be a number, got {value!r}."
                )
        found: dict[str, Any] = {}
        for name in _OBJECTS:
            if data.get(name) is not None:
                found[name] = _object(data[name], name)
        for name in _TEXTS:
            found[name] = _text(data, name, "", required=False)
        for name, kind in (("parity_max_abs_diff", (int, float)), ("format", (int,))):
            value = data.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
                raise ManifestError(f"manifest.json: {name} must be a number, got {value!r}.")
            found[name] = value
        known = {f.name for f in fields(cls)} | {"features"}
        return cls(
            model=ModelInfo.from_dict(data["model"]),
            numeric=_names(features, "numeric"),
            categorical=_names(features, "categorical"),
            thresholds=dict(thresholds),
            extra={k: v for k, v in data.items() if k not in known},
            **found,
        )
