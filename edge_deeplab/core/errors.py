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
