"""Portrait mode from a .tflite segmentation model: background blur / replacement, live or headless.

This module is the app: the window (GUI check, key handling) and the demo loop (:func:`run_demo`).
Per frame: ``capture`` (:mod:`demos.capture`: camera read on its own thread, stale frames dropped),
the pipeline (:mod:`demos.pipeline`: preprocess, inference, mask, composite; the person channel
from :mod:`demos.person`), then ``write`` (:mod:`demos.outputs`: headless video or images) or
``display`` (window mode: show + key poll).

Example:
    >>> from demos.portrait import run_demo                                   # doctest: +SKIP
    >>> res = run_demo("person.tflite", "clip.mp4", effect="blur", headless=True,
    ...                output="out.mp4")                                       # doctest: +SKIP
    >>> res.frames, round(res.fps, 1)                                          # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import cv2  # noqa: E402  (after demos.capture, which quiets OpenCV's logging)

from demos import capture as capture_lib
from demos import compositing as comp
from demos.memory import keep_freed_buffers
from demos.outputs import (
    FolderOutput,
    VideoOutput,
    check_video_path,
    image_output_path,
    require_video_encoder,
    write_image,
)
from demos.person import PersonSelector
from demos.pipeline import CPU, NON_INFERENCE, PortraitPipeline, StageTimer, thread_cpu
from demos.stages import StagePipeline, opencv_threads_for
from edge_deeplab.core.errors import EdgeDeeplabError

WINDOW = "edge-deeplab portrait"


# --------------------------------------------------------------------------------------------
# GUI
# --------------------------------------------------------------------------------------------

GUI_HINT = ("run with --headless --output OUT.mp4, or install OpenCV's GUI build: "
            "pip uninstall -y opencv-python-headless && pip install 'edge_deeplab[gui]'")


def gui_available() -> tuple:
    """``(ok, reason)``: whether OpenCV can open a window here."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display (DISPLAY/WAYLAND_DISPLAY unset)"
    info = cv2.getBuildInformation()
    if "GUI:" in info:
        gui_line = info.split("GUI:", 1)[1].splitlines()[0].strip()
        if gui_line.upper().startswith("NONE"):
            return False, "this OpenCV build has no GUI support (opencv-python-headless)"
    return True, ""


def _open_window() -> None:
    ok, why = gui_available()
    if not ok:
        raise EdgeDeeplabError(f"cannot open a window: {why}; {GUI_HINT}")
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
    except cv2.error:
        raise EdgeDeeplabError(
            f"cannot open a window: this OpenCV build has no GUI support; {GUI_HINT}") from None


