"""Tests of the torch backend of LogME, SFDA and GBC: same numbers as the numpy path, inputs left
alone, the same validation.  CI runs them on CPU tensors; the CUDA test runs where a GPU is."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ped.metrics import METRICS, gbc, logme, sfda

torch = pytest.importorskip("torch")

#: (id, metric, options): every backend-aware metric and the options that change its sample passes.
CASES = [
    ("logme", logme, {}),
    ("sfda-log", sfda, {"log": True}),
    ("sfda-prob", sfda, {"log": False}),
    ("sfda-exact-eig", sfda, {"power_iterations": None}),
    ("gbc-diag-pca64", gbc, {"covariance": "diagonal", "pca_dims": 64}),
    ("gbc-diag-nopca", gbc, {"covariance": "diagonal", "pca_dims": None}),
    ("gbc-sph-pca64", gbc, {"covariance": "spherical", "pca_dims": 64}),
    ("gbc-sph-nopca", gbc, {"covariance": "spherical", "pca_dims": None}),
]
IDS = [c[0] for c in CASES]
#: Small, fast options for the metrics without a torch path.
FAST_OPTIONS = {"nleep": {"component_ratio": 2, "covariance_type": "diag"}}
METRIC_CASES = pytest.mark.parametrize("fn,kw", [c[1:] for c in CASES], ids=IDS)
THREE = pytest.mark.parametrize("fn", [logme, sfda, gbc], ids=["logme", "sfda", "gbc"])


def make_data(n=300, dim=80, n_classes=5, seed=0, dtype=np.float64):
    """Overlapping Gaussian classes (scores away from their ceilings), shuffled."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % n_classes)
    centres = rng.standard_normal((n_classes, dim)) * 0.3
    x = centres[y] + rng.standard_normal((n, dim)) * np.linspace(1.5, 0.3, dim)
    return x.astype(dtype), y


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


# ------------------------------------------------------------------------------------ agreement
@METRIC_CASES
@pytest.mark.parametrize("shape", [(300, 80), (60, 100)], ids=["N>D", "N<D"])
def test_float64_tensor_matches_numpy(fn, kw, shape):
    x, y = make_data(*shape)
    ref = fn(x, y, **kw)
    got = fn(torch.from_numpy(x), torch.from_numpy(y), **kw)
    assert isinstance(got, float)
    assert rel(got, ref) <= 1e-10


@METRIC_CASES
def test_float32_tensor_matches_float64_numpy(fn, kw):
    x32, y = make_data(dtype=np.float32, seed=1)
    ref = fn(x32.astype(np.float64), y, **kw)
    got = fn(torch.from_numpy(x32), y, **kw)
    assert rel(got, ref) <= 1e-5


@THREE
@pytest.mark.parametrize("kind", ["numpy", "tensor", "list", "float-tensor"])
def test_label_types(fn, kind):
    x, y = make_data(n=120, dim=12, seed=2)
    ref = fn(x, y)
    labels = {
        "numpy": y,
        "tensor": torch.from_numpy(y),
        "list": y.tolist(),
        "float-tensor": torch.from_numpy(y.astype(np.float64)),
    }[kind]
    assert rel(fn(torch.from_numpy(x), labels), ref) <= 1e-10


@THREE
def test_numpy_features_with_tensor_labels(fn):
    x, y = make_data(n=120, dim=12, seed=3)
    assert fn(x, torch.from_numpy(y)) == fn(x, y)


# ------------------------------------------------------------------------------------ no mutation
@THREE
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_inputs_not_modified(fn, dtype):
    x, y = make_data(n=150, dim=70, seed=4)
    tx, ty = torch.from_numpy(x).to(dtype), torch.from_numpy(y)
    tx_before, ty_before = tx.clone(), ty.clone()
    fn(tx, ty)
    assert torch.equal(tx, tx_before) and torch.equal(ty, ty_before)
    assert tx.dtype == dtype


@THREE
def test_requires_grad_tensor(fn):
    x, y = make_data(n=120, dim=12, seed=5)
    tx = torch.from_numpy(x).requires_grad_(True)
    assert rel(fn(tx, y), fn(x, y)) <= 1e-10
    assert tx.grad is None


ALL_METRICS = pytest.mark.parametrize("name", sorted(METRICS))


@ALL_METRICS
def test_every_metric_accepts_a_tensor_that_requires_grad(name):
    """H-score, TransRate, PARC and NLEEP have no torch path: they copy the tensor to numpy
    (issue 15, case 11); every metric gives the numpy value and leaves autograd alone."""
    x, y = make_data(n=120, dim=12, seed=5)
    fn, kw = METRICS[name], FAST_OPTIONS.get(name, {})
    tx = torch.from_numpy(x).requires_grad_(True)
    got = fn(tx, torch.from_numpy(y), **kw)
    assert isinstance(got, float) and rel(got, fn(x, y, **kw)) <= 1e-10
    assert tx.grad is None and tx.requires_grad


