"""A light on-device tracker for detect-vs-track: optical-flow box propagation.

Between two detector runs (ApproxDet's detection interval) each box is carried
forward by pyramidal Lucas-Kanade optical flow (``cv2.calcOpticalFlowPyrLK``):
corner features inside the box are tracked to the next frame, points that fail
a forward-backward check are dropped, and the box moves by the median point
displacement and scales by the median change of pairwise point distances (the
median-flow idea, robust to a few bad points). A box that keeps too few points
keeps its last position and is flagged lost.

Why not OpenCV's tracker classes: the installed opencv-python-headless 5.0 has
``TrackerMIL`` (slow: tens of ms per box on a phone-class CPU) and
DaSiamRPN/Nano/Vit, which need ONNX model files this device does not have;
KCF/CSRT live in opencv-contrib. Flow on a grey, downscaled frame costs ~1 ms.

Each :meth:`BoxTracker.update` records its own wall time, so the profiler and
the scheduler see the tracker's real per-frame cost. numpy and cv2 only.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

_LK_PARAMS = {
    "winSize": (15, 15),
    "maxLevel": 2,
    "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03),
}


class TrackerError(ValueError):
    """Bad input to the tracker (wrong frame or box shape)."""


def _gray(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return np.ascontiguousarray(frame, dtype=np.uint8)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    raise TrackerError(f"expected an HxW or HxWx3 uint8 frame, got shape {frame.shape}")


def _as_boxes(boxes: np.ndarray) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.size % 4 or (arr.ndim == 2 and arr.shape[1] != 4) or arr.ndim > 2:
        raise TrackerError(f"boxes must be (N, 4) xyxy, got shape {arr.shape}")
    return arr.reshape(-1, 4)


class BoxTracker:
    """Carries detection boxes from frame to frame with sparse optical flow.

    ``scale`` < 1 tracks on a downscaled frame (cheaper; boxes stay in full-frame
    pixels). ``max_points`` bounds the features per box.
    """

    def __init__(self, *, scale: float = 0.5, max_points: int = 25, min_points: int = 4) -> None:
        if not 0 < scale <= 1:
            raise TrackerError(f"scale must be in (0, 1], got {scale}")
        self.scale = scale
        self.max_points = max_points
        self.min_points = min_points
        self._prev: np.ndarray | None = None
        self._points: list[np.ndarray] = []  # per box, (P, 1, 2) float32 in scaled pixels
        self.boxes = np.zeros((0, 4), np.float32)
        self.lost = np.zeros((0,), bool)
        self.last_cost_ms = 0.0
        self._cost_sum_ms = 0.0
        self._updates = 0

    @property
    def mean_cost_ms(self) -> float:
        """Average wall time of :meth:`update` so far (0 before the first)."""
        return self._cost_sum_ms / self._updates if self._updates else 0.0

    def _small(self, frame: np.ndarray) -> np.ndarray:
        gray = _gray(frame)
        if self.scale == 1:
            return gray
        h, w = gray.shape
        size = (max(8, round(w * self.scale)), max(8, round(h * self.scale)))
        return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)

    def _features(self, gray: np.ndarray, box: np.ndarray) -> np.ndarray:
        h, w = gray.shape
        x0, y0, x1, y1 = (box * self.scale).round().astype(int)
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(w, x1), min(h, y1)
        if x1 - x0 < 3 or y1 - y0 < 3:
            return np.zeros((0, 1, 2), np.float32)
        mask = np.zeros_like(gray)
        mask[y0:y1, x0:x1] = 255
        pts = cv2.goodFeaturesToTrack(
            gray, self.max_points, qualityLevel=0.01, minDistance=2, mask=mask, blockSize=3
        )
        if pts is None or len(pts) < self.min_points:
            # A flat box has no corners: a grid still follows it if its edges move.
            xs = np.linspace(x0, x1 - 1, 4)
            ys = np.linspace(y0, y1 - 1, 4)
            grid = np.array([[x, y] for y in ys for x in xs], np.float32).reshape(-1, 1, 2)
            pts = grid if pts is None else np.concatenate([pts.astype(np.float32), grid])
        return pts.astype(np.float32)

    def init(self, frame: np.ndarray, boxes: np.ndarray) -> None:
        """Start from a detector's ``boxes`` (xyxy, full-frame pixels) on ``frame``."""
        gray = self._small(frame)
        self.boxes = _as_boxes(boxes).copy()
        self.lost = np.zeros(len(self.boxes), bool)
        self._points = [self._features(gray, b) for b in self.boxes]
        self._prev = gray

    def update(self, frame: np.ndarray) -> np.ndarray:
        """Move every box to ``frame``; returns the (N, 4) boxes (also in :attr:`boxes`)."""
        if self._prev is None:
            raise TrackerError("call init(frame, boxes) before update(frame)")
        start = time.perf_counter()
        gray = self._small(frame)
        if gray.shape != self._prev.shape:
            raise TrackerError(f"frame size changed from {self._prev.shape} to {gray.shape}")
        for i, pts in enumerate(self._points):
            self._points[i] = self._move(i, pts, gray)
        self._prev = gray
        self.last_cost_ms = (time.perf_counter() - start) * 1000.0
        self._cost_sum_ms += self.last_cost_ms
        self._updates += 1
        return self.boxes

    def _move(self, i: int, pts: np.ndarray, gray: np.ndarray) -> np.ndarray:
        if len(pts) < self.min_points:
            self.lost[i] = True
            return pts
        nxt, status, _ = cv2.calcOpticalFlowPyrLK(self._prev, gray, pts, None, **_LK_PARAMS)
        back, status_b, _ = cv2.calcOpticalFlowPyrLK(gray, self._prev, nxt, None, **_LK_PARAMS)
        fb_error = np.linalg.norm((back - pts).reshape(-1, 2), axis=1)
        good = (status.ravel() == 1) & (status_b.ravel() == 1) & (fb_error < 1.0)
        if good.sum() < self.min_points:
            self.lost[i] = True
            return pts[good] if good.any() else pts[:0]
        old = pts[good].reshape(-1, 2)
        new = nxt[good].reshape(-1, 2)
        shift = np.median(new - old, axis=0) / self.scale
        scale = self._scale_change(old, new)
        box = self.boxes[i]
        cx, cy = (box[0] + box[2]) / 2 + shift[0], (box[1] + box[3]) / 2 + shift[1]
        half_w, half_h = (box[2] - box[0]) / 2 * scale, (box[3] - box[1]) / 2 * scale
        self.boxes[i] = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
        return new.reshape(-1, 1, 2)

    @staticmethod
    def _scale_change(old: np.ndarray, new: np.ndarray) -> float:
        if len(old) < 2:
            return 1.0
        # Pairs of consecutive points: O(P) instead of all O(P^2) pairs, enough for a median.
        d_old = np.linalg.norm(old[1:] - old[:-1], axis=1)
        d_new = np.linalg.norm(new[1:] - new[:-1], axis=1)
        ok = d_old > 1.0
        if not ok.any():
            return 1.0
        return float(np.clip(np.median(d_new[ok] / d_old[ok]), 0.8, 1.25))


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two xyxy boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def measure_tracker_ms(frames: list[np.ndarray], boxes: np.ndarray, repeats: int = 1) -> float:
    """Mean per-frame cost of tracking ``boxes`` across ``frames`` (init on the first)."""
    if len(frames) < 2:
        raise TrackerError("measuring the tracker needs at least two frames")
    costs = []
    for _ in range(repeats):
        tracker = BoxTracker()
        tracker.init(frames[0], boxes)
        for frame in frames[1:]:
            tracker.update(frame)
        costs.append(tracker.mean_cost_ms)
    return float(np.mean(costs))
