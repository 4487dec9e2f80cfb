"""The embedded benchmark's model zoo: small ResNets pretrained by self-supervised methods.

- :mod:`ped.bench.zoo.encoder`: the 32x32 ResNet-18-style encoder (widths 16-32-64-128, 128-d).
- ``ped.bench.zoo.methods``: SimCLR, MoCo v2, BYOL, SimSiam, FastSiam, SwAV, Barlow Twins, VICReg,
  DINO, NNCLR and DCL from ``lightly``'s losses, heads and transforms.
- :mod:`ped.bench.zoo.spec`: the zoo specification (:data:`~ped.bench.zoo.spec.ZOO`).
- :mod:`ped.bench.zoo.train`: resumable pretraining units, the sha256 manifest, held-out feature
  statistics and cached feature extraction on the downstream tasks.
- :mod:`ped.bench.zoo.runs`: one fine-tuning or linear-probe run.
- :mod:`ped.bench.zoo.finetune`: the first benchmark's ground truth (lr x wd grid, validation
  selection, 3 seeds, and the linear probe), resumable per unit, as a tidy table.
- :mod:`ped.bench.zoo.protocol`: the rebuilt benchmark's protocol (selection seeds apart from
  evaluation seeds, a grid grown until the choice is interior, a sha256 manifest).
- :mod:`ped.bench.zoo.selection`: the selection rerun with a second seed (selection noise).
- :mod:`ped.bench.zoo.regime`: the regime chapter's ground truth (class subsets, the 5-epoch
  zoo on the rebuilt tasks).
- the ``ped zoo`` commands live in ``ped.cli.zoo``.

torch, torchvision and lightly are imported by the submodules that need them, so importing
:mod:`ped.bench.zoo` (and :mod:`ped.bench.zoo.spec`) stays light.
"""

from ped.bench.zoo.spec import DEFAULT_EPOCHS, ZOO, ZooEntry, zoo_entry

__all__ = ["ZOO", "ZooEntry", "DEFAULT_EPOCHS", "zoo_entry"]
