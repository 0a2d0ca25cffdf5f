"""The portrait demo end to end: capture sources, person-channel rules, headless runs through real
.tflite models (a tiny DeepLab v3+ and small hand-wired colour segmenters), and error exits."""

import json
import os
import time

import cv2
import numpy as np
import pytest

from demos import capture as cap_lib
from demos import clip as clip_lib
from demos import compositing as comp
from demos import outputs, person, pipeline, portrait
from edge_deeplab.app.cli import main as cli_main
from edge_deeplab.core.errors import EdgeDeeplabError
from tests.support.cli import assert_one_line_error, default_sigint
from tests.support.clip_images import generate_images
from tests.support.real_media import read_video

# --------------------------------------------------------------------------------------------
# fixtures: real .tflite models
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def deeplab_tflite(pytestconfig):
    """A tiny, untrained DeepLab v3+ (64x64, 21 VOC classes) exported to .tflite."""
    from tests.support.tiny import tiny_tflite

    return tiny_tflite(pytestconfig, num_classes=21, aspp_filters=32, decoder_filters=32,
                       low_level_filters=16)


def _color_model(kind: str, size=(64, 64)):
    """A 'third-party' segmenter wired by hand: person logit = 10 * (R - G) - 5 on [-1, 1] inputs,
    so saturated red pixels are person and grey/blue/green ones are not."""
    from edge_deeplab.core._tf import keras, tf

    inp = keras.Input(size + (3,))
    if kind == "labelled":  # 5 classes, 'person' is channel 2 (named only in the metadata)
        conv = keras.layers.Conv2D(5, 1)
        out = conv(inp)
        w = np.zeros((1, 1, 3, 5), np.float32)
        w[0, 0, :, 2] = [10, -10, 0]
        conv.set_weights([w, np.array([0, 0, -5, 0, 0], np.float32)])
    elif kind == "sigmoid":
        conv = keras.layers.Conv2D(1, 1, activation="sigmoid")
        out = conv(inp)
        conv.set_weights([np.array([10, -10, 0], np.float32).reshape(1, 1, 3, 1),
                          np.array([-5], np.float32)])
    else:
        conv = keras.layers.Conv2D(2, 1)
        out = conv(inp)
        w = np.zeros((1, 1, 3, 2), np.float32)
        w[0, 0, :, 1] = [10, -10, 0]
        conv.set_weights([w, np.array([0, -5], np.float32)])
        if kind == "classmap":
            out = keras.layers.Lambda(lambda t: tf.argmax(t, axis=-1, output_type=tf.int32))(out)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def color_models(tmp_path_factory):
    from tests.support.tiny import convert_naive

    d = tmp_path_factory.mktemp("colormodels")
    paths = {}
    for kind in ("sigmoid", "binary", "classmap", "labelled"):
        p = d / f"{kind}.tflite"
        p.write_bytes(convert_naive(_color_model(kind)))
        paths[kind] = p
    # metadata sidecar (what the runtime reads when the .tflite has no embedded metadata)
    (d / "labelled.json").write_text(json.dumps(
        {"labels": ["background", "ball", "person", "box", "cone"], "output": "logits"}))
    # a classifier: (1, 10) output
    from edge_deeplab.core._tf import keras

    inp = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(inp)
    clf = keras.Model(inp, keras.layers.Dense(10)(x))
    paths["classifier"] = d / "classifier.tflite"
    paths["classifier"].write_bytes(convert_naive(clf))
    return paths


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return clip_lib.generate_clip(tmp_path_factory.mktemp("clip") / "walk.mp4", num_frames=12,
                                  width=160, height=120, fps=12)




def _red_rect_frame(h=120, w=200, rect=(30, 50, 70, 130)):
    img = np.full((h, w, 3), 128, np.uint8)
    y0, x0, y1, x1 = rect
    img[y0:y1, x0:x1] = (0, 0, 255)  # BGR red
    truth = np.zeros((h, w), bool)
    truth[y0:y1, x0:x1] = True
    return img, truth


# --------------------------------------------------------------------------------------------
# capture
# --------------------------------------------------------------------------------------------

