"""The child side of :class:`~edge_deeplab.runtime.isolated.IsolatedRunner`
(``python -m edge_deeplab.runtime serve``): one runner, pickled messages on stdin/stdout."""

from __future__ import annotations

import os
import sys

from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.runtime.opener import open_runner


def serve() -> None:
    """Child side of :class:`IsolatedRunner`: one runner, pickled messages on stdin/stdout."""
    import pickle

    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything native code prints to stdout must not corrupt the protocol
    proto_in = sys.stdin.buffer
    runner = None
    while True:
        try:
            cmd, arg = pickle.load(proto_in)
        except (EOFError, OSError, pickle.UnpicklingError):
            break
        if cmd == "close":
            break
        try:
            if cmd == "open":
                runner = open_runner(isolate=False, **arg)
                d = runner.describe()
                d["log"] = runner.log
                reply = ("ok", d)
            else:
                reply = ("ok", runner.run_all(arg))
        except EdgeDeeplabError as e:
            reply = ("error", (type(e).__name__, str(e)))
        except Exception as e:  # noqa: BLE001 - reported to the parent as one line
            reply = ("error", (type(e).__name__, f"inference failed: {type(e).__name__}: {e}"))
        pickle.dump(reply, proto_out, protocol=pickle.HIGHEST_PROTOCOL)
        proto_out.flush()
    proto_out.flush()
    os._exit(0)  # skip native teardown of the accelerator
