"""Edge fleet fixtures: real model versions with signed bundles (tests/deployments), the
server's bundle cache under this test's tmp folder, and nodes registered through tokens.create."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from edumlops.fleet import tokens
from tests.deployments.conftest import fresh_cache, make_model, two_models  # noqa: F401
from tests.workflows.conftest import broker_url, worker  # noqa: F401


@pytest.fixture(autouse=True)
def bundle_cache(settings, tmp_path):
    """The server's bundle copies go under this test's tmp folder."""
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR / "edge-bundles"


@pytest.fixture
def register(district_admin) -> Callable[..., tuple]:
    """Register a node; returns (node, token, an API client that calls as that node)."""

    def make(school, name: str = "rhs-server-1") -> tuple:
        node, key = tokens.create(school, name, district_admin)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        return node, key, client

    return make


def as_user(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client
