"""The edge agent (`edumlops-edge`): a school's own server keeps serving the district's signed
models when the link to the district is slow or down, syncs when it can, and reports back.

Standard library, numpy, onnxruntime and cryptography only (plus the light parts of
edumlops.ml: signing, bundle_files, runtime, serving_core) — no Django, pandas or scikit-learn —
so it fits a small machine. The conversation with the server is docs/edge-protocol.md.

- config: node.json (registration, pinned public key), telemetry.key, state.json
- client: HTTP to the server (conditional GETs, resumable and throttled downloads)
- store: verified bundles in the cache (download → check → verify → atomic move; keep three)
- models: a bundle loaded into ONNX Runtime, its latency on this device, its drift bins
- telemetry: the encrypted SQLite queue and its exactly-once upload
- agent: the sync, report and upload loops around the model being served
- server: the local HTTP API (/predict, /healthz)
- cli: register, run, status
"""

from __future__ import annotations

__version__ = "0.1.0"
