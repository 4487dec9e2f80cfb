"""Tests of ped.zoo: encoder, lightly methods, zoo spec, resumable pretraining and features."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightly")

from ped.datasets import Pool, PoolSpec  # noqa: E402
from ped.zoo import ZOO, ZooEntry, zoo_entry  # noqa: E402
from ped.zoo.encoder import (  # noqa: E402
    FEATURE_DIM,
    build_encoder,
    count_parameters,
    images_to_tensor,
)
from ped.zoo.methods import METHODS, MULTI_CROP, build_method  # noqa: E402
from ped.zoo.train import (  # noqa: E402
    autocast_dtype,
    is_done,
    load_encoder,
    load_stats,
    pretrain,
    read_manifest,
    sha256_file,
    task_features,
    unit_config,
)


def test_encoder_shapes_size_and_checkpoint() -> None:
    torch.manual_seed(0)
    enc = build_encoder().eval()
    assert 0.6e6 < count_parameters(enc) < 0.8e6
    with torch.no_grad():
        assert enc(torch.zeros(2, 3, 32, 32)).shape == (2, FEATURE_DIM)
        assert enc(torch.zeros(2, 3, 16, 16)).shape == (2, FEATURE_DIM)  # multi-crop local views
    buf = io.BytesIO()
    torch.save(enc.state_dict(), buf)
    assert buf.tell() <= 3 * 1024 * 1024


def test_images_to_tensor() -> None:
    grey = np.full((2, 32, 32, 1), 255, dtype=np.uint8)
    before = grey.copy()
    x = images_to_tensor(grey)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    from ped.zoo.encoder import NORMALIZE

    for c in range(3):
        expected = (1.0 - NORMALIZE["mean"][c]) / NORMALIZE["std"][c]
        assert torch.allclose(x[:, c], torch.full_like(x[:, c], expected))
    np.testing.assert_array_equal(grey, before)
    with pytest.raises(ValueError, match="uint8"):
        images_to_tensor(grey.astype(np.float32))


def _batch(method, images: np.ndarray) -> list:  # noqa: ANN001
    from PIL import Image

    per_image = [method.transform(Image.fromarray(im)) for im in images]
    return [torch.stack([v[k] for v in per_image]) for k in range(len(per_image[0]))]


def test_every_method_takes_two_finite_steps() -> None:
    """All methods in one test (fast): 2 SGD steps on 8 images change the encoder."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    assert len(METHODS) >= 8
    for name in METHODS:
        torch.manual_seed(0)
        method = build_method(name, {})
        method.train()
        params = [p for p in method.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=0.05, momentum=0.9)
        before = [p.detach().clone() for p in method.encoder.parameters()]
        for step in range(2):
            views = _batch(method, images)
            if name in MULTI_CROP:
                assert {tuple(v.shape[-2:]) for v in views} == {(32, 32), (16, 16)}
            else:
                assert all(tuple(v.shape[-2:]) == (32, 32) for v in views)
            loss = method.loss(views, step / 2)
            assert loss.ndim == 0 and torch.isfinite(loss), name
            opt.zero_grad()
            loss.backward()
            method.before_optimizer_step(0)
            opt.step()
            method.after_step((step + 1) / 2)
        changed = any(not torch.equal(a, b) for a, b in zip(before, method.encoder.parameters()))
        assert changed, name
    with pytest.raises(ValueError, match="unknown method"):
        build_method("mae")


def test_loss_is_float32_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    method = build_method("barlow_twins", {})
    images = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = method.loss(_batch(method, images), 0.0)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_zoo_spec() -> None:
    ssl = [e for e in ZOO if e.kind == "ssl"]
    assert len(ssl) >= 12
    assert len({e.method for e in ssl}) >= 8
    assert {e.method for e in ssl} <= set(METHODS)
    assert len({e.name for e in ZOO}) == len(ZOO) and len({e.seed for e in ZOO}) == len(ZOO)
    assert 0.01 <= zoo_entry("vicreg").hyperparameters["lr"] <= 0.02
    assert [e.name for e in ZOO if e.kind != "ssl"] == ["random_init"]
    json.dumps([e.config() for e in ZOO])  # JSON-able
    with pytest.raises(ValueError, match="unknown zoo entry"):
        zoo_entry("resnet50")


