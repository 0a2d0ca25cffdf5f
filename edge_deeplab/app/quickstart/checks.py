"""The quickstart's checks: the thresholds its measured numbers must meet, and their verdicts.

Example:
    >>> evaluate_checks({"keras_float": 0.9}, {}, fast=False)["float_miou"]["ok"]
    True
"""

from edge_deeplab.app.quickstart.plan import GPU_CHECKED

#: The quickstart's promises. ``float_miou``: Keras float mIoU at least this; ``qat_drop_points``:
#: QAT int8 at most this many mIoU points below float; ``qat_vs_ptq_points``: QAT int8 at most this
#: many points below post-training int8 (0: QAT >= PTQ); ``w8a16_vs_ptq_points``: likewise w8a16
#: (int16 activations) against post-training int8. The full run's are the project's targets.
#: w8a16 and PTQ share bit-identical int8 weights (both take min/max per-channel ranges), so
#: their mIoUs differ only by the int8 activations' rounding, which moves PTQ's mIoU by about a
#: tenth of a point either way on 200 held-out images: measured w8a16 - PTQ -0.03 points on the
#: full run (float 87.57, PTQ 87.49, w8a16 87.46), +0.03 and -0.09 on two other trained models,
#: while w8a16 stayed within 0.11 points of float. Hence 0.15 points, not 0: w8a16 >= PTQ cannot
#: hold on every run, and its closeness to float is what the tests hold it to.
FULL_THRESHOLDS = {"float_miou": 0.80, "qat_drop_points": 0.5, "qat_vs_ptq_points": 0.0,
                   "w8a16_vs_ptq_points": 0.15}
#: ``--fast`` is a 120-step smoke run of a 64x64 model: its accuracy says only that training
#: learned something and that quantization did not break it. Measured here (seed 0, 2 shared
#: cores): Keras float 38.01, PTQ int8 38.02, QAT int8 38.27 mIoU; on an AVX-512 Xeon PTQ 40.96,
#: w8a16 40.94. The floors leave room for the run-to-run noise of threaded CPU kernels, of 40 QAT
#: steps and of 16 calibration images.
FAST_THRESHOLDS = {"float_miou": 0.30, "qat_drop_points": 2.0, "qat_vs_ptq_points": 1.0,
                   "w8a16_vs_ptq_points": 0.5}
def thresholds(fast: bool) -> dict:
    """The check thresholds of a full or ``--fast`` run."""
    return dict(FAST_THRESHOLDS if fast else FULL_THRESHOLDS)


def describe_thresholds(t: dict) -> str:
    return (f"float mIoU >= {t['float_miou']:.2f}, QAT within {t['qat_drop_points']:g} points of "
            f"float, QAT >= PTQ - {t['qat_vs_ptq_points']:g} points, w8a16 >= PTQ - "
            f"{t['w8a16_vs_ptq_points']:g} points, every export but w8a16 fully on the GPU")


def evaluate_checks(accuracy: dict, models: dict, fast: bool) -> dict:
    """The quickstart's checks on its measured numbers.

    Args:
        accuracy: report name -> mIoU in [0, 1] (``keras_float``, ``int8_ptq``, ``int8_qat`` ...).
        models: report name -> model entry with ``gpu_fully_accelerated`` (True/False, or None
            where no GPU accelerator could start) and ``gpu_unsupported_ops``.
        fast: use the ``--fast`` thresholds.

    Returns:
        ``{name: {"ok": True|False|None, "message": one line}}`` in a fixed order; ``ok`` is None
        when the check could not be made (a number is missing, no GPU accelerator here).

    Example:
        >>> c = evaluate_checks({"keras_float": 0.7, "int8_qat": 0.69, "int8_ptq": 0.68}, {}, False)
        >>> c["float_miou"]["ok"], c["qat_within_float"]["ok"], c["qat_not_below_ptq"]["ok"]
        (False, False, True)
    """
    t = thresholds(fast)
    f, q, p = accuracy.get("keras_float"), accuracy.get("int8_qat"), accuracy.get("int8_ptq")

    def pct(v):
        return "—" if v is None else f"{100 * v:.2f}"

    out = {}
    ok = None if f is None else f >= t["float_miou"]
    out["float_miou"] = {"ok": ok, "message": f"Keras float mIoU {pct(f)} >= {100 * t['float_miou']:.2f}"}
    ok = None if f is None or q is None else (f - q) * 100 <= t["qat_drop_points"] + 1e-9
    out["qat_within_float"] = {"ok": ok, "message": f"QAT int8 mIoU {pct(q)} within "
                                                    f"{t['qat_drop_points']:g} points of float {pct(f)}"}

    def not_below_ptq(what: str, v, points: float) -> dict:
        ok = None if v is None or p is None else (p - v) * 100 <= points + 1e-9
        return {"ok": ok, "message": f"{what} mIoU {pct(v)} >= post-training int8 {pct(p)}"
                                     + (f" - {points:g} points" if points else "")}

    out["qat_not_below_ptq"] = not_below_ptq("QAT int8", q, t["qat_vs_ptq_points"])
    out["w8a16_not_below_ptq"] = not_below_ptq("w8a16", accuracy.get("w8a16"),
                                               t["w8a16_vs_ptq_points"])
    gpu = {k: (models.get(k) or {}).get("gpu_fully_accelerated") for k in GPU_CHECKED}
    bad = [k for k, v in gpu.items() if v is False]
    if bad:
        why = "; ".join(f"{k}: " + (", ".join((models[k].get("gpu_unsupported_ops") or [])) or "partial")
                        for k in bad)
        out["gpu_full_delegation"] = {"ok": False, "message": f"every export fully on the LiteRT GPU "
                                      f"accelerator: not {', '.join(bad)} ({why})"}
    elif any(v is None for v in gpu.values()):
        out["gpu_full_delegation"] = {"ok": None, "message": "every export fully on the LiteRT GPU "
                                      "accelerator: not checked (no GPU accelerator starts here)"}
    else:
        out["gpu_full_delegation"] = {"ok": True, "message": "every export fully on the LiteRT GPU "
                                      f"accelerator ({', '.join(GPU_CHECKED)})"}
    return out


def failed_checks(report: dict) -> list:
    """One line per failed check of a quickstart report (empty when all held or were n/a)."""
    details = report.get("check_details") or {}
    return [f"{name}: {(details.get(name) or {}).get('message', name)}"
            for name, ok in (report.get("checks") or {}).items() if ok is False]
