"""Feature extraction: random-weight ResNet-50 on tiny generated images (no download, CPU)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from ped.fullscale import extraction as ex  # noqa: E402
from ped.cli import main  # noqa: E402

SIZE = 32  # resize/crop size used instead of 224 to keep CPU time low


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ex.build_backbone()


@pytest.fixture(scope="module")
def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    """An ImageFolder tree: 3 classes x 3 PNGs of various sizes, one grey-scale per class."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for c, name in enumerate(("ant", "bee", "cat")):
        (root / name).mkdir()
        for i in range(3):
            h, w = 30 + 7 * i, 41 - 5 * c
            if i == 0:
                img = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), mode="L")
            else:
                img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), mode="RGB")
            img.save(root / name / f"img{i}.png")
    return root


def _same_params(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------ extraction


def test_imagefolder_shapes_dtype_labels(model, image_root):
    ds = ex.build_dataset("imagefolder", image_root, transform=ex.paper_transform(SIZE))
    feats, labels = ex.extract_features(model, ds, batch_size=4, device="cpu")
    assert feats.shape == (9, ex.FEATURE_DIM) and feats.dtype == np.float32
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, ds.targets)
    assert np.isfinite(feats).all() and (feats >= 0).all()  # post-ReLU average pool


def test_determinism_and_batching(model, image_root):
    ds = ex.build_dataset("imagefolder", image_root, transform=ex.paper_transform(SIZE))
    a, ya = ex.extract_features(model, ds, batch_size=4, device="cpu")
    b, yb = ex.extract_features(model, ds, batch_size=4, device="cpu")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ya, yb)
    c, _ = ex.extract_features(model, ds, batch_size=9, device="cpu")
    np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5)
    d, yd = ex.extract_features(model, ds, batch_size=4, device="cpu", num_workers=1)
    np.testing.assert_array_equal(a, d)
    np.testing.assert_array_equal(ya, yd)


def test_fake_data_limit_and_training_flag_restored(model):
    ds = ex.build_dataset("fake", transform=ex.paper_transform(SIZE))
    model.train()
    try:
        feats, labels = ex.extract_features(model, ds, batch_size=4, device="cpu", limit=6)
        assert model.training  # restored
    finally:
        model.eval()
    assert feats.shape == (6, 2048) and feats.dtype == np.float32
    expected = [int(ds[i][1]) for i in range(6)]
    np.testing.assert_array_equal(labels, expected)
    with pytest.raises(ValueError, match="batch_size"):
        ex.extract_features(model, ds, batch_size=0, device="cpu")
    with pytest.raises(ValueError, match="limit"):
        ex.extract_features(model, ds, batch_size=2, device="cpu", limit=0)


def test_paper_transform_default():
    t = ex.paper_transform()
    from PIL import Image

    x = t(Image.new("L", (300, 250)))
    assert tuple(x.shape) == (3, 224, 224)
    names = [type(s).__name__ for s in t.transforms]
    assert names == ["_ToRGB", "Resize", "CenterCrop", "ToTensor", "Normalize"]
    assert t.transforms[1].interpolation.value == "bicubic"


