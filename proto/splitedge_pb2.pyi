from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    FLOAT32: _ClassVar[DType]
    FLOAT16: _ClassVar[DType]
    UINT8: _ClassVar[DType]
    INT8: _ClassVar[DType]

class Compression(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPRESSION_UNSPECIFIED: _ClassVar[Compression]
    RAW: _ClassVar[Compression]
    ZSTD: _ClassVar[Compression]

class QuantScheme(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUANT_NONE: _ClassVar[QuantScheme]
    QUANT_PER_TENSOR: _ClassVar[QuantScheme]
    QUANT_PER_CHANNEL: _ClassVar[QuantScheme]

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    JPEG: _ClassVar[ImageFormat]
    PNG: _ClassVar[ImageFormat]
    WEBP: _ClassVar[ImageFormat]

class FocusUnit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FOCUS_UNIT_UNSPECIFIED: _ClassVar[FocusUnit]
    METERS: _ClassVar[FocusUnit]
    DIOPTERS: _ClassVar[FocusUnit]
DTYPE_UNSPECIFIED: DType
FLOAT32: DType
FLOAT16: DType
UINT8: DType
INT8: DType
COMPRESSION_UNSPECIFIED: Compression
RAW: Compression
ZSTD: Compression
QUANT_NONE: QuantScheme
QUANT_PER_TENSOR: QuantScheme
QUANT_PER_CHANNEL: QuantScheme
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
JPEG: ImageFormat
PNG: ImageFormat
WEBP: ImageFormat
FOCUS_UNIT_UNSPECIFIED: FocusUnit
METERS: FocusUnit
DIOPTERS: FocusUnit

class Tensor(_message.Message):
    __slots__ = ("codec_version", "name", "dtype", "shape", "quant", "bits", "axis", "scale", "zero_point", "compression", "data")
    CODEC_VERSION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    QUANT_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    AXIS_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    ZERO_POINT_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    codec_version: int
    name: str
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    quant: QuantScheme
    bits: int
    axis: int
    scale: _containers.RepeatedScalarFieldContainer[float]
    zero_point: _containers.RepeatedScalarFieldContainer[float]
    compression: Compression
    data: bytes
    def __init__(self, codec_version: _Optional[int] = ..., name: _Optional[str] = ..., dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., quant: _Optional[_Union[QuantScheme, str]] = ..., bits: _Optional[int] = ..., axis: _Optional[int] = ..., scale: _Optional[_Iterable[float]] = ..., zero_point: _Optional[_Iterable[float]] = ..., compression: _Optional[_Union[Compression, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("format", "width", "height", "data")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    format: ImageFormat
    width: int
    height: int
    data: bytes
    def __init__(self, format: _Optional[_Union[ImageFormat, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class FrameRequest(_message.Message):
    __slots__ = ("frame_id", "model", "branch", "tensors", "image", "orig_height", "orig_width", "input_height", "input_width", "client_send_unix_ns", "deadline_ms")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ORIG_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ORIG_WIDTH_FIELD_NUMBER: _ClassVar[int]
    INPUT_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    INPUT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SEND_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    frame_id: int
    model: str
    branch: str
    tensors: _containers.RepeatedCompositeFieldContainer[Tensor]
    image: Image
    orig_height: int
    orig_width: int
    input_height: int
    input_width: int
    client_send_unix_ns: int
    deadline_ms: float
    def __init__(self, frame_id: _Optional[int] = ..., model: _Optional[str] = ..., branch: _Optional[str] = ..., tensors: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., orig_height: _Optional[int] = ..., orig_width: _Optional[int] = ..., input_height: _Optional[int] = ..., input_width: _Optional[int] = ..., client_send_unix_ns: _Optional[int] = ..., deadline_ms: _Optional[float] = ...) -> None: ...

class Detections(_message.Message):
    __slots__ = ("boxes", "scores", "labels")
    BOXES_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    boxes: _containers.RepeatedScalarFieldContainer[float]
    scores: _containers.RepeatedScalarFieldContainer[float]
    labels: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, boxes: _Optional[_Iterable[float]] = ..., scores: _Optional[_Iterable[float]] = ..., labels: _Optional[_Iterable[int]] = ...) -> None: ...

class Segmentation(_message.Message):
    __slots__ = ("mask",)
    MASK_FIELD_NUMBER: _ClassVar[int]
    mask: Image
    def __init__(self, mask: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class ServerTiming(_message.Message):
    __slots__ = ("decode_ms", "queue_ms", "tail_ms", "encode_ms", "batch_size", "server_total_ms")
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    TAIL_MS_FIELD_NUMBER: _ClassVar[int]
    ENCODE_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    SERVER_TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    queue_ms: float
    tail_ms: float
    encode_ms: float
    batch_size: int
    server_total_ms: float
    def __init__(self, decode_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., tail_ms: _Optional[float] = ..., encode_ms: _Optional[float] = ..., batch_size: _Optional[int] = ..., server_total_ms: _Optional[float] = ...) -> None: ...

class FrameResult(_message.Message):
    __slots__ = ("frame_id", "model", "branch", "status_code", "status_message", "detections", "segmentation", "tensor", "timing")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTATION_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    frame_id: int
    model: str
    branch: str
    status_code: int
    status_message: str
    detections: Detections
    segmentation: Segmentation
    tensor: Tensor
    timing: ServerTiming
    def __init__(self, frame_id: _Optional[int] = ..., model: _Optional[str] = ..., branch: _Optional[str] = ..., status_code: _Optional[int] = ..., status_message: _Optional[str] = ..., detections: _Optional[_Union[Detections, _Mapping]] = ..., segmentation: _Optional[_Union[Segmentation, _Mapping]] = ..., tensor: _Optional[_Union[Tensor, _Mapping]] = ..., timing: _Optional[_Union[ServerTiming, _Mapping]] = ...) -> None: ...

class TensorSpec(_message.Message):
    __slots__ = ("name", "dtype", "shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class BatchLatency(_message.Message):
    __slots__ = ("batch_size", "tail_latency_ms_p50", "tail_latency_ms_p95", "samples")
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    TAIL_LATENCY_MS_P50_FIELD_NUMBER: _ClassVar[int]
    TAIL_LATENCY_MS_P95_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    batch_size: int
    tail_latency_ms_p50: float
    tail_latency_ms_p95: float
    samples: int
    def __init__(self, batch_size: _Optional[int] = ..., tail_latency_ms_p50: _Optional[float] = ..., tail_latency_ms_p95: _Optional[float] = ..., samples: _Optional[int] = ...) -> None: ...

class BranchProfile(_message.Message):
    __slots__ = ("tail_latency_ms_p50", "tail_latency_ms_p95", "tail_samples", "bytes_per_frame", "head_latency_ms", "accuracy", "accuracy_metric", "by_batch_size")
    TAIL_LATENCY_MS_P50_FIELD_NUMBER: _ClassVar[int]
    TAIL_LATENCY_MS_P95_FIELD_NUMBER: _ClassVar[int]
    TAIL_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    BYTES_PER_FRAME_FIELD_NUMBER: _ClassVar[int]
    HEAD_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_METRIC_FIELD_NUMBER: _ClassVar[int]
    BY_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    tail_latency_ms_p50: float
    tail_latency_ms_p95: float
    tail_samples: int
    bytes_per_frame: float
    head_latency_ms: float
    accuracy: float
    accuracy_metric: str
    by_batch_size: _containers.RepeatedCompositeFieldContainer[BatchLatency]
    def __init__(self, tail_latency_ms_p50: _Optional[float] = ..., tail_latency_ms_p95: _Optional[float] = ..., tail_samples: _Optional[int] = ..., bytes_per_frame: _Optional[float] = ..., head_latency_ms: _Optional[float] = ..., accuracy: _Optional[float] = ..., accuracy_metric: _Optional[str] = ..., by_batch_size: _Optional[_Iterable[_Union[BatchLatency, _Mapping]]] = ...) -> None: ...

class BranchInfo(_message.Message):
    __slots__ = ("name", "kind", "tensors", "default_bits", "image_format", "image_quality", "split_point", "profile", "head_weights_sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_BITS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_QUALITY_FIELD_NUMBER: _ClassVar[int]
    SPLIT_POINT_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    HEAD_WEIGHTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    tensors: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    default_bits: int
    image_format: ImageFormat
    image_quality: int
    split_point: str
    profile: BranchProfile
    head_weights_sha256: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., tensors: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., default_bits: _Optional[int] = ..., image_format: _Optional[_Union[ImageFormat, str]] = ..., image_quality: _Optional[int] = ..., split_point: _Optional[str] = ..., profile: _Optional[_Union[BranchProfile, _Mapping]] = ..., head_weights_sha256: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "task", "num_classes", "class_names", "min_size", "max_size", "branches", "weights")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    MIN_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    BRANCHES_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    task: str
    num_classes: int
    class_names: _containers.RepeatedScalarFieldContainer[str]
    min_size: int
    max_size: int
    branches: _containers.RepeatedCompositeFieldContainer[BranchInfo]
    weights: str
    def __init__(self, name: _Optional[str] = ..., task: _Optional[str] = ..., num_classes: _Optional[int] = ..., class_names: _Optional[_Iterable[str]] = ..., min_size: _Optional[int] = ..., max_size: _Optional[int] = ..., branches: _Optional[_Iterable[_Union[BranchInfo, _Mapping]]] = ..., weights: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BranchLoad(_message.Message):
    __slots__ = ("model", "branch", "queue_depth", "tail_latency_ms_p50", "tail_latency_ms_p95", "frames", "by_batch_size", "replicas")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    TAIL_LATENCY_MS_P50_FIELD_NUMBER: _ClassVar[int]
    TAIL_LATENCY_MS_P95_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    BY_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    model: str
    branch: str
    queue_depth: int
    tail_latency_ms_p50: float
    tail_latency_ms_p95: float
    frames: int
    by_batch_size: _containers.RepeatedCompositeFieldContainer[BatchLatency]
    replicas: int
    def __init__(self, model: _Optional[str] = ..., branch: _Optional[str] = ..., queue_depth: _Optional[int] = ..., tail_latency_ms_p50: _Optional[float] = ..., tail_latency_ms_p95: _Optional[float] = ..., frames: _Optional[int] = ..., by_batch_size: _Optional[_Iterable[_Union[BatchLatency, _Mapping]]] = ..., replicas: _Optional[int] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("server_id", "device", "queue_depth", "queue_capacity", "in_flight", "load", "frames_per_second", "branches", "uptime_s")
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    QUEUE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    FRAMES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    BRANCHES_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    server_id: str
    device: str
    queue_depth: int
    queue_capacity: int
    in_flight: int
    load: float
    frames_per_second: float
    branches: _containers.RepeatedCompositeFieldContainer[BranchLoad]
    uptime_s: float
    def __init__(self, server_id: _Optional[str] = ..., device: _Optional[str] = ..., queue_depth: _Optional[int] = ..., queue_capacity: _Optional[int] = ..., in_flight: _Optional[int] = ..., load: _Optional[float] = ..., frames_per_second: _Optional[float] = ..., branches: _Optional[_Iterable[_Union[BranchLoad, _Mapping]]] = ..., uptime_s: _Optional[float] = ...) -> None: ...

class CameraIntrinsics(_message.Message):
    __slots__ = ("focal_length_mm", "f_number", "pixel_pitch_um")
    FOCAL_LENGTH_MM_FIELD_NUMBER: _ClassVar[int]
    F_NUMBER_FIELD_NUMBER: _ClassVar[int]
    PIXEL_PITCH_UM_FIELD_NUMBER: _ClassVar[int]
    focal_length_mm: float
    f_number: float
    pixel_pitch_um: float
    def __init__(self, focal_length_mm: _Optional[float] = ..., f_number: _Optional[float] = ..., pixel_pitch_um: _Optional[float] = ...) -> None: ...

class FocalStackRequest(_message.Message):
    __slots__ = ("request_id", "frames", "frame_tensors", "focus_distances", "focus_unit", "camera", "align", "refine", "deadline_ms")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FRAME_TENSORS_FIELD_NUMBER: _ClassVar[int]
    FOCUS_DISTANCES_FIELD_NUMBER: _ClassVar[int]
    FOCUS_UNIT_FIELD_NUMBER: _ClassVar[int]
    CAMERA_FIELD_NUMBER: _ClassVar[int]
    ALIGN_FIELD_NUMBER: _ClassVar[int]
    REFINE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    frames: _containers.RepeatedCompositeFieldContainer[Image]
    frame_tensors: _containers.RepeatedCompositeFieldContainer[Tensor]
    focus_distances: _containers.RepeatedScalarFieldContainer[float]
    focus_unit: FocusUnit
    camera: CameraIntrinsics
    align: bool
    refine: bool
    deadline_ms: float
    def __init__(self, request_id: _Optional[int] = ..., frames: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., frame_tensors: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., focus_distances: _Optional[_Iterable[float]] = ..., focus_unit: _Optional[_Union[FocusUnit, str]] = ..., camera: _Optional[_Union[CameraIntrinsics, _Mapping]] = ..., align: _Optional[bool] = ..., refine: _Optional[bool] = ..., deadline_ms: _Optional[float] = ...) -> None: ...

class DepthTiming(_message.Message):
    __slots__ = ("decode_ms", "align_ms", "dff_ms", "prior_ms", "fusion_ms", "encode_ms", "server_total_ms")
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    ALIGN_MS_FIELD_NUMBER: _ClassVar[int]
    DFF_MS_FIELD_NUMBER: _ClassVar[int]
    PRIOR_MS_FIELD_NUMBER: _ClassVar[int]
    FUSION_MS_FIELD_NUMBER: _ClassVar[int]
    ENCODE_MS_FIELD_NUMBER: _ClassVar[int]
    SERVER_TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    align_ms: float
    dff_ms: float
    prior_ms: float
    fusion_ms: float
    encode_ms: float
    server_total_ms: float
    def __init__(self, decode_ms: _Optional[float] = ..., align_ms: _Optional[float] = ..., dff_ms: _Optional[float] = ..., prior_ms: _Optional[float] = ..., fusion_ms: _Optional[float] = ..., encode_ms: _Optional[float] = ..., server_total_ms: _Optional[float] = ...) -> None: ...

class DepthResult(_message.Message):
    __slots__ = ("request_id", "depth", "confidence", "timing", "alignment_residual_px", "scale", "shift", "confident_pixels")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_RESIDUAL_PX_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    SHIFT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENT_PIXELS_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    depth: Tensor
    confidence: Tensor
    timing: DepthTiming
    alignment_residual_px: float
    scale: float
    shift: float
    confident_pixels: int
    def __init__(self, request_id: _Optional[int] = ..., depth: _Optional[_Union[Tensor, _Mapping]] = ..., confidence: _Optional[_Union[Tensor, _Mapping]] = ..., timing: _Optional[_Union[DepthTiming, _Mapping]] = ..., alignment_residual_px: _Optional[float] = ..., scale: _Optional[float] = ..., shift: _Optional[float] = ..., confident_pixels: _Optional[int] = ...) -> None: ...

class HeadRequest(_message.Message):
    __slots__ = ("model", "branch", "known_sha256")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    KNOWN_SHA256_FIELD_NUMBER: _ClassVar[int]
    model: str
    branch: str
    known_sha256: str
    def __init__(self, model: _Optional[str] = ..., branch: _Optional[str] = ..., known_sha256: _Optional[str] = ...) -> None: ...

class HeadResponse(_message.Message):
    __slots__ = ("model", "branch", "spec_json", "onnx", "sha256", "not_modified")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    ONNX_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    NOT_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    model: str
    branch: str
    spec_json: str
    onnx: bytes
    sha256: str
    not_modified: bool
    def __init__(self, model: _Optional[str] = ..., branch: _Optional[str] = ..., spec_json: _Optional[str] = ..., onnx: _Optional[bytes] = ..., sha256: _Optional[str] = ..., not_modified: _Optional[bool] = ...) -> None: ...