def test_clip_and_video_source(clip, tmp_path):
    assert clip.path.is_file()
    frame, mask = clip_lib.render_frame(3, 12, 160, 120)
    assert frame.shape == (120, 160, 3) and mask.shape == (120, 160)
    assert 0.03 < (mask > 127).mean() < 0.5  # a figure, not the whole frame
    src = cap_lib.open_source(str(clip.path))
    assert src.kind == "video" and not src.is_live
    frames = list(src)
    src.close()
    assert len(frames) == 12 and frames[0].image.shape == (120, 160, 3)
    assert [f.index for f in frames] == list(range(12))


def test_image_and_folder_sources(tmp_path):
    paths = generate_images(tmp_path / "imgs", num_images=3, width=64, height=48)
    src = cap_lib.open_source(tmp_path / "imgs")
    assert src.kind == "folder" and [f.name for f in src] == [p.name for p in paths]
    one = cap_lib.open_source(paths[0])
    assert one.kind == "image" and len(list(one)) == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeDeeplabError, match="no images"):
        cap_lib.open_source(tmp_path / "empty")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(EdgeDeeplabError, match="cannot read image"):
        cap_lib.open_source(tmp_path / "bad.png")
    (tmp_path / "bad.mp4").write_bytes(os.urandom(4096))
    with pytest.raises(EdgeDeeplabError, match="cannot read video"):
        cap_lib.open_source(tmp_path / "bad.mp4")
    with pytest.raises(EdgeDeeplabError, match="source not found"):
        cap_lib.open_source(tmp_path / "nope.mp4")


def test_missing_camera():
    n = next(i for i in range(7, 256) if not os.path.exists(f"/dev/video{i}"))  # a camera no machine has
    with pytest.raises(EdgeDeeplabError, match=f"camera {n}"):
        cap_lib.open_source(str(n))


def test_live_capture_drops_stale_frames_and_reports_disconnect(tmp_path):
    """A live reader (camera semantics) over a fast source keeps only the newest frame; when the
    source stops delivering it reports a disconnect instead of hanging."""
    info = clip_lib.generate_clip(tmp_path / "fast.mp4", num_frames=40, width=64, height=48)
    vc = cv2.VideoCapture(str(info.path))
    live = cap_lib.ThreadedCapture(vc, "camera sim", live=True, stall_timeout=0.5)
    got = []
    with pytest.raises(EdgeDeeplabError, match="disconnected"):
        for f in live:
            got.append(f)
            time.sleep(0.03)  # a slow consumer (inference)
    live.close()
    assert 1 <= len(got) < 40
    assert live.dropped > 0 and len(got) + live.dropped == 40


# --------------------------------------------------------------------------------------------
# person channel
# --------------------------------------------------------------------------------------------

def test_resolve_person_channel_rules():
    r = person.resolve_person_channel
    assert r((1, 64, 64, 21), np.float32).index == 15
    syn = {"labels": ["background", "person", "ball", "box", "cone"]}
    sel = r((1, 64, 64, 5), np.float32, syn)
    assert (sel.mode, sel.index) == ("softmax", 1) and "metadata" in sel.reason
    assert r((1, 64, 64, 2), np.float32).index == 1
    assert r((1, 64, 64, 3), np.float32, {"labels": ["bg", "cat", "Person"]}).index == 2
    assert r((1, 64, 64, 1), np.float32).mode == "sigmoid"
    assert r((1, 64, 64, 1), np.uint8, quantized=True).mode == "sigmoid"
    cm = r((1, 64, 64), np.int32, {"labels": ["background", "person"]})
    assert (cm.mode, cm.index) == ("classmap", 1)
    assert r((1, 64, 64, 21), np.float32, person_class=3).index == 3
    with pytest.raises(EdgeDeeplabError, match="person-class"):
        r((1, 64, 64, 5), np.float32)
    with pytest.raises(EdgeDeeplabError, match="out of range"):
        r((1, 64, 64, 21), np.float32, person_class=21)


def test_person_probability_modes():
    sel = person.PersonSelector("softmax", 1, "", 2)
    logits = np.array([[[0.0, 4.0], [4.0, 0.0]]], np.float32)
    p = person.person_probability(logits, sel)
    np.testing.assert_allclose(p, [[1 / (1 + np.exp(-4)), 1 / (1 + np.exp(4))]], rtol=1e-5)
    probs = np.array([[[0.2, 0.8], [0.9, 0.1]]], np.float32)  # already probabilities: used as-is
    np.testing.assert_allclose(person.person_probability(probs, sel), [[0.8, 0.1]], rtol=1e-6)
    sig = person.PersonSelector("sigmoid", 0, "", 1)
    np.testing.assert_allclose(person.person_probability(np.array([[[0.0], [100.0]]]), sig),
                               [[0.5, 1.0]], rtol=1e-6)
    cm = person.PersonSelector("classmap", 15, "", 21)
    assert person.person_probability(np.array([[15, 0]]), cm).tolist() == [[1.0, 0.0]]


