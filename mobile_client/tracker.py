"""A light on-device tracker for detect-vs-track: template matching or optical flow.

Between two detector runs (ApproxDet's detection interval) each box is carried
forward to the next frame. Two methods (``BoxTracker(method=...)``):

- ``"template"`` (the default): the box's patch, padded by ``pad`` of its size on
  each side, is searched for in the next frame within ``search`` x the frame
  diagonal of its last place (``cv2.matchTemplate``, normalised cross-correlation);
  the box moves to the best match and the patch is cut again there. A best match
  under ``min_match`` (or a flat patch, which has no correlation) leaves the box
  where it was and flags it lost. Boxes keep their size.
- ``"flow"``: pyramidal Lucas-Kanade optical flow (``cv2.calcOpticalFlowPyrLK``):
  corner features inside the box are tracked to the next frame, points that fail a
  forward-backward check are dropped, and the box moves by the median point
  displacement and scales by the median change of pairwise point distances (the
  median-flow idea). A box that keeps too few points stays and is flagged lost.

Why template matching is the default (``python -m benchmarks.tracker``: 320x240
synthetic video, boxes from the student's own local detector; docs/benchmarks.md):
per-frame recall at IoU 0.5 of boxes carried 1 / 3 / 5 frames was, template against
flow, 0.84 / 0.76 / 0.72 against 0.79 / 0.71 / 0.63 on the field benchmark's video
(seed 1), 0.70 / 0.64 / 0.60 against 0.68 / 0.58 / 0.53 on seed 3, about equal on
seed 2, and 0.74 / 0.55 / 0.43 against 0.75 / 0.57 / 0.47 on the profile's video
(seed 424242, 16-frame clips), at about half the cost per update (2-4 ms against
4-9 ms here). Flow's large misses came on small, fast objects (about 10 px wide,
6 px a frame); flow estimates scale, which a patch does not.

Why not OpenCV's tracker classes: the installed opencv-python-headless 5.0 has
``TrackerMIL`` (slow: tens of ms per box on a phone-class CPU) and
DaSiamRPN/Nano/Vit, which need ONNX model files this device does not have;
KCF/CSRT live in opencv-contrib.

Each :meth:`BoxTracker.update` records its own wall time, so the profiler and
the scheduler see the tracker's real per-frame cost. numpy and cv2 only.
"""

from __future__ import annotations

import math
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


METHODS = ("template", "flow")


class BoxTracker:
    """Carries detection boxes from frame to frame (module docstring: the two methods).

    ``scale`` < 1 tracks on a downscaled frame (cheaper; boxes stay in full-frame
    pixels); by default 1 for ``template`` and 0.5 for ``flow``. Template: ``pad``,
    ``search`` (a fraction of the frame diagonal) and ``min_match``. Flow:
    ``max_points`` bounds the features per box, ``min_points`` is the fewest it follows.
    """

    def __init__(
        self,
        *,
        method: str = "template",
        scale: float | None = None,
        pad: float = 0.2,
        search: float = 0.04,
        min_match: float = 0.3,
        max_points: int = 25,
        min_points: int = 4,
    ) -> None:
        if method not in METHODS:
            raise TrackerError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        scale = (1.0 if method == "template" else 0.5) if scale is None else scale
        if not 0 < scale <= 1:
            raise TrackerError(f"scale must be in (0, 1], got {scale}")
        if not 0 <= pad <= 1:
            raise TrackerError(f"pad must be in [0, 1], got {pad}")
        if not 0 < search <= 1:
            raise TrackerError(f"search must be in (0, 1], got {search}")
        if not -1 <= min_match <= 1:
            raise TrackerError(f"min_match must be in [-1, 1], got {min_match}")
        self.method = method
        self.scale = scale
        self.pad = pad
        self.search = search
        self.min_match = min_match
        self.max_points = max_points
        self.min_points = min_points
        self._prev: np.ndarray | None = None
        self._points: list[np.ndarray] = []  # flow: per box, (P, 1, 2) float32, scaled px
        # template: per box, (patch, its top-left x, y in scaled px) or None (too small)
        self._patches: list[tuple[np.ndarray, int, int] | None] = []
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
        if self.method == "template":
            self._patches = [self._patch(gray, b) for b in self.boxes]
        else:
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
        if self.method == "template":
            radius = max(2, round(self.search * math.hypot(*gray.shape)))  # once per frame
            for i, patch in enumerate(self._patches):
                self._patches[i] = self._match(i, patch, gray, radius)
        else:
            for i, pts in enumerate(self._points):
                self._points[i] = self._move(i, pts, gray)
        self._prev = gray
        self.last_cost_ms = (time.perf_counter() - start) * 1000.0
        self._cost_sum_ms += self.last_cost_ms
        self._updates += 1
        return self.boxes

    def _patch(self, gray: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, int, int] | None:
        """The box's padded patch of ``gray`` and its top-left; None when under 3x3 px."""
        h, w = gray.shape
        pw, ph = (box[2] - box[0]) * self.pad, (box[3] - box[1]) * self.pad
        k = self.scale
        x0, y0 = max(0, round((box[0] - pw) * k)), max(0, round((box[1] - ph) * k))
        x1, y1 = min(w, round((box[2] + pw) * k)), min(h, round((box[3] + ph) * k))
        if x1 - x0 < 3 or y1 - y0 < 3:
            return None
        return gray[y0:y1, x0:x1].copy(), x0, y0

    def _match(
        self, i: int, patch: tuple[np.ndarray, int, int] | None, gray: np.ndarray, r: int
    ) -> tuple[np.ndarray, int, int] | None:
        """Box ``i`` moved to its patch's best match within ``r`` px; the patch cut again."""
        if patch is None:
            self.lost[i] = True
            return None
        image, x0, y0 = patch
        ph, pw = image.shape
        h, w = gray.shape
        sx0, sy0 = max(0, x0 - r), max(0, y0 - r)
        sx1, sy1 = min(w, x0 + pw + r), min(h, y0 + ph + r)
        window = gray[sy0:sy1, sx0:sx1]
        if window.shape[0] < ph or window.shape[1] < pw or float(image.std()) < 1e-3:
            self.lost[i] = True  # no room to search, or a flat patch: nothing to correlate
            return patch
        scores = cv2.matchTemplate(window, image, cv2.TM_CCOEFF_NORMED)
        _, best, _, (bx, by) = cv2.minMaxLoc(scores)
        if not math.isfinite(best) or best < self.min_match:
            self.lost[i] = True
            return patch
        dx, dy = (sx0 + bx - x0) / self.scale, (sy0 + by - y0) / self.scale
        self.boxes[i] += np.array([dx, dy, dx, dy], np.float32)
        self.lost[i] = False
        # Cut the patch again where the box is now: the object's look drifts slowly.
        return self._patch(gray, self.boxes[i])

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
