"""``edge-deeplab``: one console command over every stage.

Each subcommand lives in ``edge_deeplab/app/commands/<name>.py`` and exposes:

* ``HELP``: one-line description;
* ``add_arguments(parser)``: its flags (no TensorFlow import here, so ``--help`` is instant);
* ``run(args) -> int``: a thin wrapper over the library function that does the work.

Errors: an :class:`~edge_deeplab.core.errors.EdgeDeeplabError` (bad input, missing file, delegate that
cannot start) prints ``edge-deeplab <cmd>: error: <one line>`` and exits with its code; so does a bad
flag (argparse, without the usage block). Ctrl-C exits 130 and SIGTERM 143, after clean-up. A missing
dependency (LiteRT or TensorFlow on a tflite_runtime-only board) prints what to install and exits 2.
Any other exception also prints one line (type and message) and exits 1; set ``EDGE_DEEPLAB_DEBUG=1``
or pass ``--debug`` for the full traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

#: command name -> module (in data-flow order: config -> model -> train/QAT -> convert -> analyze/bench -> report/demo)
COMMANDS = {
    "quickstart": "edge_deeplab.app.commands.quickstart",
    "build": "edge_deeplab.app.commands.build",
    "summary": "edge_deeplab.app.commands.summary",
    "train": "edge_deeplab.app.commands.train",
    "distill": "edge_deeplab.app.commands.distill",
    "qat": "edge_deeplab.app.commands.qat",
    "eval": "edge_deeplab.app.commands.eval",
    "export": "edge_deeplab.app.commands.export",
    "analyze": "edge_deeplab.app.commands.analyze",
    "quant-report": "edge_deeplab.app.commands.quant_report",
    "bench": "edge_deeplab.app.commands.bench",
    "demo": "edge_deeplab.app.commands.demo",
}


def _load(name):
    try:
        return importlib.import_module(COMMANDS[name])
    except ModuleNotFoundError as e:
        if e.name == COMMANDS[name]:
            return None
        raise


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``edge-deeplab bench: error: argument --runs: must be an
    integer >= 1, got 0`` and a pointer to ``--help`` instead of the whole usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from edge_deeplab import __version__

    parser = _Parser(
        prog="edge-deeplab",
        description="DeepLab v3+ / MobileNet-v2 from Keras to phones: train, QAT, export, "
                    "analyze, benchmark, demo.")
    parser.add_argument("--version", action="version", version=f"edge-deeplab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        mod = _load(name)
        if mod is None:
            continue
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show full tracebacks on errors")
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _one_line(text: str) -> str:
    """The informative line of an exception message (TensorFlow puts it last after 'in user code:')."""
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    if not lines:
        return ""
    if lines[0].endswith(":") and len(lines) > 1:
        return lines[-1][:300]
    return lines[0][:300]


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


#: Seconds a Ctrl-C'd command may take to unwind before it is ended with exit 130 anyway.
INTERRUPT_GRACE_S = 30.0


def _exit_promptly_on_interrupt(command: str):
    """Arms, on the first Ctrl-C, a watchdog that ends the process with 130 after a grace period.

    Ctrl-C raises :class:`KeyboardInterrupt` as usual, and the clean-up on the way out runs. But a
    native call (a TensorFlow op or input-pipeline thread) can hold the main thread or interpreter
    shutdown long after it; the watchdog makes "interrupted, exit 130" hold anyway. Finished
    artifacts are written atomically, so ending the process never leaves a partial one. Returns
    the undo function.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return lambda: None

    def hard_exit():
        try:
            sys.stderr.write(f"edge-deeplab {command}: interrupted\n")
            sys.stderr.flush()
        finally:
            os._exit(130)

    armed = []

    def handler(signum, frame):
        if not armed:
            timer = threading.Timer(INTERRUPT_GRACE_S, hard_exit)
            timer.daemon = True
            timer.start()
            armed.append(timer)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    return lambda: signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    debug = getattr(args, "debug", False) or os.environ.get("EDGE_DEEPLAB_DEBUG") == "1"
    from edge_deeplab.core.errors import EdgeDeeplabError, Terminated, raise_on_sigterm

    prefix = f"edge-deeplab {args.command}: error:"
    from edge_deeplab.core.native_logs import filtered_stderr, silence_stderr_at_exit

    silence_stderr_at_exit()
    restore_sigterm = raise_on_sigterm()
    restore_sigint = _exit_promptly_on_interrupt(args.command)

    try:
        with filtered_stderr():
            try:
                rc = args._run(args)
                sys.stdout.flush()  # a closed pipe fails here, inside the handlers below
            finally:
                import gc

                gc.collect()  # runtimes freed here log their teardown while the filter is on
        return int(rc or 0)
    except EdgeDeeplabError as e:
        if debug:
            raise
        print(f"{prefix} {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        # The reader went away (`edge-deeplab analyze m.tflite | head`): stop quietly, as a
        # SIGPIPE-killed tool would, and keep the interpreter's final flush from failing again.
        _silence_stdout()
        return 141
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated): clean-up has run on the way out
        terminated = isinstance(e, Terminated)
        print(f"edge-deeplab {args.command}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return Terminated.exit_code if terminated else 130
    except Exception as e:  # noqa: BLE001 - the CLI's promise: one line, never a traceback dump
        if debug:
            raise
        from edge_deeplab.core.errors import explain_missing_kernel, explain_missing_module

        hint = explain_missing_module(e)
        if hint:  # e.g. analyze on a board that has only tflite_runtime
            print(f"{prefix} {hint}", file=sys.stderr)
            return 2
        hint = explain_missing_kernel(e)
        if hint:
            print(f"{prefix} {hint} (rerun with --debug for details)", file=sys.stderr)
            return 1
        msg = _one_line(str(e))
        print(f"{prefix} {type(e).__name__}: {msg} (rerun with --debug for details)", file=sys.stderr)
        return 1
    finally:
        restore_sigterm()
        restore_sigint()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
