"""End-to-end FPS of the headless portrait demo at 640x480, 1280x720 and 1920x1080, stage by stage.

Makes one clip per frame size from ``--source`` (its frames resized, looped to ``--frames``), then
runs ``edge-deeplab demo --headless`` (file written, no overlay) on each clip in a child process, as a
user would, ``--repeats`` times, interleaved. With ``--baseline DIR`` (another checkout of this
project, e.g. a ``git worktree`` of an older commit) every run is made twice, once with each code,
alternating, so both see the same machine load; the table then gives both and their ratio. Each run
records the demo's own report (end-to-end FPS, per-stage mean ms) and the child's CPU time per frame
(user + system of the whole process, less a one-frame run's start-up cost), which a busy shared
machine disturbs far less than wall time.

Writes ``OUT/demo_fps.json`` (every run, the medians, the machine and load average),
``OUT/demo_fps.md`` (the table) and ``OUT/demo_fps.png`` (FPS per frame size and the stage
breakdown). Speed goals are read off this table, never asserted in tests.

Example:
    python -m benchmarks.demo_fps --model selfie_segmentation.tflite --source carphone.mp4 \\
        --mean 0 --std 255 --frames 120 --repeats 3 --baseline ../base --out /tmp/demo_fps
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

#: Frame sizes measured by default, ``(width, height)``.
SIZES = ((640, 480), (1280, 720), (1920, 1080))
#: The stages around the model whose sum the speed goal bounds by the inference time.
NON_INFERENCE = ("preprocess", "mask", "composite", "write")

_SUMMARY = re.compile(r"^(\d+) frames from \w+ in ([\d.]+) s: ([\d.]+) FPS end-to-end")
_STAGE = re.compile(r"^([a-z]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)(?:\s+([\d.]+))?$")


def make_clips(source, sizes: Sequence[tuple], frames: int, out_dir) -> Dict[tuple, Path]:
    """``{(w, h): clip}``: ``frames`` frames of ``source`` (looped), resized to each size (bicubic).

    Example:
        >>> clips = make_clips("carphone.mp4", [(1280, 720)], 120, "/tmp/clips")  # doctest: +SKIP
    """
    import cv2

    cap = cv2.VideoCapture(str(source))
    src = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        src.append(f)
    cap.release()
    if not src:
        raise SystemExit(f"demo_fps: cannot read frames from {source}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clips = {}
    for w, h in sizes:
        p = out_dir / f"clip_{w}x{h}.mp4"
        vw = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h))
        for i in range(frames):
            vw.write(cv2.resize(src[i % len(src)], (w, h), interpolation=cv2.INTER_CUBIC))
        vw.release()
        clips[(w, h)] = p
    return clips


def parse_report(text: str) -> dict:
    """The demo's printed report -> ``{frames, seconds, fps, stages: {name: mean_ms},
    stages_cpu: {name: cpu_ms}}`` (a stage's CPU ms where the report has that column).

    Example:
        >>> r = parse_report("3 frames from video in 0.10 s: 30.0 FPS end-to-end (cpu, x)\\n"
        ...                  "inference      5.00     5.00     6.00\\n"
        ...                  "mask           2.00     2.00     3.00     1.50")
        >>> r["stages"], r["stages_cpu"]
        ({'inference': 5.0, 'mask': 2.0}, {'mask': 1.5})
    """
    out = {"stages": {}, "stages_cpu": {}}
    for line in text.splitlines():
        m = _SUMMARY.match(line.strip())
        if m:
            out.update(frames=int(m.group(1)), seconds=float(m.group(2)), fps=float(m.group(3)))
            continue
        m = _STAGE.match(line.strip())
        if m:
            out["stages"][m.group(1)] = float(m.group(2))
            if m.group(5):
                out["stages_cpu"][m.group(1)] = float(m.group(5))
    if "fps" not in out:
        raise ValueError("no demo report in the output")
    return out


def run_once(root, model, clip, extra: Sequence[str] = (), python: Optional[str] = None,
             timeout: float = 600) -> dict:
    """One headless demo run of the code in ``root`` on ``clip``; its report plus CPU time."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [python or sys.executable, "-m", "edge_deeplab.app.cli", "demo", "--model", str(model),
               "--source", str(clip), "--headless", "--output", str(Path(tmp) / "out.mp4"),
               "--no-overlay", *extra]
        env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "2"}
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)  # runs are sequential: the delta is this child
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"demo failed ({proc.returncode}) in {root}: {(err.strip().splitlines() or ['?'])[-1]}")
    rep = parse_report(out)
    rep["process_s"] = round(wall, 3)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    rep["cpu_ms_per_frame"] = round(1000 * cpu / rep["frames"], 2)
    return rep


