"""The ray engine: every model's tails as a Ray Serve deployment, across nodes.

The gRPC front end (protocol, streams, deadlines, admission, Status, metrics, health)
stays this server's; it decodes and checks each frame as always, then hands the
decoded :class:`~splitedge.models.types.TailInput` to the model's deployment by
handle. Per served model there is one Serve application (``[engine] app_prefix`` +
the served name) holding one deployment, :class:`TailReplica`:

- each replica builds the model once (as the local server does) and batches inside
  itself with ``@serve.batch`` (``[batching] max_batch_size`` and
  ``max_queue_delay_ms``), grouping a batch's frames by branch, so one deployment
  serves every branch of its model; a failed batch runs again frame by frame, so one
  bad frame fails alone; a frame whose deadline passed before its batch formed is
  answered DEADLINE_EXCEEDED uncomputed;
- ``num_cpus`` / ``num_gpus`` per replica, and ``min_replicas`` .. ``max_replicas``
  with Serve's autoscaler aiming at ``target_ongoing_requests`` per replica.

Truth across replicas: every replica reports its waiting and running frames and its
tail runs (batch size, start, end) to one named actor, :class:`LoadBoard`, a few
times a second; the front end reads it (and the deployments' running replica counts
from ``serve.status()``) in the background, so Status, the MQTT load and the metrics
cover every replica, also those that other front ends feed.

Faults: a frame whose replica dies (or cannot be reached) is sent again, at most
``[engine] retries`` times and only while its deadline leaves time; after that it is
answered UNAVAILABLE (the device falls back), never lost.

``ray_address`` "" starts a local Ray instance (``local_num_cpus``); ``auto`` or
``ray://HOST:PORT`` joins a running cluster (docs/ray.md). With ``deploy = false`` the
front end only attaches to applications a KubeRay ``RayService`` deployed from
:func:`build_app`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import ray
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from splitedge.edge.batcher import Admission, BatchObserver, BatchResult, RoomWaiting
from splitedge.edge.config import (
    BatchingConfig,
    ConfigError,
    EngineConfig,
    ModelConfig,
    parse_model_spec,
)
from splitedge.edge.engine import FifoGate
from splitedge.edge.errors import (
    DeadlineExceeded,
    InternalError,
    InvalidArgument,
    RequestError,
    ResourceExhausted,
    Unavailable,
)
from splitedge.models.split_errors import InputError
from splitedge.models.types import Prediction, TailInput
from splitedge.proto.codec import CodecLimits
from splitedge.proto.status import StatusCode

__all__ = ["LOAD_BOARD", "LoadBoard", "RayEngine", "TailReplica", "build_app"]

log = logging.getLogger(__name__)

LOAD_BOARD = "splitedge-load-board"
_REPORT_S = 0.2  # how often a replica reports its load
_POLL_S = 0.25  # how often the front end reads the board
_REPLICA_POLL_S = 1.0  # how often it asks Serve for replica counts
_STALE_S = 3.0  # a replica silent this long is gone (killed, scaled down)
_RETRY_PAUSE_S = 0.05
# Exceptions that mean "the replica is gone or unreachable", not "the tail failed".
_REPLICA_LOST = (RayActorError, ActorDiedError, ActorUnavailableError)


# ---------------------------------------------------------------- the load board


@ray.remote(num_cpus=0)
class LoadBoard:
    """Where every replica posts its load; front ends read it (one per namespace)."""

    def __init__(self, keep_runs: int = 8192) -> None:
        self._replicas: dict[str, tuple[float, str, dict, dict]] = {}
        self._runs: collections.deque[tuple] = collections.deque(maxlen=keep_runs)
        self._seq = 0

    def report(
        self,
        replica_id: str,
        model: str,
        waiting: Mapping[str, int],
        running: Mapping[str, int],
        runs: Sequence[tuple[str, int, float, float]],
    ) -> None:
        """``runs``: (branch, batch size, start, end) in wall-clock seconds."""
        self._replicas[replica_id] = (time.time(), model, dict(waiting), dict(running))
        for branch, size, start, end in runs:
            self._seq += 1
            self._runs.append((self._seq, model, branch, size, start, end))

    def leave(self, replica_id: str) -> None:
        self._replicas.pop(replica_id, None)

    def snapshot(self, since: int) -> tuple[int, list[tuple], dict[str, tuple]]:
        """(last run number, runs after ``since``, live replicas: id -> (model, waiting,
        running))."""
        now = time.time()
        for rid in [r for r, v in self._replicas.items() if now - v[0] > _STALE_S]:
            del self._replicas[rid]
        runs = [r for r in self._runs if r[0] > since] if since < self._seq else []
        live = {rid: (m, w, r) for rid, (_, m, w, r) in self._replicas.items()}
        return self._seq, runs, live


def _board(namespace: str, detached: bool) -> Any:
    return LoadBoard.options(  # type: ignore[attr-defined]
        name=LOAD_BOARD,
        namespace=namespace,
        get_if_exists=True,
        lifetime="detached" if detached else None,
    ).remote()


# ---------------------------------------------------------------- the replica


@dataclasses.dataclass(frozen=True)
class _Call:
    branch: str
    item: TailInput
    deadline_wall: float  # 0 = none
    budget_ms: float


def _ok(prediction: Prediction, tail_ms: float, size: int) -> tuple:
    return ("ok", prediction, tail_ms, size)


def _error(error: RequestError) -> tuple:
    # Codes and messages cross the wire, not exception objects.
    return ("error", int(error.code), str(error))


class TailReplica:
    """One model's tails in a Ray Serve replica (see the module doc)."""

    def __init__(
        self,
        model: ModelConfig,
        *,
        device: str = "auto",
        max_batch_size: int = 8,
        max_queue_delay_ms: float = 5.0,
        namespace: str = "splitedge",
    ) -> None:
        from splitedge.edge.registry import ModelRegistry

        registry = ModelRegistry.from_config([model], CodecLimits(), device=device)
        (self._model,) = registry.models
        self._name = self._model.name
        self._batch.set_max_batch_size(max_batch_size)
        self._batch.set_batch_wait_timeout_s(max_queue_delay_ms / 1000.0)
        try:
            self._id = serve.get_replica_context().replica_tag
        except Exception:  # outside Serve (direct use in a test)
            self._id = f"{self._name}-{os.getpid()}"
        self._namespace = namespace
        self._waiting: collections.Counter[str] = collections.Counter()
        self._running: collections.Counter[str] = collections.Counter()
        self._runs: list[tuple[str, int, float, float]] = []
        self._reporter: asyncio.Task[None] | None = None

    async def __call__(
        self, branch: str, item: TailInput, deadline_wall: float = 0.0, budget_ms: float = 0.0
    ) -> tuple:
        """One frame's tail: ``("ok", prediction, tail_ms, batch_size)`` or
        ``("error", status_code, message)``."""
        if self._reporter is None:
            self._reporter = asyncio.get_running_loop().create_task(self._report_loop())
        self._waiting[branch] += 1
        try:
            return await self._batch(_Call(branch, item, deadline_wall, budget_ms))
        finally:
            self._waiting[branch] -= 1  # taken into a batch (or cancelled)

    def pid(self) -> int:
        """The replica's process id (the fault benchmark and test kill one by it)."""
        return os.getpid()

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def _batch(self, calls: list[_Call]) -> list[tuple]:
        answers: list[tuple | None] = [None] * len(calls)
        by_branch: dict[str, list[int]] = {}
        now = time.time()
        for i, call in enumerate(calls):
            if call.deadline_wall and now >= call.deadline_wall:
                answers[i] = _error(
                    DeadlineExceeded(
                        f"frame reached {self._name}/{call.branch}'s replica after its "
                        f"{call.budget_ms:.0f} ms budget; dropped uncomputed"
                    )
                )
            else:
                by_branch.setdefault(call.branch, []).append(i)
        for branch, index in by_branch.items():
            ran = await self._run(branch, [calls[i] for i in index])
            for i, answer in zip(index, ran, strict=True):
                answers[i] = answer
        return answers  # type: ignore[return-value]

    async def _run(self, branch: str, calls: list[_Call]) -> list[tuple]:
        self._running[branch] += len(calls)
        try:
            try:
                predictions, tail_ms = await self._timed(branch, calls)
                return [_ok(p, tail_ms, len(calls)) for p in predictions]
            except Exception as exc:
                if len(calls) == 1:
                    return [_error(self._failed(branch, exc))]
            answers = []
            for call in calls:  # a failed batch, frame by frame: one bad frame fails alone
                try:
                    predictions, tail_ms = await self._timed(branch, [call])
                    answers.append(_ok(predictions[0], tail_ms, 1))
                except Exception as exc:
                    answers.append(_error(self._failed(branch, exc)))
            return answers
        finally:
            self._running[branch] -= len(calls)

    async def _timed(self, branch: str, calls: list[_Call]) -> tuple[Sequence[Prediction], float]:
        start = time.time()
        # Off the replica's event loop, so the next batch forms while this one runs.
        predictions = await asyncio.to_thread(self._model.run_tail, branch, [c.item for c in calls])
        end = time.time()
        if len(predictions) != len(calls):
            raise RuntimeError(f"returned {len(predictions)} predictions for {len(calls)} inputs")
        self._runs.append((branch, len(calls), start, end))
        return predictions, (end - start) * 1000.0

    def _failed(self, branch: str, exc: Exception) -> RequestError:
        if isinstance(exc, RequestError):
            return exc
        if isinstance(exc, InputError):
            return InvalidArgument(str(exc))
        log.error("tail %s/%s failed", self._name, branch, exc_info=exc)
        return InternalError(f"tail of {self._name}/{branch} failed: {exc!r}")

    async def _report_loop(self) -> None:
        board = None
        while True:
            try:
                if board is None:
                    board = ray.get_actor(LOAD_BOARD, namespace=self._namespace)
                runs, self._runs = self._runs, []
                await board.report.remote(
                    self._id, self._name, dict(self._waiting), dict(self._running), runs
                )
            except ValueError:  # no board (a replica used without a front end)
                pass
            except Exception as exc:  # the board restarts with its node: try again
                log.debug("load report failed: %r", exc)
                board = None
            await asyncio.sleep(_REPORT_S)


