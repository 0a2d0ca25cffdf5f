"""Thin CLI wrappers; see :mod:`edge_deeplab.cli` for the contract each module follows."""
