"""Tests of ped.bench.zoo: encoder, lightly methods, zoo spec, resumable pretraining and features."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightly")

from ped.bench.pool import Pool, PoolSpec  # noqa: E402
from ped.bench.zoo import ZOO, ZooEntry, zoo_entry  # noqa: E402
from ped.bench.zoo.encoder import (  # noqa: E402
    ARCH,
    FEATURE_DIM,
    LEGACY_ARCH,
    build_encoder,
    count_parameters,
    images_to_tensor,
)
from ped.bench.zoo.methods import METHODS, MULTI_CROP, build_method  # noqa: E402
from ped.bench.zoo.train import (  # noqa: E402
    autocast_dtype,
    is_done,
    load_encoder,
    load_stats,
    pretrain,
    pretrain_many,
    read_manifest,
    sha256_file,
    task_features,
    unit_config,
)


@pytest.mark.parametrize("arch", [LEGACY_ARCH, ARCH], ids=["legacy", "rebuilt"])
def test_encoder_shapes_size_and_checkpoint(arch: dict) -> None:
    torch.manual_seed(0)
    enc = build_encoder(**arch).eval()
    assert 0.6e6 < count_parameters(enc) < 0.8e6
    with torch.no_grad():
        assert enc(torch.zeros(2, 3, 32, 32)).shape == (2, FEATURE_DIM)
        assert enc(torch.zeros(2, 3, 16, 16)).shape == (2, FEATURE_DIM)  # multi-crop local views
    buf = io.BytesIO()
    torch.save(enc.state_dict(), buf)
    assert buf.tell() <= 3 * 1024 * 1024
    assert enc.stem[0].stride == (arch["stem_stride"],) * 2
    # the two architectures have the same parameters: only the stem's stride differs
    assert count_parameters(enc) == count_parameters(build_encoder())
    with pytest.raises(ValueError, match="stem_stride"):
        build_encoder(stem_stride=3)


def test_images_to_tensor() -> None:
    grey = np.full((2, 32, 32, 1), 255, dtype=np.uint8)
    before = grey.copy()
    x = images_to_tensor(grey)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    from ped.bench.zoo.encoder import NORMALIZE

    for c in range(3):
        expected = (1.0 - NORMALIZE["mean"][c]) / NORMALIZE["std"][c]
        assert torch.allclose(x[:, c], torch.full_like(x[:, c], expected))
    np.testing.assert_array_equal(grey, before)
    with pytest.raises(ValueError, match="uint8"):
        images_to_tensor(grey.astype(np.float32))


def _batch(method, images: np.ndarray, seed: int = 0) -> list:  # noqa: ANN001
    from ped.bench.zoo.augment import to_unit_float

    return method.make_views(to_unit_float(images), torch.Generator().manual_seed(seed))


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
    assert ckpt.stat().st_size <= 3 * 1024 * 1024 and stats.is_file()
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
    assert rec["arch"] == ARCH and load_encoder("random_init", tmp_path).stem[0].stride == (2, 2)


def test_legacy_checkpoint_loads_with_its_architecture(tiny_pool: Pool, tmp_path: Path) -> None:
    """A record without ``arch`` (the first zoo's) is built with the stride-1 stem."""
    rec = pretrain(ZooEntry("old", "random", {}, 0, 1, kind="random", arch=dict(LEGACY_ARCH)),
                   tiny_pool, tmp_path, progress=False)  # fmt: skip
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    del manifest["encoders"]["old"]["arch"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert rec["arch"] == LEGACY_ARCH
    assert load_encoder("old", tmp_path).stem[0].stride == (1, 1)


def test_pretrain_many_side_by_side_equals_one_by_one(tiny_pool: Pool, tmp_path: Path) -> None:
    """Two units in two processes train as one after the other (the same loss curves, up to
    the float reductions of another thread count), and both land in the manifest (its update
    is locked)."""
    entries = [_entry(seed=3), ZooEntry("tiny_byol", "byol", {"batch_size": 16}, 1, 5)]
    kw = {"max_steps": 2, "progress": False, "precision": "fp32", "device": "cpu"}
    serial = {r["name"]: r for r in pretrain_many(entries, tiny_pool, tmp_path / "a", **kw)}
    both = {r["name"]: r for r in pretrain_many(entries, tiny_pool, tmp_path / "b", jobs=2, **kw)}
    assert set(read_manifest(tmp_path / "b")["encoders"]) == {"tiny_simclr", "tiny_byol"}
    for name, rec in serial.items():
        np.testing.assert_allclose(both[name]["loss_curve"], rec["loss_curve"], rtol=1e-4)
        assert not both[name]["skipped"] and both[name]["torch_threads"] == 1
    with pytest.raises(ValueError, match="jobs"):
        list(pretrain_many(entries, tiny_pool, tmp_path / "c", jobs=0))


def test_pretrain_rejects_bad_arguments(tiny_pool: Pool, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="epochs_scale"):
        pretrain(_entry(), tiny_pool, tmp_path, epochs_scale=0)
    with pytest.raises(ValueError, match="max_steps"):
        pretrain(_entry(), tiny_pool, tmp_path, max_steps=0)


def test_cli_features_cached(tiny_pool: Pool, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from ped.cli.zoo import register_cli

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
    from ped.bench.zoo import finetune as F
    from ped.bench.zoo import protocol as P

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


def test_protocol_validation() -> None:
    from ped.bench.zoo.finetune import Protocol

    with pytest.raises(ValueError, match="disjoint"):
        Protocol(selection_seeds=(0,), eval_seeds=(0, 1))
    with pytest.raises(ValueError, match="lr_grid"):
        Protocol(lr_grid=(0.1, 0.01, 0.03))
    with pytest.raises(ValueError, match="two evaluation seeds"):
        Protocol(eval_seeds=(1,))
    more = Protocol(task_eval_seeds=(("digits10", 9),))
    assert more.eval_seeds_for("digits10") == tuple(range(9))
    assert more.eval_seeds_for("mnist10") == more.eval_seeds == tuple(range(6))
    assert Protocol().eval_seeds_for("digits10") == tuple(range(6))
    with pytest.raises(ValueError, match="fewer than"):
        Protocol(task_eval_seeds=(("digits10", 3),))
    with pytest.raises(ValueError, match="twice"):
        Protocol(task_eval_seeds=(("digits10", 8), ("digits10", 9)))
    with pytest.raises(ValueError, match="selection seeds"):
        Protocol(task_eval_seeds=(("digits10", 200),))
    with pytest.raises(ValueError, match="0..S-1"):
        Protocol(eval_seeds=(3, 4), task_eval_seeds=(("digits10", 5),))


def test_rebuilt_protocol_cell_grows_the_grid_and_stores_features(
    tiny_pool: Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Selection on its own seeds; a best value on an edge grows the grid on that side (at most
    max_extensions times); evaluation seeds at the chosen setting; Z_T of the first eval seed;
    resumable; the manifest ties the table to every file."""
    from ped.bench.tasks import load_task
    from ped.bench.zoo import finetune as F
    from ped.bench.zoo import protocol as P
    from ped.bench.zoo.train import sha256_file

    task = load_task("digits10")
    protocol = F.Protocol(steps=3, lr_grid=(0.01, 0.03, 0.1), wd_grid=(5e-5, 5e-4, 5e-3),
                          selection_seeds=(9,), eval_seeds=(0, 1), max_extensions=1)  # fmt: skip
    calls: list[dict] = []

    def fake_run(encoder, task, *, lr, wd, seed, features_of=None, **kw):  # noqa: ANN001, ANN202
        calls.append({"lr": lr, "wd": wd, "seed": seed, **kw})
        val = 100 * lr - abs(np.log10(wd) + 4)  # best at the largest lr and at wd 5e-5
        if features_of is not None:
            return val, val + 1, np.zeros((len(features_of), 4), np.float32)
        return val, val + 1

    monkeypatch.setattr(P, "finetune_run", fake_run)
    out = tmp_path / "gt"
    rows = F.run_cell(None, task, out, model="m", encoder_sha256="abc", protocol=protocol)
    select = [r for r in rows if r["role"] == "select"]
    # lr grew once upwards (0.1 -> 0.3) and stops there (max_extensions=1, still an edge);
    # wd 5e-5 was an edge, grew to 5e-6 below, and is then interior
    assert sorted({r["lr"] for r in select}) == [0.01, 0.03, 0.1, 0.3]
    assert sorted({r["wd"] for r in select}) == [5e-6, 5e-5, 5e-4, 5e-3]
    assert len(select) == 16 and {r["seed"] for r in select} == {9}
    evals = [r for r in rows if r["role"] == "eval"]
    assert [(r["seed"], r["lr"], r["wd"]) for r in evals] == [(0, 0.3, 5e-5), (1, 0.3, 5e-5)]
    assert all(c["steps"] == 3 and c["per_image_shift"] for c in calls)
    z = np.load(F.features_path(out, "m", "digits10"))
    assert z["features"].shape == (len(task.y_train) + len(task.y_val), 4)

    n_calls = len(calls)
    again = F.run_cell(None, task, out, model="m", encoder_sha256="abc", protocol=protocol)
    assert len(calls) == n_calls and again == rows  # resumed: nothing rerun
    F.run_cell(None, task, out, model="m", encoder_sha256="changed", protocol=protocol)
    assert len(calls) == 2 * n_calls  # a retrained encoder makes every unit stale

    table = F.write_protocol_table(out)
    assert list(table.columns[:9]) == F.COLUMNS_V2 and len(table) == len(rows)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["table"]["sha256"] == sha256_file(out / "ground_truth.csv")
    assert len(manifest["files"]) == len(rows) + 1  # every run and the features

    # more evaluation seeds for this task extend the cell in place: only the new seeds run
    n_before = len(calls)
    wider = F.Protocol(**{**protocol.__dict__, "task_eval_seeds": (("digits10", 4),)})
    more = F.run_cell(None, task, out, model="m", encoder_sha256="changed", protocol=wider)
    assert sorted(r["seed"] for r in more if r["role"] == "eval") == [0, 1, 2, 3]
    assert [c["seed"] for c in calls[n_before:]] == [2, 3]


def test_rebuilt_protocol_weight_decay_ends_at_zero_and_superseded_evals_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below ``wd_min`` the weight decay's next value is 0, where its axis ends; resuming with
    more extensions moves the selection, and the evaluations of the old one are deleted."""
    from ped.bench.tasks import load_task
    from ped.bench.zoo import finetune as F
    from ped.bench.zoo import protocol as P

    task = load_task("digits10")
    calls: list[tuple[float, float, int]] = []

    def fake_run(encoder, task, *, lr, wd, seed, features_of=None, **kw):  # noqa: ANN001, ANN202
        calls.append((lr, wd, seed))
        val = 50 - abs(np.log10(lr) + 1.5) - 1e3 * wd  # best at lr 0.03, the less decay the better
        if features_of is not None:
            return val, val + 1, np.full((len(features_of), 4), 1 + wd, np.float32)
        return val, val + 1

    monkeypatch.setattr(P, "finetune_run", fake_run)
    out = tmp_path / "gt"
    short = F.Protocol(steps=2, lr_grid=(0.01, 0.03, 0.1), wd_grid=(1e-4, 1e-3, 1e-2),
                       selection_seeds=(9,), eval_seeds=(0, 1), max_extensions=1,
                       wd_min=5e-6)  # fmt: skip
    rows = F.run_cell(None, task, out, model="m", encoder_sha256="abc", protocol=short)
    assert sorted({r["wd"] for r in rows if r["role"] == "select"}) == [1e-5, 1e-4, 1e-3, 1e-2]
    assert {(r["lr"], r["wd"]) for r in rows if r["role"] == "eval"} == {(0.03, 1e-5)}
    # two more extensions allowed: 1e-5 -> 0 (a tenth, 1e-6, is below wd_min), and no further
    longer = F.Protocol(**{**short.__dict__, "max_extensions": 3})
    rows = F.run_cell(None, task, out, model="m", encoder_sha256="abc", protocol=longer)
    assert sorted({r["wd"] for r in rows if r["role"] == "select"}) == [0.0, 1e-5, 1e-4, 1e-3,
                                                                        1e-2]  # fmt: skip
    evals = [r for r in rows if r["role"] == "eval"]
    assert [(r["seed"], r["lr"], r["wd"]) for r in evals] == [(0, 0.03, 0.0), (1, 0.03, 0.0)]
    on_disk = sorted(p.name for p in (out / "runs" / "m" / "digits10").glob("eval_*.json"))
    assert on_disk == ["eval_lr0.03_wd0_s0.json", "eval_lr0.03_wd0_s1.json"]
    table = F.write_protocol_table(out)
    assert set(table.loc[table["role"] == "eval", "wd"]) == {0.0}
    assert len(F.verify_ground_truth(out)) == len(table)
    # the fine-tuned features are the new selection's (the first seed reran at wd 0)
    assert (np.load(F.features_path(out, "m", "digits10"))["features"] == 1.0).all()
    from ped.bench import ground_truth_checks

    others = [table.assign(model=m, test=table["test"] + d + table["seed"] % 2)
              for m, d in (("n", 5), ("o", 9))]
    checks = ground_truth_checks(pd.concat([table, *others]), random_model="m", n_resamples=10,
                                 min_seeds=2).loc["digits10"]  # fmt: skip
    assert checks["wd_zero"] == 3 and checks["wd_edges"] == 0 and checks["lr_edges"] == 0
    with pytest.raises(ValueError, match="wd_min"):
        F.Protocol(wd_min=0.0)


def test_verify_ground_truth_refuses_what_is_malformed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from ped.bench.tasks import load_task
    from ped.bench.zoo import finetune as F
    from ped.bench.zoo import protocol as P

    task = load_task("digits10")
    protocol = F.Protocol(steps=2, lr_grid=(0.01, 0.03, 0.1), wd_grid=(1e-5, 1e-4, 1e-3),
                          selection_seeds=(9,), eval_seeds=(0, 1), max_extensions=0)  # fmt: skip

    def fake_run(encoder, task, *, lr, wd, seed, features_of=None, **kw):  # noqa: ANN001, ANN202
        val = 50.0 + seed
        if features_of is not None:
            return val, val, np.zeros((len(features_of), 4), np.float32)
        return val, val

    monkeypatch.setattr(P, "finetune_run", fake_run)
    out = tmp_path / "gt"
    F.run_cell(None, task, out, model="m", encoder_sha256="abc", protocol=protocol)
    F.write_protocol_table(out)
    table = F.verify_ground_truth(out)
    assert len(table) == 9 + 2
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "manifest.json").write_text(json.dumps({"version": 1, "encoders": {
        "m": {"sha256": "abc"}}}))  # fmt: skip
    F.verify_ground_truth(out, zoo_dir=zoo)
    (zoo / "manifest.json").write_text(json.dumps({"version": 1, "encoders": {
        "m": {"sha256": "retrained"}}}))  # fmt: skip
    with pytest.raises(ValueError, match="stale"):
        F.verify_ground_truth(out, zoo_dir=zoo)

    csv = out / "ground_truth.csv"
    original = csv.read_text()
    csv.write_text(original.replace("50.0", "1000000000.0", 1))
    with pytest.raises(ValueError, match="ground_truth.csv does not match its sha256"):
        F.verify_ground_truth(out)
    # a malformed value with a matching manifest is refused, naming the run
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["table"]["sha256"] = hashlib.sha256(csv.read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"val=.*out of range in the run of m on digits10"):
        F.verify_ground_truth(out)
    csv.write_text(original)
    manifest["table"]["sha256"] = hashlib.sha256(csv.read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    F.verify_ground_truth(out)

    run = next((out / "runs").rglob("eval_*_s1.json"))
    text = run.read_text()
    run.write_text(text.replace('"test"', '"tset"'))
    with pytest.raises(ValueError, match=f"{run.name} does not match its sha256"):
        F.verify_ground_truth(out)
    run.unlink()
    with pytest.raises(ValueError, match="listed .* but missing"):
        F.verify_ground_truth(out)
    run.write_text(text)
    extra = run.with_name("eval_lr9_wd9_s7.json")
    extra.write_text(text)
    with pytest.raises(ValueError, match="is not in"):
        F.verify_ground_truth(out)
    # a run in progress: the unlisted file is left out, the listed ones are still checked
    assert len(F.verify_ground_truth(out, allow_unlisted=True)) == len(F.protocol_table(out)) - 1
    extra.unlink()
    (out / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="manifest"):
        F.verify_ground_truth(out)


def test_per_image_shift_moves_each_image_by_at_most_two_pixels() -> None:
    from ped.bench.zoo.finetune import _shift_each

    x = torch.zeros(64, 1, 9, 9)
    x[:, :, 4, 4] = 1.0
    y = _shift_each(x, torch.Generator().manual_seed(0))
    pos = torch.nonzero(y[:, 0] == 1.0)
    assert len(pos) == 64  # the pixel survives in every image
    offsets = {(int(r) - 4, int(c) - 4) for _, r, c in pos}
    assert all(abs(a) <= 2 and abs(b) <= 2 for a, b in offsets) and len(offsets) > 5


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
    from ped.bench.zoo.train import MANIFEST

    path = tmp_path / MANIFEST
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text.replace('"version": 1', f'"version": {_manifest_version()}'))
    with pytest.raises(ValueError, match=message) as info:
        read_manifest(tmp_path)
    assert str(path) in str(info.value)


def _manifest_version() -> int:
    from ped.bench.zoo import train

    return train._MANIFEST_VERSION
