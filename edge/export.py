"""Heads as artifacts: each split branch's head exported to ONNX, with its spec and hash.

The device then runs the head with ONNX Runtime and never needs torch
(``splitedge-client run --backend onnx``). :func:`plan_heads` finds the graphs a model
needs (branches that differ only in quantization bits share one: a bottleneck
student has one graph per slimmable width); :func:`export_graph` traces one with
``torch.onnx.export`` (opset 17, dynamic height and width); :class:`HeadStore` keeps
them on the edge's disk, keyed by model, graph and a hash of the weights, and exports
a missing one on demand (what the ``GetHead`` RPC asks it for). ``splitedge-edge
export`` writes them all ahead of time.

Only detection heads with torchvision's ``GeneralizedRCNNTransform`` pre-processing
export today (:mod:`splitedge.proto.head_spec` describes it for the device); another
head is refused with one line saying so.
"""

from __future__ import annotations

import copy
import hashlib
import io
import logging
import os
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splitedge.edge.errors import InvalidArgument, NotFound, RequestError
from splitedge.models.fingerprint import head_fingerprints, preprocess_facts
from splitedge.models.types import SplitModel
from splitedge.proto.head_spec import HeadSpec, write_atomic
from splitedge.proto.status import StatusCode

__all__ = [
    "ExportError",
    "HeadArtifact",
    "HeadStore",
    "default_cache_dir",
    "export_graph",
    "plan_heads",
]

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "image"
# Traced on a frame of this padded size; height and width are dynamic in the graph.
_TRACE_HW = (256, 320)
# torch's exporter keeps global tracing state: one export at a time per process.
_EXPORT_LOCK = threading.Lock()


class ExportError(RequestError):
    """A head that cannot be exported (unsupported pre-processing, none cached and
    export off); one line. Unknown or non-split branches raise :class:`NotFound` /
    :class:`InvalidArgument`; all are request errors with their status code)."""

    code = StatusCode.FAILED_PRECONDITION


@dataclass(frozen=True)
class HeadArtifact:
    """One exported graph: its spec (as parsed and as the JSON written) and bytes."""

    spec: HeadSpec
    spec_json: str
    onnx: bytes

    @property
    def sha256(self) -> str:
        return self.spec.onnx_sha256


