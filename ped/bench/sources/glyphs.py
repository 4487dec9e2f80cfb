"""Character glyphs rendered from the faces of ten Debian font packages
(:data:`GLYPH_FONT_PACKAGES`), and their random distortion (:func:`distort_glyphs`).

Glyphs: every ``.ttf``/``.otf`` file in the folders of the font packages is a candidate face (found
in sorted path order).  The 62 characters of a face are drawn with Pillow's FreeType (basic layout)
at 128 px per em on one baseline and scaled together (Lanczos), so that the face's band of ink rows,
or its widest character, spans 24 px; each character keeps its place in the band (case and
descenders survive: ``o`` is smaller than ``O``, ``p`` descends) and is centred horizontally on a
black 32x32 canvas: a white glyph on black, like MNIST.  A face is kept when its cmap maps all 62
characters to glyphs named for them (fontTools, Adobe Glyph List names), none renders blank, and
none of its renderings equals one already kept (so no image occurs twice).  Of the 137 files this
drops four: the dingbats ``D050000L`` and ``StandardSymbolsPS`` (Greek) map the ASCII code points to
other glyphs, ``LinLibertine_I`` (initials) has no lower case and ``LinBiolinum_K`` draws each
character in a key cap (excluded by name, ``GLYPH_EXCLUDED_FACES``).  The 133 faces give 8,246
images (133 per class), rendered in about 2 s and cached as ``<cache>/glyphs_v2_<key>.npz`` (``key``
hashes the font files' paths and contents and the rendering settings).  The faces are those of the
installed package versions: another release may bring other files, hence other images and splits.

The same faces give the 24 lowercase Greek letters (:data:`GREEK_CHARS`) of the 98 faces that
have them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ped._io import write_npz_atomic
from ped.bench.sources._common import _APT_HINT, IMAGE_SIZE, ImageSet, cache_dir

__all__ = [
    "GLYPH_FONT_DIR",
    "GLYPH_FONT_PACKAGES",
    "GLYPH_EXCLUDED_FACES",
    "GLYPH_CHARS",
    "GREEK_CHARS",
    "GLYPH_BOX",
    "GLYPH_DISTORTION",
    "load_glyphs",
    "distort_glyphs",
]

logger = logging.getLogger(__name__)

#: Where Debian's font packages install their files.
GLYPH_FONT_DIR = Path("/usr/share/fonts")
#: The Debian font packages of the ``glyphs`` source, each with one file (relative to
#: ``GLYPH_FONT_DIR``) that shows it is installed.  Every ``.ttf``/``.otf`` file in the folders
#: of these files is a candidate face (two pairs of packages share a folder).
GLYPH_FONT_PACKAGES: dict[str, str] = {
    "fonts-dejavu-core": "truetype/dejavu/DejaVuSans.ttf",
    "fonts-dejavu-extra": "truetype/dejavu/DejaVuSansCondensed.ttf",
    "fonts-liberation": "truetype/liberation/LiberationSans-Regular.ttf",
    "fonts-urw-base35": "opentype/urw-base35/NimbusSans-Regular.otf",
    "fonts-freefont-ttf": "truetype/freefont/FreeSans.ttf",
    "fonts-crosextra-carlito": "truetype/crosextra/Carlito-Regular.ttf",
    "fonts-crosextra-caladea": "truetype/crosextra/Caladea-Regular.ttf",
    "fonts-lato": "truetype/lato/Lato-Regular.ttf",
    "fonts-open-sans": "truetype/open-sans/OpenSans-Regular.ttf",
    "fonts-linuxlibertine": "opentype/linux-libertine/LinLibertine_R.otf",
}
#: Faces of those packages left out by name (relative path -> why): they cover the 62 characters
#: but do not draw them as text.
GLYPH_EXCLUDED_FACES: dict[str, str] = {
    "opentype/linux-libertine/LinBiolinum_K.otf": "keyboard font: each character inside a key cap",
}
# The install command this source's missing-font error names (the other sources' are in _common).
_APT_HINT["glyphs"] = "apt-get install -y " + " ".join(GLYPH_FONT_PACKAGES)
#: The 62 characters of the ``glyphs`` source, in label order: digits, upper case, lower case.
GLYPH_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: The 24 lowercase Greek letters (final sigma left out) of the ``greek`` source.
GREEK_CHARS = "αβγδεζηθικλμνξοπρστυφχψω"
#: Each glyph is scaled so that its ink bounding box fits a square of this side (pixels).
GLYPH_BOX = 24
#: Font size (pixels per em) the glyphs are drawn at before being shrunk to :data:`GLYPH_BOX`.
_GLYPH_RENDER_SIZE = 128
_GLYPHS_CACHE_VERSION = 2


def _glyph_font_files(root: Path) -> list[Path]:
    """Sorted candidate font files: every ``.ttf``/``.otf`` in the folders of
    :data:`GLYPH_FONT_PACKAGES` under ``root``; raises ``FileNotFoundError`` naming the apt-get
    command when a package's marker file is missing."""
    missing = [pkg for pkg, rel in GLYPH_FONT_PACKAGES.items() if not (root / rel).is_file()]
    if missing:
        raise FileNotFoundError(
            f"glyph fonts missing: {', '.join(missing)} not installed under {root}; install the "
            f"fonts with `{_APT_HINT['glyphs']}` (Debian/Ubuntu, as root)"
        )
    folders = sorted({(root / rel).parent for rel in GLYPH_FONT_PACKAGES.values()})
    files = {p for folder in folders for p in folder.rglob("*") if p.suffix.lower() in
             (".ttf", ".otf") and p.is_file()}  # fmt: skip
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _missing_chars(path: Path, chars: str = GLYPH_CHARS) -> str:
    """The characters of ``chars`` that the font at ``path`` has no glyph for.

    A character counts as present when the font's best Unicode cmap maps it to a glyph whose
    name denotes exactly that character under the Adobe Glyph List rules (``A``, ``zero``,
    ``uni0041``...).  This also rejects symbol fonts that map ASCII code points to other glyphs
    (Greek ``Alpha`` for ``A``, dingbats ``a105`` for ``0``).  Needs fontTools (installed with
    matplotlib).
    """
    try:
        from fontTools.agl import toUnicode
        from fontTools.ttLib import TTFont
    except ImportError as exc:  # pragma: no cover - fontTools comes with matplotlib
        raise ImportError(
            "the glyphs source checks each font's cmap with fontTools: pip install fonttools"
        ) from exc
    with TTFont(str(path), lazy=True) as tt:
        cmap = tt.getBestCmap() or {}
    return "".join(c for c in chars if toUnicode(cmap.get(ord(c), ".notdef")) != c)


