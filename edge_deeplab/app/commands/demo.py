"""``edge-deeplab demo``: portrait mode (background blur/replacement) from a .tflite model."""

from __future__ import annotations

import argparse
import sys

from demos.refinement import REFINE_METHODS
from edge_deeplab.app.commands.common import (
    add_normalization_arguments,
    non_negative_int,
    positive_float,
    positive_int,
)
from edge_deeplab.runtime.runners import RUNTIMES

HELP = "portrait demo: background blur/replace from a webcam, video, image or folder"
DESCRIPTION = (
    "Runs a .tflite segmentation model on a camera, video file, image or folder and blurs, replaces "
    "or recolours everything that is not a person. Window mode (needs OpenCV's GUI build, "
    "pip install 'edge_deeplab[gui]'): q quits, e switches effect, s saves a screenshot. "
    "--headless writes --output OUT (a video for camera/video sources, an image for an image, a directory "
    "for a folder; a camera also needs --max-frames) and prints per-stage timings and end-to-end FPS. "
    "OUT is replaced only when the run finishes: Ctrl-C (exit 130) or SIGTERM (exit 143) leaves an "
    "earlier OUT as it was; OUT may not be the source. Capture, inference, matte+composite and "
    "writing run overlapped on threads, frames in order. A model without normalization metadata "
    "needs --mean/--std (e.g. 0 and 255 for [0, 1] inputs). Images of a folder that cannot be read "
    "are skipped and counted.")


def _momentum(text):
    """``--smoothing``: a number in [0, 1)."""
    import math

    try:
        v = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}") from None
    if not math.isfinite(v) or not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text}")
    return v


def _camera_size(text):
    from edge_deeplab.core.errors import EdgeDeeplabError
    from edge_deeplab.core.imaging import parse_size

    if "x" not in str(text).lower():
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 640x480, got {text!r}")
    try:
        size = parse_size(text)  # "WxH" -> (W, H): the two numbers in the order given
    except EdgeDeeplabError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 640x480, got {text!r}") from None
    if min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected WxH with both >= 1, e.g. 640x480, got {text!r}")
    return size


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="the .tflite segmentation model")
    p.add_argument("--source", default="0",
                   help="camera index (0, 1, ...), video file, image file or folder of images")
    p.add_argument("--effect", default="blur",
                   help="blur | blur:STRENGTH | replace:IMAGE | color:R,G,B | mask")
    p.add_argument("--person-class", type=non_negative_int, default=None,
                   help="output channel of 'person' (default: from the model's labels; class 1 of "
                        "a binary model, 15 of a 21-class VOC model, the channel of a 1-channel "
                        "sigmoid model)")
    p.add_argument("--accelerator", default="cpu", choices=("cpu", "gpu"),
                   help="LiteRT accelerator for inference")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU inference threads")
    p.add_argument("--runtime", default="auto", choices=RUNTIMES,
                   help="TFLite runtime (auto: LiteRT, else tflite_runtime)")
    p.add_argument("--headless", action="store_true",
                   help="no window: write --output and print timings")
    p.add_argument("--output", default=None,
                   help="headless output: OUT.mp4 for camera/video, an image (or dir) for an image, "
                        "a directory for a folder")
    p.add_argument("--max-frames", type=positive_int, default=None,
                   help="stop after N frames (the end of a video also stops)")
    p.add_argument("--refine", default="guided", choices=REFINE_METHODS,
                   help="matte edge refinement")
    p.add_argument("--smoothing", type=_momentum, default=0.5,
                   help="temporal EMA momentum of the mask in [0, 1) (0 disables)")
    p.add_argument("--motion", type=positive_float, default=0.04,
                   help="motion-aware smoothing: grey change (0-1) of the image at which the EMA "
                        "lets go of the previous mask (smaller: follows motion sooner)")
    p.add_argument("--plain-ema", action="store_true",
                   help="smooth the same everywhere, moving or not (the plain EMA)")
    add_normalization_arguments(p)
    p.add_argument("--json", default=None, metavar="OUT.json",
                   help="also write the run's figures (FPS, per-stage ms, mask flicker, machine) as JSON")
    p.add_argument("--no-overlay", action="store_true", help="do not draw FPS/timings on frames")
    p.add_argument("--camera-size", type=_camera_size, default=None,
                   help="requested camera resolution WxH, e.g. 640x480")
    p.add_argument("--screenshot-dir", default=".", help="where the s key saves screenshots")


def run(args) -> int:
    from demos.portrait import run_demo
    from edge_deeplab.core.errors import EdgeDeeplabError

    if args.output and not args.headless:
        raise EdgeDeeplabError("--output is written in --headless mode; add --headless")
    if args.headless and not args.output:
        raise EdgeDeeplabError("--headless needs --output OUT (a video for a camera/video, an image "
                               "or directory for an image, a directory for a folder)")
    run_demo(args.model, source=args.source, effect=args.effect, person_class=args.person_class,
             accelerator=args.accelerator, threads=args.threads, headless=args.headless,
             output=args.output, max_frames=args.max_frames, overlay=not args.no_overlay,
             refine=args.refine, smoothing=args.smoothing, screenshot_dir=args.screenshot_dir,
             camera_size=args.camera_size, runtime=args.runtime,
             motion=None if args.plain_ema else args.motion, mean=args.mean, std=args.std,
             json_path=args.json,
             warn=lambda msg: print(f"edge-deeplab demo: {msg}", file=sys.stderr, flush=True))
    return 0