# ---------------------------------------------------------------- deployments


def deployment_options(engine: EngineConfig, batching: BatchingConfig) -> dict[str, Any]:
    """The Serve deployment options ``[engine]`` asks for."""
    actor: dict[str, Any] = {"num_cpus": engine.num_cpus}
    if engine.num_gpus > 0:
        actor["num_gpus"] = engine.num_gpus
    options: dict[str, Any] = {
        "ray_actor_options": actor,
        # @serve.batch needs room for a whole batch in the replica.
        "max_ongoing_requests": max(engine.max_ongoing_requests, batching.max_batch_size),
        "health_check_period_s": 2.0,
        "health_check_timeout_s": 10.0,
    }
    if engine.max_replicas == engine.min_replicas:
        options["num_replicas"] = engine.min_replicas
    else:
        options["autoscaling_config"] = {
            "min_replicas": engine.min_replicas,
            "max_replicas": engine.max_replicas,
            "initial_replicas": engine.initial_replicas or engine.min_replicas,
            "target_ongoing_requests": engine.target_ongoing_requests,
            "upscale_delay_s": engine.upscale_delay_s,
            "downscale_delay_s": engine.downscale_delay_s,
            "metrics_interval_s": 0.5,
            "look_back_period_s": 2.0,
        }
    return options


