"""The full-scale path: the paper's experiment on real checkpoints and datasets.

- :mod:`ped.fullscale.extraction`: ResNet-50 features of the paper's datasets (``ped extract``),
  resumable, sharded, with the paper's transform.
- :mod:`ped.fullscale.scoring`: every metric with and without PED on a folder of features
  (``ped score``), and their rank statistics against the published fine-tuning accuracies
  (``ped evaluate``), in the layout of the paper's Table 1.
"""