def test_resume_after_interruption(model, tmp_path, monkeypatch):
    ds = ex.build_dataset("fake", transform=ex.paper_transform(SIZE))
    expected, expected_y = ex.extract_features(model, ds, batch_size=2, device="cpu", limit=7)
    real = ex._write_shard
    calls = {"n": 0}

    def failing(path, feats, labels):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated interruption")
        real(path, feats, labels)

    kwargs = dict(model_name="rnd", dataset_name="fake", batch_size=2, shard_size=4,
                  device="cpu", limit=7, progress=False)  # fmt: skip
    monkeypatch.setattr(ex, "_write_shard", failing)
    with pytest.raises(KeyboardInterrupt):
        ex.extract_to_directory(model, ds, tmp_path, **kwargs)
    parts = tmp_path / ".rnd_fake.parts"
    assert sorted(p.name for p in parts.iterdir()) == ["manifest.json", "shard_00000.npz"]
    feature_path, label_path = ex.output_paths(tmp_path, "rnd", "fake")
    assert not feature_path.exists() and not label_path.exists()

    # other settings than the interrupted run: refused
    with pytest.raises(ValueError, match="other settings"):
        ex.extract_to_directory(model, ds, tmp_path, **{**kwargs, "batch_size": 4})

    monkeypatch.setattr(ex, "_write_shard", real)
    result = ex.extract_to_directory(model, ds, tmp_path, **kwargs)
    assert (result.n_samples, result.n_shards, result.shards_reused) == (7, 2, 1)
    assert not parts.exists()
    # the outputs and the record of their settings (ex.record_path), nothing else
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "rnd_fake_extract.json", feature_path.name, label_path.name
    ]
    feats, labels = np.load(feature_path), np.load(label_path)
    assert feats.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_array_equal(feats, expected)
    np.testing.assert_array_equal(labels, expected_y)

    again = ex.extract_to_directory(model, ds, tmp_path, **kwargs)
    assert again.skipped and again.n_samples == 7
    # finished outputs of other settings are not reused: refused unless overwrite
    with pytest.raises(ValueError, match="n_samples 7 -> 5"):
        ex.extract_to_directory(model, ds, tmp_path, **{**kwargs, "limit": 5})
    with pytest.raises(ValueError, match="metadata.split None -> 'all'"):
        ex.extract_to_directory(model, ds, tmp_path, **kwargs, metadata={"split": "all"})
    redo = ex.extract_to_directory(model, ds, tmp_path, **{**kwargs, "overwrite": True})
    assert not redo.skipped and redo.shards_reused == 0
    np.testing.assert_array_equal(np.load(feature_path), expected)


def test_resolve_device():
    assert ex.resolve_device("cpu").type == "cpu"
    assert ex.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            ex.resolve_device("cuda")


# ------------------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 200},
        lambda sd: {"model": {"state_dict": sd}, "arch": "resnet50"},
        lambda sd: {"state_dict": {"module.encoder." + k: v for k, v in sd.items()}},
        lambda sd: {"module." + k: v for k, v in sd.items()},
        lambda sd: {"backbone." + k: v for k, v in sd.items()},
        lambda sd: {"model": {"model." + k: v for k, v in sd.items()}},
    ],
    ids=["plain", "state_dict", "model/state_dict", "module.encoder", "module", "backbone",
         "model.model"],  # fmt: skip
)
def test_checkpoint_formats(model, state, wrap):
    loaded = ex.load_backbone(wrap(state))
    assert _same_params(loaded, model)
    assert isinstance(loaded.fc, torch.nn.Identity)


def test_moco_style_query_encoder_and_heads_ignored(model, state, caplog):
    ckpt = {f"module.encoder_q.{k}": v for k, v in state.items()}
    ckpt.update({f"module.encoder_k.{k}": torch.zeros_like(v) for k, v in state.items()})
    ckpt["module.encoder_q.fc.0.weight"] = torch.zeros(2048, 2048)
    ckpt["module.encoder_q.fc.2.bias"] = torch.zeros(128)
    ckpt["module.queue"] = torch.zeros(128, 4)
    before = {k: v.clone() for k, v in ckpt.items()}
    with caplog.at_level(logging.INFO, logger="ped.fullscale.extraction"):
        loaded = ex.load_backbone({"state_dict": ckpt})
    assert _same_params(loaded, model)
    assert "ignored 2 head key(s): module.encoder_q.fc.0.weight" in caplog.text
    assert "module.encoder_k.* (318)" in caplog.text and "module.queue.* (1)" in caplog.text
    assert all(torch.equal(before[k], ckpt[k]) for k in ckpt)  # input untouched
    # explicit prefix: the momentum encoder (all zeros) is loaded instead
    zeros = ex.load_backbone(ckpt, prefix="module.encoder_k.")
    assert all(not p.detach().any() for p in zeros.parameters())


