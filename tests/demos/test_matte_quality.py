"""The fast matte path agrees with full-resolution refinement on real frames; masks stay steady.

The reference is written out here, independently of the code under test: the person probability
bilinearly upsampled to the frame, He et al.'s grey guided filter at full resolution in float64
(box sums from cumulative sums, reflected borders), the matte levels (0.1, 0.9). That is what the
demo did per frame before the fast path (b3fd771: upsample, guided filter, levels). The frames are
real: the carphone clip resized to 1280x720 (no >= 720p clip with a person ships in a package we
can install; see benchmarks/README.md) and the astronaut photo at 640x480, 1280x720 and 1920x1080;
the probabilities are MediaPipe's selfie segmenter's.
"""

import json

import cv2
import numpy as np
import pytest

from demos import compositing as comp
from demos import pipeline
from demos.stages import opencv_threads_for
from edge_deeplab.app.cli import main as cli_main
from tests.support.real_media import real_clip, real_photos


def _box64(x, r):
    p = np.pad(x, r, mode="symmetric")  # OpenCV's BORDER_REFLECT: ...cba|abc...
    c = np.cumsum(np.cumsum(np.pad(p, ((1, 0), (1, 0))), 0), 1)
    k = 2 * r + 1
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def _reference_matte(prob, frame, radius, eps=1e-2, low=0.1, high=0.9):
    h, w = frame.shape[:2]
    i = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float64) / 255.0
    p = cv2.resize(prob.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    mi, mp = _box64(i, radius), _box64(p, radius)
    a = (_box64(i * p, radius) - mi * mp) / (_box64(i * i, radius) - mi * mi + eps)
    b = mp - a * mi
    q = np.clip(_box64(a, radius) * i + _box64(b, radius), 0, 1)
    return np.clip((q - low) / (high - low), 0, 1)


def _boundary_f_score(a, b, tol=2):
    """F-score of the 0.5-contours of two mattes, a contour pixel matching within ``tol`` pixels."""
    k3 = np.ones((3, 3), np.uint8)
    ea = cv2.morphologyEx((a > 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, k3) > 0
    eb = cv2.morphologyEx((b > 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, k3) > 0
    assert ea.sum() > 200 and eb.sum() > 200, "no person contour to compare"
    k = np.ones((2 * tol + 1, 2 * tol + 1), np.uint8)
    precision = (ea & (cv2.dilate(eb.astype(np.uint8), k) > 0)).sum() / ea.sum()
    recall = (eb & (cv2.dilate(ea.astype(np.uint8), k) > 0)).sum() / eb.sum()
    return 2 * precision * recall / (precision + recall)


def _real_frames():
    cap = cv2.VideoCapture(str(real_clip()))
    frames, i = [], 0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        if i % 40 == 0:
            frames.append(("carphone", cv2.resize(f, (1280, 720), interpolation=cv2.INTER_CUBIC)))
        i += 1
    cap.release()
    astronaut = cv2.imread(str(real_photos()["astronaut"]))
    for size in ((640, 480), (1280, 720), (1920, 1080)):
        frames.append(("astronaut", cv2.resize(astronaut, size, interpolation=cv2.INTER_CUBIC)))
    return frames


def test_fast_matte_agrees_with_full_resolution_refinement(selfie_teacher):
    from edge_deeplab.runtime import open_runner

    frames = _real_frames()
    assert len(frames) == 6
    with open_runner(selfie_teacher) as runner:
        pipe = pipeline.PortraitPipeline(runner, comp.parse_effect("blur"), smoothing=0.0,
                                         mean=0, std=255)
        for name, frame in frames:
            inferred = pipe.infer(frame)
            prob = inferred.prob
            fast = pipe.matte(frame, inferred)  # the demo's own path: low-res guide, 8-bit matte
            # the stand-alone function agrees with it to within the 8-bit rounding
            assert float(np.abs(comp.refine_matte(prob, frame) - fast).max()) <= 1.5 / 255
            ref = _reference_matte(prob, frame, comp.default_radius(frame.shape[:2]))
            assert fast.dtype == np.float32 and fast.shape == frame.shape[:2]
            assert 0.1 < (ref > 0.5).mean() < 0.9, name  # a real person in the frame
            diff = float(np.abs(fast - ref).mean())
            assert diff <= 2 / 255, (name, frame.shape, diff * 255)
            assert _boundary_f_score(fast, ref) >= 0.98, (name, frame.shape)
            # the refinement does something: the matte is not the upsampled probability itself
            up = cv2.resize(prob, frame.shape[1::-1], interpolation=cv2.INTER_LINEAR)
            assert float(np.abs(np.clip((up - 0.1) / 0.8, 0, 1) - ref).mean()) > 2 * diff


def test_motion_aware_smoothing_steadies_still_regions_and_follows_motion():
    rng = np.random.default_rng(0)
    h, w = 60, 80
    guide = rng.integers(0, 256, (h, w), dtype=np.uint8)     # a textured, still scene
    truth = np.zeros((h, w), np.float32)
    truth[15:45, 20:50] = 1.0
    aware, plain = comp.TemporalSmoother(0.6, motion=0.04), comp.TemporalSmoother(0.6)
    raw, out_a, out_p = [], [], []
    for _ in range(30):
        noisy = np.clip(truth + rng.normal(0, 0.08, truth.shape), 0, 1).astype(np.float32)
        raw.append(noisy)
        out_a.append(aware.update(noisy, guide).copy())
        out_p.append(plain.update(noisy, guide).copy())

    def flicker(seq):
        return float(np.mean([np.abs(a - b).mean() for a, b in zip(seq[11:], seq[10:-1])]))

    # where nothing moves both smooth the same: flicker well below the raw masks'
    assert flicker(out_a) < 0.6 * flicker(raw)
    assert abs(flicker(out_a) - flicker(out_p)) < 0.1 * flicker(out_p)
    # the person steps 20 px right: that part of the image changes, and the motion-aware mask
    # follows at once while the plain EMA leaves a ghost of 0.6 behind
    moved_truth = np.zeros_like(truth)
    moved_truth[15:45, 40:70] = 1.0
    moved_guide = guide.copy()
    moved_guide[15:45, 20:70] = rng.integers(0, 256, (30, 50), dtype=np.uint8)
    a = aware.update(moved_truth, moved_guide)
    p = plain.update(moved_truth, moved_guide)
    ghost = (truth == 1) & (moved_truth == 0)
    assert float(a[ghost].mean()) < 0.05 and float(p[ghost].mean()) > 0.5
    arrived = (truth == 0) & (moved_truth == 1)
    assert float(a[arrived].mean()) > 0.95 and float(p[arrived].mean()) < 0.5


def test_demo_json_reports_flicker_and_smoothing_lowers_it(selfie_teacher, tmp_path, capsys):
    """Through the CLI on the real clip: the JSON says how much the matte flickers where the image
    is still, and smoothing (the default) flickers less than none."""
    clip = real_clip()
    got = {}
    cv_threads = cv2.getNumThreads()
    for name, extra in (("smooth", []), ("raw", ["--smoothing", "0"])):
        out, js = tmp_path / f"{name}.mp4", tmp_path / f"{name}.json"
        rc = cli_main(["demo", "--model", str(selfie_teacher), "--source", str(clip), "--headless",
                       "--output", str(out), "--mean", "0", "--std", "255", "--max-frames", "40",
                       "--json", str(js), "--no-overlay"] + extra)
        assert rc == 0
        got[name] = json.loads(js.read_text())
        assert got[name]["frames"] == 40 and got[name]["frame_size"] == [176, 144]
    capsys.readouterr()
    s, r = got["smooth"], got["raw"]
    assert s["settings"]["normalization"] == {"mean": [0.0] * 3, "std": [255.0] * 3, "from": "flags"}
    assert 0 < s["mask_flicker"] < r["mask_flicker"] < 0.2
    assert 0.05 < s["flicker_static_fraction"] <= 1
    assert set(s["stages"]) >= {"capture", "preprocess", "inference", "mask", "composite", "write"}
    assert s["non_inference_ms"] == pytest.approx(
        sum(s["stages"][k]["mean_ms"] for k in ("preprocess", "mask", "composite", "write")), rel=1e-3)
    # CPU per stage (each on its own thread: no waiting in it) beside the wall times
    for k in ("preprocess", "inference", "mask", "composite", "write"):
        assert 0 < s["stages"][k]["cpu_ms"] <= s["stages"][k]["mean_ms"] * 1.01 + 0.05, k
    assert s["non_inference_cpu_ms"] == pytest.approx(
        sum(s["stages"][k]["cpu_ms"] for k in ("preprocess", "mask", "composite", "write")), rel=1e-3)
    assert s["inference_cpu_ms"] == s["stages"]["inference"]["cpu_ms"]
    # one OpenCV thread per call while the pipeline's threads fill the cores, restored after
    assert s["settings"]["opencv_threads"] == opencv_threads_for(4) and cv2.getNumThreads() == cv_threads
    assert s["settings"]["reused_frame_buffers"] is True
    assert s["machine"]["logical_cpus"] >= 1 and "cpu" in s["machine"]