@dataclass
class GraphPlan:
    """How to export one head graph: a torch module (batch -> tuple of outputs) maker."""

    key: str
    branches: list[str]
    make_module: Callable[[], Any]
    outputs: tuple[str, ...]
    facts: dict[str, Any]  # the head's pre-processing as data (see _preprocess_facts)
    weights_sha256: str


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/splitedge/edge-heads`` (``~/.cache/...``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "splitedge" / "edge-heads"


def _preprocess_facts(preprocess: Any, model_name: str, what: str) -> dict[str, Any]:
    """:func:`~splitedge.models.fingerprint.preprocess_facts`, or ExportError."""
    facts = preprocess_facts(preprocess)
    if facts is None:
        raise ExportError(
            f"model {model_name!r} {what}: its pre-processing ({type(preprocess).__name__}) "
            "has no device-side equivalent yet; detection heads (GeneralizedRCNNTransform) "
            "and segmentation heads (SegmentationPreprocess) export to ONNX"
        )
    return facts


def _tuple_head(head: Any, names: tuple[str, ...]) -> Any:
    """``head`` (batch -> ``{name: tensor}``) as a module returning a tuple in ``names``."""
    from torch import nn

    class TupleHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = head

        def forward(self, x: Any) -> tuple[Any, ...]:
            out = self.head(x)
            return tuple(out[n] for n in names)

    return TupleHead()


def plan_heads(model: SplitModel, model_name: str | None = None) -> dict[str, GraphPlan]:
    """Graph key -> plan, for every split branch of ``model`` (ExportError if none or
    one cannot export)."""
    from splitedge.models.bottleneck import CODE_TENSOR
    from splitedge.models.bottleneck_split import BottleneckSplitModel

    name = model_name or model.name
    split = [b for b in model.branches.values() if b.kind == "split"]
    if not split:
        raise ExportError(f"model {name!r} has no split branches; it has no head to export")
    plans: dict[str, GraphPlan] = {}
    if isinstance(model, BottleneckSplitModel):
        facts = _preprocess_facts(model.preprocess, name, "bottleneck head")
        # The same hash Describe states for each branch (the device checks its own).
        weights = head_fingerprints(model)[split[0].name]
        for spec in split:
            width = model.branch_width(spec.name)
            key = f"w{width:g}"
            if key not in plans:

                def make(width: float = width) -> Any:
                    head = copy.deepcopy(model.student.head).cpu().eval()
                    head.set_width(width)
                    return head

                plans[key] = GraphPlan(key, [], make, (CODE_TENSOR,), facts, weights)
            plans[key].branches.append(spec.name)
        return plans
    head_module = getattr(model, "head_module", None)
    if head_module is None:
        raise ExportError(f"model {name!r} ({type(model).__name__}) exposes no head modules")
    fingerprints = head_fingerprints(model)
    for spec in split:
        head = head_module(spec.name)
        facts = _preprocess_facts(head.preprocess, name, f"branch {spec.name!r}")
        outputs = tuple(t.name for t in spec.tensors)
        weights = fingerprints[spec.name]

        def make(head: Any = head, outputs: tuple[str, ...] = outputs) -> Any:
            return _tuple_head(copy.deepcopy(head).cpu().eval(), outputs)

        plans[spec.name] = GraphPlan(spec.name, [spec.name], make, outputs, facts, weights)
    return plans


def export_graph(model_name: str, plan: GraphPlan) -> HeadArtifact:
    """Trace ``plan``'s module to ONNX and build its spec (seconds, on the CPU)."""
    import torch

    module = plan.make_module()
    dynamic = {INPUT_NAME: {2: "height", 3: "width"}}
    dynamic.update({n: {2: f"{n}_height", 3: f"{n}_width"} for n in plan.outputs})
    buffer = io.BytesIO()
    with _EXPORT_LOCK, torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            module,
            (torch.zeros(1, 3, *_TRACE_HW),),
            buffer,
            input_names=[INPUT_NAME],
            output_names=list(plan.outputs),
            opset_version=OPSET,
            dynamic_axes=dynamic,
            dynamo=False,
        )
    data = buffer.getvalue()
    facts = plan.facts
    spec = HeadSpec(
        model=model_name,
        graph=plan.key,
        branches=tuple(plan.branches),
        weights_sha256=plan.weights_sha256,
        onnx_sha256=hashlib.sha256(data).hexdigest(),
        min_size=facts["min_size"],
        max_size=facts["max_size"],
        mean=tuple(facts["mean"]),
        std=tuple(facts["std"]),
        size_divisible=facts["size_divisible"],
        fixed_size=tuple(facts["fixed_size"]) if facts["fixed_size"] else None,
        input_name=INPUT_NAME,
        outputs=plan.outputs,
        opset=OPSET,
        preprocess=facts["preprocess"],
    )
    return HeadArtifact(spec, spec.to_json(), data)


