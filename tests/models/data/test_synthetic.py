"""Still-image generator: determinism, label consistency, occlusion, empty share, scales."""

from __future__ import annotations

import numpy as np
import pytest

from splitedge.models.data import (
    CLASS_NAMES,
    DataConfigError,
    SceneConfig,
    SceneSpec,
    ShapeSpec,
    generate_image,
    render_scene,
)
from splitedge.models.data.camera import CameraSpec
from splitedge.models.data.synthetic import BackgroundSpec

TINY = SceneConfig(width=64, height=48, min_object_px=5.0)
SMALL = SceneConfig(width=128, height=96)


def _shape(kind: str, cx: float, cy: float, size_px: float, class_id: int = 0) -> ShapeSpec:
    return ShapeSpec(
        kind=kind,
        cx=cx,
        cy=cy,
        size_px=size_px,
        aspect=1.0,
        angle_rad=0.0,
        colour=(0.9, 0.2, 0.1),
        colour2=(0.2, 0.2, 0.9),
        texture="flat",
        texture_freq=3.0,
        texture_seed=1,
        shape_param=0.5,
        class_id=class_id,
        track_id=class_id * 10,
    )


def _scene(*layers: ShapeSpec) -> SceneSpec:
    background = BackgroundSpec(1, (0.3, 0.3, 0.3), (0.5, 0.5, 0.5), (0.4, 0.4, 0.4), 0.0, 0.0)
    return SceneSpec(64, 48, background, tuple(layers), CameraSpec())


def test_same_seed_gives_identical_frames_and_labels() -> None:
    first, again = generate_image(SMALL, 7, 3), generate_image(SMALL, 7, 3)
    assert np.array_equal(first.image, again.image)
    assert np.array_equal(first.semantic, again.semantic)
    assert [i.bbox_xywh for i in first.instances] == [i.bbox_xywh for i in again.instances]


def test_different_seed_or_index_gives_different_frames() -> None:
    base = generate_image(SMALL, 7, 3).image
    assert not np.array_equal(base, generate_image(SMALL, 8, 3).image)
    assert not np.array_equal(base, generate_image(SMALL, 7, 4).image)


@pytest.mark.parametrize("index", range(6))
def test_masks_bboxes_areas_and_semantic_agree(index: int) -> None:
    sample = generate_image(SMALL, 11, index)
    assert sample.image.shape == (96, 128, 3) and sample.image.dtype == np.uint8
    covered = np.zeros(sample.semantic.shape, bool)
    for instance in sample.instances:
        rows, cols = np.nonzero(instance.mask)
        x, y, w, h = instance.bbox_xywh
        assert (x, y, w, h) == (cols.min(), rows.min(), np.ptp(cols) + 1, np.ptp(rows) + 1)
        assert instance.area_px == int(instance.mask.sum())
        assert np.all(sample.semantic[instance.mask] == instance.class_id)
        assert not (covered & instance.mask).any(), "visible masks of two objects overlap"
        assert instance.visibility >= SMALL.min_visibility
        covered |= instance.mask


def test_fully_hidden_object_is_not_annotated_but_occluder_is() -> None:
    hidden = _shape("disc", 30, 24, 10, class_id=1)
    occluder = _shape("rectangle", 30, 24, 30, class_id=2)
    sample = render_scene(_scene(hidden, occluder), camera=False)
    assert [i.class_id for i in sample.instances] == [2]
    assert sample.hidden_track_ids == [10]
    assert not (sample.semantic == 1).any()


def test_partly_hidden_object_keeps_only_visible_pixels() -> None:
    disc = _shape("disc", 20, 24, 24, class_id=1)
    alone = render_scene(_scene(disc), camera=False).instances[0]
    covered = render_scene(_scene(disc, _shape("rectangle", 32, 24, 20, class_id=2)), camera=False)
    behind = next(i for i in covered.instances if i.class_id == 1)
    assert behind.area_px < alone.area_px
    assert behind.visibility < alone.visibility
    assert not (behind.mask & covered.instances[1].mask).any()
    assert np.array_equal(behind.mask, alone.mask & ~covered.instances[1].mask)


def test_distractor_painted_over_an_object_hides_it_but_is_never_labelled() -> None:
    disc = _shape("disc", 30, 24, 10, class_id=1)
    blob = _shape("rectangle", 30, 24, 30)  # class_id 0: a distractor
    sample = render_scene(_scene(disc, blob), camera=False)
    assert sample.instances == []
    assert not sample.semantic.any()


def test_object_mostly_outside_the_frame_is_dropped() -> None:
    sample = render_scene(_scene(_shape("disc", -6, 24, 20, class_id=1)), camera=False)
    assert sample.instances == []
    assert sample.semantic.any(), "its visible sliver is still labelled in the semantic map"


def test_empty_frame_share_matches_config() -> None:
    empty = sum(not generate_image(TINY, 2, i).instances for i in range(200)) / 200
    assert abs(empty - TINY.empty_fraction) < 0.07


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_empty_fraction_extremes(fraction: float) -> None:
    config = SceneConfig(width=64, height=48, min_object_px=5.0, empty_fraction=fraction)
    empties = [not generate_image(config, 4, i).instances for i in range(20)]
    assert all(empties) if fraction == 1.0 else not any(empties)


def test_scales_cover_tiny_and_large_objects_and_all_classes() -> None:
    sides, classes = [], set()
    for index in range(40):
        for instance in generate_image(SMALL, 3, index).instances:
            sides.append(max(instance.bbox_xywh[2:]))
            classes.add(instance.class_id)
    assert min(sides) <= 12, "no object as small as ~8 px"
    assert max(sides) >= 0.4 * min(SMALL.width, SMALL.height), "no object near half the frame"
    assert classes == set(range(1, len(CLASS_NAMES) + 1))


def test_camera_changes_pixels_but_not_labels() -> None:
    scene = _scene(_shape("star", 30, 24, 30, class_id=4))
    clean = render_scene(scene, camera=False)
    blurred = render_scene(
        SceneSpec(
            64,
            48,
            scene.background,
            scene.layers,
            CameraSpec(gain=0.5, blur="motion", blur_px=7, noise_std=0.03),
        ),
        camera=True,
    )
    assert np.array_equal(clean.semantic, blurred.semantic)
    assert blurred.image.mean() < clean.image.mean()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"width": 16}, "width must be in [32, 8192] px, got 16"),
        ({"empty_fraction": 1.5}, "empty_fraction must be in [0, 1], got 1.5"),
        ({"max_objects": 0}, "max_objects must be in [1, 64], got 0"),
        ({"min_visibility": 0.0}, "min_visibility must be in (0, 1], got 0.0"),
        ({"min_object_px": 200.0}, "min_object_px (200.0) must be below"),
    ],
)
def test_bad_scene_config_is_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(DataConfigError) as caught:
        SceneConfig(**options)  # type: ignore[arg-type]
    assert message in str(caught.value)
