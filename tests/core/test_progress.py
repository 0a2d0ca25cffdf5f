"""The one progress line: whole lines in a log, one line rewritten in place on a terminal."""

from __future__ import annotations

import io
import time

from edge_deeplab.core.progress import LineProgress


def screen(text: str) -> list:
    """What a terminal shows for ``text``: each ``\\r`` returns to column 0 and overwrites."""
    rows = []
    for raw in text.split("\n"):
        row = ""
        for part in raw.split("\r"):
            row = part + row[len(part):]
        rows.append(row.rstrip())
    return rows[:-1] if rows and rows[-1] == "" else rows


def test_in_place_line_ends_clean_at_the_total():
    out = io.StringIO()
    p = LineProgress(4, "labelling", stream=out, every=0.25, unit="frame", in_place=True)
    p._t0 = time.time() - 10  # a rate is shown on the lines before the last
    for i in range(1, 5):
        p.update(i)
    p.update(4)  # the count was an estimate: more updates at the total add nothing
    assert "frames/s" in out.getvalue()
    assert screen(out.getvalue()) == ["labelling: frame 4/4 (100%)"]  # no rate left over from before


def test_in_place_line_stopped_early_is_ended_before_what_follows():
    out = io.StringIO()
    p = LineProgress(4, "labelling", stream=out, every=0.25, unit="frame", in_place=True)
    p.update(1)
    p.update(2)
    p.close()
    p.close()  # idempotent
    print("labels: 2 frames", file=out)
    assert screen(out.getvalue()) == ["labelling: frame 2/4 (50%)", "labels: 2 frames"]
    p = LineProgress(4, "train", stream=out, every=0.25, in_place=True)
    p.update(1)
    p.message("checkpoint saved")
    assert screen(out.getvalue())[-2:] == ["train: step 1/4 (25%)", "checkpoint saved"]


def test_log_mode_prints_whole_lines_and_the_total_once():
    out = io.StringIO()
    p = LineProgress(10, "train", stream=out, every=0.5)
    for i in range(1, 11):
        p.update(i, [("loss", 0.5)])
    p.update(10, [("loss", 0.5)])
    assert out.getvalue().splitlines() == ["train: step 5/10 (50%), loss 0.5000",
                                           "train: step 10/10 (100%), loss 0.5000"]
