"""Moved to :mod:`common.lattice`: the one lattice writer and the one reader, shared by decoding
and rescoring. This alias keeps the old import path (``tests/asr/test_decode.py``) working; new
code imports :mod:`common.lattice`.

Usage:
    from common.lattice import read_lattice_archive, write_nbest_lattices
"""

from common.lattice import read_lattice_archive as read_nbest_lattices
from common.lattice import write_nbest_lattices

__all__ = ["read_nbest_lattices", "write_nbest_lattices"]
