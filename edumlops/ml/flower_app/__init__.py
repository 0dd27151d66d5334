"""The Flower App (`flwr run edumlops/ml/flower_app`) of EduMLOps' federated training: its
pyproject names the ServerApp (edumlops.ml.flower_app.server_app) and the schools' ClientApp
(edumlops.edge.federated). The code lives in edumlops; the FAB carries only these files."""
