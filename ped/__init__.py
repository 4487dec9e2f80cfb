"""ped: Potential Energy Descent and transferability estimation.

The reference companion to "Exploring Model Transferability through the Lens of Potential
Energy" (Li et al., ICCV 2023).  Public API:

- :func:`potential_energy_descent` (module ``ped.dynamics``): move features by PED.
- :func:`spread_attract` (module ``ped.attract``): perturb features by Spread/Attract (SA), the
  opposite move (overlapping classes pulled together).
- :mod:`ped.metrics`: transferability metrics (LogME, SFDA, GBC, NLEEP, ...).
- :mod:`ped.evaluation`: weighted Kendall tau and other rank statistics.
- :mod:`ped.paper`: the published numbers of the paper.
"""

import logging

from ped.attract import SAResult, spread_attract
from ped.dynamics import (
    PEDOptions,
    PEDResult,
    elastic_potential,
    hooke_forces,
    potential_energy_descent,
)
from ped.evaluation import bootstrap_ci, kendall_tau, rank_statistics, top1_regret, weighted_tau

__version__ = "0.2.0"

__all__ = [
    "PEDOptions",
    "PEDResult",
    "SAResult",
    "bootstrap_ci",
    "elastic_potential",
    "hooke_forces",
    "kendall_tau",
    "potential_energy_descent",
    "rank_statistics",
    "spread_attract",
    "top1_regret",
    "weighted_tau",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
