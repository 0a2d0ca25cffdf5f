"""``python -m edge_deeplab.runtime {probe PATH gpu [--run] | serve}``: the child processes of
:func:`~edge_deeplab.runtime.probe.probe_accelerator` and :class:`~edge_deeplab.runtime.isolated.IsolatedRunner`."""

import json
import os
import sys

from edge_deeplab.runtime.probe import probe_main
from edge_deeplab.runtime.serve import serve

if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "serve":
        serve()
    if len(sys.argv) >= 4 and sys.argv[1] == "probe":
        print(json.dumps(probe_main(sys.argv[2], sys.argv[3], "--run" in sys.argv[4:])))
        sys.stdout.flush()
        os._exit(0)  # skip native destructors (a flaky driver teardown must not change the answer)
    print("usage: python -m edge_deeplab.runtime probe MODEL.tflite {gpu,npu} [--run]", file=sys.stderr)
    sys.exit(2)
