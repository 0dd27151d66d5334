"""The edge agent needs only onnxruntime, numpy and cryptography: install exactly what
Dockerfile.edge installs into a fresh virtualenv (packages from PyPI, the project with
--no-deps, as the image does) and serve a signed bundle from there."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import venv

from edumlops.ml import signing
from tests.conftest import ROOT
from tests.edge.bundles import make_bundle, new_key, request_rows

DOCKERFILE = ROOT / "Dockerfile.edge"


def _image_requirements() -> list[str]:
    text = DOCKERFILE.read_text()
    line = next(x for x in text.splitlines() if x.startswith("RUN pip install") and "numpy" in x)
    return re.findall(r'"([^"]+)"', line)


def test_the_image_installs_the_three_packages_with_the_projects_lower_bounds():
    required = _image_requirements()
    assert sorted(r.split(">=")[0] for r in required) == ["cryptography", "numpy", "onnxruntime"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in required:
        assert requirement in project, f"{requirement} is not pyproject.toml's bound"
    assert "edumlops-edge" in (ROOT / "pyproject.toml").read_text()


def test_a_fresh_venv_with_only_those_packages_serves_a_bundle(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *_image_requirements()], check=True, timeout=600)
    # the image copies pyproject.toml, README.md and edumlops/, then installs without deps
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "edumlops", src / "edumlops", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run([*pip, "--no-deps", str(src)], check=True, timeout=600)
    installed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {p["name"].lower() for p in json.loads(installed.stdout)}
    assert not names & {"django", "pandas", "scikit-learn", "mlflow", "celery", "scipy"}

    version = subprocess.run(
        [str(env_dir / "bin" / "edumlops-edge"), "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and "edumlops-edge" in version.stdout + version.stderr

    key = new_key()
    bundle = tmp_path / "bundle"
    make_bundle(bundle, key)
    script = f"""
import json, sys
from edumlops.ml import bundle_files, signing
from edumlops.ml.runtime import OrtModel
from edumlops.ml.serving_core import ServingModel, predict
key = signing.load_public_key({signing.public_key_pem(key.public_key())!r})
manifest = bundle_files.verify_bundle({str(bundle)!r}, key)
onnx = OrtModel(open({str(bundle / "model.onnx")!r}, "rb").read())
model = ServingModel.from_manifest(manifest, onnx)
answers, _ = predict(model, json.loads(sys.stdin.read()))
import edumlops.edge.agent, edumlops.edge.cli, edumlops.edge.server
from edumlops.edge.models import EdgeOrtModel
categories = EdgeOrtModel(open({str(bundle / "model.onnx")!r}, "rb").read()).categories
assert "onnx" not in sys.modules and categories, categories  # read off the graph's bytes
print(json.dumps(answers))
"""
    result = subprocess.run(
        [str(python), "-c", script],
        input=json.dumps(request_rows(3)),
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repo: only what is installed in the venv
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert len(answers) == 3 and all(0 <= a["probability"] <= 1 for a in answers)
    assert all(len(a["top_features"]) == 3 for a in answers)
    assert sys.version_info >= (3, 11)