def test_autocast_dtype() -> None:
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "fp32") is None
    assert autocast_dtype(cpu, "bf16") is torch.bfloat16
    assert autocast_dtype(cpu, "auto") in (None, torch.bfloat16)
    with pytest.raises(ValueError, match="precision"):
        autocast_dtype(cpu, "fp16")


@pytest.fixture(scope="module")
def tiny_pool() -> Pool:
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (48, 32, 32, 3), dtype=np.uint8)
    held = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    return Pool(PoolSpec(n_heldout=16), train, held, np.asarray(["t"] * 48), np.asarray(["h"] * 16))


def _entry(seed: int = 3) -> ZooEntry:
    return ZooEntry("tiny_simclr", "simclr", {"lr": 0.06, "batch_size": 16, "temperature": 0.5},
                    epochs=1, seed=seed)  # fmt: skip


def test_pretrain_unit_manifest_and_resume(tiny_pool: Pool, tmp_path: Path) -> None:
    kw = {"max_steps": 2, "progress": False, "precision": "fp32", "device": "cpu"}
    rec = pretrain(_entry(), tiny_pool, tmp_path, **kw)
    assert not rec["skipped"] and rec["steps"] == 2 and len(rec["loss_curve"]) == 2
    ckpt, stats = tmp_path / "tiny_simclr.pt", tmp_path / "tiny_simclr.stats.npz"
    assert ckpt.stat().st_size <= 3 * 1024 * 1024
    manifest = read_manifest(tmp_path)["encoders"]["tiny_simclr"]
    for key in ("method", "hyperparameters", "epochs", "seed", "final_loss", "wall_time_s",
                "sha256", "stats_sha256"):  # fmt: skip
        assert key in manifest, key
    assert manifest["method"] == "simclr" and manifest["seed"] == 3
    assert manifest["sha256"] == sha256_file(ckpt) and np.isfinite(manifest["final_loss"])
    assert "loss_curve" not in manifest  # the curve lives in the record
    record = json.loads((tmp_path / "tiny_simclr.json").read_text())
    assert record["loss_curve"] == rec["loss_curve"]
    mean, std = load_stats("tiny_simclr", tmp_path)
    assert mean.shape == std.shape == (FEATURE_DIM,) and (std >= 0).all()
    assert not list(tmp_path.glob("*.tmp"))

    # done: skipped, nothing rewritten
    mtime = ckpt.stat().st_mtime_ns
    again = pretrain(_entry(), tiny_pool, tmp_path, **kw)
    assert again["skipped"] and ckpt.stat().st_mtime_ns == mtime

    # a corrupt checkpoint is detected by its sha256 and retrained (deterministically)
    ckpt.write_bytes(ckpt.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="sha256"):
        load_encoder("tiny_simclr", tmp_path)
    assert not is_done(tmp_path, unit_config(_entry(), tiny_pool.fingerprint(), 1.0, 2))
    redo = pretrain(_entry(), tiny_pool, tmp_path, **kw)
    assert not redo["skipped"] and redo["sha256"] == sha256_file(ckpt)
    assert redo["loss_curve"] == rec["loss_curve"] and redo["sha256"] == rec["sha256"]
    enc = load_encoder("tiny_simclr", tmp_path)
    assert not enc.training

    # another configuration (seed) is another unit's content: retrained
    other = pretrain(_entry(seed=4), tiny_pool, tmp_path, **kw)
    assert not other["skipped"] and other["sha256"] != rec["sha256"]


def test_random_init_extra(tiny_pool: Pool, tmp_path: Path) -> None:
    rec = pretrain(zoo_entry("random_init"), tiny_pool, tmp_path, progress=False)
    assert rec["kind"] == "random" and rec["steps"] == 0 and rec["final_loss"] is None
    assert (tmp_path / "random_init.pt").is_file()


def test_pretrain_rejects_bad_arguments(tiny_pool: Pool, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="epochs_scale"):
        pretrain(_entry(), tiny_pool, tmp_path, epochs_scale=0)
    with pytest.raises(ValueError, match="max_steps"):
        pretrain(_entry(), tiny_pool, tmp_path, max_steps=0)