def measure(model, clips: Dict[tuple, Path], roots: Dict[str, Path], repeats: int = 3,
            extra: Optional[Dict[str, Sequence[str]]] = None, log=print) -> dict:
    """Runs every (code, size) ``repeats`` times, interleaved; returns runs and medians."""
    extra = extra or {}
    runs: List[dict] = []
    startup = {}  # CPU of a one-frame run (imports, model load): subtracted from the per-frame CPU
    for name, root in roots.items():
        for size, clip in clips.items():
            one = run_once(root, model, clip, [*extra.get(name, ()), "--max-frames", "1"])
            startup[(name, size)] = one["cpu_ms_per_frame"]
    for r in range(repeats):
        for size, clip in clips.items():
            order = list(roots.items()) if r % 2 == 0 else list(roots.items())[::-1]
            for name, root in order:
                rep = run_once(root, model, clip, extra.get(name, ()))
                n = rep["frames"]
                rep["cpu_ms_per_frame"] = round((rep["cpu_ms_per_frame"] * n - startup[(name, size)]) / max(1, n - 1), 2)
                rep.update(code=name, size=list(size), repeat=r, loadavg=list(os.getloadavg()))
                runs.append(rep)
                if log:
                    log(f"{name:9s} {size[0]}x{size[1]} #{r}: {rep['fps']:.1f} FPS, "
                        f"{rep['cpu_ms_per_frame']:.1f} CPU ms/frame")
    medians = {}
    for name in roots:
        for size in clips:
            rs = [x for x in runs if x["code"] == name and tuple(x["size"]) == size]
            stages = {k: statistics.median(x["stages"].get(k, 0.0) for x in rs)
                      for k in rs[0]["stages"]}
            stages_cpu = {k: statistics.median(x["stages_cpu"].get(k, 0.0) for x in rs)
                          for k in rs[0].get("stages_cpu", {})}
            medians[f"{name} {size[0]}x{size[1]}"] = {
                "code": name, "size": list(size), "fps": statistics.median(x["fps"] for x in rs),
                "cpu_ms_per_frame": statistics.median(x.get("cpu_ms_per_frame", float("nan")) for x in rs),
                "stages": stages, "stages_cpu": stages_cpu,
                "non_inference_ms": sum(stages.get(k, 0.0) for k in NON_INFERENCE),
                "non_inference_cpu_ms": (sum(stages_cpu[k] for k in NON_INFERENCE)
                                         if all(k in stages_cpu for k in NON_INFERENCE) else None)}
    return {"runs": runs, "medians": medians}