# --------------------------------------------------------------------------------------------
# the demo loop
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class DemoResult:
    """What :func:`run_demo` did.

    Attributes:
        frames: frames processed.
        seconds: wall time of the loop.
        fps: end-to-end frames per second (capture to written/shown).
        stages: per-stage ``{mean_ms, p50_ms, p90_ms, n}``.
        dropped: stale camera frames dropped.
        output: the written video/image/folder, if any.
        outputs: every written file.
        person: the :class:`PersonSelector` used.
        source_kind: camera/video/image/folder.
        frame_size: ``(width, height)`` of the last frame.
        accelerator, runtime: where inference ran.
        flicker: mean absolute frame-to-frame change of the matte where the image is static
            (:class:`demos.compositing.FlickerMeter`; None with fewer than two frames of a video).
        static_fraction: mean share of the static pixels the flicker was measured on.
        cpu_seconds: CPU time of the whole process (every thread) during the loop.
        settings: smoothing, motion, refine, normalization, overlap.
    """

    frames: int
    seconds: float
    fps: float
    stages: Dict[str, Dict[str, float]]
    dropped: int
    output: Optional[Path]
    outputs: List[Path]
    person: PersonSelector
    source_kind: str
    frame_size: Optional[tuple]
    accelerator: str = "cpu"
    runtime: str = ""
    cpu_seconds: Optional[float] = None
    flicker: Optional[float] = None
    static_fraction: Optional[float] = None
    settings: Dict = dataclasses.field(default_factory=dict)

    @property
    def non_inference_ms(self) -> float:
        """Mean ms per frame of the stages around the model (:data:`demos.pipeline.NON_INFERENCE`)."""
        return float(sum(self.stages[k]["mean_ms"] for k in NON_INFERENCE if k in self.stages))

    @property
    def non_inference_cpu_ms(self) -> Optional[float]:
        """Mean CPU ms per frame of the stages around the model, each on its own thread (None
        when a stage has no CPU time)."""
        ks = [k for k in NON_INFERENCE if k in self.stages]
        if not ks or any("cpu_ms" not in self.stages[k] for k in ks):
            return None
        return float(sum(self.stages[k]["cpu_ms"] for k in ks))

    def to_json(self, machine: Optional[dict] = None) -> dict:
        """The run as a JSON-ready dict (what ``demo --json`` writes)."""
        inf = self.stages.get("inference", {}).get("mean_ms")
        return {"frames": self.frames, "seconds": round(self.seconds, 4), "fps": round(self.fps, 2),
                "stages": self.stages, "inference_ms": inf,
                "non_inference_ms": round(self.non_inference_ms, 3),
                "inference_cpu_ms": self.stages.get("inference", {}).get("cpu_ms"),
                "non_inference_cpu_ms": (None if self.non_inference_cpu_ms is None
                                         else round(self.non_inference_cpu_ms, 3)),
                "non_inference_stages": [k for k in NON_INFERENCE if k in self.stages],
                "cpu_ms_per_frame": (round(1000 * self.cpu_seconds / self.frames, 3)
                                     if self.cpu_seconds is not None and self.frames else None),
                "mask_flicker": self.flicker, "flicker_static_fraction": self.static_fraction,
                "dropped": self.dropped, "source_kind": self.source_kind,
                "frame_size": list(self.frame_size) if self.frame_size else None,
                "output": str(self.output) if self.output else None,
                "person_class": self.person.index, "person_reason": self.person.reason,
                "accelerator": self.accelerator, "runtime": self.runtime,
                "settings": self.settings, "machine": machine or {}}

    def report(self) -> str:
        lines = [f"{self.frames} frames from {self.source_kind} in {self.seconds:.2f} s: "
                 f"{self.fps:.1f} FPS end-to-end ({self.accelerator}, {self.runtime})"]
        if self.dropped:
            lines.append(f"dropped {self.dropped} stale camera frames")
        if self.cpu_seconds is not None and self.frames:
            lines.append(f"CPU {1000 * self.cpu_seconds / self.frames:.1f} ms per frame (all threads)")
        lines.append("stage        mean ms   p50 ms   p90 ms   CPU ms")
        for k, v in self.stages.items():
            cpu = f"{v['cpu_ms']:>9.2f}" if "cpu_ms" in v else ""
            lines.append(f"{k:<12}{v['mean_ms']:>8.2f}{v['p50_ms']:>9.2f}{v['p90_ms']:>9.2f}{cpu}")
        if "inference" in self.stages:
            cpu = self.non_inference_cpu_ms
            lines.append(f"around the model (preprocess+mask+composite+write): {self.non_inference_ms:.2f} ms "
                         f"per frame, on overlapped threads"
                         + (f" ({cpu:.2f} ms of CPU)" if cpu is not None else ""))
        if self.flicker is not None:
            lines.append(f"mask flicker {self.flicker * 255:.2f}/255 (static pixels: "
                         f"{100 * (self.static_fraction or 0):.0f}%)")
        if self.output:
            lines.append(f"wrote {self.output}")
        return "\n".join(lines)


def _overlay_lines(fps: float, times: Dict[str, float], effect: comp.Effect, window: bool) -> List[str]:
    def ms(k):
        return times.get(k, 0.0) * 1000.0

    lines = [f"{fps:5.1f} FPS  effect: {effect.label}",
             f"cap {ms('capture'):.1f}  pre {ms('preprocess'):.1f}  inf {ms('inference'):.1f}  "
             f"mask {ms('mask'):.1f}  comp {ms('composite'):.1f} ms"]
    if window:
        lines.append("q quit  e effect  s screenshot")
    return lines