# --------------------------------------------------------------------------------------------
# the pipeline through real models
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["sigmoid", "binary", "classmap", "labelled"])
def test_pipeline_mask_lands_on_the_person(color_models, kind):
    """Letterbox -> inference -> crop -> upsample puts the matte where the 'person' is in a
    non-square frame, for 1-channel sigmoid, binary and class-map models."""
    from edge_deeplab.runtime import open_runner

    frame, truth = _red_rect_frame()
    r = open_runner(color_models[kind], accelerator="cpu", threads=1)
    try:
        pipe = pipeline.PortraitPipeline(r, comp.parse_effect("color:0,255,0"),
                                         smoothing=0.0, refine="none")
        assert pipe.selector.mode == {"sigmoid": "sigmoid", "binary": "softmax",
                                      "classmap": "classmap", "labelled": "softmax"}[kind]
        assert pipe.selector.index == {"sigmoid": 0, "binary": 1, "classmap": 1, "labelled": 2}[kind]
        out, alpha, times = pipe.process(frame)
    finally:
        r.close()
    assert set(times) >= {"preprocess", "inference", "mask", "composite"}
    pred = alpha > 0.5
    iou = (pred & truth).sum() / (pred | truth).sum()
    assert iou > 0.85, iou
    # far inside the person the frame is kept exactly; far outside it is the green background
    assert (out[40:60, 70:110] == frame[40:60, 70:110]).all()
    assert (out[5:20, 5:40] == (0, 255, 0)).all()


