"""One converter from numpy values and paths to plain JSON values, shared by the run-folder layer
(``runfolder.to_json``), the typed validation layer (``validate.typed``) and the scaling report.

It imports nothing from the package, so any module may use it without tying itself to another
(tests/test_imports.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def json_default(o: Any):
    """numpy scalars and arrays, and paths, as the plain JSON values they stand for (the
    ``default`` of ``json.dumps``); anything else is a TypeError, never a silent ``str``."""
    import numpy as np

    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