@ALL_METRICS
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_every_metric_accepts_half_precision_tensors(name, dtype):
    x, y = make_data(n=120, dim=12, seed=7)
    fn, kw = METRICS[name], FAST_OPTIONS.get(name, {})
    tx = torch.from_numpy(x).to(dtype)
    before = tx.clone()
    exact = fn(tx.to(torch.float64).numpy(), y, **kw)  # the same (rounded) values in float64
    assert rel(fn(tx, y, **kw), exact) <= 1e-6
    assert torch.equal(tx, before) and tx.dtype == dtype


@ALL_METRICS
def test_tensor_errors_of_every_metric(name):
    fn = METRICS[name]
    x, y = make_data(n=40, dim=6, seed=6)
    for tensor, match in [(torch.from_numpy(x).long(), "floating-point"),
                          (torch.from_numpy(x) * 1e200, "too large"),
                          (torch.from_numpy(x).to(torch.bfloat16).index_fill(
                              1, torch.tensor([2]), float("nan")), "NaN or infinite")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            fn(tensor, y)


# ------------------------------------------------------------------------------------ errors
def _bad_inputs():
    x, y = make_data(n=40, dim=6, seed=6)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    nan, inf = tx.clone(), tx.clone()
    nan[3, 2] = float("nan")
    inf[0, 0] = float("inf")
    holes = ty.clone()
    holes[holes == 1] = 4  # values 0, 2, 3, 4: 1 never occurs
    return [
        ("int", tx.long(), ty, "floating-point"),
        ("complex", tx.to(torch.complex128), ty, "floating-point"),
        ("1-D", tx[:, 0], ty, "2-D"),
        ("3-D", tx[None], ty, "2-D"),
        ("empty", tx[:0], ty[:0], "empty"),
        ("nan", nan, ty, "NaN or infinite"),
        ("inf", inf, ty, "NaN or infinite"),
        ("length", tx, ty[:-1], "mismatched lengths"),
        ("2-D labels", tx, ty[:, None], "1-D"),
        ("non-integer labels", tx, ty + 0.5, "whole numbers"),
        ("negative labels", tx, ty - 1, "negative"),
        ("missing class", tx, holes, "never occur"),
        ("one class", tx, torch.zeros_like(ty), "at least 2"),
    ]


@THREE
@pytest.mark.parametrize("case", range(13), ids=[c[0] for c in _bad_inputs()])
def test_tensor_errors(fn, case):
    _, features, labels, match = _bad_inputs()[case]
    with pytest.raises(ValueError, match=match):
        fn(features, labels)


def test_gbc_tensor_needs_two_per_class():
    x, y = make_data(n=40, dim=6, seed=7)
    y = y.copy()
    y[np.flatnonzero(y == 2)[1:]] = 0  # class 2 keeps one sample
    with pytest.raises(ValueError, match="at least 2 per class"):
        gbc(torch.from_numpy(x), y)


@pytest.mark.parametrize("n, dim", [(300, 80), (40, 90)])  # F^T F and, with N < D, F F^T
def test_logme_weights_on_a_tensor_match_numpy(n, dim):
    x, y = make_data(n=n, dim=dim, seed=9)
    if n < dim:  # of rank 10, so that the features cannot fit the labels exactly
        x = x[:, :10] @ np.random.default_rng(10).normal(size=(10, dim))
    w = np.random.default_rng(9).integers(1, 4, size=len(y)).astype(np.float64)
    assert logme(torch.from_numpy(x), y, sample_weight=w) == pytest.approx(
        logme(x, y, sample_weight=w), rel=1e-10)


def test_tensor_option_errors():
    x, y = make_data(n=40, dim=6, seed=8)
    tx = torch.from_numpy(x)
    with pytest.raises(ValueError, match="tol"):
        logme(tx, y, tol=0)
    with pytest.raises(ValueError, match="power_iterations"):
        sfda(tx, y, power_iterations=0)
    with pytest.raises(ValueError, match="covariance"):
        gbc(tx, y, covariance="full")
    with pytest.raises(ValueError, match="pca_dims"):
        gbc(tx, y, pca_dims=0)


def test_numpy_path_does_not_import_torch():
    code = (
        "import sys, numpy as np; from ped.metrics import logme, sfda, gbc; "
        "x = np.random.default_rng(0).standard_normal((60, 5)); y = np.arange(60) % 3; "
        "logme(x, y); sfda(x, y); gbc(x, y); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------ CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@METRIC_CASES
def test_cuda_tensor_matches_numpy(fn, kw):
    x, y = make_data(seed=9)
    tx, ty = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
    before = tx.clone()
    assert rel(fn(tx, ty, **kw), fn(x, y, **kw)) <= 1e-10
    assert torch.equal(tx, before)
    x32 = x.astype(np.float32)
    ref32 = fn(x32.astype(np.float64), y, **kw)
    assert rel(fn(torch.from_numpy(x32).cuda(), ty, **kw), ref32) <= 1e-5
