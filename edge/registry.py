"""The models this server serves, and validation/decoding of requests against them.

:class:`ModelRegistry` builds the configured models once, then for each frame checks
the model, the branch (split branches need tensors, offload branches an image,
``local`` branches run on the device and are refused), every tensor's name, dtype and
shape against the branch's :class:`~splitedge.models.types.TensorSpec` (and, for a
model that says so with ``tensor_shapes(branch, input_size)``, against the exact shape
the declared input size gives), the original and input sizes against the model's
:class:`InputLimits`, and each tensor's declared decoded size (in the dtype the tail
gets) against the codec limits, all before a byte is decompressed; then decodes the
payload with the codec under those limits. Every refusal is a
:class:`~splitedge.edge.errors.RequestError` with a one-line message.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from splitedge.edge.config import (
    DEFAULT_MAX_INPUT_PIXELS,
    DEFAULT_MAX_INPUT_SIDE,
    ConfigError,
    ModelConfig,
)
from splitedge.edge.errors import InvalidArgument, NotFound, RequestError, ResourceExhausted
from splitedge.models.registry import UnknownModelError, create_model
from splitedge.models.types import BranchSpec, SplitModel, TailInput, TensorSpec
from splitedge.proto import codec
from splitedge.proto.codec import CodecError, CodecLimits, EncodedImage, EncodedTensor

__all__ = [
    "FrameRequest",
    "InputLimits",
    "ModelRegistry",
    "codec_error",
    "declared_decoded_bytes",
    "resolve_device",
]

log = logging.getLogger(__name__)

# A float32 branch also takes float16 on the wire (the codec's ``float16`` option);
# the tail gets float32 either way.
_ACCEPTED_DTYPES = {"float32": ("float32", "float16")}
_ITEMSIZE = {"float32": 4, "float16": 2, "uint8": 1, "int8": 1}
# A rank no limit could allow; beyond it nothing iterates a declared shape.
_MAX_SHAPE_NDIM = 64


@dataclass(frozen=True)
class InputLimits:
    """A served model's bounds on a frame's original and preprocessed sizes (pixels)."""

    max_side: int = DEFAULT_MAX_INPUT_SIDE
    max_pixels: int = DEFAULT_MAX_INPUT_PIXELS

    def check(self, what: str, size: tuple[int, int], model: str) -> None:
        height, width = size
        if max(height, width) > self.max_side or height * width > self.max_pixels:
            raise InvalidArgument(
                f"{what} {height}x{width} is over the input limits of model {model!r} "
                f"(max_input_side {self.max_side}, max_input_pixels {self.max_pixels})"
            )


@dataclass
class FrameRequest:
    """One frame request in domain terms (what the servicer makes of a ``pb.FrameRequest``)."""

    frame_id: int
    model: str
    branch: str
    tensors: list[EncodedTensor] = field(default_factory=list)
    image: EncodedImage | None = None
    orig_size: tuple[int, int] = (0, 0)  # (height, width)
    input_size: tuple[int, int] = (0, 0)
    deadline_ms: float = 0.0  # 0 = none


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch is loaded (by a model) and sees a GPU, else ``cpu``.

    A server whose models never imported torch (echo) does not pay for importing it.
    """
    if device != "auto":
        return device
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def declared_decoded_bytes(t: EncodedTensor, tail_dtype: str = "float32") -> int | None:
    """What ``t`` takes once decoded and converted to ``tail_dtype``, from its declared
    shape alone; None when the shape is not one the codec would accept at all."""
    shape = t.shape
    if not shape or len(shape) > _MAX_SHAPE_NDIM or any(d < 1 for d in shape):
        return None
    wire_itemsize = 4 if t.quant != "none" else _ITEMSIZE.get(t.dtype, 4)
    return math.prod(shape) * max(wire_itemsize, _ITEMSIZE.get(tail_dtype, 4))


def codec_error(exc: CodecError) -> RequestError:
    """The request error a codec error means: too large -> RESOURCE_EXHAUSTED, else invalid."""
    if isinstance(exc, codec.PayloadTooLarge):
        return ResourceExhausted(str(exc))
    return InvalidArgument(str(exc))