def test_cli_features_cached(tiny_pool: Pool, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from ped.zoo.cli import register_cli

    zoo = tmp_path / "zoo"
    pretrain(_entry(), tiny_pool, zoo, max_steps=1, progress=False, precision="fp32")
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    register_cli(sub)
    argv = ["zoo", "features", "--task", "digits10", "--out", str(zoo), "--cache",
            str(tmp_path / "cache")]  # fmt: skip
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    assert "tiny_simclr" in capsys.readouterr().out
    cached = list((tmp_path / "cache" / "features" / "digits10").glob("tiny_simclr-*.npz"))
    assert len(cached) == 1
    feats = task_features("digits10", zoo_dir=zoo, cache=tmp_path / "cache")["tiny_simclr"]
    assert feats["x_train"].shape == (100, FEATURE_DIM) and feats["x_train"].dtype == np.float32
    assert feats["y_test"].shape == (feats["x_test"].shape[0],)
    args = parser.parse_args(["zoo", "train", "--only", "nope", "--out", str(zoo)])
    with pytest.raises(ValueError, match="unknown zoo entry"):
        args.func(args)


def test_finetune_ground_truth_units(
    tiny_pool: Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ped.zoo import finetune as F

    zoo = tmp_path / "zoo"
    pretrain(_entry(), tiny_pool, zoo, max_steps=1, progress=False, precision="fp32")
    kw = {"zoo_dir": zoo, "cache": tmp_path / "cache", "epochs": 1, "min_steps": 20,
          "lr_grid": (0.01, 0.1),
          "wd_grid": (5e-4,), "seeds": (0, 1), "precision": "fp32", "device": "cpu"}  # fmt: skip
    table = F.run_ground_truth(["tiny_simclr"], ["digits10"], tmp_path / "gt", **kw)
    assert list(table.columns) == F.COLUMNS
    ft = table[table["protocol"] == "finetune"]
    assert len(ft) == 3 and sorted(ft["seed"]) == [0, 0, 1]  # 2 grid points + 1 extra seed
    assert len(table[table["protocol"] == "linear"]) == len(F.C_GRID)
    assert table[["val", "test"]].apply(lambda s: s.between(0, 100)).all().all()
    assert table["test"].max() > 20  # far above chance (10 %) on digits

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a finished unit was rerun")

    monkeypatch.setattr(F, "finetune_run", refuse)
    monkeypatch.setattr(F, "linear_probe_run", refuse)
    again = F.run_ground_truth(["tiny_simclr"], ["digits10"], tmp_path / "gt", **kw)
    assert again.equals(table)
    tidy = F.ground_truth_table(tmp_path / "gt")
    assert len(tidy) == len(table)
    best = F.selected(tidy)
    assert set(best["protocol"]) == {"finetune", "linear"}
    assert len(best[best["protocol"] == "finetune"]) == 2  # seeds 0 and 1 at the chosen setting

    # a changed schedule makes the stored fine-tuning units stale: they are rerun, the linear
    # probes (which do not depend on it) are not
    calls = []
    monkeypatch.setattr(F, "finetune_run", lambda *a, **k: calls.append(k) or (50.0, 50.0))
    F.run_ground_truth(["tiny_simclr"], ["digits10"], tmp_path / "gt", **{**kw, "min_steps": 21})
    assert len(calls) == 3 and all(k["min_steps"] == 21 for k in calls)
    with pytest.raises(ValueError, match="protocol"):
        F.run_ground_truth(["tiny_simclr"], ["digits10"], tmp_path / "gt", protocols=("knn",))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"version": 1, "encoders": {', "is not valid JSON"),
        ("[1, 2]", "is not a version-"),
        ('{"version": 99, "encoders": {}}', "is not a version-"),
        ('{"version": 1, "encoders": []}', "is not a version-"),
        (b"\xff\xfe\x00", "is not valid JSON"),
    ],
)
def test_read_manifest_errors_name_the_file(tmp_path: Path, text, message) -> None:  # noqa: ANN001
    from ped.zoo.train import MANIFEST

    path = tmp_path / MANIFEST
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text.replace('"version": 1', f'"version": {_manifest_version()}'))
    with pytest.raises(ValueError, match=message) as info:
        read_manifest(tmp_path)
    assert str(path) in str(info.value)


def _manifest_version() -> int:
    from ped.zoo import train

    return train._MANIFEST_VERSION
