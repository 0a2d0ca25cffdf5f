"""The one table of export variants: well-formed rows, and every site reading it.

The rows themselves are exported and held to their bounds in ``tests/contract`` (every row) and a
row added in a test is exported through the CLI in ``tests/converters/test_export.py``; here the
table's own invariants and the sites that derive their lists from it, without TensorFlow.
"""

from __future__ import annotations

import pytest

from edge_deeplab.core.contract import semantics, variants
from edge_deeplab.core.errors import EdgeDeeplabError

TYPES = ("float32", "float16", "int8", "int16")


def test_rows_are_well_formed():
    seen = set()
    for v in variants.TABLE:
        for name in (v.name, *v.aliases):
            assert name not in seen, f"{name} names two rows"
            seen.add(name)
        assert v.weights in TYPES and v.activations in TYPES, v
        assert v.io_types and set(v.io_types) <= set(variants.IO_TYPES), v
        assert len(set(v.io_types)) == len(v.io_types), v
        # float activations take float I/O only; integer ones may take their own type
        if not v.integer:
            assert v.io_types == ("float32",), v
        assert not (v.qat and v.calibrated), v  # a QAT model carries its ranges
        assert not v.keep_float or v.calibrated, v  # selective precision calibrates the rest


def test_every_converter_path_has_its_function():
    """A row names its converter path; the converter layer maps every name to a function."""
    from converters.export import CONVERTERS

    assert {v.converter for v in variants.TABLE} <= set(CONVERTERS)
    assert all(callable(f) for f in CONVERTERS.values())


def test_vocabulary_derives_from_the_table():
    assert semantics.VARIANTS == tuple(v.name for v in variants.TABLE)
    assert semantics.INTEGER_VARIANTS == tuple(v.name for v in variants.TABLE
                                               if v.activations in ("int8", "int16"))
    assert variants.gpu_refused_activations() == {v.activations: v.name for v in variants.TABLE
                                                  if not v.gpu}


def test_aliases_name_their_row():
    """Names from elsewhere ("dynamic-range", "uint8": the tensor-type classifier's and other
    tools') resolve to their row, in the lookups and in what ``semantics.variant`` reports."""
    assert variants.get("dynamic-range").name == "dynamic"
    assert variants.get("uint8").name == "int8"
    assert semantics.variant(None, {"variant": "dynamic-range"}) == "dynamic"
    assert semantics.variant(None, {"quantization": {"mode": "uint8"}}) == "int8"
    assert semantics.variant(None, {"export": {"variant": "uint8"}}) == "int8"
    assert semantics.variant(None, {"variant": "custom-int4"}) == "custom-int4"  # foreign: as written
    for v in variants.TABLE:
        assert semantics.variant(None, {"export": {"variant": v.name}}) == v.name


def test_unknown_variant_is_one_line_naming_the_choices():
    with pytest.raises(EdgeDeeplabError) as e:
        variants.get("int4")
    msg = str(e.value)
    assert "\n" not in msg and "'int4'" in msg
    assert all(name in msg for name in variants.names())


def test_cli_export_reads_the_table():
    """``edge-deeplab export``'s help and --io-type choices come from the table."""
    import argparse

    from edge_deeplab.app.commands import export

    p = argparse.ArgumentParser()
    export.add_arguments(p)
    io = next(a for a in p._actions if a.dest == "io_type")
    assert tuple(io.choices) == variants.IO_TYPES
    assert set(variants.IO_TYPES) == {t for v in variants.TABLE for t in v.io_types}
    out = next(a for a in p._actions if a.dest == "output")
    assert tuple(out.choices) == variants.EXPORT_OUTPUTS
    for name in variants.names():
        assert name in export.HELP
