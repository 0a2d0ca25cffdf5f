"""The overlapped pipeline: frames in order and all of them, a failing stage stops everything."""

import random
import threading
import time

import cv2
import numpy as np
import pytest

from demos import pipeline
from demos.stages import StagePipeline
from edge_deeplab.app.cli import main as cli_main
from edge_deeplab.core.errors import EdgeDeeplabError
from tests.support.cli import assert_one_line_error


def _stage_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("stage:")]


def _jitter(seed):
    rng = random.Random(seed)

    def step(x):
        time.sleep(rng.random() * 0.004)  # stages of uneven, changing speed
        return x
    return step


def test_stages_keep_every_item_in_order():
    items = [(i, np.full((4, 4), i % 251, np.uint8)) for i in range(300)]
    seen_by = []

    def tag(x):
        seen_by.append(threading.current_thread().name)
        return x

    with StagePipeline(iter(items), [("a", _jitter(1)), ("b", _jitter(2)), ("tag", tag),
                                     ("c", _jitter(3))], depth=2) as p:
        out = list(p)
    assert [i for i, _ in out] == list(range(300))
    assert all(a is b for (_, a), (_, b) in zip(out, items))  # the very same frames, none copied/lost
    assert set(seen_by) == {"stage:tag"}                      # each stage on its own thread
    assert _stage_threads() == []


def test_stages_really_overlap():
    """Three stages of 20 ms each over 15 items take about 17 x 20 ms overlapped, not 45 x 20."""
    def slow(x):
        threading.Event().wait(0.02)
        return x

    with StagePipeline(range(15), [("s1", slow), ("s2", slow), ("s3", slow)]) as p:
        t0 = time.perf_counter()
        assert list(p) == list(range(15))
        took = time.perf_counter() - t0
    # the serial sum is 0.9 s; overlapped it needs about 0.34 s. A bound far from both: a pipeline
    # that runs its stages one after another cannot pass it, a loaded machine still does
    assert took < 0.75, took


@pytest.mark.parametrize("where", ["source", "stage"])
def test_a_failing_stage_stops_the_run_and_every_thread(where):
    def source():
        for i in range(10**9):  # endless: only the failure can end it
            if where == "source" and i == 7:
                raise EdgeDeeplabError("camera 0 disconnected")
            yield i

    def stage(x):
        if where == "stage" and x == 7:
            raise ValueError("bad frame 7")
        return x

    got = []
    p = StagePipeline(source(), [("first", stage), ("second", lambda x: x)])
    with pytest.raises((EdgeDeeplabError, ValueError)) as e:
        for x in p:
            got.append(x)
    assert got == list(range(7))  # everything before the failure arrived, in order
    assert str(e.value) in ("camera 0 disconnected", "bad frame 7")
    p.close()
    assert p.alive == [] and _stage_threads() == []


def test_consumer_that_stops_early_leaves_no_thread():
    p = StagePipeline(iter(range(10**9)), [("x", lambda x: x)])
    for x in p:
        if x == 3:
            break
    p.close()
    assert p.alive == []


# --------------------------------------------------------------------------------------------
# through the CLI, on a real model
# --------------------------------------------------------------------------------------------

def _numbered_clip(path, n=28, size=(160, 120)):
    """A video whose frame i has mean grey level 30 + 8 i (a texture on top), to read order back."""
    rng = np.random.default_rng(0)
    tex = rng.integers(-12, 13, (size[1], size[0], 1))
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, size)
    for i in range(n):
        w.write(np.clip(30 + 8 * i + tex, 0, 255).repeat(3, 2).astype(np.uint8))
    w.release()
    return path


def _video_means(path):
    c = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = c.read()
        if not ok:
            break
        out.append(float(f.mean()))
    c.release()
    return out


def test_demo_writes_every_frame_in_order(selfie_teacher, tmp_path, capsys):
    src = _numbered_clip(tmp_path / "numbered.mp4")
    out = tmp_path / "out.mp4"
    rc = cli_main(["demo", "--model", str(selfie_teacher), "--source", str(src), "--headless",
                   "--output", str(out), "--mean", "0", "--std", "255", "--no-overlay"])
    assert rc == 0, capsys.readouterr().err
    means, inputs = _video_means(out), _video_means(src)
    assert len(inputs) == 28 and len(means) == 28
    assert (np.diff(inputs) > 6).all()  # the frames are told apart by their brightness
    # blur keeps a flat frame's mean (re-encoding shifts all of them alike, by < 4 levels): output
    # frame i is input frame i, in order
    shift = np.asarray(means) - np.asarray(inputs)
    assert np.abs(shift).max() < 4 and shift.std() < 1, shift
    assert [int(np.argmin(np.abs(np.asarray(inputs) - m))) for m in means] == list(range(28))
    assert "28 frames from video" in capsys.readouterr().out


@pytest.mark.parametrize("stage,exc,code", [("finish", RuntimeError("matte exploded"), 1),
                                            ("infer", EdgeDeeplabError("frame 3 is broken"), 2)])
def test_a_stage_that_raises_ends_the_demo_with_one_line(selfie_teacher, tmp_path, capsys, monkeypatch,
                                                         stage, exc, code):
    """Fault injection into one stage (a real model and clip otherwise): one line, the exit code of
    that error, no thread left, the earlier output untouched and no temporary file."""
    src = _numbered_clip(tmp_path / "numbered.mp4")
    out = tmp_path / "res" / "out.mp4"
    out.parent.mkdir()
    out.write_bytes(b"an earlier result")
    real = getattr(pipeline.PortraitPipeline, stage)
    calls = []

    def failing(self, *a, **k):
        calls.append(1)
        if len(calls) == 4:
            raise exc
        return real(self, *a, **k)

    monkeypatch.setattr(pipeline.PortraitPipeline, stage, failing)
    t0 = time.perf_counter()
    rc = cli_main(["demo", "--model", str(selfie_teacher), "--source", str(src), "--headless",
                   "--output", str(out), "--mean", "0", "--std", "255"])
    assert time.perf_counter() - t0 < 60  # ended, did not hang
    err = capsys.readouterr().err
    assert_one_line_error(err, str(exc), rc=rc, code=code, prefix="edge-deeplab demo: error:")
    assert _stage_threads() == [] and not [t for t in threading.enumerate() if t.name.startswith("capture:")]
    assert out.read_bytes() == b"an earlier result"
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.mp4"]
