"""The tooling around the book: executing its notebooks and sweeping their parameters.

- :mod:`ped.tools.notebooks`: jupytext sources executed with papermill (``ped execute``).
- :mod:`ped.tools.sweep`: parameter sweeps of a notebook on Dask (``ped sweep``), resumable per
  grid point.
"""
