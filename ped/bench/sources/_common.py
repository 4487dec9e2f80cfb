"""What the image sources share: the image container, the cache folder, RGB conversion, image
digests and the commands that install the Debian-packaged sources.

Images are ``uint8`` arrays of shape ``(N, 32, 32, C)`` (``C`` = 1 for grey-scale sources, 3 for
colour) with ``int64`` labels, held in an :class:`ImageSet`.  Decoded or unpacked data is cached
under :func:`cache_dir`: ``$PED_CACHE_DIR`` when set, else ``~/.cache/ped``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = ["IMAGE_SIZE", "ImageSet", "cache_dir", "to_rgb", "image_hashes"]

logger = logging.getLogger(__name__)

#: Side of every image, in pixels.
IMAGE_SIZE = 32
# The command that installs each Debian-packaged source, named in the error a missing source
# raises.  The ``glyphs`` entry is added by ped.bench.sources.glyphs, from its package table.
_APT_HINT = {
    "fashion_mnist": "apt-get install -y dataset-fashion-mnist",
    "clipart": "apt-get install -y openclipart-png",
}


@dataclass(frozen=True)
class ImageSet:
    """Images ``(N, 32, 32, C)`` uint8, labels ``(N,)`` int64 and the class names."""

    images: NDArray[np.uint8]
    labels: NDArray[np.int64]
    classes: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1:3] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"images must be (N, 32, 32, C), got {self.images.shape}")
        if self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8, got {self.images.dtype}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"{self.images.shape[0]} images but labels of shape {self.labels.shape}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])


def cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``path``, else ``$PED_CACHE_DIR``, else ``~/.cache/ped`` (created)."""
    if path is None:
        env = os.environ.get("PED_CACHE_DIR")
        path = env if env else Path.home() / ".cache" / "ped"
    out = Path(path).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    return out


def to_rgb(images: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Return ``(N, H, W, 3)`` images: grey ones repeated over three channels (a new array)."""
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be (N, H, W, 1 or 3), got {images.shape}")
    if images.shape[-1] == 3:
        return images.copy()
    return np.repeat(images, 3, axis=-1)


def image_hashes(images: NDArray[np.uint8]) -> list[str]:
    """sha1 of each image's bytes in canonical RGB form (so grey and colour copies compare)."""
    rgb = to_rgb(np.ascontiguousarray(images))
    return [hashlib.sha1(img.tobytes()).hexdigest() for img in rgb]
