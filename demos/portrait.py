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
from demos.outputs import VideoOutput, image_output_path, write_image
from demos.person import PersonSelector
from demos.pipeline import PortraitPipeline, StageTimer
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

    def report(self) -> str:
        lines = [f"{self.frames} frames from {self.source_kind} in {self.seconds:.2f} s: "
                 f"{self.fps:.1f} FPS end-to-end ({self.accelerator}, {self.runtime})"]
        if self.dropped:
            lines.append(f"dropped {self.dropped} stale camera frames")
        lines.append("stage        mean ms   p50 ms   p90 ms")
        for k, v in self.stages.items():
            lines.append(f"{k:<12}{v['mean_ms']:>8.2f}{v['p50_ms']:>9.2f}{v['p90_ms']:>9.2f}")
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


def run_demo(model, source="0", effect="blur", person_class: Optional[int] = None,
             accelerator: str = "cpu", threads: Optional[int] = None, headless: bool = False,
             output=None, max_frames: Optional[int] = None, overlay: bool = True,
             refine: str = "guided", smoothing: float = 0.5, screenshot_dir=".",
             runtime: str = "auto", camera_size: Optional[tuple] = None,
             log: Optional[Callable[[str], None]] = print,
             warn: Optional[Callable[[str], None]] = None) -> DemoResult:
    """Runs the portrait demo.

    Args:
        model: path to a .tflite segmentation model.
        source: camera index (``0``), video file, image file or folder of images.
        effect: ``blur``, ``replace:IMAGE``, ``color:R,G,B``, ``mask``, or an :class:`Effect`.
        person_class: override of the person channel (see :func:`resolve_person_channel`).
        accelerator: ``cpu`` or ``gpu`` (LiteRT GPU accelerator).
        threads: CPU threads for inference (None: runtime default).
        headless: no window; write ``output`` (video for camera/video sources, an image file for an
            image, a directory for a folder) and print timings.
        output: see ``headless``; optional (timings only) when None.
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

    Outputs are replaced only by a finished run: a video is written to a hidden temporary file
    beside ``output`` and moved onto it at the end, so Ctrl-C (``KeyboardInterrupt``) or SIGTERM
    (:class:`~edge_deeplab.core.errors.Terminated`) removes the temporary file, leaves an earlier
    ``output`` as it was and propagates. A headless camera recording therefore needs
    ``max_frames``; in window mode ``q`` ends a session normally.

    Returns:
        :class:`DemoResult`.

    Raises:
        EdgeDeeplabError: missing/unreadable model or source, missing camera, a model that is not a
            segmentation model, no GUI in window mode, unwritable output.
    """
    from edge_deeplab.core.atomic_io import require_file
    from edge_deeplab.runtime import open_runner

    say = log or (lambda s: None)
    tell = warn or (lambda s: print(s, file=sys.stderr, flush=True))
    if max_frames is not None and max_frames < 1:
        raise EdgeDeeplabError(f"--max-frames must be >= 1, got {max_frames}")
    eff = effect if isinstance(effect, comp.Effect) else comp.parse_effect(effect)
    require_file(model, "model")
    out_path = Path(output) if output is not None else None
    if not headless:
        ok, why = gui_available()
        if not ok:
            raise EdgeDeeplabError(f"cannot open a window: {why}; {GUI_HINT}")

    runner = open_runner(model, accelerator=accelerator, threads=threads, runtime=runtime)
    source_obj = None
    video_out: Optional[VideoOutput] = None
    written: List[Path] = []
    timer = StageTimer()
    frames = 0
    last_size = None
    try:
        pipe = PortraitPipeline(runner, eff, person_class=person_class, smoothing=smoothing,
                                refine=refine)
        say(f"model {Path(model).name}: input {list(runner.input.shape)}, output "
            f"{list(runner.output.shape)}, person = class {pipe.selector.index} ({pipe.selector.reason}); "
            f"{getattr(runner, 'runtime_name', '?')} on {accelerator}"
            + ("" if accelerator == "cpu" or getattr(runner, "fully_accelerated", None) is None else
               f" (fully accelerated: {runner.fully_accelerated}"
               + (f"; CPU fallback for {', '.join(runner.unsupported_ops)}" if runner.unsupported_ops else "")
               + ")"))
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
                out_path.mkdir(parents=True, exist_ok=True)
            elif kind == "image":
                if out_path.suffix and out_path.suffix.lower() not in capture_lib.IMAGE_EXTS:
                    raise EdgeDeeplabError(
                        f"output for an image source must be an image file or directory, got {out_path.name}")
                if not out_path.suffix:
                    out_path.mkdir(parents=True, exist_ok=True)
            elif out_path.suffix.lower() in capture_lib.IMAGE_EXTS:
                raise EdgeDeeplabError(f"output for a {kind} source must be a video (.mp4), got {out_path.name}")
        window = not headless
        if window:
            _open_window()
        effects = comp.effect_cycle(eff)
        eff_i = 0
        fps_ema = None
        t_start = time.perf_counter()
        t_prev = t_start
        still = kind in ("image", "folder")
        shot_n = 0
        quit_ = False
        # Ctrl-C/SIGTERM propagate: the unfinished video is discarded in `finally`
        frame_iter = iter(source_obj)
        while True:
            try:
                fr = next(frame_iter)
            except StopIteration:
                break
            img = fr.image
            times = {"capture": fr.wait_s}
            if still:
                pipe.smoother.reset()
            while True:  # re-render the same still when the effect is switched
                lines = _overlay_lines(fps_ema or 0.0, last_times if frames else times,  # noqa: F821
                                       effects[eff_i], window) if overlay else None
                out, _, t = pipe.process(img, effects[eff_i], lines)
                times.update(t)
                t_w = time.perf_counter()
                if headless and out_path is not None:
                    if kind in ("image", "folder"):
                        p = image_output_path(out_path, kind, fr.name)
                        written.append(write_image(p, out))
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
                if key in (ord("s"), ord("S")):
                    shot_n += 1
                    p = Path(screenshot_dir) / f"portrait_{time.strftime('%Y%m%d_%H%M%S')}_{shot_n:03d}.png"
                    written.append(write_image(p, out))
                    say(f"screenshot: {p}")
                if key in (ord("e"), ord("E")):
                    eff_i = (eff_i + 1) % len(effects)
                    say(f"effect: {effects[eff_i].label}")
                    if still:
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
            last_times = dict(times)  # noqa: F841 - read on the next frame
            frames += 1
            last_size = (img.shape[1], img.shape[0])
            now = time.perf_counter()
            inst = 1.0 / max(1e-6, now - t_prev)
            t_prev = now
            fps_ema = inst if fps_ema is None else 0.9 * fps_ema + 0.1 * inst
            if quit_ or (max_frames is not None and frames >= max_frames):
                break
        seconds = time.perf_counter() - t_start
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
        elif kind == "image" and written and headless:
            final = written[0]
        elif kind == "folder" and headless and out_path is not None:
            final = out_path
        res = DemoResult(frames=frames, seconds=seconds, fps=frames / max(seconds, 1e-9),
                         stages=timer.summary(), dropped=source_obj.dropped, output=final,
                         outputs=written, person=pipe.selector, source_kind=kind,
                         frame_size=last_size, accelerator=accelerator,
                         runtime=getattr(runner, "runtime_name", "?"))
        say(res.report())
        return res
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM: not a finished run. `finally` deletes the temporary video; an earlier
        # output stays as it was. The CLI exits 130/143.
        if video_out is not None:
            say(f"stopped after {frames} frames; {video_out.path} not written"
                + (" (the earlier file is unchanged)" if video_out.path.exists() else ""))
        raise
    finally:
        if video_out is not None:
            video_out.abort()
        if source_obj is not None:
            source_obj.close()
        try:
            runner.close()
        except Exception:  # noqa: BLE001
            pass
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