class ModelRegistry:
    """Served models by name; validates and decodes frames for them."""

    def __init__(
        self,
        models: Sequence[SplitModel],
        limits: CodecLimits,
        *,
        device: str = "cpu",
        input_limits: Mapping[str, InputLimits] | None = None,
    ) -> None:
        """``input_limits``: per served model name; models not in it get the defaults."""
        self.limits = limits
        self.device = device
        self._input_limits = dict(input_limits or {})
        self._models: dict[str, SplitModel] = {}
        for model in models:
            if model.name in self._models:
                raise ConfigError(
                    f"models: two models are named {model.name!r}; give one a serve_as name"
                )
            self._models[model.name] = model

    @classmethod
    def from_config(
        cls, models: Sequence[ModelConfig], limits: CodecLimits, device: str = "auto"
    ) -> ModelRegistry:
        """Build each configured model, then move those exposing ``to(device)`` there.

        ``device`` "auto" is resolved after building, so only models that imported
        torch make the server look for a GPU (see :func:`resolve_device`).
        """
        built = []
        input_limits = {}
        for i, entry in enumerate(models):
            try:
                model = create_model(entry.name, **dict(entry.options))
            except UnknownModelError as exc:
                raise ConfigError(f"models[{i}].name: {exc}") from exc
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"models[{i}] ({entry.name}): bad options ({exc})") from exc
            if entry.serve_as is not None:
                model.name = entry.serve_as
            log.info("loaded model %s (weights: %s)", model.name, model.weights_source)
            built.append(model)
            input_limits[model.name] = InputLimits(entry.max_input_side, entry.max_input_pixels)
        device = resolve_device(device)
        for model in built:
            to = getattr(model, "to", None)
            if callable(to):
                to(device)
        return cls(built, limits, device=device, input_limits=input_limits)

    def input_limits(self, model_name: str) -> InputLimits:
        return self._input_limits.get(model_name, _DEFAULT_INPUT_LIMITS)

    @property
    def names(self) -> list[str]:
        return list(self._models)

    @property
    def models(self) -> list[SplitModel]:
        return list(self._models.values())

    def model(self, name: str) -> SplitModel:
        try:
            return self._models[name]
        except KeyError:
            known = ", ".join(self._models) or "none"
            if not name:  # a request that names nothing is malformed, not a lookup miss
                raise InvalidArgument(
                    f"no model named (empty 'model'); this server serves: {known}"
                ) from None
            raise NotFound(f"unknown model {name[:64]!r}; this server serves: {known}") from None

    def branch(self, model_name: str, branch_name: str) -> BranchSpec:
        """The served branch; ``local`` branches are refused (they run on the device)."""
        model = self.model(model_name)
        spec = model.branches.get(branch_name)
        if spec is None:
            served = ", ".join(b.name for b in model.branches.values() if b.kind != "local")
            if not branch_name:
                raise InvalidArgument(
                    f"no branch named (empty 'branch') for model {model_name!r}; served "
                    f"branches: {served}"
                )
            raise NotFound(
                f"model {model_name!r} has no branch {branch_name[:64]!r}; served branches: "
                f"{served}"
            )
        if spec.kind == "local":
            raise InvalidArgument(
                f"branch {branch_name!r} of model {model_name!r} is local: it runs on the "
                "device, not on this server"
            )
        return spec

    def check(self, frame: FrameRequest) -> BranchSpec:
        """Everything about ``frame`` that needs no decoding; returns its branch."""
        spec = self.branch(frame.model, frame.branch)
        if min(frame.orig_size) <= 0:
            raise InvalidArgument(
                f"orig_height/orig_width are {frame.orig_size[0]}x{frame.orig_size[1]}; "
                "both must be > 0"
            )
        bounds = self.input_limits(frame.model)
        bounds.check("original size", frame.orig_size, frame.model)
        if spec.kind == "split":
            if frame.image is not None:
                raise InvalidArgument(
                    f"branch {spec.name!r} is a split branch: send tensors, not an image"
                )
            if min(frame.input_size) <= 0:
                raise InvalidArgument(
                    f"input_height/input_width are {frame.input_size[0]}x{frame.input_size[1]}; "
                    f"split branch {spec.name!r} needs both > 0"
                )
            bounds.check("input size", frame.input_size, frame.model)
            _check_tensors(frame.tensors, spec, self.limits)
            shapes = getattr(self._models[frame.model], "tensor_shapes", None)
            if callable(shapes):
                exact = shapes(spec.name, frame.input_size)
                for t in frame.tensors:
                    want = exact.get(t.name)
                    if want is not None and tuple(t.shape) != tuple(want):
                        raise InvalidArgument(
                            f"tensor {t.name!r} has shape {list(t.shape)}, branch {spec.name!r} "
                            f"expects {list(want)} for input size "
                            f"{frame.input_size[0]}x{frame.input_size[1]}"
                        )
        else:
            if frame.tensors:
                raise InvalidArgument(
                    f"branch {spec.name!r} is an offload branch: send an image, not tensors"
                )
            if frame.image is None:
                raise InvalidArgument(f"offload branch {spec.name!r} needs an image; none sent")
            bounds.check("image size", (frame.image.height, frame.image.width), frame.model)
        return spec

    def decode(self, frame: FrameRequest, spec: BranchSpec) -> TailInput:
        """Decode a checked frame's payload (CPU work: run it off the event loop)."""
        try:
            if spec.kind == "offload":
                assert frame.image is not None
                image = codec.decode_image(frame.image, self.limits)
                return TailInput(
                    orig_size=frame.orig_size, input_size=frame.input_size, image=image
                )
            by_name = {s.name: s for s in spec.tensors}
            tensors = {}
            for t in frame.tensors:
                array = codec.decode_tensor(t, self.limits)
                want = np.dtype(by_name[t.name].dtype)
                tensors[t.name] = array if array.dtype == want else array.astype(want)
        except CodecError as exc:
            raise codec_error(exc) from exc
        return TailInput(orig_size=frame.orig_size, input_size=frame.input_size, tensors=tensors)


