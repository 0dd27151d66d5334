"""Bundles into the agent's cache: verification (a good bundle, one byte changed, another key, a
missing file, another version's bundle), downloads that resume with Range (206), restart when
the server ignores the range (200), finish on 416, survive a connection cut, and keep to a
bandwidth cap. The transport talks to a stand-in server on the standard library's HTTP server."""

from __future__ import annotations

import shutil
import time

import pytest

from edumlops.edge.client import Client, Unreachable
from edumlops.edge.store import BundleStore, check
from edumlops.ml import signing
from edumlops.ml.bundle_files import MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE, BundleError
from tests.edge.bundles import DistrictDouble, make_bundle, new_key


@pytest.fixture
def key():
    return new_key()


@pytest.fixture
def double(key, tmp_path):
    d = DistrictDouble(key)
    make_bundle(tmp_path / "server" / "5", key, model_version_id=5, version="5")
    d.bundles[5] = tmp_path / "server" / "5"
    d.desired = (5, 31)
    d.start()
    yield d
    d.stop()


def _listing(double):
    return double.manifest()["desired"]["files"]


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


# --- verification ------------------------------------------------------------------------------
def test_a_good_bundle_verifies_and_names_its_version(key, tmp_path):
    make_bundle(tmp_path / "b", key, model_version_id=5, version="5")
    manifest = check(tmp_path / "b", 5, key.public_key())
    assert manifest["model"]["model_version_id"] == 5


def test_one_byte_changed_in_the_model_is_refused_with_its_digest(key, tmp_path):
    make_bundle(tmp_path / "b", key, model_version_id=5)
    _flip_a_byte(tmp_path / "b" / MODEL_FILE)
    with pytest.raises(BundleError, match="model.onnx does not match its SHA-256"):
        check(tmp_path / "b", 5, key.public_key())


def test_a_bundle_signed_with_another_key_is_refused(key, tmp_path):
    make_bundle(tmp_path / "b", new_key(), model_version_id=5)
    with pytest.raises(BundleError, match="signature does not match"):
        check(tmp_path / "b", 5, key.public_key())


def test_a_manifest_re_signed_by_a_stranger_is_refused(key, tmp_path):
    make_bundle(tmp_path / "b", key, model_version_id=5)
    body = (tmp_path / "b" / MANIFEST_FILE).read_bytes()
    (tmp_path / "b" / SIGNATURE_FILE).write_text(signing.sign(new_key(), body) + "\n")
    with pytest.raises(BundleError, match="signature"):
        check(tmp_path / "b", 5, key.public_key())


@pytest.mark.parametrize("name", [MODEL_FILE, MANIFEST_FILE, SIGNATURE_FILE])
def test_a_missing_file_is_refused(key, tmp_path, name):
    make_bundle(tmp_path / "b", key, model_version_id=5)
    (tmp_path / "b" / name).unlink()
    with pytest.raises(BundleError, match=f"{name}|no {name}"):
        check(tmp_path / "b", 5, key.public_key())


def test_a_bundle_signed_for_another_version_is_refused_under_this_number(key, tmp_path):
    make_bundle(tmp_path / "b", key, model_version_id=4)
    with pytest.raises(BundleError, match="signed for model version 4, not 5"):
        check(tmp_path / "b", 5, key.public_key())


# --- fetching into the cache -------------------------------------------------------------------
def test_a_fetched_bundle_is_verified_then_moved_into_bundles(double, key, tmp_path):
    store = BundleStore(tmp_path / "cache", key.public_key())
    fetched = store.fetch(Client(double.url, double.token), 5, _listing(double))
    assert store.cached() == [5]
    assert sorted(p.name for p in store.path(5).iterdir()) == sorted(
        [MODEL_FILE, MANIFEST_FILE, SIGNATURE_FILE]
    )
    assert not any(store.downloads.iterdir())
    assert fetched.manifest["model"]["model_version_id"] == 5
    assert fetched.bytes == sum(f["size"] for f in _listing(double))


def test_a_tampered_bundle_is_deleted_from_downloads_and_never_reaches_bundles(
    double, key, tmp_path
):
    _flip_a_byte(double.bundles[5] / MODEL_FILE)
    store = BundleStore(tmp_path / "cache", key.public_key())
    with pytest.raises(BundleError, match="SHA-256"):
        store.fetch(Client(double.url, double.token), 5, _listing(double))
    assert store.cached() == []
    assert not (store.downloads / "5").exists()


def test_a_foreign_signature_is_refused_after_download(double, tmp_path):
    store = BundleStore(tmp_path / "cache", new_key().public_key())  # pinned: another key
    with pytest.raises(BundleError, match="signature"):
        store.fetch(Client(double.url, double.token), 5, _listing(double))
    assert store.cached() == [] and not (store.downloads / "5").exists()


