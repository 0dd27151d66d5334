"""The district's Flower ServerApp for federated training (run by the SuperLink in its own
process; see edumlops.ml.federated for the run as a whole and edumlops/ml/flower_app/ for the
Flower App that packages it).

Every training-style round goes through Flower's SecAggPlusWorkflow with a LegacyContext, so the
strategy (FedAvg / FedProx, optionally wrapped in DifferentialPrivacyClientSideFixedClipping)
only ever sees the sum of the schools' masked vectors.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType
from flwr.common import (
    EvaluateIns,
    GetPropertiesIns,
    ndarrays_to_parameters,
)
from flwr.common.constant import MessageTypeLegacy
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import SimpleClientManager
from flwr.server.compat.app_utils import start_update_client_manager_thread
from flwr.server.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    FedAvg,
    FedProx,
    Strategy,
)
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.serverapp import Grid

from edumlops.ml import federated_protocol as proto
from edumlops.ml.federated import (
    CONFIG_FILE,
    PROGRESS_FILE,
    RESULT_FILE,
    FederatedConfig,
    FederatedError,
    FederatedResult,
    dp_summary,
)

STATS_QUANTIZATION = 2**26  # 64 schools × 2^26 < 2^32 (SecAgg+'s modulus)
MAX_SCHOOLS = 64


class SchoolClientManager(SimpleClientManager):
    """Flower's client manager restricted to the SuperNodes of the run's schools (one node per
    school); sampling never blocks: too few schools gives an empty sample."""

    def __init__(self) -> None:
        super().__init__()
        self.eligible: dict[int, str] = {}  # node id -> school
        self.last_sample: list[str] = []

    def _eligible_cids(self) -> list[str]:
        return [cid for cid, p in self.clients.items() if p.node_id in self.eligible]

    def num_available(self) -> int:
        return len(self._eligible_cids())

    def sample(self, num_clients: int, min_num_clients: int | None = None, criterion: Any = None):
        cids = self._eligible_cids()
        if len(cids) < max(num_clients, min_num_clients or 0):
            self.last_sample = []
            return []
        picked = sorted(random.sample(cids, num_clients))
        self.last_sample = sorted(self.eligible[self.clients[c].node_id] for c in picked)
        return [self.clients[c] for c in picked]


class RecordingStrategy(Strategy):
    """Passes everything to the inner strategy and remembers, per round, who took part."""

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner
        self.aggregated: dict[int, dict[str, Any]] = {}

    def initialize_parameters(self, client_manager):
        return self.inner.initialize_parameters(client_manager)

    def configure_fit(self, server_round, parameters, client_manager):
        return self.inner.configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(self, server_round, results, failures):
        params, metrics = self.inner.aggregate_fit(server_round, results, failures)
        if params is not None:
            rows = sum(r.num_examples for _, r in results)
            losses = [
                (r.num_examples, float(r.metrics[proto.METRIC_TRAIN_LOSS]))
                for _, r in results
                if proto.METRIC_TRAIN_LOSS in r.metrics
            ]
            self.aggregated[server_round] = {
                "schools": sorted(str(r.metrics.get(proto.METRIC_SCHOOL, "?")) for _, r in results),
                "rows": int(rows),
                "train_loss": (sum(n * v for n, v in losses) / max(sum(n for n, _ in losses), 1))
                if losses
                else None,
                "failures": len(failures),
            }
        return params, metrics

    def configure_evaluate(self, server_round, parameters, client_manager):
        return []

    def aggregate_evaluate(self, server_round, results, failures):
        return None, {}

    def evaluate(self, server_round, parameters):
        return None


class Run:
    def __init__(self, grid: Grid, context: Context, workdir: Path) -> None:
        self.grid = grid
        self.workdir = workdir
        self.config = FederatedConfig.from_dict(json.loads((workdir / CONFIG_FILE).read_text()))
        self.config.validate()
        self.spec = self.config.encoding_spec()
        self.manager = SchoolClientManager()
        self.context = LegacyContext(
            context=context,
            config=ServerConfig(num_rounds=self.config.rounds),
            client_manager=self.manager,
        )
        self.schools_of: dict[int, str] = {}
        self.unresponsive: set[int] = set()  # nodes that missed a liveness probe this run
        self.started = time.monotonic()
        self.round_number = 0

    # -- schools ----------------------------------------------------------------------------
    def discover(self) -> None:
        """Ask new SuperNodes which school they are; keep one node per listed school."""
        node_ids = set(self.grid.get_node_ids())
        unknown = [n for n in node_ids if n not in self.schools_of]
        if unknown:
            content = compat.getpropertiesins_to_recorddict(GetPropertiesIns({}))
            messages = [
                Message(
                    content=content,
                    dst_node_id=n,
                    message_type=MessageTypeLegacy.GET_PROPERTIES,
                    group_id="schools",
                )
                for n in unknown
            ]
            for reply in self.grid.send_and_receive(messages, timeout=15):
                if reply.has_error():
                    continue
                props = compat.recorddict_to_getpropertiesres(reply.content).properties
                self.schools_of[reply.metadata.src_node_id] = str(
                    props.get(proto.PROPERTY_SCHOOL, "")
                )
        allowed = set(self.config.schools)
        eligible: dict[int, str] = {}
        taken: set[str] = set()
        for node in sorted(node_ids - self.unresponsive):
            school = self.schools_of.get(node, "")
            if school in allowed and school not in taken:
                eligible[node] = school
                taken.add(school)
        self.manager.eligible = eligible

    def probe(self) -> None:
        """Ask every eligible node again; those that do not answer in time are skipped for the
        rest of the run (Flower's SecAgg+ cannot finish a round in which a sampled node dropped
        out before sharing its keys, so a round is retried without them)."""
        nodes = list(self.manager.eligible)
        content = compat.getpropertiesins_to_recorddict(GetPropertiesIns({}))
        messages = [
            Message(
                content=content,
                dst_node_id=n,
                message_type=MessageTypeLegacy.GET_PROPERTIES,
                group_id="probe",
            )
            for n in nodes
        ]
        replies = self.grid.send_and_receive(messages, timeout=min(self.config.round_timeout, 15))
        answered = {r.metadata.src_node_id for r in replies if not r.has_error()}
        self.unresponsive |= set(nodes) - answered

    def wait_for_schools(self, what: str) -> None:
        deadline = time.monotonic() + self.config.join_timeout
        while True:
            self.manager.num_available()  # lets Flower's thread register new nodes
            self.discover()
            online = sorted(self.manager.eligible.values())
            if len(online) >= self.config.min_schools:
                return
            if time.monotonic() > deadline:
                raise FederatedError(
                    f"{what}: only {len(online)} of the listed schools "
                    f"({', '.join(online) or 'none'}) were online within "
                    f"{self.config.join_timeout:.0f} s, and each round needs at least "
                    f"{self.config.min_schools}. Start the school servers' federated nodes "
                    "(`edumlops-edge federated`), or lower the minimum schools per round."
                )
            time.sleep(1.0)

    # -- rounds -----------------------------------------------------------------------------
    def fit_config(self, phase: str, transform: proto.Transform | None) -> dict[str, Any]:
        config: dict[str, Any] = {
            proto.KEY_PHASE: phase,
            proto.KEY_SPEC: proto.dumps(self.spec.to_dict()),
            proto.KEY_FAMILY: self.config.family,
            proto.KEY_EPOCHS: self.config.local_epochs,
            proto.KEY_LEARNING_RATE: self.config.learning_rate,
            proto.KEY_SEED: self.config.seed,
            proto.KEY_ROUND: self.round_number,
        }
        if transform is not None:
            config[proto.KEY_TRANSFORM] = proto.dumps(transform.to_dict())
        return config

    def base_strategy(self, phase: str, transform: proto.Transform | None, fraction: float):
        kwargs: dict[str, Any] = dict(
            fraction_fit=fraction,
            fraction_evaluate=0.0,
            min_fit_clients=self.config.min_schools,
            min_available_clients=self.config.min_schools,
            on_fit_config_fn=lambda _round: self.fit_config(phase, transform),
            accept_failures=True,
        )
        if phase == proto.PHASE_TRAIN and self.config.strategy == "fedprox":
            return FedProx(proximal_mu=self.config.proximal_mu, **kwargs)
        return FedAvg(**kwargs)

    def secure_round(
        self,
        strategy: Strategy,
        parameters: list[np.ndarray],
        *,
        clipping_range: float,
        quantization_range: int,
        label: str,
    ) -> tuple[list[np.ndarray], dict[str, Any]]:
        """One round through SecAgg+; returns the aggregate and who took part, or raises. A round
        that SecAgg+ could not finish is tried once more without the schools that stopped
        answering."""
        try:
            return self._secure_round(
                strategy,
                parameters,
                clipping_range=clipping_range,
                quantization_range=quantization_range,
                label=label,
            )
        except FederatedError:
            before = set(self.manager.eligible)
            self.probe()
            self.discover()
            if set(self.manager.eligible) == before:
                raise
            self.round_number -= 1
            return self._secure_round(
                strategy,
                parameters,
                clipping_range=clipping_range,
                quantization_range=quantization_range,
                label=label,
            )

    def _secure_round(
        self,
        strategy: Strategy,
        parameters: list[np.ndarray],
        *,
        clipping_range: float,
        quantization_range: int,
        label: str,
    ) -> tuple[list[np.ndarray], dict[str, Any]]:
        self.wait_for_schools(label)
        self.round_number += 1
        recorder = RecordingStrategy(strategy)
        self.context.strategy = recorder
        self.context.state.array_records[MAIN_PARAMS_RECORD] = ArrayRecord(
            [np.asarray(p, dtype=np.float64) for p in parameters]
        )
        cfg = self.context.state.config_records.get(MAIN_CONFIGS_RECORD) or ConfigRecord()
        cfg[Key.CURRENT_ROUND] = self.round_number
        cfg[Key.START_TIME] = time.time()
        self.context.state.config_records[MAIN_CONFIGS_RECORD] = cfg
        workflow = SecAggPlusWorkflow(
            num_shares=self.config.secagg_shares,
            reconstruction_threshold=self.config.secagg_threshold,
            max_weight=float(self.config.max_school_rows),
            clipping_range=clipping_range,
            quantization_range=quantization_range,
            timeout=self.config.round_timeout,
        )
        started = time.monotonic()
        workflow(self.grid, self.context)
        sampled = list(self.manager.last_sample)
        summary = recorder.aggregated.get(self.round_number)
        if summary is None:
            raise FederatedError(
                f"{label} failed: secure aggregation could not finish with the schools that "
                f"answered (sampled: {', '.join(sampled) or 'none'}). Too many schools dropped "
                "out for SecAgg+ to remove the masks, or too few were online. Check the school "
                "servers' connections and start the run again; no model was made."
            )
        record = self.context.state.array_records[MAIN_PARAMS_RECORD]
        aggregate = [a.numpy() for a in record.values()]
        summary = dict(summary)
        summary["sampled"] = sampled
        summary["dropped"] = sorted(set(sampled) - set(summary["schools"]))
        summary["seconds"] = round(time.monotonic() - started, 3)
        return aggregate, summary

    def statistics(self) -> proto.Transform:
        numeric = len(self.spec.numeric)
        if not numeric:
            return proto.Transform([], [])
        aggregate, _ = self.secure_round(
            self.base_strategy(proto.PHASE_STATS, None, 1.0),
            [np.zeros(numeric)] * 3,
            clipping_range=self.config.numeric_bound,
            quantization_range=STATS_QUANTIZATION,
            label="The statistics round",
        )
        present, total, spread = aggregate
        means = np.where(present > 0, total / np.maximum(present, 1e-12), 0.0)
        scales = np.where(present > 0, spread / np.maximum(present, 1e-12), 1.0)
        scales = np.where(scales > 1e-6, scales, 1.0)
        return proto.Transform([float(m) for m in means], [float(s) for s in scales])

    def train(self, transform: proto.Transform) -> tuple[np.ndarray, float, list[dict[str, Any]]]:
        width = self.spec.width
        params = [np.zeros(width), np.zeros(1)]
        rounds: list[dict[str, Any]] = []
        sampled = max(int(len(self.manager.eligible) * self.config.fraction), 1)
        sampled = max(sampled, self.config.min_schools)
        for number in range(1, self.config.rounds + 1):
            strategy: Strategy = self.base_strategy(
                proto.PHASE_TRAIN, transform, self.config.fraction
            )
            if self.config.dp:
                strategy = DifferentialPrivacyClientSideFixedClipping(
                    strategy,
                    noise_multiplier=float(self.config.dp_noise_multiplier or 0),
                    clipping_norm=float(self.config.dp_clipping_norm or 0),
                    num_sampled_clients=sampled,
                )
            params, summary = self.secure_round(
                strategy,
                params,
                clipping_range=self.config.secagg_clipping_range,
                quantization_range=2**22,
                label=f"Round {number}",
            )
            summary = {
                "round": number,
                **summary,
                "coef": [float(v) for v in params[0]],
                "intercept": float(params[1][0]),
            }
            rounds.append(summary)
            self.progress({"event": "round", **summary})
        return params[0], float(params[1][0]), rounds

    def evaluate(self, coef: np.ndarray, intercept: float, transform: proto.Transform):
        self.wait_for_schools("The final evaluation")
        config = self.fit_config("evaluate", transform)
        ins = EvaluateIns(ndarrays_to_parameters([coef, np.array([intercept])]), config)
        content = compat.evaluateins_to_recorddict(ins, True)
        messages = [
            Message(
                content=content,
                dst_node_id=node,
                message_type=MessageType.EVALUATE,
                group_id="evaluate",
            )
            for node in self.manager.eligible
        ]
        overall = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
        groups: dict[str, dict[str, dict[str, int]]] = {}
        schools, rows, loss_sum = [], 0, 0.0
        for reply in self.grid.send_and_receive(messages, timeout=self.config.round_timeout):
            if reply.has_error() or not reply.has_content():
                continue
            res = compat.recorddict_to_evaluateres(reply.content)
            counts = json.loads(str(res.metrics[proto.METRIC_COUNTS]))
            schools.append(str(res.metrics.get(proto.METRIC_SCHOOL, "?")))
            rows += res.num_examples
            loss_sum += res.loss * res.num_examples
            for key, value in counts["overall"].items():
                overall[key] += int(value)
            for attr, by_group in counts["groups"].items():
                for group, cell in by_group.items():
                    slot = groups.setdefault(attr, {}).setdefault(
                        group, {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
                    )
                    for key, value in cell.items():
                        slot[key] += int(value)
        if not schools:
            raise FederatedError(
                "No school answered the final evaluation: check the school servers' "
                "connections and start the run again; no model was made."
            )
        total = sum(overall.values())
        evaluation = {
            "schools": sorted(schools),
            "rows": rows,
            "loss": loss_sum / max(rows, 1),
            "counts": overall,
            "accuracy": (overall["tp"] + overall["tn"]) / total if total else None,
        }
        return evaluation, groups

    # -- output -----------------------------------------------------------------------------
    def progress(self, event: dict[str, Any]) -> None:
        with (self.workdir / PROGRESS_FILE).open("a") as handle:
            handle.write(json.dumps(event) + "\n")

    def write(self, data: dict[str, Any]) -> None:
        tmp = self.workdir / (RESULT_FILE + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.workdir / RESULT_FILE)

    def run(self) -> FederatedResult:
        random.seed(self.config.seed)
        if len(self.config.schools) > MAX_SCHOOLS:
            raise FederatedError(f"A run takes at most {MAX_SCHOOLS} schools.")
        transform = self.statistics()
        coef, intercept, rounds = self.train(transform)
        evaluation, groups = self.evaluate(coef, intercept, transform)
        took_part = sorted({s for r in rounds for s in r["schools"]})
        return FederatedResult(
            numeric=list(self.spec.numeric),
            categorical=dict(self.spec.categorical),
            coef=[float(v) for v in coef],
            intercept=float(intercept),
            means=list(transform.means),
            scales=list(transform.scales),
            rounds=rounds,
            evaluation=evaluation,
            group_counts=groups,
            dp=dp_summary(self.config, len(rounds)),
            secagg={
                "shares": self.config.secagg_shares,
                "threshold": self.config.secagg_threshold,
                "clipping_range": self.config.secagg_clipping_range,
                "workflow": "flwr SecAggPlusWorkflow",
            },
            schools=took_part,
            seconds=round(time.monotonic() - self.started, 3),
        )


def main(grid: Grid, context: Context) -> None:
    """The ServerApp's main: run, then write the result (or the reason it failed)."""
    workdir = Path(str(context.run_config["workdir"]))
    try:
        run = Run(grid, context, workdir)
    except Exception as exc:
        (workdir / RESULT_FILE).write_text(json.dumps({"error": str(exc)}))
        raise
    _thread, stop, registered = start_update_client_manager_thread(grid, run.manager)
    registered.wait()
    try:
        result = run.run()
    except FederatedError as exc:
        run.write({"error": str(exc)})
        raise
    except Exception as exc:
        run.write({"error": f"The federated run failed on the district server: {exc}"})
        raise
    finally:
        stop.set()
    run.write(result.to_dict())