def check_demo_outputs(model, source, output, json_path=None, headless: bool = True) -> None:
    """Checks the demo's outputs with the one output discipline (:mod:`edge_deeplab.core.outputs`).

    ``--output`` may not be the source (the same file or folder), lie inside a source folder (a
    later run would process its own results), be the model, or hold either; ``--json`` must end in
    ``.json`` and differ from ``--output``; both must be writable. A folder source (or an existing
    folder given as ``--output``) makes ``--output`` a folder output. A camera or a video file
    recorded ``headless`` needs a video ``--output`` (:func:`demos.outputs.check_video_path`) and
    PyAV to write it.

    Raises:
        EdgeDeeplabError: in one line, before any work starts.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> m = d.parent / "m.tflite"
        >>> check_demo_outputs(m, d, d.parent / "out")   # a different folder: fine
        >>> check_demo_outputs(m, d, d / ".")            # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        edge_deeplab.core.errors.EdgeDeeplabError: --output ... is the source ...: it would be overwritten; ...
    """
    from edge_deeplab.core.outputs import Input, Output, check_outputs

    camera = capture_lib.parse_camera_index(source) is not None and not os.path.exists(str(source))
    folder = output is not None and (os.path.isdir(str(source)) or os.path.isdir(str(output)))
    check_outputs([Output(output, "--output", folder=folder),
                   Output(json_path, "--json", suffixes=(".json",))],
                  [Input(model, "model"), Input(None if camera else source, "source")])
    records = camera or (os.path.isfile(str(source)) and Path(str(source)).suffix.lower() in capture_lib.VIDEO_EXTS)
    if headless and output is not None and records:
        if Path(output).suffix.lower() in capture_lib.IMAGE_EXTS:
            raise EdgeDeeplabError(f"output for a {'camera' if camera else 'video'} source must be a "
                                   f"video (.mp4), got {Path(output).name}")
        check_video_path(output)
        require_video_encoder()


def _limited(source, max_frames: Optional[int]):
    for i, fr in enumerate(source):
        yield fr
        if max_frames is not None and i + 1 >= max_frames:
            return


