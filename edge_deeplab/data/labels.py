"""Class-name sanity: the one check that a list of label names can name a model's classes.

Names decide which class is which downstream (the portrait demo takes the class named ``person``
as the person): an empty name, or one name given twice (``person,person,ball``), would silently
pick the wrong class, so both are refused in one line wherever names come in (``--labels`` of
``build``, ``train`` and ``export``; a folder dataset's ``labels.txt``).
"""

from __future__ import annotations

from typing import Sequence, Tuple

from edge_deeplab.core.errors import EdgeDeeplabError


def check_label_names(names: Sequence[str], what: str = "labels") -> Tuple[str, ...]:
    """Returns ``names`` (stripped) or raises a one-line error naming an empty or repeated one.

    Names are compared case-insensitively (``Person`` and ``person`` are one class to a reader).

    Args:
        names: the class names, in class order.
        what: where they come from, for the message (``"--labels 'a,b'"``, a file path).

    Example:
        >>> check_label_names([" background", "person "])
        ('background', 'person')
        >>> check_label_names(["person", "person", "ball"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        edge_deeplab.core.errors.EdgeDeeplabError: labels name 'person' twice (classes 0 and 1); each class needs its own name
    """
    out = tuple(str(n).strip() for n in names)
    if not out:
        raise EdgeDeeplabError(f"{what} gives no class names")
    seen = {}
    for i, n in enumerate(out):
        if not n:
            raise EdgeDeeplabError(f"{what} has an empty name (class {i}); every class needs one")
        if n.lower() in seen:
            raise EdgeDeeplabError(f"{what} name {n!r} twice (classes {seen[n.lower()]} and {i}); "
                                   f"each class needs its own name")
        seen[n.lower()] = i
    return out