def bind_model(
    model: ModelConfig, engine: EngineConfig, batching: BatchingConfig, device: str
) -> Any:
    """The Serve application of one served model, ready for ``serve.run``."""
    name = model.serve_as or model.name
    deployment = serve.deployment(TailReplica).options(
        name=_deployment_name(name), **deployment_options(engine, batching)
    )
    return deployment.bind(
        model,
        device=device,
        max_batch_size=batching.max_batch_size,
        max_queue_delay_ms=batching.max_queue_delay_ms,
        namespace=engine.namespace,
    )


def _deployment_name(served: str) -> str:
    return "tail-" + served.replace(":", "-").replace("/", "-")


def build_app(args: dict[str, Any]) -> Any:
    """A Serve application builder for ``serve run`` / KubeRay ``RayService``:
    ``import_path: splitedge.edge.ray_engine:build_app`` with ``args`` ``model``
    (``NAME[:key=value,...]`` as ``--model`` takes it), optional ``device`` and the
    ``[batching]`` / ``[engine]`` keys (``max_batch_size``, ``min_replicas`` ...)."""
    args = dict(args)
    try:
        model = parse_model_spec(str(args.pop("model")))
    except KeyError:
        raise ConfigError("build_app: args.model is missing (NAME[:key=value,...])") from None
    device = str(args.pop("device", "auto"))
    batching_keys = {f.name for f in dataclasses.fields(BatchingConfig)}
    engine_keys = {f.name for f in dataclasses.fields(EngineConfig)}
    unknown = sorted(set(args) - batching_keys - engine_keys)
    if unknown:
        raise ConfigError(f"build_app: args.{unknown[0]}: unknown key")
    batching = BatchingConfig(**{k: v for k, v in args.items() if k in batching_keys})
    engine = EngineConfig(
        kind="ray", **{k: v for k, v in args.items() if k in engine_keys and k != "kind"}
    )
    return bind_model(model, engine, batching, device)