def test_headless_video_through_tiny_deeplab(deeplab_tflite, clip, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    rc = cli_main(["demo", "--model", str(deeplab_tflite), "--source", str(clip.path),
                   "--headless", "--output", str(out), "--threads", "1"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "FPS end-to-end" in text and "inference" in text and "person = class 15" in text
    frames = read_video(out)
    assert len(frames) == clip.num_frames
    assert frames[0].shape == (clip.height, clip.width, 3)
    # --max-frames caps it
    res = portrait.run_demo(deeplab_tflite, clip.path, effect="blur", headless=True,
                            output=tmp_path / "five.mp4", max_frames=5, overlay=False, log=None)
    assert res.frames == 5 and res.output == tmp_path / "five.mp4"
    assert len(read_video(res.output)) == 5
    assert set(res.stages) >= {"capture", "preprocess", "inference", "mask", "composite", "write"}
    assert res.fps > 0 and res.frame_size == (clip.width, clip.height)


def test_mask_video_shows_the_person_where_it_is(color_models, tmp_path):
    """``--effect mask`` writes the matte: white on the (red) person as it moves, black elsewhere.
    A demo that wrote black (or white, or stale) frames fails here."""
    src = tmp_path / "rect.mp4"
    w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 10, (200, 120))
    truths = []
    for i in range(8):
        x0 = 20 + 12 * i
        frame, truth = _red_rect_frame(rect=(30, x0, 90, x0 + 60))
        w.write(frame)
        truths.append(truth)
    w.release()
    res = portrait.run_demo(color_models["sigmoid"], src, effect="mask", headless=True,
                            output=tmp_path / "matte.mp4", overlay=False, smoothing=0.0, log=None)
    frames = read_video(res.output)
    assert res.frames == 8 and len(frames) == 8
    for m, truth in zip(frames, truths):
        white = m.min(axis=2) > 200
        black = m.max(axis=2) < 55
        assert (white & truth).sum() > 0.85 * truth.sum()     # the person is white...
        assert (black & ~truth).sum() > 0.85 * (~truth).sum()  # ...and only the person


def test_video_output_measures_live_rate(tmp_path):
    """A camera recording stores the rate frames were really processed at, so it plays back at
    the right speed; a short recording (fewer frames than the measuring window) still lands."""
    img = np.zeros((48, 64, 3), np.uint8)
    v = outputs.VideoOutput(tmp_path / "live.mp4", None, (64, 48), measure_frames=10)
    for i in range(25):
        img[:] = i * 10
        v.write(img, timestamp=i * 0.1)  # 10 frames per second
    assert v.finish() == tmp_path / "live.mp4"
    c = cv2.VideoCapture(str(tmp_path / "live.mp4"))
    assert abs(c.get(cv2.CAP_PROP_FPS) - 10.0) < 0.5
    c.release()
    assert len(read_video(tmp_path / "live.mp4")) == 25
    short = outputs.VideoOutput(tmp_path / "short.avi", None, (64, 48))
    for i in range(3):
        short.write(img, timestamp=i * 0.05)
    short.finish()
    assert len(read_video(tmp_path / "short.avi")) == 3
    assert not list(tmp_path.glob(".*tmp*"))  # no temp files left behind
    empty = outputs.VideoOutput(tmp_path / "empty.mp4", 15, (64, 48))
    with pytest.raises(EdgeDeeplabError, match="no frames"):
        empty.finish()
    assert not (tmp_path / "empty.mp4").exists()


@pytest.mark.parametrize("size", [(352, 288), (175, 143)], ids=["even", "odd"])
def test_video_output_keeps_real_frames(tmp_path, size):
    """The writer's video decodes back to the frames it was given (real frames of the carphone
    clip, upscaled): a colour-range or plane-order slip in the I420 hand-off (limited vs full
    range, U and V swapped) costs far more than the codec's own loss, as do lost or repeated
    frames. Odd sizes take FFmpeg's own conversion."""
    from tests.support.real_media import real_clip

    frames = [cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) for f in read_video(real_clip())[:20]]
    v = outputs.VideoOutput(tmp_path / "real.mkv", 30, size)
    for f in frames:
        v.write(f)
    v.finish()
    back = read_video(tmp_path / "real.mkv")
    assert len(back) == len(frames)
    psnr = [cv2.PSNR(a, b) for a, b in zip(frames, back)]
    assert min(psnr) > 30.0, psnr  # measured 34-38 dB; U and V swapped: about 21
    means = np.array([f.reshape(-1, 3).mean(0) for f in frames])
    assert np.abs(np.array([b.reshape(-1, 3).mean(0) for b in back]) - means).max() < 3.0


def test_demo_on_clip(color_models, tmp_path):
    res = portrait.demo_on_clip(color_models["binary"], tmp_path / "qs", num_frames=6,
                                width=96, height=64, log=None)
    assert res.output == tmp_path / "qs" / "portrait.mp4" and res.frames == 6
    frames = read_video(res.output)
    assert len(frames) == 6 and frames[0].shape == (64, 96, 3)


def test_headless_images_and_folder(color_models, tmp_path):
    frame, truth = _red_rect_frame()
    img = tmp_path / "person.png"
    cv2.imwrite(str(img), frame)
    res = portrait.run_demo(color_models["sigmoid"], img, effect="color:0,0,255", headless=True,
                            output=tmp_path / "result.jpg", overlay=False, log=None)
    assert res.output == tmp_path / "result.jpg"
    written = cv2.imread(str(res.output))
    assert written.shape == frame.shape
    assert np.abs(written[5:20, 5:40].astype(int) - (255, 0, 0)).max() < 40  # blue background (jpeg)
    folder = tmp_path / "frames"
    generate_images(folder, num_images=3, width=80, height=60)
    res = portrait.run_demo(color_models["binary"], folder, effect="blur", headless=True,
                            output=tmp_path / "outdir", log=None)
    outs = sorted(p.name for p in (tmp_path / "outdir").iterdir())
    assert outs == [f"frame_{i:03d}_portrait.png" for i in range(3)] and res.frames == 3
    assert cv2.imread(str(tmp_path / "outdir" / outs[0])).shape == (60, 80, 3)


@pytest.mark.gpu
def test_gpu_accelerator_matches_cpu(color_models):
    """The same matte on the LiteRT GPU accelerator (lavapipe here) as on the CPU."""
    from edge_deeplab.runtime import open_runner

    frame, truth = _red_rect_frame()
    mattes = {}
    for acc in ("cpu", "gpu"):  # the gpu marker said the accelerator starts: no skip here
        r = open_runner(color_models["binary"], accelerator=acc)
        try:
            pipe = pipeline.PortraitPipeline(r, comp.parse_effect("blur"), smoothing=0.0)
            mattes[acc] = pipe.process(frame)[1]
        finally:
            r.close()
    assert np.abs(mattes["cpu"] - mattes["gpu"]).max() < 0.05


# --------------------------------------------------------------------------------------------
# clean error exits
# --------------------------------------------------------------------------------------------

def _cli_error(capsys, argv):
    rc = cli_main(["demo"] + [str(a) for a in argv])
    return assert_one_line_error(capsys.readouterr().err, rc=rc, prefix="edge-deeplab demo: error:")


def test_error_exits(color_models, clip, tmp_path, capsys, monkeypatch):
    model = color_models["sigmoid"]
    out = ["--headless", "--output", tmp_path / "o.mp4"]
    if not os.path.exists("/dev/video7"):
        assert "camera 7" in _cli_error(capsys, ["--model", model, "--source", "7", *out])
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(os.urandom(2048))
    assert "cannot read video" in _cli_error(capsys, ["--model", model, "--source", bad, *out])
    msg = _cli_error(capsys, ["--model", color_models["classifier"], "--source", clip.path, *out])
    assert "not" in msg and "segmentation model" in msg and "[1, 10]" in msg
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x00" * 64)
    _cli_error(capsys, ["--model", garbage, "--source", clip.path, *out])
    assert "model not found" in _cli_error(capsys, ["--model", tmp_path / "none.tflite", "--source", clip.path, *out])
    assert "unknown effect" in _cli_error(capsys, ["--model", model, "--source", clip.path, *out, "--effect", "sparkle"])
    assert not list(tmp_path.glob("*o.mp4*"))
    assert "video" in _cli_error(capsys, ["--model", model, "--source", clip.path, "--headless", "--output", tmp_path / "x.png"])
    # window mode without a GUI build / display: tells the user what to do
    ok, _ = portrait.gui_available()
    if not ok:
        msg = _cli_error(capsys, ["--model", model, "--source", clip.path])
        assert "--headless" in msg and "[gui]" in msg
    monkeypatch.setenv("DISPLAY", ":97")
    if "NONE" in cv2.getBuildInformation().split("GUI:", 1)[-1].splitlines()[0]:
        msg = _cli_error(capsys, ["--model", model, "--source", clip.path])
        assert "no GUI support" in msg and "--headless" in msg


def test_window_mode_keys(color_models, clip, tmp_path, monkeypatch):
    """Window-mode key handling (e switches effect, s saves a screenshot, q quits). The GUI calls
    are stubbed: this machine has the headless OpenCV build, which cannot open windows."""
    keys = iter([ord("e"), ord("s"), ord("q"), ord("q")])
    shown = []
    monkeypatch.setattr(portrait, "gui_available", lambda: (True, ""))
    monkeypatch.setattr(portrait.cv2, "namedWindow", lambda *a, **k: None)
    monkeypatch.setattr(portrait.cv2, "imshow", lambda name, img: shown.append(img.copy()))
    monkeypatch.setattr(portrait.cv2, "waitKey", lambda delay=0: next(keys))
    monkeypatch.setattr(portrait.cv2, "getWindowProperty", lambda *a: 1.0)
    monkeypatch.setattr(portrait.cv2, "destroyAllWindows", lambda: None)
    logs = []
    res = portrait.run_demo(color_models["sigmoid"], clip.path, effect="color:0,0,255",
                            screenshot_dir=tmp_path, log=logs.append)
    assert res.frames == 3 and len(shown) == 3
    assert "effect: blur" in logs
    shots = list(tmp_path.glob("portrait_*.png"))
    assert len(shots) == 1 and cv2.imread(str(shots[0])).shape == (clip.height, clip.width, 3)
    assert "display" in res.stages and "write" not in res.stages
    # a still image re-renders on 'e' instead of advancing
    keys = iter([ord("e"), ord("e"), ord("n")])
    shown.clear()
    img = tmp_path / "still.png"
    cv2.imwrite(str(img), _red_rect_frame()[0])
    res = portrait.run_demo(color_models["sigmoid"], img, effect="blur", log=None)
    assert res.frames == 1 and len(shown) == 3


# --------------------------------------------------------------------------------------------
# interruptions, bad input, leftovers
# --------------------------------------------------------------------------------------------

def _demo_process(args, cwd):
    """``edge-deeplab demo ARGS`` as a real process that turns SIGINT into Ctrl-C (even when this
    test runs with SIGINT ignored, as background jobs do)."""
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("edge-deeplab")
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([str(exe), "demo", *map(str, args)], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=default_sigint)


def _signal_once_writing(p, writing, sig: str, settle: float = 0.0) -> str:
    """Waits until ``writing()`` (the process has started its temporary output), sends ``sig``
    after ``settle`` seconds and returns the process's stderr; kills it if anything goes wrong."""
    import signal
    import time

    try:
        deadline = time.time() + 120
        while p.poll() is None and not writing() and time.time() < deadline:
            time.sleep(0.05)
        assert p.poll() is None and writing(), "it never started writing"
        time.sleep(settle)
        p.send_signal(getattr(signal, sig))
        return p.communicate(timeout=60)[1]
    finally:
        if p.poll() is None:
            p.kill()


@pytest.mark.parametrize("sig,code,word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_interrupted_demo_keeps_the_earlier_output(color_models, tmp_path, sig, code, word):
    long_clip = clip_lib.generate_clip(tmp_path / "long.mp4", num_frames=600, width=160, height=120, fps=30)
    out = tmp_path / "out" / "portrait.mp4"
    out.parent.mkdir()
    clip_lib.generate_clip(out, num_frames=5, width=96, height=64)  # an earlier, complete result
    before = out.read_bytes()
    p = _demo_process(["--model", color_models["binary"], "--source", long_clip.path, "--headless",
                       "--output", out, "--threads", "1"], cwd=tmp_path)
    # some frames into the temporary video
    err = _signal_once_writing(p, lambda: list(out.parent.glob(".*.tmp*")), sig, settle=0.3)
    assert p.returncode == code, err
    assert err.strip().splitlines()[-1] == f"edge-deeplab demo: {word}"
    assert out.read_bytes() == before  # the earlier output is intact
    assert sorted(x.name for x in out.parent.iterdir()) == ["portrait.mp4"]  # no .portrait.mp4.*.tmp.mp4


@pytest.mark.parametrize("sig,code,word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_interrupted_clip_script_keeps_the_earlier_clip(tmp_path, sig, code, word):
    """``python -m demos.clip`` (the README's clip maker) stopped halfway: one line, 130 or 143,
    the earlier clip byte for byte, no temporary video."""
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "walk.mp4"
    clip_lib.generate_clip(out, num_frames=3, width=96, height=64)  # an earlier, complete clip
    before = out.read_bytes()
    p = subprocess.Popen([sys.executable, "-m", "demos.clip", str(out), "--frames", "100000",
                          "--size", "640x480"], cwd=Path(__file__).resolve().parents[2], text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint)
    err = _signal_once_writing(
        p, lambda: any(t.stat().st_size > 0 for t in tmp_path.glob(".walk.mp4.*.tmp*")), sig)
    assert p.returncode == code, err
    assert err.strip().splitlines() == [f"demos.clip: {word}"], err
    assert out.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["walk.mp4"]


@pytest.mark.parametrize("accelerator", ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def test_interrupted_folder_run_keeps_the_earlier_folder(color_models, tmp_path, accelerator):
    """A folder's results go to a hidden sibling folder and are moved in only at the end: SIGTERM
    in the middle leaves the earlier results (and the user's other files) as they were, and says
    so in one line, with no native teardown chatter (the GPU accelerator's "DestroyAccelerator"
    lines used to follow)."""
    import signal
    import time

    src = tmp_path / "frames"
    generate_images(src, num_images=400, width=160, height=120)
    out = tmp_path / "out"
    out.mkdir()
    (out / "frame_000_portrait.png").write_bytes(b"earlier result")
    (out / "notes.txt").write_text("mine")
    p = _demo_process(["--model", color_models["binary"], "--source", src, "--headless",
                       "--output", out, "--threads", "1", "--accelerator", accelerator], cwd=tmp_path)
    try:
        deadline = time.time() + 120
        tmps = []
        while p.poll() is None and time.time() < deadline:
            tmps = list(tmp_path.glob(".out.*.tmp"))
            if tmps and len(list(tmps[0].iterdir())) >= 3:
                break
            time.sleep(0.05)
        assert tmps, "the demo never started writing"
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 143, err
    assert err.strip().splitlines() == ["edge-deeplab demo: terminated"], err
    assert (out / "frame_000_portrait.png").read_bytes() == b"earlier result"
    assert sorted(x.name for x in out.iterdir()) == ["frame_000_portrait.png", "notes.txt"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["frames", "out"]  # no temporary folder


@pytest.mark.parametrize("case", ["video", "folder", "folder-dot", "image", "inside", "model"])
def test_output_that_is_an_input_is_refused_before_any_work(color_models, clip, tmp_path, capsys, case):
    """Through the one output discipline: the source itself, a folder inside a folder source (a
    later run would process its own results), or the model, refused in one line before any work."""
    model = tmp_path / "not_even_read.tflite"
    expected = "is the source"
    if case == "video":
        src, out = clip.path, clip.path
    elif case == "image":
        src = tmp_path / "p.png"
        cv2.imwrite(str(src), _red_rect_frame()[0])
        out = src
    elif case == "model":
        src, out, expected = clip.path, tmp_path / "m.mp4", "is the model"
        model = out
        out.write_bytes(b"a model")
    else:
        src = tmp_path / "frames"
        generate_images(src, num_images=2, width=80, height=60)
        out = {"folder": src, "folder-dot": src / ".", "inside": src / "out"}[case]
        if case == "inside":
            expected = "lies inside the source"
    watched = [src, model] if case == "model" else [src]
    files = [f for w in watched for f in ([w] if w.is_file() else sorted(w.iterdir()))]
    before = {p: p.read_bytes() for p in files}
    rc = cli_main(["demo", "--model", str(model), "--source", str(src), "--headless",
                   "--output", str(out)])
    assert_one_line_error(capsys.readouterr(), expected, rc=rc, code=2)
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "frames" / "out").exists()
    assert not list(tmp_path.glob(".*"))


def test_quit_key_ends_a_window_session_normally(color_models, clip, monkeypatch, capsys):
    keys = iter([-1, ord("q")])
    monkeypatch.setattr(portrait, "gui_available", lambda: (True, ""))
    monkeypatch.setattr(portrait.cv2, "namedWindow", lambda *a, **k: None)
    monkeypatch.setattr(portrait.cv2, "imshow", lambda name, img: None)
    monkeypatch.setattr(portrait.cv2, "waitKey", lambda delay=0: next(keys))
    monkeypatch.setattr(portrait.cv2, "getWindowProperty", lambda *a: 1.0)
    monkeypatch.setattr(portrait.cv2, "destroyAllWindows", lambda: None)
    assert cli_main(["demo", "--model", str(color_models["binary"]), "--source", str(clip.path)]) == 0
    assert "2 frames from video" in capsys.readouterr().out


@pytest.mark.parametrize("flag,value", [
    ("--max-frames", "0"), ("--max-frames", "-1"), ("--threads", "0"), ("--threads", "-2"),
    ("--person-class", "-1"), ("--smoothing", "1"), ("--smoothing", "-0.1"), ("--smoothing", "nan"),
    ("--camera-size", "0x0"), ("--max-frames", "ten"),
])
def test_nonsense_numbers_are_refused_at_parse_time(flag, value, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["demo", "--model", "m.tflite", "--headless", "--output", "o.mp4", flag, value])
    assert_one_line_error(capsys.readouterr().err, rc=e.value.code, code=2,
                          prefix=f"edge-deeplab demo: error: argument {flag}:")


def test_headless_without_output_and_unending_camera_recording_are_refused(color_models, clip, tmp_path,
                                                                           capsys, monkeypatch):
    msg = _cli_error(capsys, ["--model", color_models["binary"], "--source", clip.path, "--headless"])
    assert "--headless needs --output" in msg

    class FakeCamera(cap_lib.FrameSource):  # a live source that would never end by itself
        kind, is_live, fps, dropped = "camera", True, 30.0, 0

        def __iter__(self):
            while True:
                yield cap_lib.Frame(0, np.zeros((48, 64, 3), np.uint8), "frame", 0.0, 0.0)

    monkeypatch.setattr(cap_lib, "open_source", lambda *a, **k: FakeCamera("camera 0"))
    msg = _cli_error(capsys, ["--model", color_models["binary"], "--source", "0", "--headless",
                              "--output", tmp_path / "rec.mp4"])
    assert "--max-frames" in msg and "camera 0" in msg
    assert not (tmp_path / "rec.mp4").exists()
    assert cli_main(["demo", "--model", str(color_models["binary"]), "--source", "0", "--headless",
                     "--output", str(tmp_path / "rec.mp4"), "--max-frames", "3"]) == 0
    assert len(read_video(tmp_path / "rec.mp4")) == 3


def test_folder_with_corrupt_images_skips_and_counts_them(color_models, tmp_path, capsys):
    folder = tmp_path / "photos"
    generate_images(folder, num_images=4, width=80, height=60)
    (folder / "frame_001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # a corrupt file in the middle
    out = tmp_path / "out"
    rc = cli_main(["demo", "--model", str(color_models["binary"]), "--source", str(folder), "--headless",
                   "--output", str(out)])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:03d}_portrait.png" for i in (0, 2, 3)]
    captured = capsys.readouterr()
    warn = [line for line in captured.err.splitlines() if line.startswith("edge-deeplab demo:")]
    assert len(warn) == 1 and "skipped 1 of 4 images" in warn[0] and "frame_001.png" in warn[0], warn
    assert "3 frames from folder" in captured.out
    # nothing readable: one line, nothing written
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(2):
        (bad / f"x{i}.jpg").write_bytes(os.urandom(100))
    msg = _cli_error(capsys, ["--model", color_models["binary"], "--source", bad, "--headless",
                              "--output", tmp_path / "out2"])
    assert "none of the 2 images" in msg
    assert not list((tmp_path / "out2").glob("*"))


def test_output_video_gets_the_users_umask(color_models, clip, tmp_path):
    import stat

    old = os.umask(0o022)
    try:
        assert cli_main(["demo", "--model", str(color_models["binary"]), "--source", str(clip.path),
                         "--headless", "--output", str(tmp_path / "o.mp4"), "--max-frames", "2"]) == 0
        res = portrait.demo_on_clip(color_models["binary"], tmp_path / "qs", num_frames=3, width=64,
                                    height=48, log=None)  # what quickstart renders as demo.mp4
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "o.mp4").stat().st_mode) == 0o644
    assert stat.S_IMODE(res.output.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "qs" / "clip.mp4").stat().st_mode) == 0o644


def test_two_output_model_says_which_output_it_uses(clip, tmp_path, capsys):
    from tests.support.bench_models import two_output_model

    model = two_output_model(tmp_path / "two.tflite")
    rc = cli_main(["demo", "--model", str(model), "--source", str(clip.path), "--headless",
                   "--output", str(tmp_path / "o.mp4"), "--max-frames", "2", "--person-class", "1"])
    assert rc == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert len(notes) == 1 and notes[0].startswith("edge-deeplab demo: note: two.tflite has 2 outputs; "
                                                   "using output 0 ")


@pytest.mark.parametrize("case", ["finished-run", "image", "text", "folder-named-mp4"])
def test_video_source_needs_a_video_output_before_any_work(clip, tmp_path, capsys, case):
    """A video recorded headless into a finished run's folder, an image name, an unknown
    extension or a folder named like a video: one line before the model is even looked for (it
    does not exist here), and the run's files are as they were."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "complete.json").write_text("{}")
    (tmp_path / "run.mp4").mkdir()
    out, expected = {"finished-run": (run, "video output must end in .mp4"),
                     "image": (tmp_path / "o.png", "output for a video source must be a video"),
                     "text": (tmp_path / "o.txt", "video output must end in .mp4"),
                     "folder-named-mp4": (tmp_path / "run.mp4", "is a directory")}[case]
    rc = cli_main(["demo", "--model", str(tmp_path / "missing.tflite"), "--source", str(clip.path),
                   "--headless", "--output", str(out)])
    assert_one_line_error(capsys.readouterr(), expected, rc=rc, code=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.mp4"]
    assert [p.name for p in run.iterdir()] == ["complete.json"]
    assert not any((tmp_path / "run.mp4").iterdir())


@pytest.mark.parametrize("args,expected", [(["x.mp4", "--size", "abc"], "--size must be WxH"),
                                           (["walk.mp4", "--frames", "3"], "is a directory")])
def test_clip_script_bad_input_is_one_line_before_any_frame(tmp_path, args, expected, capsys):
    """``python -m demos.clip`` with a size that is not WxH, or an output that is a folder
    named like a video: one line, exit 2, nothing written (no frame was rendered into the folder)."""
    from demos.clip import main as clip_main

    (tmp_path / "walk.mp4").mkdir()
    rc = clip_main([str(tmp_path / args[0]), *args[1:]])
    assert_one_line_error(capsys.readouterr().err, expected, rc=rc, code=2, prefix="demos.clip: error:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walk.mp4"]
    assert not any((tmp_path / "walk.mp4").iterdir())
