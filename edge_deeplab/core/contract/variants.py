"""The export variants: one table, one row per variant, read by every site that needs to know one.

Each row (:class:`Variant`) says what the variant is (weight and activation types), how a user may
feed it (I/O types, the default first), how it is built (the converter path, a name that
:data:`converters.export.CONVERTERS` maps to its function; whether it needs calibration images, a
quantization-aware model, allows ``--keep-float``), where it runs (whether the LiteRT GPU
accelerator takes it) and what the contract tester holds it to (``tests/contract``). The exporter,
the ``export`` CLI, the runtime's and the analyzer's GPU rules, the benchmarks' int8 pairing and the
contract tests all read this table; adding a variant is one row here plus, when no existing
converter path builds it, one converter function.

Names from elsewhere are aliases of a row: :func:`edge_deeplab.core.contract.semantics.variant`
classifies a foreign model from its tensor types as ``dynamic-range`` (the ``dynamic`` row) or
``uint8`` (the ``int8`` row: integer activations).

Example:
    >>> names()
    ('float32', 'float16', 'dynamic', 'int8', 'qat-int8', 'w8a16')
    >>> row = find("uint8")
    >>> row.name, row.default_io, row.calibrated, row.gpu
    ('int8', 'uint8', True, True)
    >>> gpu_refused_activations()
    {'int16': 'w8a16'}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

#: Every I/O type some variant allows (the ``--io-type`` choices).
IO_TYPES = ("float32", "uint8", "int8", "int16")
#: What an export may output: per-pixel logits, or an int32 class map (ARG_MAX appended).
EXPORT_OUTPUTS = ("logits", "classmap")


@dataclass(frozen=True)
class Variant:
    """One export variant.

    Attributes:
        name: the name users pass (``--variant``) and the exporter writes (``export.variant``).
        title: a short human description (reports, help).
        weights: weight type: ``float32``, ``float16`` or ``int8``.
        activations: activation type: ``float32``, ``int8`` or ``int16``.
        io_types: the model I/O types allowed, the default first.
        converter: the converter path that builds it (a key of ``converters.export.CONVERTERS``).
        calibrated: needs calibration images (a dataset, else generated scenes).
        qat: built from a quantization-aware model (``edge-deeplab qat``), not a float one.
        keep_float: allows selective precision (``--keep-float``).
        gpu: the LiteRT GPU accelerator runs it (``False``: it is refused there, CPU only).
        bound: the contract tester's ``(min argmax agreement with Keras, max mIoU drop)``.
        person_iou: the contract tester's minimum person-matte IoU against Keras (demo).
        aliases: names other tools (or the tensor-type classifier) give this variant.
    """

    name: str
    title: str
    weights: str
    activations: str
    io_types: Tuple[str, ...]
    converter: str
    bound: Tuple[float, float]
    person_iou: float
    calibrated: bool = False
    qat: bool = False
    keep_float: bool = False
    gpu: bool = True
    aliases: Tuple[str, ...] = ()

    @property
    def default_io(self) -> str:
        """The I/O type when the user gives none."""
        return self.io_types[0]

    @property
    def integer(self) -> bool:
        """Integer activations (int8 or int16); their I/O may be integer too."""
        return self.activations != "float32"


#: The table. Contract bounds measured on the contract tester's trained model (24 val images x
#: 64x64, ``tests/contract/test_contract.py``): argmax agreement float32 1.00000, float16 0.99974,
#: dynamic 0.99906, int8 0.98578, qat-int8 0.99048 (vs the QAT Keras model), w8a16 0.99509; person
#: matte IoU float32 1.00000, float16 0.99290, dynamic 0.96270, int8 0.88312, w8a16 0.97193 (qat-int8
#: not measured: that build's QAT model found no person on the clip; held like int8).
TABLE: Tuple[Variant, ...] = (
    Variant("float32", "float32", weights="float32", activations="float32", io_types=("float32",),
            converter="tflite", bound=(0.999, 0.001), person_iou=0.99),
    Variant("float16", "float16 weights (what mobile GPUs run)", weights="float16",
            activations="float32", io_types=("float32",), converter="tflite", bound=(0.998, 0.002),
            person_iou=0.98),
    Variant("dynamic", "dynamic-range: int8 weights, float activations", weights="int8",
            activations="float32", io_types=("float32",), converter="tflite", bound=(0.995, 0.003),
            person_iou=0.94, aliases=("dynamic-range",)),
    Variant("int8", "int8 (post-training)", weights="int8", activations="int8",
            io_types=("uint8", "int8", "float32"), converter="tflite", bound=(0.975, 0.01),
            person_iou=0.85, calibrated=True, keep_float=True, aliases=("uint8",)),
    Variant("qat-int8", "int8 (quantization-aware training)", weights="int8", activations="int8",
            io_types=("uint8", "int8", "float32"), converter="tflite", bound=(0.98, 0.01),
            person_iou=0.85, qat=True),
    # float I/O by default: LiteRT's CompiledModel (the default runtime) has no int16 buffer.
    Variant("w8a16", "int8 weights, int16 activations", weights="int8", activations="int16",
            io_types=("float32", "int16"), converter="litert-quantizer", bound=(0.99, 0.005),
            person_iou=0.95, calibrated=True, keep_float=True, gpu=False),
)


def names() -> Tuple[str, ...]:
    """The variant names, in table order.

    Example:
        >>> "w8a16" in names()
        True
    """
    return tuple(v.name for v in TABLE)


def find(name: str) -> Optional[Variant]:
    """The row named ``name`` or aliased so, else None.

    Args:
        name: a variant name or alias.

    Example:
        >>> find("dynamic-range").name, find("bogus")
        ('dynamic', None)
    """
    for v in TABLE:
        if name == v.name or name in v.aliases:
            return v
    return None


def get(name: str) -> Variant:
    """The row named ``name`` (or an alias); a one-line error naming the choices otherwise.

    Args:
        name: a variant name or alias.

    Raises:
        EdgeDeeplabError: no such variant.

    Example:
        >>> get("int8").converter
        'tflite'
    """
    row = find(name)
    if row is None:
        from edge_deeplab.core.errors import EdgeDeeplabError

        raise EdgeDeeplabError(f"unknown variant {name!r}; choose one of {', '.join(names())}")
    return row


def canonical(name: str) -> str:
    """The table's name for ``name`` (an alias maps to its row), or ``name`` unchanged if unknown.

    Args:
        name: a variant name, alias or any other string.

    Example:
        >>> canonical("uint8"), canonical("w8a16"), canonical("custom")
        ('int8', 'w8a16', 'custom')
    """
    row = find(name)
    return row.name if row else name


def where(**fields) -> Tuple[str, ...]:
    """Names of the rows whose attributes equal ``fields``.

    Args:
        fields: attribute values, e.g. ``calibrated=True``.

    Example:
        >>> where(calibrated=True), where(activations="int8")
        (('int8', 'w8a16'), ('int8', 'qat-int8'))
    """
    return tuple(v.name for v in TABLE if all(getattr(v, k) == x for k, x in fields.items()))


def gpu_refused_activations() -> Dict[str, str]:
    """``{activation dtype: variant}`` for the variants the LiteRT GPU accelerator does not run.

    A model with tensors of such a dtype is kept off the GPU
    (:func:`edge_deeplab.runtime.opener.refuse_gpu_unsupported`) and predicted to fall off it by the
    analyzer's static rules (:func:`converters.analyze.gpu_refused_ops`).

    Example:
        >>> gpu_refused_activations()
        {'int16': 'w8a16'}
    """
    return {v.activations: v.name for v in TABLE if not v.gpu and v.activations != "float32"}