def test_a_listing_naming_a_file_outside_the_bundle_is_refused(double, key, tmp_path):
    files = _listing(double) + [{"name": "../x", "size": 1, "sha256": "0", "url": "/x"}]
    store = BundleStore(tmp_path / "cache", key.public_key())
    with pytest.raises(BundleError, match="a bundle holds only"):
        store.fetch(Client(double.url, double.token), 5, files)


# --- resumable downloads -----------------------------------------------------------------------
def test_a_download_resumes_from_its_part_file_with_a_range(double, key, tmp_path):
    store = BundleStore(tmp_path / "cache", key.public_key())
    model = (double.bundles[5] / MODEL_FILE).read_bytes()
    part = store.downloads / "5" / f"{MODEL_FILE}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(model[:1000])
    client = Client(double.url, double.token)
    fetched = store.fetch(client, 5, _listing(double))
    assert (store.path(5) / MODEL_FILE).read_bytes() == model
    ranges = [h.get("Range") for m, p, h in double.requests if p.endswith(MODEL_FILE)]
    assert ranges == ["bytes=1000-"]
    others = sum(f["size"] for f in _listing(double) if f["name"] != MODEL_FILE)
    assert fetched.bytes == others + len(model) - 1000
    assert fetched.resumed and "resumed" in fetched.describe()


def test_a_server_that_ignores_the_range_restarts_the_file(double, key, tmp_path):
    double.ignore_range = True
    model = (double.bundles[5] / MODEL_FILE).read_bytes()
    part = tmp_path / "model.onnx.part"
    part.write_bytes(b"garbage that must not stay at the start")
    got = Client(double.url, double.token).download(
        f"/api/edge/bundles/5/{MODEL_FILE}", part, len(model)
    )
    assert got == len(model) and part.read_bytes() == model


def test_416_means_the_part_already_holds_the_whole_file(double, tmp_path):
    model = (double.bundles[5] / MODEL_FILE).read_bytes()
    part = tmp_path / "model.onnx.part"
    part.write_bytes(model)
    # size unknown to the client: it asks from the end, the server answers 416
    got = Client(double.url, double.token).download(f"/api/edge/bundles/5/{MODEL_FILE}", part)
    assert got == 0 and part.read_bytes() == model
    assert [h.get("Range") for _, _, h in double.requests] == [f"bytes={len(model)}-"]


def test_a_cut_connection_keeps_the_part_and_the_next_try_finishes_it(double, key, tmp_path):
    store = BundleStore(tmp_path / "cache", key.public_key())
    client = Client(double.url, double.token, timeout=5)
    double.cut_after = 2000
    with pytest.raises(Unreachable):
        store.fetch(client, 5, _listing(double))
    part = store.downloads / "5" / f"{MANIFEST_FILE}.part"  # the first file of the listing
    assert part.stat().st_size == 2000
    double.cut_after = None
    store.fetch(client, 5, _listing(double))
    assert store.cached() == [5] and not part.exists()
    assert any(h.get("Range") == "bytes=2000-" for _, _, h in double.requests)


def test_a_part_damaged_in_transit_is_fetched_again_from_scratch(double, key, tmp_path):
    store = BundleStore(tmp_path / "cache", key.public_key())
    model = (double.bundles[5] / MODEL_FILE).read_bytes()
    part = store.downloads / "5" / f"{MODEL_FILE}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 1000)  # the right length so far, the wrong bytes
    store.fetch(Client(double.url, double.token), 5, _listing(double))
    assert (store.path(5) / MODEL_FILE).read_bytes() == model


def test_the_bandwidth_cap_slows_the_download_down(double, tmp_path):
    model = (double.bundles[5] / MODEL_FILE).read_bytes()
    client = Client(double.url, double.token, max_kbps=len(model) / 1024 / 0.6)  # ≈0.6 s
    started = time.monotonic()
    client.download(f"/api/edge/bundles/5/{MODEL_FILE}", tmp_path / "m.part", len(model))
    assert time.monotonic() - started >= 0.45
    assert client.transferred() > len(model)  # body and headers both ways


def test_every_byte_is_counted_and_a_304_costs_almost_nothing(double):
    client = Client(double.url, double.token)
    first = client.get_json("/api/edge/manifest/")
    before = client.transferred()
    again = client.get_json("/api/edge/manifest/", etag=first.headers["ETag"])
    assert first.status == 200 and again.status == 304 and again.body == b""
    assert 0 < client.transferred() - before < 600


def test_an_existing_bundle_folder_is_replaced_whole(double, key, tmp_path):
    store = BundleStore(tmp_path / "cache", key.public_key())
    client = Client(double.url, double.token)
    store.fetch(client, 5, _listing(double))
    _flip_a_byte(store.path(5) / MODEL_FILE)
    with pytest.raises(BundleError):
        store.verify(5)
    store.fetch(client, 5, _listing(double))
    assert store.verify(5)["model"]["model_version_id"] == 5
    assert [p.name for p in store.bundles.iterdir()] == ["5"]  # no leftovers
    shutil.rmtree(store.path(5))