def _draw_glyph(font: Any, char: str, size: int) -> Any:
    """One character drawn at its pen position on a black ``size`` x ``size`` L-mode canvas:
    the ascender line at ``size // 4``, the origin at ``size // 4`` from the left, so every
    character of a face shares the baseline."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).text((size // 4, size // 4), char, fill=255, font=font)
    return canvas


def _render_face_glyphs(font: Any, chars: str = GLYPH_CHARS) -> list[NDArray[np.uint8] | None]:
    """The characters ``chars`` of one face -> (32, 32) uint8 each (white on black; None = no
    ink).

    One scale for the whole face, so that case and position survive (``o`` stays smaller than
    ``O``, ``p`` descends below the baseline): the characters are drawn at
    :data:`_GLYPH_RENDER_SIZE` px per em on a common baseline; the face's band is the union of
    their ink rows, and the scale makes the larger of that band's height and the widest
    character :data:`GLYPH_BOX` px (Lanczos).  Each character keeps its vertical place in the
    band and is centred horizontally by its ink; the band is centred on the 32x32 canvas.
    Raises ``ValueError`` when a glyph's ink reaches the drawing canvas' edge (broken metrics).
    """
    from PIL import Image

    size = 3 * _GLYPH_RENDER_SIZE
    drawn = [_draw_glyph(font, c, size) for c in chars]
    boxes = [d.getbbox() for d in drawn]
    for c, box in zip(chars, boxes):
        if box is not None and (box[0] == 0 or box[1] == 0 or box[2] == size or box[3] == size):
            raise ValueError(f"glyph {c!r} of {font.path} overflows its drawing canvas")
    inked = [b for b in boxes if b is not None]
    if not inked:
        return [None] * len(chars)
    top, bottom = min(b[1] for b in inked), max(b[3] for b in inked)
    widest = max(b[2] - b[0] for b in inked)
    scale = GLYPH_BOX / max(bottom - top, widest)
    band = max(1, round((bottom - top) * scale))
    out: list[NDArray[np.uint8] | None] = []
    for d, box in zip(drawn, boxes):
        if box is None:
            out.append(None)
            continue
        strip = d.crop((box[0], top, box[2], bottom))
        w = max(1, round(strip.width * scale))
        small = strip.resize((w, band), Image.Resampling.LANCZOS)
        img = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
        img.paste(small, ((IMAGE_SIZE - w) // 2, (IMAGE_SIZE - band) // 2))
        arr = np.asarray(img, dtype=np.uint8)
        out.append(arr if arr.any() else None)
    return out


def _render_face(
    path: Path, chars: str = GLYPH_CHARS
) -> tuple[NDArray[np.uint8] | None, str]:
    """The glyphs ``chars`` of one font file as (len(chars), 32, 32) uint8, or
    ``(None, why it is dropped)``."""
    from PIL import ImageFont

    try:
        missing = _missing_chars(path, chars)
        font = ImageFont.truetype(str(path), _GLYPH_RENDER_SIZE,
                                  layout_engine=ImageFont.Layout.BASIC)  # fmt: skip
    except (OSError, ValueError) as exc:
        return None, f"unreadable ({exc.__class__.__name__}: {exc})"
    if missing:
        return None, f"no glyph for {len(missing)} of the {len(chars)} characters: {missing}"
    try:
        glyphs = _render_face_glyphs(font, chars)
    except ValueError as exc:  # ink beyond the drawing canvas: the metrics are off
        return None, str(exc)
    for c, arr in zip(chars, glyphs):
        if arr is None:
            return None, f"blank glyph for {c!r}"
    return np.stack(glyphs), ""


def _glyphs_key(root: Path, files: Sequence[Path], chars: str = GLYPH_CHARS) -> str:
    """Cache key: each font file's path (relative to ``root``) and content digest, plus what
    shapes the rendering (characters, box and render sizes, Pillow's and FreeType's versions,
    the excluded faces)."""
    import PIL
    from PIL import features

    h = hashlib.sha1()
    settings = (chars, GLYPH_BOX, _GLYPH_RENDER_SIZE, PIL.__version__,
                features.version("freetype2"), sorted(GLYPH_EXCLUDED_FACES))  # fmt: skip
    h.update(f"{settings!r}\n".encode())
    for p in files:
        digest = hashlib.sha1(p.read_bytes()).hexdigest()
        h.update(f"{p.relative_to(root).as_posix()}\0{digest}\n".encode())
    return h.hexdigest()[:12]


def load_glyphs(
    *,
    root: str | os.PathLike[str] | None = None,
    cache: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    chars: str = GLYPH_CHARS,
) -> tuple[ImageSet, NDArray[np.str_]]:
    """The characters ``chars`` (default the 62 of :data:`GLYPH_CHARS`, 0-9, A-Z, a-z; the
    ``greek`` source uses :data:`GREEK_CHARS`) of every usable font face; returns
    ``(images, faces)``.

    Images are ``(len(chars) F, 32, 32, 1)`` uint8 (white glyph on black, see
    ``_render_face_glyphs``), face by face in sorted path order and, within a face, labelled in
    ``chars`` order; ``faces`` gives each image's font file relative to ``root`` (default
    ``GLYPH_FONT_DIR``, searched as :data:`GLYPH_FONT_PACKAGES` says).  A face is kept when it
    is not in :data:`GLYPH_EXCLUDED_FACES`, has a glyph for every character (see
    ``_missing_chars``), none renders blank, and none of its renderings equals another of its
    own or one of an already kept face (so the source holds no image twice and no two splits of
    a task can share an image; a face rendering exactly like an earlier one is the extreme
    case).  The result is cached in ``<cache>/glyphs_v2_<key>.npz``, ``key`` hashing the font
    files (paths and contents) and the rendering settings, ``chars`` included (see
    ``_glyphs_key``).
    """
    base = Path(root) if root is not None else GLYPH_FONT_DIR
    if not chars or len(set(chars)) != len(chars):
        raise ValueError(f"chars must be distinct characters, got {chars!r}")
    files = _glyph_font_files(base)
    key = _glyphs_key(base, files, chars)
    cache_file = cache_dir(cache) / f"glyphs_v{_GLYPHS_CACHE_VERSION}_{key}.npz"
    if use_cache and cache_file.is_file():
        try:
            with np.load(cache_file) as z:
                images, faces = z["images"], z["faces"]
            if images.shape != (len(faces) * len(chars), IMAGE_SIZE, IMAGE_SIZE, 1):
                raise ValueError(f"images of shape {images.shape} for {len(faces)} faces")
            logger.info("glyphs: %d faces from cache %s", len(faces), cache_file)
            return _glyph_set(images, faces, chars)
        except (OSError, KeyError, ValueError) as exc:
            logger.warning("ignoring unreadable cache %s (%s)", cache_file, exc)
    start = time.perf_counter()
    kept: list[NDArray[np.uint8]] = []
    faces_kept: list[str] = []
    seen: dict[str, tuple[str, str]] = {}  # image sha1 -> (face, character)
    dropped: list[str] = []
    for path in files:
        rel = path.relative_to(base).as_posix()
        if rel in GLYPH_EXCLUDED_FACES:
            glyphs, why = None, f"excluded ({GLYPH_EXCLUDED_FACES[rel]})"
        else:
            glyphs, why = _render_face(path, chars)
        if glyphs is not None:
            hashes = [hashlib.sha1(g.tobytes()).hexdigest() for g in glyphs]
            clash = _first_clash(hashes, seen, chars)
            if clash:
                glyphs, why = None, clash
        if glyphs is None:
            dropped.append(f"{rel}: {why}")
            logger.info("glyphs: dropping %s: %s", rel, why)
            continue
        seen.update({h: (rel, c) for h, c in zip(hashes, chars, strict=True)})
        kept.append(glyphs)
        faces_kept.append(rel)
    if not kept:
        raise ValueError(f"no font under {base} has all {len(chars)} characters: "
                         f"{'; '.join(dropped)}")
    images = np.concatenate(kept)[..., None]
    faces = np.asarray(faces_kept)
    logger.info("rendered %d faces of %d font files (%d dropped) in %.1f s", len(faces),
                len(files), len(dropped), time.perf_counter() - start)  # fmt: skip
    if use_cache:
        write_npz_atomic(cache_file, images=images, faces=faces,
                      dropped=np.asarray(dropped, dtype=str))  # fmt: skip
    return _glyph_set(images, faces, chars)


def _first_clash(
    hashes: Sequence[str], seen: dict[str, tuple[str, str]], chars: str = GLYPH_CHARS
) -> str:
    """Why a face whose image digests (one per character of ``chars``) are ``hashes`` must go
    (``""`` if it may stay): the whole face equals a kept one, or one glyph equals a kept image
    or another of its own."""
    matches = [seen.get(h) for h in hashes]
    owners = {m[0] for m in matches if m is not None}
    if len(owners) == 1 and all(m is not None and m[1] == c
                                for m, c in zip(matches, chars, strict=True)):  # fmt: skip
        return f"renders exactly like {owners.pop()}"
    own: dict[str, str] = {}
    for h, c in zip(hashes, chars, strict=True):
        if h in seen:
            other_face, other_char = seen[h]
            return f"its {c!r} renders exactly like {other_char!r} of {other_face}"
        if h in own:
            return f"its {c!r} renders exactly like its {own[h]!r}"
        own[h] = c
    return ""


def _glyph_set(
    images: NDArray[np.uint8], faces: NDArray[np.str_], chars: str = GLYPH_CHARS
) -> tuple[ImageSet, NDArray[np.str_]]:
    """Face-major glyph images -> ``(ImageSet, face of each image)``."""
    n = len(chars)
    labels = np.tile(np.arange(n, dtype=np.int64), len(faces))
    name = "glyphs" if chars == GLYPH_CHARS else "greek" if chars == GREEK_CHARS else "glyph set"
    return ImageSet(images, labels, tuple(chars), name), np.repeat(faces, n)


#: Random affine distortion of :func:`distort_glyphs`: rotation (degrees), scale, shift (px).
GLYPH_DISTORTION: dict[str, tuple[float, float]] = {
    "rotation": (-15.0, 15.0), "scale": (0.7, 1.0), "shift": (-3.0, 3.0),
}  # fmt: skip


def distort_glyphs(images: NDArray[np.uint8], *, seed: int = 0) -> NDArray[np.uint8]:
    """Each glyph image turned, shrunk and shifted by its own random affine map (a new array).

    Image ``i`` draws, from ``np.random.default_rng([seed, i])``, a rotation, a scale and a
    shift in each direction uniformly in the ranges of :data:`GLYPH_DISTORTION`, and is resampled
    bilinearly about the canvas centre (black outside).  Fonts alone make the glyph task easy
    (fine-tuning reaches 94-97 % from 10 images per class, random initialisation included); the
    distortion gives each class the within-class variety of handwriting.
    """
    from PIL import Image

    out = np.empty_like(images)
    (r0, r1), (s0, s1), (t0, t1) = (GLYPH_DISTORTION[k] for k in ("rotation", "scale", "shift"))
    c = (IMAGE_SIZE - 1) / 2
    for i, im in enumerate(images):
        rng = np.random.default_rng([seed, i])
        angle, scale = np.deg2rad(rng.uniform(r0, r1)), rng.uniform(s0, s1)
        dx, dy = rng.uniform(t0, t1, 2)
        # PIL maps output to input: x_in = A (x_out - c - d) + c, A = R(-angle) / scale
        cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
        a, b, d, e = cos, sin, -sin, cos
        coeffs = (a, b, c - a * (c + dx) - b * (c + dy), d, e, c - d * (c + dx) - e * (c + dy))
        img = Image.fromarray(im[..., 0]).transform(
            (IMAGE_SIZE, IMAGE_SIZE), Image.Transform.AFFINE, coeffs,
            resample=Image.Resampling.BILINEAR, fillcolor=0)  # fmt: skip
        out[i, ..., 0] = np.asarray(img, dtype=np.uint8)
    return out