def run_demo(model, source="0", effect="blur", person_class: Optional[int] = None,
             accelerator: str = "cpu", threads: Optional[int] = None, headless: bool = False,
             output=None, max_frames: Optional[int] = None, overlay: bool = True,
             refine: str = "guided", smoothing: float = 0.5, screenshot_dir=".",
             runtime: str = "auto", camera_size: Optional[tuple] = None,
             log: Optional[Callable[[str], None]] = print,
             warn: Optional[Callable[[str], None]] = None, motion: Optional[float] = 0.04,
             mean=None, std=None, json_path=None) -> DemoResult:
    """Runs the portrait demo, its stages overlapped on threads (:mod:`demos.stages`).

    Capture/decode, inference (with preprocessing), matte + composite, and writing/display run at
    the same time on their own threads, frames in order; none is dropped for a file (a live camera
    drops stale frames and counts them). During the run OpenCV gets one thread per call when those
    threads fill the cores (:func:`demos.stages.opencv_threads_for`; restored after), and glibc
    keeps freed frame buffers for reuse from then on (:func:`demos.memory.keep_freed_buffers`).

    Args:
        model: path to a .tflite segmentation model.
        source: camera index (``0``), video file, image file or folder of images.
        effect: ``blur``, ``replace:IMAGE``, ``color:R,G,B``, ``mask``, or an :class:`Effect`.
        person_class: override of the person channel (see :func:`resolve_person_channel`).
        accelerator: ``cpu`` or ``gpu`` (LiteRT GPU accelerator).
        threads: CPU threads for inference (None: runtime default).
        headless: no window; write ``output`` (video for camera/video sources, an image file for an
            image, a directory for a folder) and print timings.
        output: see ``headless``; optional (timings only) when None. Never the source itself.
        max_frames: stop after this many frames (the end of a video also stops).
        overlay: draw FPS and per-stage times on the frames.
        refine: edge refinement, ``guided``, ``feather`` or ``none``.
        smoothing: temporal EMA momentum (0 disables; images of a folder are not smoothed together).
        screenshot_dir: where the ``s`` key saves screenshots (window mode).
        runtime: runtime for :func:`edge_deeplab.runtime.open_runner`.
        camera_size: requested ``(width, height)`` of a camera.
        log: where progress/the report goes (None: silent).
        warn: where notes and warnings go (default: stderr): which output of a multi-output
            model is used, images of a folder that could not be read (they are skipped).
        motion: motion-aware smoothing threshold (:class:`demos.compositing.TemporalSmoother`);
            None for a plain EMA.
        mean, std: input normalization of a model without it in its metadata (e.g. ``0`` and
            ``255`` for a model that takes [0, 1] pixels, like MediaPipe's selfie segmenter).
        json_path: also write the result (:meth:`DemoResult.to_json`, with the machine) there.

    Outputs are replaced only by a finished run: a video is written to a hidden temporary file
    beside ``output`` and moved onto it at the end, a folder's images to a hidden temporary folder
    beside it and moved in at the end (:class:`demos.outputs.FolderOutput`), so Ctrl-C
    (``KeyboardInterrupt``) or SIGTERM (:class:`~edge_deeplab.core.errors.Terminated`) removes the
    temporary files, leaves an earlier ``output`` as it was and propagates. A stage that raises
    stops every thread and its error propagates. A headless camera recording needs ``max_frames``;
    in window mode ``q`` ends a session normally.

    Returns:
        :class:`DemoResult`.

    Raises:
        EdgeDeeplabError: missing/unreadable model or source, missing camera, a model that is not a
            segmentation model, an output that is the source, no GUI in window mode, unwritable
            output.

    Example:
        >>> res = run_demo("person.tflite", "clip.mp4", headless=True, output="out.mp4")  # doctest: +SKIP
        >>> res.fps, res.flicker                                                           # doctest: +SKIP
    """
    from edge_deeplab.core.atomic_io import require_file
    from edge_deeplab.runtime import open_runner

    say = log or (lambda s: None)
    tell = warn or (lambda s: print(s, file=sys.stderr, flush=True))
    if max_frames is not None and max_frames < 1:
        raise EdgeDeeplabError(f"--max-frames must be >= 1, got {max_frames}")
    out_path = Path(output) if output is not None else None
    check_demo_outputs(model, source, out_path, json_path, headless)
    eff = effect if isinstance(effect, comp.Effect) else comp.parse_effect(effect)
    require_file(model, "model")
    if not headless:
        ok, why = gui_available()
        if not ok:
            raise EdgeDeeplabError(f"cannot open a window: {why}; {GUI_HINT}")

    reuse_buffers = keep_freed_buffers()  # frame-sized blocks reused, not zeroed again per frame
    runner = open_runner(model, accelerator=accelerator, threads=threads, runtime=runtime)
    # decode, inference, matte and write compute side by side: OpenCV's own pool on top of them
    # would oversubscribe the cores (restored in `finally`)
    cv_threads_before = cv2.getNumThreads()
    cv_threads = opencv_threads_for(4)
    cv2.setNumThreads(cv_threads)
    source_obj = None
    video_out: Optional[VideoOutput] = None
    folder_out: Optional[FolderOutput] = None
    stages: Optional[StagePipeline] = None
    written: List[Path] = []
    timer = StageTimer()
    frames = 0
    last_size = None
    try:
        pipe = PortraitPipeline(runner, eff, person_class=person_class, smoothing=smoothing,
                                refine=refine, motion=motion, mean=mean, std=std)
        say(f"model {Path(model).name}: input {list(runner.input.shape)}, output "
            f"{list(runner.output.shape)}, person = class {pipe.selector.index} ({pipe.selector.reason}); "
            f"{getattr(runner, 'runtime_name', '?')} on {accelerator}"
            + ("" if accelerator == "cpu" or getattr(runner, "fully_accelerated", None) is None else
               f" (fully accelerated: {runner.fully_accelerated}"
               + (f"; CPU fallback for {', '.join(runner.unsupported_ops)}" if runner.unsupported_ops else "")
               + ")"))
        if pipe.model_input.normalization_source == "default":
            say(f"input normalization: (x - {pipe.model_input.mean.tolist()}) / {pipe.model_input.std.tolist()} (MobileNet-v2 default; "
                "the model's metadata does not say; --mean/--std set it)")
        outs = list(getattr(runner, "outputs", None) or [runner.output])
        if len(outs) > 1:
            tell(f"note: {Path(model).name} has {len(outs)} outputs; using output 0 "
                 f"{runner.output.name!r} {list(runner.output.shape)} (others: "
                 + ", ".join(f"{o.name!r} {list(o.shape)}" for o in outs[1:]) + ")")
        source_obj = capture_lib.open_source(
            source, *(camera_size if camera_size else (None, None)))
        kind = source_obj.kind
        if headless and out_path is not None and source_obj.is_live and max_frames is None:
            raise EdgeDeeplabError(f"recording {source_obj.name} headless needs --max-frames N to end it "
                                   f"(Ctrl-C discards an unfinished recording)")
        if headless and out_path is not None:
            if kind == "folder":
                if out_path.exists() and not out_path.is_dir():
                    raise EdgeDeeplabError(f"output for a folder source must be a directory: {out_path}")
                folder_out = FolderOutput(out_path)
            elif kind == "image":
                if out_path.suffix and out_path.suffix.lower() not in capture_lib.IMAGE_EXTS:
                    raise EdgeDeeplabError(
                        f"output for an image source must be an image file or directory, got {out_path.name}")
                if not out_path.suffix:
                    folder_out = FolderOutput(out_path)
            elif out_path.suffix.lower() in capture_lib.IMAGE_EXTS:
                raise EdgeDeeplabError(f"output for a {kind} source must be a video (.mp4), got {out_path.name}")
        window = not headless
        if window:
            _open_window()
        effects = comp.effect_cycle(eff)
        still = kind in ("image", "folder")
        # shared with the matte thread: the effect the `e` key picked, the overlay's latest figures
        shared = {"effect": 0, "lines": None}

        def infer_stage(fr):
            return fr, pipe.infer(fr.image)

        def matte_stage(item):
            fr, inferred = item
            if still:
                pipe.smoother.reset()
            out, alpha, t = pipe.finish(fr.image, inferred, effects[shared["effect"]], shared["lines"])
            return fr, inferred, out, alpha, t

        fps_ema = None
        shot_n = 0
        quit_ = False
        t_start = time.perf_counter()
        cpu_start = time.process_time()
        t_prev = t_start
        stages = StagePipeline(_limited(source_obj, max_frames),
                               [("inference", infer_stage), ("matte", matte_stage)]).start()
        # Ctrl-C/SIGTERM arrive here, in the main thread: `finally` stops the stages and discards
        # the unfinished outputs
        for fr, inferred, out, alpha, t in stages:
            img = fr.image
            times = {"capture": fr.wait_s}
            times.update({k: inferred.times[k] for k in ("preprocess", "inference", "preprocess" + CPU,
                                                         "inference" + CPU) if k in inferred.times})
            times.update(t)
            while True:  # re-render the same still when the effect is switched
                t_w, c_w = time.perf_counter(), thread_cpu()
                if headless and out_path is not None:
                    if folder_out is not None:
                        name = image_output_path(out_path, "folder", fr.name).name
                        written.append(folder_out.write(name, out))
                    elif kind == "image":
                        written.append(write_image(image_output_path(out_path, kind, fr.name), out))
                    else:
                        if video_out is None:
                            # a file keeps its own rate; a camera records at the rate we
                            # actually process (measured), so playback speed is right
                            fps = None if source_obj.is_live else (source_obj.fps or 30.0)
                            video_out = VideoOutput(out_path, fps, (img.shape[1], img.shape[0]))
                        video_out.write(out)
                key = -1
                if window:
                    cv2.imshow(WINDOW, out)
                    key = cv2.waitKey(0 if still else 1) & 0xFF
                times["display" if window else "write"] = time.perf_counter() - t_w
                times[("display" if window else "write") + CPU] = thread_cpu() - c_w
                if key in (ord("s"), ord("S")):
                    shot_n += 1
                    p = Path(screenshot_dir) / f"portrait_{time.strftime('%Y%m%d_%H%M%S')}_{shot_n:03d}.png"
                    written.append(write_image(p, out))
                    say(f"screenshot: {p}")
                if key in (ord("e"), ord("E")):
                    shared["effect"] = (shared["effect"] + 1) % len(effects)
                    say(f"effect: {effects[shared['effect']].label}")
                    if still:
                        out = pipe.compose(img, alpha, effects[shared["effect"]], shared["lines"])
                        continue
                if key in (ord("q"), ord("Q"), 27):
                    quit_ = True
                break
            if window:
                try:
                    if cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
                        quit_ = True  # window closed with the mouse
                except cv2.error:
                    quit_ = True
            for k, v in times.items():
                timer.add(k, v)
            frames += 1
            last_size = (img.shape[1], img.shape[0])
            now = time.perf_counter()
            inst = 1.0 / max(1e-6, now - t_prev)
            t_prev = now
            fps_ema = inst if fps_ema is None else 0.9 * fps_ema + 0.1 * inst
            if overlay:
                shared["lines"] = _overlay_lines(fps_ema, times, effects[shared["effect"]], window)
            if quit_ or (max_frames is not None and frames >= max_frames):
                break
        stages.stop()  # threads joined in `finally`, after the source is closed
        seconds = time.perf_counter() - t_start
        cpu_seconds = time.process_time() - cpu_start
        skipped = list(getattr(source_obj, "skipped", None) or [])
        if frames == 0:
            if skipped:
                raise EdgeDeeplabError(f"none of the {len(skipped)} images in {source_obj.name} can be read "
                                       f"(first: {skipped[0][1]})")
            raise EdgeDeeplabError(f"{source_obj.name} delivered no frames")
        if skipped:
            tell(f"warning: skipped {len(skipped)} of {len(skipped) + frames} images that cannot be read: "
                 + ", ".join(name for name, _ in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
                 + f" (first: {skipped[0][1]})")
        final = None
        if video_out is not None:
            final = video_out.finish()
            written.append(final)
            video_out = None
        elif folder_out is not None:
            written = folder_out.finish() + [p for p in written if folder_out.tmp not in p.parents]
            folder_out = None
            final = out_path if kind == "folder" else written[0]
        elif kind == "image" and written and headless:
            final = written[0]
        res = DemoResult(frames=frames, seconds=seconds, fps=frames / max(seconds, 1e-9),
                         stages=timer.summary(), dropped=source_obj.dropped, output=final,
                         outputs=written, person=pipe.selector, source_kind=kind,
                         frame_size=last_size, accelerator=accelerator,
                         runtime=getattr(runner, "runtime_name", "?"),
                         cpu_seconds=cpu_seconds,
                         flicker=None if still else pipe.flicker.value,
                         static_fraction=None if still else pipe.flicker.static_fraction,
                         settings={"smoothing": smoothing, "motion": motion, "refine": refine,
                                   "effect": eff.label, "overlay": overlay, "overlapped": True,
                                   "opencv_threads": cv_threads, "inference_threads": threads,
                                   "reused_frame_buffers": reuse_buffers,
                                   "normalization": {"mean": pipe.model_input.mean.tolist(), "std": pipe.model_input.std.tolist(),
                                                     "from": pipe.model_input.normalization_source}})
        say(res.report())
        if json_path is not None:
            from edge_deeplab.core.atomic_io import write_json_atomic
            from edge_deeplab.core.sysinfo import machine_info

            write_json_atomic(json_path, res.to_json(machine_info()))
        return res
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM: not a finished run. `finally` deletes the temporary video or folder;
        # an earlier output stays as it was. The CLI exits 130/143.
        unfinished = video_out or folder_out
        if unfinished is not None:
            say(f"stopped after {frames} frames; {unfinished.path} not written"
                + (" (the earlier output is unchanged)" if unfinished.path.exists() else ""))
        raise
    finally:
        if stages is not None:
            stages.stop()  # joined below, once the source they may wait on is closed
        if video_out is not None:
            video_out.abort()
        if folder_out is not None:
            folder_out.abort()
        if source_obj is not None:
            source_obj.close()
        if stages is not None:
            stages.close()  # a source thread that waited on the capture has now ended too
        try:
            runner.close()
        except Exception:  # noqa: BLE001
            pass
        cv2.setNumThreads(cv_threads_before)
        if not headless:
            try:
                cv2.destroyAllWindows()
            except cv2.error:
                pass


def demo_on_clip(model, out_dir, num_frames: int = 48, width: int = 320, height: int = 240,
                 effect="blur", accelerator: str = "cpu", threads: Optional[int] = None,
                 log: Optional[Callable[[str], None]] = print) -> DemoResult:
    """Renders the procedural demo clip and runs the headless demo on it (what quickstart shows).

    Writes ``out_dir/clip.mp4`` (the input) and ``out_dir/portrait.mp4`` (the result).

    Args:
        model: .tflite segmentation model (with a person class, e.g. the synthetic quickstart model).
        out_dir: output directory (created).
        num_frames, width, height: clip length and frame size.
        effect: the background effect.
        accelerator, threads: inference settings.
        log: progress/report sink (None: silent).

    Example:
        >>> res = demo_on_clip("quickstart/model.tflite", "quickstart/demo")   # doctest: +SKIP
        >>> res.output                                                          # doctest: +SKIP
        PosixPath('quickstart/demo/portrait.mp4')
    """
    from demos.clip import generate_clip

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clip = generate_clip(out_dir / "clip.mp4", num_frames=num_frames, width=width, height=height)
    return run_demo(model, clip.path, effect=effect, accelerator=accelerator, threads=threads,
                    headless=True, output=out_dir / "portrait.mp4", log=log)
