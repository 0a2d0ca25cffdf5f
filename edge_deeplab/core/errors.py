"""User-facing errors.

Anything a user can cause (a missing file, a bad flag value, a corrupt image or .tflite) is raised as
:class:`EdgeDeeplabError` with a one-line message that names the problem. The CLI prints that line
and exits non-zero; it never dumps a traceback for these.
"""


class EdgeDeeplabError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2


class DelegateUnavailableError(EdgeDeeplabError):
    """The requested accelerator (GPU/NPU delegate) cannot start on this machine."""

    exit_code = 3


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so ``finally`` blocks run (temporary files are removed,
    finished outputs are left as they were). A :class:`KeyboardInterrupt`, so every clean-up path
    for Ctrl-C also covers it; the CLI exits 143 for it (130 for Ctrl-C)."""

    exit_code = 143


def raise_on_sigterm():
    """Turns SIGTERM into :class:`Terminated` in the main thread, so the clean-up on the way out
    runs as for Ctrl-C (temporary files and folders removed, finished outputs left as they were),
    unless someone already handles SIGTERM or this is not the main thread; returns the undo
    function. A second SIGTERM ends the process at once.

    Example:
        >>> import signal
        >>> before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
        >>> undo = raise_on_sigterm()
        >>> signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        True
        >>> _ = undo()
        >>> signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        True
        >>> _ = signal.signal(signal.SIGTERM, before)
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return lambda: None

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL)


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none): what a
    one-line error quotes of a library's exception.

    Example:
        >>> first_line(ValueError("bad input\\nmore detail")), first_line(KeyError())
        ('bad input', 'KeyError')
    """
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def explain_missing_kernel(exc: BaseException):
    """One line for TensorFlow's "dilated depthwise kernel missing" error, else ``None``.

    ``DepthwiseConv2dNative`` with ``dilations`` runs only on oneDNN CPU builds; the Eigen CPU kernel
    (AVX2-only x86, ARM, ``TF_ENABLE_ONEDNN_OPTS=0``) and the CUDA kernel refuse it with
    ``Current kernel implementation does not support dilations``. This toolkit only traces that op
    for conversion; the error means a user's own code executed such a trace (for example a model run
    inside ``edge_deeplab.model.layers.native_dilated_depthwise()``, or a custom layer calling the op).

    Example:
        >>> explain_missing_kernel(ValueError("other")) is None
        True
    """
    import re

    text = str(exc)
    if "does not support dilations" not in text:
        return None
    node = re.search(r"\{\{node ([^}]+)\}\}", text)
    where = node.group(1) if node else "a DepthwiseConv2dNative op"
    layer = where.rsplit("/", 2)[-2] if where.count("/") >= 1 else where
    return (f"layer {layer!r} ran a dilated DepthwiseConv2dNative ({where}), whose kernel exists only "
            f"in oneDNN CPU builds, not on this device; run the stock DepthwiseConv2D path "
            f"(call models outside edge_deeplab.model.layers.native_dilated_depthwise(), which is for "
            f"tracing a TFLite conversion only)")


#: Top-level module -> (what it is, how to install it), for :func:`explain_missing_module`.
_INSTALL_HINTS = {
    "ai_edge_litert": ("LiteRT (ai-edge-litert)", "pip install ai-edge-litert==2.3.0"),
    "tensorflow": ("TensorFlow", "pip install tensorflow-cpu==2.21.0"),
    "tf_keras": ("tf-keras", "pip install tf-keras==2.21.0"),
    "tensorflow_model_optimization": ("the TensorFlow Model Optimization toolkit",
                                      "pip install tensorflow-model-optimization==0.8.1"),
    "litert_quantizer": ("litert-quantizer", "pip install litert-quantizer==0.11.0"),
    "matplotlib": ("Matplotlib", "pip install matplotlib"),
}


def explain_missing_module(exc: BaseException):
    """One line naming what to install for a ``ModuleNotFoundError`` of a known dependency, else None.

    The full stack (``scripts/install.sh``) has every dependency; a board with only the classic
    ``tflite_runtime`` wheel (``scripts/tflite_runtime_venv.sh``) runs ``bench``, ``eval`` and
    ``demo`` with ``--runtime tflite_runtime`` and gets this line from commands that need LiteRT
    or TensorFlow (``analyze``, ``export``, ``quant-report``, training).

    Example:
        >>> explain_missing_module(ModuleNotFoundError("No module named 'ai_edge_litert'",
        ...                                            name="ai_edge_litert"))  # doctest: +ELLIPSIS
        'this needs LiteRT (ai-edge-litert), which is not installed here: pip install ai-edge-litert==2.3.0 ...'
    """
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.split(".")[0]
    if top not in _INSTALL_HINTS:
        return None
    what, how = _INSTALL_HINTS[top]
    return (f"this needs {what}, which is not installed here: {how} (or scripts/install.sh for "
            f"the whole stack); on a tflite_runtime-only board, bench, eval (of a .tflite) and demo "
            f"run with --runtime tflite_runtime")
