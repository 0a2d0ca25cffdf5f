"""Runs a .tflite through ``tflite_runtime``; meant for the board venv only.

Runs with ``scripts/tflite_runtime_venv.sh``'s python (tflite_runtime, NumPy 1, no TensorFlow, no
LiteRT), through the same :func:`edge_deeplab.runtime.open_runner` every consumer uses::

    .venv-tflite-runtime/bin/python tests/support/tflite_runtime_predict.py MODEL OUT.npy A.npy ...

Images are uint8 RGB ``(H, W, 3)`` ``.npy`` files. Writes ``Runner.predict`` of each, stacked, to
``OUT.npy`` and prints one JSON line: ``{"ok": true, "runtime": ..., "runtime_version": ...,
"fully_accelerated": ..., "shape": [...]}``, or ``{"ok": false, "error": "..."}``.
"""

import json
import sys


def main(argv) -> int:
    if len(argv) < 3:
        print("usage: tflite_runtime_predict.py MODEL OUT.npy IMAGE.npy...", file=sys.stderr)
        return 2
    import numpy as np

    from edge_deeplab.core.errors import EdgeDeeplabError
    from edge_deeplab.runtime import open_runner

    model, out, images = argv[0], argv[1], argv[2:]
    try:
        with open_runner(model, accelerator="cpu", runtime="tflite_runtime") as r:
            got = np.stack([r.predict(np.load(p)) for p in images])
            info = {"runtime": r.runtime_name, "runtime_version": r.runtime_version,
                    "fully_accelerated": r.fully_accelerated}
    except EdgeDeeplabError as e:
        print(json.dumps({"ok": False, "error": str(e)}))
        return 1
    np.save(out, got)
    print(json.dumps({"ok": True, "shape": list(got.shape), **info}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