# ---------------------------------------------------------------- the front end's engine


class RayEngine(RoomWaiting):
    """The ray engine (see the module doc): the service's
    :class:`~splitedge.edge.engine.TailEngine` over Serve deployment handles."""

    def __init__(
        self,
        engine: EngineConfig,
        batching: BatchingConfig,
        models: Sequence[ModelConfig],
        *,
        device: str = "auto",
        observer: BatchObserver | None = None,
    ) -> None:
        self.config = engine
        self.batching = batching
        self.models = tuple(models)
        self.device = device
        self.queue_capacity = batching.queue_capacity
        self._observer = observer
        self._handles: dict[str, Any] = {}  # served model name -> deployment handle
        self._apps: dict[str, str] = {}  # served model name -> Serve application name
        self._board: Any = None
        self._own_ray = False
        self._started = False
        self._closing = False
        self._reserved = 0  # admitted, still decoding
        self._in_flight = 0  # admitted, not yet answered
        self._sent: collections.Counter[tuple[str, str]] = collections.Counter()  # at Serve
        self._room_waiters: list[asyncio.Future[None]] = []
        self._idle: asyncio.Event | None = None
        self._seen_run = 0
        self._live: dict[str, tuple[str, dict, dict]] = {}  # replica id -> its last report
        self._replica_counts: dict[str, int] = {}  # served model name -> running replicas
        self._tasks: list[asyncio.Task[None]] = []
        self._gates: collections.defaultdict[str, FifoGate] = collections.defaultdict(FifoGate)

    # ------------------------------------------------------------ lifetime

    async def __aenter__(self) -> RayEngine:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if self._started:
            return
        # ray.init and serve.run block (seconds): before serving, so nothing waits on it.
        self._connect()
        await asyncio.to_thread(self._deploy)
        self._idle = asyncio.Event()
        self._idle.set()
        self._started = True
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._poll_board(), name="ray-engine:board"),
            loop.create_task(self._poll_replicas(), name="ray-engine:replicas"),
        ]
        await self._read_board()
        await asyncio.to_thread(self._count_replicas)

    def _connect(self) -> None:
        cfg = self.config
        if ray.is_initialized():  # a benchmark or test that started Ray itself
            return
        saved = _signal_handlers()
        try:
            self._init_ray()
        finally:
            # ray.init makes SIGTERM sys.exit() (and SIGSEGV the process under asyncio):
            # the server's own drain-and-exit handlers go back in place.
            _restore_signal_handlers(saved)
        log.info("ray engine: connected to %s", cfg.ray_address or "a local Ray instance")

    def _init_ray(self) -> None:
        cfg = self.config
        kwargs: dict[str, Any] = {
            "namespace": cfg.namespace,
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
        }
        if cfg.ray_address:
            ray.init(address=cfg.ray_address, **kwargs)
        else:
            if cfg.local_num_cpus:
                kwargs["num_cpus"] = cfg.local_num_cpus
            if cfg.local_num_gpus >= 0:
                kwargs["num_gpus"] = cfg.local_num_gpus
            ray.init(**kwargs)
            self._own_ray = True

    def _deploy(self) -> None:
        cfg = self.config
        # Detached on a shared cluster: other front ends read the same board.
        self._board = _board(cfg.namespace, detached=not self._own_ray)
        if cfg.deploy:
            serve.start(proxy_location="Disabled")
        for model in self.models:
            served = model.serve_as or model.name
            app = cfg.app_prefix + served.replace(":", "-")
            if cfg.deploy:
                app_config = bind_model(model, cfg, self.batching, self.device)
                handle = serve.run(app_config, name=app, route_prefix=None)
                log.info("ray engine: %s deployed as Serve application %s", served, app)
            else:
                handle = serve.get_app_handle(app)
            self._handles[served] = handle
            self._apps[served] = app

    async def close(self) -> None:
        """Refuse new frames, answer the admitted ones, stop polling; a Ray instance
        this engine started goes down with it (a cluster's apps stay deployed)."""
        if not self._started:
            return
        self._closing = True
        self._notify_room(closing=True)
        assert self._idle is not None
        await self._idle.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._started = False
        if self._own_ray:
            # On this thread: Ray's shutdown from a worker thread crashes the process.
            _shutdown_ray()

    @property
    def closing(self) -> bool:
        return self._closing

    # ------------------------------------------------------------ load

    def _model_slots(self, model: str) -> int:
        """How many of the model's frames its replicas take at once (at least one
        replica's worth: the count is polled, and Serve may be scaling up from none)."""
        per = max(self.config.max_ongoing_requests, self.batching.max_batch_size)
        return max(1, self._replica_counts.get(model, 0)) * per

    def _running_slots(self) -> int:
        per = max(self.config.max_ongoing_requests, self.batching.max_batch_size)
        return sum(self._replica_counts.values()) * per

    @property
    def queue_depth(self) -> int:
        return sum(self.depth(m, b) for (m, b) in self._branches())

    def _branches(self) -> set[tuple[str, str]]:
        keys = set(self._sent)
        for model, waiting, running in self._live.values():
            keys.update((model, b) for b in (*waiting, *running))
        return keys

    def depth(self, model: str, branch: str) -> int:
        """Frames of the branch waiting for a tail: those in the replicas' batch queues,
        plus those this front end sent that no replica holds yet (queued in the handle)."""
        waiting = running = 0
        for m, w, r in self._live.values():
            if m == model:
                waiting += w.get(branch, 0)
                running += r.get(branch, 0)
        unheld = self._sent[(model, branch)] - waiting - running
        return waiting + max(0, unheld)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def workers(self) -> int:
        return max(1, sum(self._replica_counts.values()))

    def replicas(self, model: str, branch: str) -> int:
        return self._replica_counts.get(model, 0)

    @property
    def full(self) -> bool:
        return self._closing or self._in_flight + self._reserved >= self._limit()

    def _limit(self) -> int:
        # The replicas' own slots, then queue_capacity more frames waiting for one.
        return self.queue_capacity + self._running_slots()

    # ------------------------------------------------------------ admission

    def admit(self) -> Admission:
        self._refuse_if_full()
        self._reserved += 1
        return Admission(self)

    def _refuse_if_full(self) -> None:
        if self._closing:
            raise Unavailable("server is shutting down; send this frame elsewhere")
        if self._in_flight + self._reserved >= self._limit():
            raise ResourceExhausted(
                f"admission queue full ({self.queue_capacity} frames waiting beyond the "
                f"{self._running_slots()} the replicas take); retry later or lower the frame rate"
            )

    def can_run_now(self, model: str, branch: str) -> bool:
        return False  # every tail runs in a replica

    def run_now(self, model: str, branch: str, item: TailInput) -> BatchResult | None:
        return None

    # ------------------------------------------------------------ frames

    async def submit(
        self,
        model: str,
        branch: str,
        item: TailInput,
        *,
        deadline_ms: float = 0.0,
        admission: Admission | None = None,
    ) -> BatchResult:
        """Send one frame to its model's deployment; a lost replica costs a retry."""
        if not self._started:
            raise RuntimeError("RayEngine.submit() before start() (use `async with`)")
        if admission is not None and admission.take():
            if self._closing:
                raise Unavailable("server is shutting down; send this frame elsewhere")
        else:
            self._refuse_if_full()
        handle = self._handles.get(model)
        if handle is None:  # the registry checked the name: a config mismatch
            raise InternalError(f"model {model!r} has no Ray Serve deployment")
        assert self._idle is not None
        start = time.monotonic()
        deadline_wall = time.time() + deadline_ms / 1000.0 if deadline_ms > 0 else 0.0
        key = (model, branch)
        self._in_flight += 1
        self._sent[key] += 1
        self._idle.clear()
        gate = self._gates[model]
        try:
            timeout_s = deadline_ms / 1000.0 if deadline_ms > 0 else None
            if not await gate.enter(self._model_slots(model), timeout_s):
                raise DeadlineExceeded(
                    f"deadline of {deadline_ms:g} ms passed while the frame waited for a "
                    f"replica of {model}'s tail"
                )
            try:
                reply = await self._call(handle, model, branch, item, deadline_wall, deadline_ms)
            finally:
                gate.leave(self._model_slots(model))
        finally:
            self._sent[key] -= 1
            if not self._sent[key]:
                del self._sent[key]
            self._in_flight -= 1
            self._notify_room()
            if self._in_flight == 0:
                self._idle.set()
        if reply[0] == "error":
            raise _request_error(reply[1], reply[2])
        _, prediction, tail_ms, batch_size = reply
        total_ms = (time.monotonic() - start) * 1000.0
        return BatchResult(prediction, max(0.0, total_ms - tail_ms), tail_ms, batch_size)

    async def _call(
        self,
        handle: Any,
        model: str,
        branch: str,
        item: TailInput,
        deadline_wall: float,
        budget_ms: float,
    ) -> tuple:
        attempt = 0
        while True:
            response = handle.remote(branch, item, deadline_wall, budget_ms)
            try:
                return await response  # type: ignore[no-any-return]
            except asyncio.CancelledError:
                response.cancel()  # the caller went away: the replica may skip it
                raise
            except _REPLICA_LOST as exc:
                attempt += 1
                late = deadline_wall and time.time() + _RETRY_PAUSE_S >= deadline_wall
                if attempt > self.config.retries or late:
                    why = "its deadline leaves no time" if late else f"{attempt} tries"
                    raise Unavailable(
                        f"the replica running {model}/{branch}'s tail was lost ({why}); "
                        "send this frame elsewhere"
                    ) from exc
                log.warning(
                    "replica of %s lost (%s); sending the frame again (try %d of %d)",
                    model,
                    type(exc).__name__,
                    attempt + 1,
                    self.config.retries + 1,
                )
                await asyncio.sleep(_RETRY_PAUSE_S)
            except Exception as exc:  # Serve itself failed (not the tail: that answers)
                log.error("ray engine call to %s failed", model, exc_info=exc)
                raise Unavailable(f"Ray Serve could not run {model}'s tail: {exc!r}") from exc

    # ------------------------------------------------------------ background

    async def _poll_board(self) -> None:
        while True:
            await asyncio.sleep(_POLL_S)
            try:
                await self._read_board()
            except Exception as exc:  # a lost board comes back with get_if_exists
                log.debug("load board read failed: %r", exc)
                self._board = _board(self.config.namespace, detached=not self._own_ray)

    async def _read_board(self) -> None:
        seq, runs, live = await self._board.snapshot.remote(self._seen_run)
        if seq < self._seen_run:  # a new board: its numbers start again
            seq, runs, live = await self._board.snapshot.remote(0)
        self._seen_run = seq
        self._live = live
        if self._observer is None:
            return
        # Replica clocks are wall clocks; the statistics count in this process's monotonic.
        offset = time.monotonic() - time.time()
        for _, model, branch, size, start, end in runs:
            try:
                self._observer(model, branch, size, start + offset, end + offset)
            except Exception:
                log.exception("batch observer failed")
        self._notify_room()

    async def _poll_replicas(self) -> None:
        while True:
            await asyncio.sleep(_REPLICA_POLL_S)
            try:
                await asyncio.to_thread(self._count_replicas)
                for model, gate in self._gates.items():  # more replicas: more frames out
                    gate.wake(self._model_slots(model))
            except Exception as exc:
                log.debug("serve.status() failed: %r", exc)

    def _count_replicas(self) -> None:
        apps = serve.status().applications
        counts = {}
        for served, app in self._apps.items():
            status = apps.get(app)
            running = 0
            if status is not None:
                for deployment in status.deployments.values():
                    running += deployment.replica_states.get("RUNNING", 0)
            counts[served] = running
        self._replica_counts = counts

    async def replica_pids(self, model: str) -> set[int]:
        """The process ids of the model's replicas that answer now (benchmarks, tests)."""
        handle = self._handles[model]
        pids = await asyncio.gather(*(handle.pid.remote() for _ in range(32)))
        return set(pids)


def _request_error(code: int, message: str) -> RequestError:
    for cls in (InvalidArgument, DeadlineExceeded, ResourceExhausted, Unavailable, InternalError):
        if cls.code == StatusCode.from_wire(code):
            return cls(message)
    return InternalError(message)


_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _signal_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in _SIGNALS}


def _restore_signal_handlers(saved: Mapping[int, Any]) -> None:
    for sig, handler in saved.items():
        if handler is not None:
            signal.signal(sig, handler)


def _shutdown_ray() -> None:
    try:
        serve.shutdown()
    finally:
        ray.shutdown()