def _check_tensors(tensors: Sequence[EncodedTensor], spec: BranchSpec, limits: CodecLimits) -> None:
    expected = {s.name: s for s in spec.tensors}
    seen: set[str] = set()
    for t in tensors:
        name = t.name
        if name not in expected:
            raise InvalidArgument(
                f"unexpected tensor {name[:64]!r}; branch {spec.name!r} expects {_listed(expected)}"
            )
        if name in seen:
            raise InvalidArgument(f"tensor {name!r} sent twice")
        seen.add(name)
    for name in expected:
        if name not in seen:
            raise InvalidArgument(
                f"missing tensor {name!r}; branch {spec.name!r} expects {_listed(expected)}"
            )
    for t in tensors:
        _check_tensor(t, expected[t.name], spec.name, limits)


_DEFAULT_INPUT_LIMITS = InputLimits()


def _listed(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _check_tensor(t: EncodedTensor, want: TensorSpec, branch: str, limits: CodecLimits) -> None:
    # First, before anything iterates or prints the shape: a hostile rank is refused by
    # its length alone.
    if len(t.shape) > limits.max_ndim:
        raise InvalidArgument(
            f"tensor {t.name!r} has {len(t.shape)} dimensions, at most {limits.max_ndim} "
            f"are accepted (branch {branch!r} expects {len(want.shape)})"
        )
    accepted = _ACCEPTED_DTYPES.get(want.dtype, (want.dtype,))
    if t.dtype not in accepted:
        raise InvalidArgument(
            f"tensor {t.name!r} has dtype {t.dtype}, branch {branch!r} expects {want.dtype}"
        )
    shape = list(t.shape)
    expected = list(want.shape)
    if len(shape) != len(expected) or any(
        e != -1 and d != e for d, e in zip(shape, expected, strict=False)
    ):
        raise InvalidArgument(
            f"tensor {t.name!r} has shape {shape}, branch {branch!r} expects {expected}"
        )
    # The decoded size in the dtype the tail gets (float16 on the wire becomes float32),
    # refused before a byte is decompressed.
    decoded = declared_decoded_bytes(t, want.dtype)
    if decoded is not None and decoded > limits.max_tensor_bytes:
        raise ResourceExhausted(
            f"tensor {t.name!r} of shape {shape} decodes to {decoded} bytes as {want.dtype}, "
            f"over the {limits.max_tensor_bytes}-byte limit"
        )
