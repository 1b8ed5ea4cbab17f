"""Registering the slices of a hand-held focal stack to one reference slice.

Hands move between exposures, so every slice is matched to the reference with
features (ORB or SIFT) and a RANSAC fit, then refined by ECC on smoothed images,
which is sub-pixel and uses every pixel, not just corners. Smoothing matters: two
slices differ in defocus as much as in position, and a Gaussian wider than the
blur difference makes their content comparable. Hand motion over a burst is a
few pixels of shift, roll and zoom, so the default model is affine and any
estimate that moves a corner by more than ``max_motion_px`` is rejected. When a
slice yields too few feature matches, ECC starts from identity; identity is the
last resort; both fallbacks raise an :class:`AlignmentWarning`.

Homographies map slice pixel coordinates to reference pixel coordinates, so
``cv2.warpPerspective(slice, H, (w, h))`` puts a slice in the reference frame.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from splitedge.models.depth.errors import AlignmentWarning, InvalidInputError
from splitedge.models.depth.types import FocalStack

log = logging.getLogger(__name__)

Detector = Literal["orb", "sift"]
Motion = Literal["affine", "homography"]
AlignMethod = Literal["reference", "features", "features+ecc", "ecc", "identity"]


@dataclass
class AlignmentResult:
    """``stack`` in the reference frame; per slice its homography, residual and method.

    ``residuals_px`` is the RMS distance, under the final homography, between the
    slice's inlier feature matches and their reference positions; NaN when the
    slice had no usable matches. ``valid_mask`` (N, H, W) marks pixels that came
    from inside each slice rather than from the border extrapolation.
    """

    stack: FocalStack
    homographies: np.ndarray
    residuals_px: np.ndarray
    methods: list[AlignMethod]
    valid_mask: np.ndarray
    reference_index: int


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _detector(kind: Detector, min_side_px: int) -> cv2.Feature2D:
    if kind == "orb":
        # Small frames: the default 31 px border and patch would leave little image.
        patch = int(np.clip(min_side_px // 6, 9, 31))
        return cv2.ORB_create(nfeatures=1500, edgeThreshold=patch, patchSize=patch, fastThreshold=5)
    if kind == "sift":
        return cv2.SIFT_create(nfeatures=1500, contrastThreshold=0.01)
    raise InvalidInputError(f"unknown detector {kind!r}; choose 'orb' or 'sift'")


def _match(
    det: cv2.Feature2D, kind: Detector, ref_feats: tuple, gray: np.ndarray, ratio: float
) -> tuple[np.ndarray, np.ndarray]:
    """Matched point pairs (slice points, reference points), each (M, 2) float32."""
    ref_kp, ref_desc = ref_feats
    kp, desc = det.detectAndCompute(gray, None)
    if desc is None or ref_desc is None or len(kp) < 2 or len(ref_kp) < 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    norm = cv2.NORM_HAMMING if kind == "orb" else cv2.NORM_L2
    pairs = cv2.BFMatcher(norm).knnMatch(desc, ref_desc, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    src = np.float32([kp[m.queryIdx].pt for m in good]).reshape(-1, 2)
    dst = np.float32([ref_kp[m.trainIdx].pt for m in good]).reshape(-1, 2)
    return src, dst


def _ecc(
    ref_gray: np.ndarray, gray: np.ndarray, init: np.ndarray, motion: Motion, sigma_px: float
) -> np.ndarray | None:
    """ECC refinement; returns the slice->reference homography or None if it fails."""
    # ECC's warp maps template (reference) coordinates into the input image.
    warp = np.linalg.inv(init)
    warp /= warp[2, 2]
    mode = cv2.MOTION_AFFINE if motion == "affine" else cv2.MOTION_HOMOGRAPHY
    warp32 = (warp[:2] if motion == "affine" else warp).astype(np.float32)
    ref_s = cv2.GaussianBlur(ref_gray.astype(np.float32), (0, 0), sigma_px)
    img_s = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), sigma_px)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6)
    try:
        _, warp32 = cv2.findTransformECC(ref_s, img_s, warp32, mode, criteria, None, 1)
    except cv2.error as exc:
        log.debug("ECC did not converge: %s", exc)
        return None
    full = np.eye(3)
    full[: warp32.shape[0]] = warp32
    homography = np.linalg.inv(full)
    return homography / homography[2, 2]


def _corner_motion_px(h: np.ndarray, shape_hw: tuple[int, int]) -> float:
    return corner_error_px(h, np.eye(3), shape_hw)


def _rms_residual(h: np.ndarray, src: np.ndarray, dst: np.ndarray) -> float:
    if len(src) == 0:
        return float("nan")
    mapped = cv2.perspectiveTransform(src.reshape(-1, 1, 2).astype(np.float64), h).reshape(-1, 2)
    return float(np.sqrt(np.mean(np.sum((mapped - dst) ** 2, axis=1))))


def _feature_estimate(
    src: np.ndarray, dst: np.ndarray, motion: Motion, threshold_px: float
) -> tuple[np.ndarray | None, np.ndarray]:
    """RANSAC fit of slice->reference points: (3x3 or None, inlier mask)."""
    none = np.zeros(len(src), bool)
    if len(src) < 4:
        return None, none
    if motion == "affine":
        # 4 degrees of freedom: stable with the few matches a small frame gives.
        model, mask = cv2.estimateAffinePartial2D(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold_px
        )
        hom = None if model is None else np.vstack([model, [0.0, 0.0, 1.0]])
    else:
        hom, mask = cv2.findHomography(src, dst, cv2.RANSAC, threshold_px)
    return hom, (none if mask is None else mask.ravel().astype(bool))


def align_focal_stack(
    stack: FocalStack,
    *,
    reference_index: int | None = None,
    detector: Detector = "sift",
    motion: Motion = "affine",
    min_inliers: int = 12,
    ransac_threshold_px: float = 2.0,
    ratio: float = 0.8,
    ecc_sigma_px: float = 2.5,
    max_motion_px: float | None = None,
) -> AlignmentResult:
    """Warp every slice onto ``reference_index`` (default: the middle slice).

    ``max_motion_px`` (default 5% of the image diagonal) bounds how far a corner
    may move; hand shake over a burst stays well below it.
    """
    if motion not in ("affine", "homography"):
        raise InvalidInputError(f"unknown motion model {motion!r}; choose affine or homography")
    n = len(stack)
    ref = n // 2 if reference_index is None else reference_index
    if not 0 <= ref < n:
        raise InvalidInputError(f"reference_index {ref} out of range for {n} slices")
    h, w = stack.size_hw
    limit_px = 0.05 * float(np.hypot(h, w)) if max_motion_px is None else max_motion_px
    det = _detector(detector, min(h, w))
    grays = [_gray(img) for img in stack.images]
    ref_feats = det.detectAndCompute(grays[ref], None)

    homographies = np.repeat(np.eye(3)[None], n, axis=0)
    residuals = np.full(n, np.nan)
    methods: list[AlignMethod] = ["reference"] * n
    aligned = stack.images.copy()
    valid = np.ones((n, h, w), bool)
    residuals[ref] = 0.0
    for i in range(n):
        if i == ref:
            continue
        src, dst = _match(det, detector, ref_feats, grays[i], ratio)
        hom, inliers = _feature_estimate(src, dst, motion, ransac_threshold_px)
        trusted = (
            hom is not None
            and inliers.sum() >= min_inliers
            and _corner_motion_px(hom, (h, w)) <= limit_px
        )
        start = hom if trusted else np.eye(3)
        refined = _ecc(grays[ref], grays[i], start, motion, ecc_sigma_px)
        if refined is not None and _corner_motion_px(refined, (h, w)) > limit_px:
            refined = None  # ECC ran off to a false optimum
        if trusted:
            final, methods[i] = (
                (refined, "features+ecc") if refined is not None else (hom, "features")
            )
        else:
            final, methods[i] = (refined, "ecc") if refined is not None else (np.eye(3), "identity")
            warnings.warn(
                f"slice {i}: {int(inliers.sum())} usable feature inliers (need {min_inliers}); "
                f"aligned by {methods[i]}",
                AlignmentWarning,
                stacklevel=2,
            )
            inliers = np.zeros(len(src), bool)
        homographies[i] = final / final[2, 2]
        residuals[i] = _rms_residual(homographies[i], src[inliers], dst[inliers])
        aligned[i] = cv2.warpPerspective(
            stack.images[i],
            homographies[i],
            (w, h),
            flags=cv2.INTER_LANCZOS4,
            borderMode=cv2.BORDER_REFLECT,
        )
        inside = np.ones((h, w), np.uint8)
        valid[i] = cv2.warpPerspective(inside, homographies[i], (w, h), flags=cv2.INTER_NEAREST) > 0
    return AlignmentResult(
        stack=FocalStack(aligned, stack.focus_distances_m.copy(), stack.camera),
        homographies=homographies,
        residuals_px=residuals,
        methods=methods,
        valid_mask=valid,
        reference_index=ref,
    )


def corner_error_px(
    estimated: np.ndarray, true_inverse: np.ndarray, shape_hw: tuple[int, int]
) -> float:
    """Largest corner displacement of ``estimated @ true_inverse`` (identity = 0 px).

    With ``true_inverse`` the motion that moved the slice (reference -> slice),
    a perfect slice -> reference estimate composes to identity.
    """
    h, w = shape_hw
    corners = np.float64([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]).reshape(-1, 1, 2)
    moved = cv2.perspectiveTransform(corners, estimated @ true_inverse)
    return float(np.max(np.linalg.norm((moved - corners).reshape(-1, 2), axis=1)))
