"""The ServerApp object Flower loads (the code is edumlops.ml.federated_server)."""

from flwr.serverapp import ServerApp

from edumlops.ml.federated_server import main

app = ServerApp()
app.main()(main)
