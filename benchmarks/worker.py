"""Isolated benchmark worker: ``python -m benchmarks.worker < spec.json``.

Reads one JSON spec on stdin (see :func:`benchmarks.measure.measure_model`), benchmarks that one model
on one accelerator, and prints one line ``@@EDGE_DEEPLAB_BENCH@@ {json}`` on stdout. Native runtime logs
go to stderr. It exits with ``os._exit`` so a flaky driver teardown cannot change the answer; if the
runtime crashes natively the parent sees a signal and no result line, and records a one-line error.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    try:
        spec = json.loads(sys.stdin.read())
    except ValueError as e:
        print(f"benchmarks.worker: bad spec on stdin: {e}", file=sys.stderr)
        return 2
    from benchmarks.measure import RESULT_MARK, worker_main
    from edge_deeplab.core.errors import first_line

    try:
        res = worker_main(spec)
    except Exception as e:  # noqa: BLE001 - report one line, the parent decides
        res = {"model": spec.get("model"), "accelerator": spec.get("accelerator"), "ok": False,
               "error": f"{type(e).__name__}: {first_line(e)}", "unavailable": False}
    from edge_deeplab.core.atomic_io import json_default

    sys.stdout.write(RESULT_MARK + json.dumps(res, default=json_default) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    rc = main()
    try:
        sys.stderr.flush()
    except Exception:  # noqa: BLE001
        pass
    os._exit(rc)
