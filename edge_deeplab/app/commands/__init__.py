"""Thin CLI wrappers; see :mod:`edge_deeplab.app.cli` for the contract each module follows."""
