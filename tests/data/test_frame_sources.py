"""Frame sources: folders, single images, videos at a stride, globs; held-out blocks at the end."""

from __future__ import annotations

import shutil

import cv2
import pytest

from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.data.frame_sources import held_out_indices, require_decodable, resolve_sources
from tests.support.real_media import real_clip, real_photos


def test_video_frames_at_a_stride_are_the_decoded_frames():
    src, = resolve_sources([str(real_clip())], stride=7)
    assert src.kind == "video" and src.count() == 18  # ceil(120 / 7)
    got = list(src.frames())
    assert [i for i, _ in got] == list(range(18))
    cap = cv2.VideoCapture(str(real_clip()))
    for _ in range(15):  # decoded frame 14 = used frame 2
        ok, bgr = cap.read()
    cap.release()
    assert (got[2][1] == bgr[..., ::-1]).all()
    assert [i for i, _ in src.frames(start=16)] == [16, 17]


def test_folders_images_and_globs_in_order(tmp_path):
    photos = real_photos()
    folder = tmp_path / "people"
    folder.mkdir()
    for name in ("camera", "astronaut"):
        shutil.copy(photos[name], folder / f"{name}.png")
    (folder / "notes.txt").write_text("not an image")
    one = tmp_path / "grass.png"
    shutil.copy(photos["grass"], one)
    clip = tmp_path / "clips" / "a.mp4"
    clip.parent.mkdir()
    shutil.copy(real_clip(), clip)
    srcs = resolve_sources([str(folder), str(one), str(tmp_path / "clips" / "*.mp4")])
    assert [(s.path.name, s.kind) for s in srcs] == [("people", "images"), ("grass.png", "image"),
                                                      ("a.mp4", "video")]
    assert [p.name for p in srcs[0].files()] == ["astronaut.png", "camera.png"]  # by name
    frame = dict(srcs[0].frames())[1]
    assert frame.shape == (512, 512, 3)  # the grey cameraman, read as RGB
    assert len({s.key for s in srcs}) == 3


@pytest.mark.parametrize("spec, needle", [
    ("missing.mp4", "source not found"),
    ("*.nothing", "matches no image, video or folder"),
    ("notes.txt", "neither an image"),
    ("empty", "holds no images"),
])
def test_bad_sources_are_one_line(tmp_path, monkeypatch, spec, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeDeeplabError, match=needle) as e:
        resolve_sources([spec])
    assert "\n" not in str(e.value)


def test_a_source_without_a_decodable_frame(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(real_clip().read_bytes()[:200])  # truncated: no frame decodes
    src = resolve_sources([str(bad)])
    with pytest.raises(EdgeDeeplabError, match="no frame of source .*broken.mp4 decodes"):
        require_decodable(src)


def test_held_out_is_one_block_at_the_end():
    assert held_out_indices(120, 1 / 3) == list(range(80, 120))
    assert held_out_indices(10, 0.25) == [7, 8, 9]
    assert held_out_indices(2, 0.9) == [1]  # at least one frame trains
    with pytest.raises(EdgeDeeplabError):
        held_out_indices(10, 1.0)
