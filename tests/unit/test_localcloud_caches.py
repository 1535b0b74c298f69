"""A local cloud starts its functions cold: caches in the layer from an earlier cloud of the process go."""

from __future__ import annotations

import pytest
from swarmwarden import aws
from swarmwarden.api import routes

from localcloud.cloud import LocalCloud


@pytest.mark.usefixtures("mocked_aws")
def test_every_cache_in_the_layer_is_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "CLUSTER_NAME": "demo",
        "TOKEN_PARAMETER_PREFIX": "/swarmwarden/demo/tokens",
        "TABLE_NAME": "table",
        "IDEMPOTENCY_TABLE_NAME": "idempotency",
    }.items():
        monkeypatch.setenv(name, value)
    # The API keeps its adapters in the layer (swarmwarden.api.routes), not in its function's module.
    routes.api()
    routes._idempotency_store("scale")
    aws.dynamodb()
    LocalCloud._reset_library_caches()
    for cached in (routes.api, routes._idempotency_store, aws._client):
        assert cached.cache_info().currsize == 0, cached