def to_markdown(result: dict) -> str:
    """The medians as a Markdown table (one row per code and size; ratios against the baseline)."""
    med = result["medians"]
    lines = ["| code | frame | FPS | x baseline | CPU ms/frame | inference ms | preprocess | mask | "
             "composite | write | around the model (sum) | around the model, CPU ms |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, m in med.items():
        w, h = m["size"]
        base = med.get(f"baseline {w}x{h}")
        ratio = f"{m['fps'] / base['fps']:.2f}" if base and m["code"] != "baseline" else ""
        s = m["stages"]
        lines.append(f"| {m['code']} | {w}x{h} | {m['fps']:.1f} | {ratio} | {m['cpu_ms_per_frame']:.1f} | "
                     f"{s.get('inference', 0):.2f} | {s.get('preprocess', 0):.2f} | {s.get('mask', 0):.2f} | "
                     f"{s.get('composite', 0):.2f} | {s.get('write', 0):.2f} | {m['non_inference_ms']:.2f} | "
                     + (f"{m['non_inference_cpu_ms']:.2f} |" if m.get("non_inference_cpu_ms") is not None else " |"))
    return "\n".join(lines) + "\n"


def plot(result: dict, path) -> Path:
    """FPS per frame size (per code) and the per-stage mean ms, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    med = list(result["medians"].values())
    codes = list(dict.fromkeys(m["code"] for m in med))
    sizes = list(dict.fromkeys(tuple(m["size"]) for m in med))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    x = np.arange(len(sizes))
    width = 0.8 / len(codes)
    for i, c in enumerate(codes):
        fps = [next(m["fps"] for m in med if m["code"] == c and tuple(m["size"]) == s) for s in sizes]
        a1.bar(x + i * width, fps, width, label=c)
    a1.set_xticks(x + width * (len(codes) - 1) / 2, [f"{w}x{h}" for w, h in sizes])
    a1.set_ylabel("end-to-end FPS (headless, file written)")
    a1.legend()
    labels, bottoms = [], None
    stages = ("preprocess", "inference", "mask", "composite", "write")
    rows = [(f"{m['code']}\n{m['size'][0]}x{m['size'][1]}", m["stages"]) for m in med]
    bottoms = np.zeros(len(rows))
    for st in stages:
        v = np.array([r[1].get(st, 0.0) for r in rows])
        a2.bar(range(len(rows)), v, bottom=bottoms, label=st)
        bottoms += v
    labels = [r[0] for r in rows]
    a2.set_xticks(range(len(rows)), labels, fontsize=7)
    a2.set_ylabel("mean ms per frame (stages overlap in the new code)")
    a2.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="the .tflite segmentation model")
    p.add_argument("--source", required=True, help="a video; its frames are resized to each size")
    p.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in SIZES), help="WxH,WxH,...")
    p.add_argument("--frames", type=int, default=120, help="frames per clip")
    p.add_argument("--repeats", type=int, default=3, help="runs per code and size (medians reported)")
    p.add_argument("--baseline", default=None, help="another checkout of this project to compare with")
    p.add_argument("--mean", default=None, help="--mean for this checkout's demo (a baseline may lack it)")
    p.add_argument("--std", default=None, help="--std for this checkout's demo")
    p.add_argument("--demo-args", default="", help="more demo flags for both codes, e.g. '--person-class 1'")
    p.add_argument("--out", required=True, help="folder for demo_fps.json/.md/.png and the clips")
    a = p.parse_args(argv)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in a.sizes.split(",") if s]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    clips = make_clips(a.source, sizes, a.frames, out / "clips")
    here = Path(__file__).resolve().parents[1]
    roots = {"this": here}
    if a.baseline:
        roots = {"baseline": Path(a.baseline).resolve(), "this": here}
    both = shlex.split(a.demo_args)
    extra = {"baseline": both,
             "this": [*both, *(["--mean", a.mean] if a.mean else []), *(["--std", a.std] if a.std else [])]}
    from edge_deeplab.core.sysinfo import machine_info

    machine_before = machine_info()
    result = measure(a.model, clips, roots, a.repeats, extra)
    result.update(model=str(Path(a.model).resolve()), source=str(Path(a.source).resolve()),
                  frames=a.frames, repeats=a.repeats, roots={k: str(v) for k, v in roots.items()},
                  machine=machine_before, loadavg_after=list(os.getloadavg()))
    (out / "demo_fps.json").write_text(json.dumps(result, indent=1))
    (out / "demo_fps.md").write_text(to_markdown(result))
    plot(result, out / "demo_fps.png")
    print(to_markdown(result))
    print(f"wrote {out / 'demo_fps.json'}, {out / 'demo_fps.md'}, {out / 'demo_fps.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
