from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from splitedge.mobile_client.sources import CameraFrame, SourceError, open_source


def test_synthetic_frames_move_and_are_deterministic():
    a = list(open_source("synthetic", max_frames=3, size=(64, 48), seed=1))
    b = list(open_source("synthetic", max_frames=3, size=(64, 48), seed=1))
    assert [f.index for f in a] == [0, 1, 2]
    assert a[0].image.shape == (48, 64, 3) and a[0].image.dtype == np.uint8
    assert np.array_equal(a[2].image, b[2].image)
    assert not np.array_equal(a[0].image, a[2].image)


def test_image_folder_in_name_order(tmp_path: Path):
    for i, value in enumerate((10, 20, 30)):
        Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(tmp_path / f"f{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    frames = list(open_source(str(tmp_path)))
    assert [int(f.image[0, 0, 0]) for f in frames] == [10, 20, 30]


def test_unreadable_image_names_the_file(tmp_path: Path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(SourceError, match=r"broken\.png: cannot read image"):
        list(open_source(str(tmp_path)))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("/no/such/place", "does not exist"),
        ("camera:x", "camera index must be a number"),
    ],
)
def test_bad_source_specs(spec: str, message: str):
    with pytest.raises(SourceError, match=message):
        open_source(spec)


def test_empty_folder_and_non_video_file(tmp_path: Path):
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path))
    text = tmp_path / "a.txt"
    text.write_text("x")
    with pytest.raises(SourceError, match="not a video file"):
        open_source(str(text))


def test_tiny_synthetic_size_refused():
    with pytest.raises(SourceError, match="at least 16x16"):
        open_source("synthetic", size=(8, 8))


def test_video_file_frames_in_order(tmp_path: Path):
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened()
    for value in (0, 120, 240):
        writer.write(np.full((48, 64, 3), value, np.uint8))
    writer.release()
    frames = list(open_source(str(path)))
    assert [f.index for f in frames] == [0, 1, 2]
    assert frames[0].image.shape == (48, 64, 3)
    # MJPG is lossy; the three grey levels stay far apart.
    means = [float(f.image.mean()) for f in frames]
    assert means[0] < 20 and 100 < means[1] < 140 and means[2] > 220


def test_unreadable_video_is_refused(tmp_path: Path):
    pytest.importorskip("cv2")
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"not a video at all")
    with pytest.raises(SourceError, match="cannot open video"):
        list(open_source(str(path)))


def test_frame_is_a_deprecated_alias_of_camera_frame():
    import splitedge.mobile_client as mc
    from splitedge.mobile_client import sources

    frame = next(open_source("synthetic", max_frames=1, size=(32, 32)))
    assert isinstance(frame, CameraFrame)
    assert mc.Frame is sources.Frame is CameraFrame
    assert "Frame" not in mc.__all__ and "CameraFrame" in mc.__all__
