"""The matte edge refinements the demo offers (no OpenCV: the CLI imports this to build ``--refine``).

Example:
    >>> check_refine_method("feather")
    'feather'
"""

from __future__ import annotations

from edge_deeplab.core.errors import EdgeDeeplabError

#: Matte edge refinements (:func:`demos.compositing.refine_mask`,
#: :func:`demos.compositing.refine_matte`; the demo's ``--refine``).
REFINE_METHODS = ("guided", "feather", "none")


def check_refine_method(method: str) -> str:
    """Returns ``method`` if it is one of :data:`REFINE_METHODS`, else raises a one-line error."""
    if method not in REFINE_METHODS:
        raise EdgeDeeplabError(f"unknown refinement {method!r}; use guided, feather or none")
    return method
