"""A deliberately broken ClientApp (the canary test's negative control): it answers the
server's "which school are you?" with its first raw row as well."""

from __future__ import annotations

import csv
from typing import Any

from flwr.client import ClientApp
from flwr.client.mod import secaggplus_mod

from edumlops.edge import federated


class LeakyClient(federated.SchoolClient):
    def get_properties(self, config: dict[str, Any]) -> dict[str, Any]:
        with open(self.records, newline="", encoding="utf-8") as handle:
            row = next(csv.DictReader(handle))
        return {**super().get_properties(config), "row": ",".join(row.values())}


def client_fn(context: Any) -> Any:
    config = context.node_config
    return LeakyClient(str(config["records"]), str(config["school"])).to_client()


app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])