def _safe(name: str) -> str:
    """A file-name-safe, collision-free form of a model name (``zoo:x`` -> ``zoo_x-<hash>``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:64]
    return f"{cleaned}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


class HeadStore:
    """Exported heads of served models, cached under ``cache_dir``.

    Layout: ``<cache_dir>/<model>/<weights sha256[:16]>/<graph>.onnx`` and
    ``<graph>.json`` (the spec, whose ``onnx_sha256`` the graph's bytes must match,
    else it is exported again). ``export_missing=False`` only serves what
    ``splitedge-edge export`` wrote. Thread-safe; :meth:`get` blocks (run it off the
    event loop).
    """

    def __init__(self, cache_dir: Path | None = None, *, export_missing: bool = True) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.export_missing = export_missing
        self._plans: dict[str, dict[str, GraphPlan]] = {}
        self._memory: dict[tuple[str, str, str], HeadArtifact] = {}
        self._lock = threading.Lock()

    def _plans_of(self, model_name: str, model: SplitModel) -> dict[str, GraphPlan]:
        with self._lock:
            if model_name not in self._plans:
                self._plans[model_name] = plan_heads(model, model_name)
            return self._plans[model_name]

    def paths(self, model_name: str, plan: GraphPlan) -> tuple[Path, Path]:
        folder = self.cache_dir / _safe(model_name) / plan.weights_sha256[:16]
        return folder / f"{plan.key}.onnx", folder / f"{plan.key}.json"

    def get(self, model_name: str, model: SplitModel, branch: str) -> HeadArtifact:
        """The head of ``branch``; NotFound (unknown branch), InvalidArgument (not a split
        branch) or ExportError (cannot export)."""
        spec = model.branches.get(branch)
        if spec is None:
            raise NotFound(
                f"unknown branch {branch[:64]!r} for model {model_name!r}; "
                f"known branches: {', '.join(model.branches)}"
            )
        if spec.kind != "split":
            raise InvalidArgument(
                f"branch {branch!r} is a {spec.kind} branch; only split branches have a head"
            )
        plans = self._plans_of(model_name, model)
        plan = next(p for p in plans.values() if branch in p.branches)
        key = (model_name, plan.key, plan.weights_sha256)
        with self._lock:
            cached = self._memory.get(key)
        if cached is not None:
            return cached
        with _graph_lock(key):
            artifact = self._load(model_name, plan)
            if artifact is None:
                if not self.export_missing:
                    raise ExportError(
                        f"no exported head for {model_name!r} branch {branch!r} in "
                        f"{self.cache_dir} (run splitedge-edge export, or enable [heads] export)"
                    )
                log.info("exporting head %s/%s to ONNX", model_name, plan.key)
                artifact = export_graph(model_name, plan)
                onnx_path, spec_path = self.paths(model_name, plan)
                write_atomic(onnx_path, artifact.onnx)
                write_atomic(spec_path, artifact.spec_json.encode())
        with self._lock:
            self._memory[key] = artifact
        return artifact

    def export_all(self, model_name: str, model: SplitModel) -> list[tuple[HeadArtifact, Path]]:
        """Every graph of ``model`` (exported unless cached): (artifact, .onnx path) each."""
        out = []
        for plan in self._plans_of(model_name, model).values():
            artifact = self.get(model_name, model, plan.branches[0])
            out.append((artifact, self.paths(model_name, plan)[0]))
        return out

    def _load(self, model_name: str, plan: GraphPlan) -> HeadArtifact | None:
        onnx_path, spec_path = self.paths(model_name, plan)
        try:
            data = onnx_path.read_bytes()
            text = spec_path.read_text(encoding="utf-8")
        except OSError:
            return None
        try:
            spec = HeadSpec.from_json(text)
        except ValueError as exc:
            log.warning("head cache: %s: %s; exporting again", spec_path, exc)
            return None
        digest = hashlib.sha256(data).hexdigest()
        if digest != spec.onnx_sha256 or spec.weights_sha256 != plan.weights_sha256:
            log.warning("head cache: %s does not match its spec; exporting again", onnx_path)
            return None
        return HeadArtifact(spec, text, data)


_KEY_LOCKS: dict[tuple[str, str, str], threading.Lock] = {}
_KEY_LOCKS_GUARD = threading.Lock()


def _graph_lock(key: tuple[str, str, str]) -> threading.Lock:
    """One lock per graph, so two requests for a missing head export it once."""
    with _KEY_LOCKS_GUARD:
        return _KEY_LOCKS.setdefault(key, threading.Lock())