def test_checkpoint_heads_and_old_batchnorm(model, state):
    ckpt = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    ckpt.update({"projection_head.0.weight": torch.ones(3), "prototypes.weight": torch.ones(2)})
    assert _same_params(ex.load_backbone(ckpt), model)


def test_checkpoint_file_and_cli(model, state, tmp_path, capsys):
    path = tmp_path / "ckpt.pth.tar"
    torch.save({"epoch": 1, "state_dict": {"module." + k: v for k, v in state.items()}}, path)
    assert _same_params(ex.load_backbone(path), model)

    out = tmp_path / "feats"
    argv = ["extract", "--model", "moco-v2", "--checkpoint", str(path), "--dataset", "fake",
            "--out", str(out), "--limit", "5", "--image-size", str(SIZE), "--batch-size", "2",
            "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    feats = np.load(out / "moco-v2_fake_feature.npy")
    labels = np.load(out / "moco-v2_fake_label.npy")
    ds = ex.build_dataset("fake", transform=ex.paper_transform(SIZE))
    expected, expected_y = ex.extract_features(model, ds, batch_size=2, device="cpu", limit=5)
    np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels, expected_y)
    assert main(argv) == 0
    assert "exists" in capsys.readouterr().out


def test_checkpoint_errors(state, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        ex.load_backbone(tmp_path / "nowhere.pth")
    partial = {k: v for k, v in state.items() if not k.startswith("layer4.")}
    with pytest.raises(ValueError, match=r"missing backbone keys: layer4\.0\.conv1\.weight"):
        ex.load_backbone(partial)
    extra = {**state, "layer5.0.conv1.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected keys: layer5\.0\.conv1\.weight"):
        ex.load_backbone(extra)
    bad = {**state, "conv1.weight": torch.zeros(64, 3, 3, 3)}
    with pytest.raises(ValueError, match="shapes"):
        ex.load_backbone(bad)
    with pytest.raises(ValueError, match="no state_dict"):
        ex.load_backbone({"epoch": 3, "arch": "resnet50"})
    with pytest.raises(ValueError, match="missing backbone keys"):
        ex.load_backbone({"something.else": torch.zeros(1)})
    # pickled Python objects: refused unless trusted
    path = tmp_path / "namespace.pth"
    torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": {"x": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match="trust"):
        ex.load_backbone(path)
    with pytest.raises(ValueError, match="missing backbone keys"):
        ex.load_backbone(path, trust_checkpoint=True)


# ------------------------------------------------------------------------------ datasets


def test_unknown_dataset_and_split(tmp_path, image_root, capsys):
    with pytest.raises(ValueError, match="unknown dataset 'imagenet21k'.*cifar10.*voc2007"):
        ex.build_dataset("imagenet21k", tmp_path)
    with pytest.raises(ValueError, match="no split 'validation'.*test"):
        ex.build_dataset("cifar10", tmp_path, split="validation")
    with pytest.raises(SystemExit) as exc:
        main(["extract", "--model", "m", "--random-init", "--dataset", "nope", "--out",
              str(tmp_path)])  # fmt: skip
    assert exc.value.code == 2
    assert "ped extract: error: unknown dataset 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(set(ex.PAPER_DATASETS) - {"fake"}))
def test_wrong_root_is_clear(name, tmp_path):
    missing = tmp_path / "does-not-exist"
    with pytest.raises(FileNotFoundError, match="does-not-exist") as info:
        ex.build_dataset(name, missing)
    assert ex.PAPER_DATASETS[name].layout.split()[0] in str(info.value)
    if name != "imagefolder":
        with pytest.raises(FileNotFoundError, match="expected ROOT/"):
            ex.build_dataset(name, tmp_path)  # exists, but holds nothing
    with pytest.raises(ValueError, match="needs a root"):
        ex.build_dataset(name, None)


def test_imagefolder_split_subfolder(image_root, tmp_path):
    ds = ex.build_dataset("imagefolder", image_root.parent, split=image_root.name)
    assert len(ds) == 9 and ds.classes == ["ant", "bee", "cat"]
    with pytest.raises(FileNotFoundError, match="split folder"):
        ex.build_dataset("imagefolder", image_root, split="val")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(FileNotFoundError, match="no images found"):
        ex.build_dataset("imagefolder", tmp_path)


def test_every_split_lists_each_part_once():
    for name, spec in ex.PAPER_DATASETS.items():
        for split, parts in spec.splits.items():
            keys = [tuple(sorted(p.items())) for p in parts]
            assert len(set(keys)) == len(keys), (name, split)
        if spec.splits:
            assert spec.default_split in spec.splits


class _RecordingCIFAR:
    """Stands in for a torchvision dataset: samples are (split, index) so duplicates show."""

    calls: list[dict] = []

    def __init__(self, root, transform=None, target_transform=None, download=False, **kw):
        assert download is False
        type(self).calls.append(kw)
        self.tag = "train" if kw.get("train", True) else "test"
        self.n = 5 if self.tag == "train" else 3

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return f"{self.tag}-{i}", 0


@pytest.mark.parametrize("name,cls", [("cifar10", "CIFAR10"), ("cifar100", "CIFAR100"),
                                      ("sun397", "SUN397")])  # fmt: skip
def test_each_sample_appears_once(name, cls, tmp_path, monkeypatch):
    recorder = type("Rec", (_RecordingCIFAR,), {"calls": []})
    monkeypatch.setattr(torchvision.datasets, cls, recorder)
    ds = ex.build_dataset(name, tmp_path)
    ids = [ds[i][0] for i in range(len(ds))]
    assert len(ids) == len(set(ids))
    if name == "sun397":
        assert recorder.calls == [{}] and len(ids) == 5
    else:
        assert recorder.calls == [{"train": True}, {"train": False}] and len(ids) == 8


def test_voc_largest_object_label():
    def obj(name, box, difficult="0"):
        keys = ("xmin", "ymin", "xmax", "ymax")
        return {"name": name, "difficult": difficult,
                "bndbox": {k: str(v) for k, v in zip(keys, box)}}  # fmt: skip

    label = ex.VOCLargestObject()
    target = {"annotation": {"object": [obj("dog", (0, 0, 10, 10)), obj("person", (0, 0, 50, 40)),
                                        obj("cat", (0, 0, 100, 100), difficult="1")]}}  # fmt: skip
    assert label(target) == ex.VOC_CLASSES.index("person")
    hard = {"annotation": {"object": [obj("cat", (0, 0, 5, 5), "1"),
                                      obj("cow", (0, 0, 9, 9), "1")]}}  # fmt: skip
    assert label(hard) == ex.VOC_CLASSES.index("cow")
    single = {"annotation": {"object": obj("bus", (1, 1, 2, 2))}}
    assert label(single) == ex.VOC_CLASSES.index("bus")
    assert len(ex.VOC_CLASSES) == 20 and list(ex.VOC_CLASSES) == sorted(ex.VOC_CLASSES)


def test_cli_random_init_fake(tmp_path, capsys):
    argv = ["extract", "--model", "rnd", "--random-init", "--dataset", "fake", "--out",
            str(tmp_path), "--limit", "3", "--image-size", str(SIZE), "--device", "cpu",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    feats = np.load(tmp_path / "rnd_fake_feature.npy")
    assert feats.shape == (3, 2048) and feats.dtype == np.float32
    assert np.load(tmp_path / "rnd_fake_label.npy").dtype == np.int64
    # --name renames the dataset part of the file names (reference features for `ped score`)
    assert main([*argv, "--name", "imagenet"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "rnd_imagenet_feature.npy"), feats)
