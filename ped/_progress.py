"""Progress bars: tqdm's notebook widget where ipywidgets is installed, its text bar otherwise.

``tqdm.auto`` picks the widget inside a Jupyter kernel and, when ipywidgets is missing, warns
(``TqdmWarning: IProgress not found``) before falling back to the text bar; the warning then
lands in the outputs of every notebook that imports a module using it.  :func:`tqdm` makes the
same choice without the warning.
"""

from __future__ import annotations

import importlib.util
from typing import Any

__all__ = ["tqdm"]


def tqdm(*args: Any, **kwargs: Any) -> Any:
    """A ``tqdm`` progress bar (same arguments): the notebook widget in a Jupyter kernel with
    ipywidgets installed, the text bar everywhere else."""
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm as bar
    else:
        from tqdm.std import tqdm as bar
    return bar(*args, **kwargs)
