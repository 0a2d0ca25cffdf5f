"""benchmarks/demo_fps.py end to end on a real model and clip (small sizes: what it measures is
read off its table, never asserted)."""

import json
from pathlib import Path

from benchmarks import demo_fps
from tests.support.real_media import real_clip


def test_demo_fps_writes_table_plot_and_json_against_a_baseline(selfie_teacher, tmp_path, capsys):
    here = Path(demo_fps.__file__).resolve().parents[1]
    out = tmp_path / "bench"
    # the baseline is this same checkout here: the script's mechanics, not a speed claim
    rc = demo_fps.main(["--model", str(selfie_teacher), "--source", str(real_clip()),
                        "--sizes", "160x120,320x240", "--frames", "8", "--repeats", "1",
                        "--baseline", str(here), "--mean", "0", "--std", "255", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "demo_fps.json").read_text())
    assert sorted(res["medians"]) == ["baseline 160x120", "baseline 320x240", "this 160x120", "this 320x240"]
    assert len(res["runs"]) == 4 and {r["frames"] for r in res["runs"]} == {8}
    for m in res["medians"].values():
        assert m["fps"] > 0 and m["stages"]["inference"] > 0
        assert m["non_inference_ms"] == sum(m["stages"][k] for k in demo_fps.NON_INFERENCE)
        # the CPU column of the demo's report: each stage's thread CPU, read back per stage
        assert set(m["stages_cpu"]) >= set(demo_fps.NON_INFERENCE) | {"inference"}
        assert all(m["stages_cpu"][k] > 0 for k in demo_fps.NON_INFERENCE)
        assert m["non_inference_cpu_ms"] == sum(m["stages_cpu"][k] for k in demo_fps.NON_INFERENCE)
    md = (out / "demo_fps.md").read_text().splitlines()
    assert md[0].startswith("| code | frame | FPS | x baseline |") and len(md) == 6
    this320 = next(line for line in md if line.startswith("| this | 320x240 |"))
    ratio = float(this320.split("|")[4])
    want = res["medians"]["this 320x240"]["fps"] / res["medians"]["baseline 320x240"]["fps"]
    assert abs(ratio - want) < 0.006
    assert (out / "demo_fps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    clip = out / "clips" / "clip_320x240.mp4"
    import cv2

    c = cv2.VideoCapture(str(clip))
    assert (c.get(cv2.CAP_PROP_FRAME_WIDTH), c.get(cv2.CAP_PROP_FRAME_HEIGHT),
            c.get(cv2.CAP_PROP_FRAME_COUNT)) == (320, 240, 8)
    c.release()
