"""Open Clip Art (the Debian package ``openclipart-png``) as 32x32 RGB images, labelled by
top-level folder.

Clip art is composited on white (RGBA), shrunk with ``thumbnail`` to fit 32x32 and centred on a
white canvas.  PNGs above PIL's decompression-bomb warning threshold (89.5 Mpx: the three it
refuses and 13 that take seconds each, :data:`CLIPART_MAX_PIXELS`) are skipped; blank results
(thin line art that vanishes at 32 px) and exact duplicates are dropped.  Of the 8,121 files this
leaves 6,800 images (16 skipped, 125 blank, 1,180 duplicates).  Decoding takes about 25-35 s, so
the decoded arrays are cached as ``<cache>/clipart32_v2_<key>.npz``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ped._io import write_npz_atomic
from ped._progress import tqdm
from ped.bench.sources._common import _APT_HINT, IMAGE_SIZE, ImageSet, cache_dir, image_hashes

__all__ = ["CLIPART_DIR", "CLIPART_POOL_CATEGORIES", "CLIPART_MAX_PIXELS", "load_clipart"]

logger = logging.getLogger(__name__)

#: Where the Debian package ``openclipart-png`` installs the PNGs.
CLIPART_DIR = Path("/usr/share/openclipart/png")
#: Clip-art folders that feed the pretraining pool (minus the images ``clipart_symbols3`` uses).
CLIPART_POOL_CATEGORIES = (
    "computer", "shapes", "signs_and_symbols", "special", "unsorted", "buttons", "logos",
    "decorations", "containers", "electronics", "science", "education",
)  # fmt: skip
_CLIPART_CACHE_VERSION = 2


def _clipart_files(root: Path, categories: Sequence[str] | None) -> list[tuple[str, str]]:
    """Sorted ``(category, relative path)`` of every PNG under ``root`` (or the categories)."""
    if not root.is_dir():
        raise FileNotFoundError(
            f"Open Clip Art source missing: {root} not found; install it with "
            f"`{_APT_HINT['clipart']}` (Debian/Ubuntu, as root)"
        )
    available = sorted(p.name for p in root.iterdir() if p.is_dir())
    if categories is None:
        chosen = available
    else:
        unknown = sorted(set(categories) - set(available))
        if unknown:
            raise ValueError(f"unknown clip-art categories {unknown}; available: {available}")
        chosen = sorted(set(categories))
    files = []
    for cat in chosen:
        for p in sorted((root / cat).rglob("*.png")):
            files.append((cat, p.relative_to(root).as_posix()))
    return files


#: Clip-art PNGs larger than this (PIL's decompression-bomb warning threshold) are skipped: the
#: handful of such files take seconds each to decode.
CLIPART_MAX_PIXELS = 89_478_485


def _decode_clipart(path: Path, max_pixels: int = CLIPART_MAX_PIXELS) -> NDArray[np.uint8] | None:
    """One PNG -> (32, 32, 3) uint8 (RGBA on white, thumbnail, centred); None if unreadable."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            # files above max_pixels are skipped below; PIL's warning about them is noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            n_pixels = im.width * im.height
            if n_pixels > max_pixels:
                logger.info("skipping %s: %d pixels > %d", path, n_pixels, max_pixels)
                return None
            im.load()
            rgba = im.convert("RGBA")
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        logger.warning("skipping %s: %s", path, exc.__class__.__name__)
        return None
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(white, rgba).convert("RGB")
    flat.thumbnail((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)
    canvas = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (255, 255, 255))
    canvas.paste(flat, ((IMAGE_SIZE - flat.width) // 2, (IMAGE_SIZE - flat.height) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def load_clipart(
    categories: Sequence[str] | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    cache: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    progress: bool = True,
) -> tuple[ImageSet, NDArray[np.str_]]:
    """Open Clip Art as 32x32 RGB, labelled by top-level folder; returns ``(images, paths)``.

    ``categories`` restricts the folders (classes are the sorted folder names chosen).  Decoded
    arrays are cached in ``<cache>/clipart32_v2_<key>.npz`` where ``key`` hashes the file list
    (decoding everything takes about 30-60 s; a cache hit well under a second).
    """
    base = Path(root) if root is not None else CLIPART_DIR
    files = _clipart_files(base, categories)
    classes = tuple(sorted({c for c, _ in files}))
    key = hashlib.sha1(
        "\n".join(f"{c}/{p}" for c, p in files).encode() + str(base.resolve()).encode()
    ).hexdigest()[:12]
    cache_file = cache_dir(cache) / f"clipart32_v{_CLIPART_CACHE_VERSION}_{key}.npz"
    if use_cache and cache_file.is_file():
        try:
            with np.load(cache_file) as z:
                images, cats, paths = z["images"], z["categories"], z["paths"]
            logger.info("clip art: %d decoded images from cache %s", len(paths), cache_file)
            return _clean_clipart(images, cats, paths, classes)
        except (OSError, KeyError, ValueError) as exc:
            logger.warning("ignoring unreadable cache %s (%s)", cache_file, exc)
    start = time.perf_counter()
    imgs, cats_kept, paths_kept = [], [], []
    for cat, rel in tqdm(files, desc="decoding clip art", disable=not progress, unit="png"):
        arr = _decode_clipart(base / rel)
        if arr is not None:
            imgs.append(arr)
            cats_kept.append(cat)
            paths_kept.append(rel)
    if not imgs:
        raise ValueError(f"no readable PNG under {base} for categories {categories}")
    images = np.stack(imgs)
    cats = np.asarray(cats_kept)
    paths = np.asarray(paths_kept)
    logger.info(
        "decoded %d clip-art PNGs (%d skipped) in %.1f s",
        len(paths), len(files) - len(paths), time.perf_counter() - start,
    )  # fmt: skip
    if use_cache:
        write_npz_atomic(cache_file, images=images, categories=cats, paths=paths)
    return _clean_clipart(images, cats, paths, classes)


def _clean_clipart(
    images: NDArray[np.uint8], cats: NDArray[np.str_], paths: NDArray[np.str_],
    classes: tuple[str, ...],
) -> tuple[ImageSet, NDArray[np.str_]]:  # fmt: skip
    """Drop blank images (one colour: thin line art vanishes at 32 px) and exact duplicates
    (the first in path order is kept), so no image can sit in two splits of a task."""
    flat = images.reshape(len(images), -1)
    blank = flat.min(axis=1) == flat.max(axis=1)
    seen: set[str] = set()
    keep = np.zeros(len(images), dtype=bool)
    for i, h in enumerate(image_hashes(images)):
        if not blank[i] and h not in seen:
            keep[i] = True
        seen.add(h)
    logger.info("clip art: dropped %d blank and %d duplicate images", int(blank.sum()),
                int((~keep).sum() - blank.sum()))  # fmt: skip
    kept_cats = cats[keep]
    labels = np.searchsorted(np.asarray(classes), kept_cats).astype(np.int64)
    return ImageSet(images[keep], labels, classes, "clipart"), paths[keep]
