r"""The backbone of the full-scale reproduction: a torchvision ResNet-50 with the classifier
replaced by the identity (:func:`build_backbone`), loaded from the checkpoint formats of the public
self-supervised releases (:func:`load_backbone`: plain ``state_dict``; ``{"state_dict": ...}`` /
``{"model": ...}`` wrappers, nested; ``module.``, ``encoder.``, ``encoder_q.``, ``backbone.``,
``model.`` -style prefixes, found automatically).  Projection heads and classifiers are ignored
(and logged); any other missing or unexpected backbone key is a clear ``ValueError``.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["FEATURE_DIM", "IGNORED_HEADS", "WRAPPER_KEYS", "build_backbone", "unwrap_state_dict",
           "map_backbone_keys", "load_backbone"]

logger = logging.getLogger("ped.fullscale.extraction")


#: Width of ResNet-50's average-pooled features.
FEATURE_DIM = 2048

#: First components of checkpoint keys (after the backbone prefix) that belong to a classifier or
#: a self-supervised head and are ignored when loading a backbone.
IGNORED_HEADS = frozenset(
    {
        "fc", "head", "heads", "classifier", "projection", "projection_head", "projector",
        "prediction", "predictor", "prototypes", "mlp",
    }
)  # fmt: skip
#: Keys under which checkpoints wrap their state_dict, tried in this order.
WRAPPER_KEYS = ("state_dict", "model", "net", "network")
#: Prefix fragments naming a momentum/target copy of the network: such a prefix is chosen only
#: when no other prefix matches as many keys (MoCo's ``encoder_k``, BYOL's ``target_network``).
_SECONDARY_MARKERS = ("encoder_k", "momentum", "target", "teacher", "ema")



def _require_torch() -> None:
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "feature extraction needs torch and torchvision: pip install 'ped[torch]'"
        ) from exc


# --------------------------------------------------------------------------------------------
# Model and checkpoints
# --------------------------------------------------------------------------------------------


def build_backbone() -> nn.Module:
    """A random-weight torchvision ResNet-50 whose ``fc`` is the identity (2048-d output)."""
    _require_torch()
    import torch.nn as tnn
    import torchvision

    model = torchvision.models.resnet50(weights=None)
    model.fc = tnn.Identity()
    return model


def _is_state_dict(obj: object) -> bool:
    import torch

    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def unwrap_state_dict(checkpoint: Mapping[str, Any], *, max_depth: int = 3) -> dict[str, Any]:
    """Return the tensor mapping inside ``checkpoint``.

    A mapping whose values are all tensors is a state_dict; otherwise the first of
    :data:`WRAPPER_KEYS` holding a mapping is followed, up to ``max_depth`` times
    (e.g. ``{"model": {"state_dict": {...}}}``).  Raises ``ValueError`` naming the keys seen.
    """
    current: object = checkpoint
    path: list[str] = []
    for _ in range(max_depth + 1):
        if _is_state_dict(current):
            if path:
                logger.info("state_dict found under %s", "/".join(path))
            return dict(current)  # type: ignore[arg-type]
        if not isinstance(current, Mapping):
            break
        for key in WRAPPER_KEYS:
            if isinstance(current.get(key), Mapping):
                path.append(key)
                current = current[key]
                break
        else:
            break
    seen = list(current)[:10] if isinstance(current, Mapping) else type(current).__name__
    raise ValueError(
        f"no state_dict found in the checkpoint (looked under {'/'.join(path) or 'the top level'}"
        f" for a mapping of tensors, following the wrapper keys {WRAPPER_KEYS}); keys seen: {seen}"
    )


def _choose_prefix(keys: Sequence[str], targets: set[str]) -> str:
    """The key prefix whose removal makes the most checkpoint keys backbone keys."""
    counts: dict[str, int] = {}
    first_seen: dict[str, int] = {}
    for position, key in enumerate(keys):
        parts = key.split(".")
        for cut in range(len(parts)):
            if ".".join(parts[cut:]) in targets:
                prefix = "".join(p + "." for p in parts[:cut])
                counts[prefix] = counts.get(prefix, 0) + 1
                first_seen.setdefault(prefix, position)
    if not counts:
        return ""

    def rank(prefix: str) -> tuple[int, int, int]:
        secondary = any(m in prefix for m in _SECONDARY_MARKERS)
        return (-counts[prefix], int(secondary), first_seen[prefix])

    return min(counts, key=rank)


def map_backbone_keys(
    state_dict: Mapping[str, Any],
    target_keys: Sequence[str],
    *,
    prefix: str | None = None,
) -> tuple[dict[str, Any], str, list[str], list[str]]:
    """Rename checkpoint keys to ResNet-50 backbone keys.

    Parameters
    ----------
    state_dict : mapping
        Checkpoint tensors (already unwrapped).  Not modified.
    target_keys : sequence of str
        Keys of the backbone's own ``state_dict()`` (``fc.*`` excluded).
    prefix : str or None
        The prefix to strip (e.g. ``"module.encoder_q."``); ``None`` picks the prefix that turns
        the most keys into backbone keys (ties: a prefix naming a momentum/target copy loses,
        then the prefix seen first in the checkpoint wins).

    Returns
    -------
    (mapped, prefix, heads, outside)
        ``mapped`` holds the renamed entries (including unexpected ones, which the caller
        reports); ``heads`` lists the original keys of heads (:data:`IGNORED_HEADS`) under
        ``prefix`` and ``outside`` the keys outside ``prefix`` (e.g. a momentum encoder), both
        dropped.
    """
    keys = list(state_dict)
    if prefix is None:
        prefix = _choose_prefix(keys, set(target_keys))
    mapped: dict[str, Any] = {}
    heads: list[str] = []
    outside: list[str] = []
    for key in keys:
        if not key.startswith(prefix):
            outside.append(key)
            continue
        name = key[len(prefix) :]
        if name.split(".", 1)[0] in IGNORED_HEADS:
            heads.append(key)
            continue
        mapped[name] = state_dict[key]
    return mapped, prefix, heads, outside


def _summarise(keys: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}{', ...' if len(keys) > limit else ''} ({len(keys)} in all)"


def _load_checkpoint_file(path: Path, *, trust: bool) -> Any:
    import torch

    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"checkpoint {path} holds Python objects besides tensors, which torch.load refuses "
            f"in its safe mode ({exc.__class__.__name__}: {str(exc).splitlines()[0]}). If you "
            f"trust the file, load it with trust_checkpoint=True (--trust-checkpoint)."
        ) from exc


def load_backbone(
    checkpoint: str | os.PathLike[str] | Mapping[str, Any],
    *,
    prefix: str | None = None,
    trust_checkpoint: bool = False,
) -> nn.Module:
    """A ResNet-50 backbone (``fc`` = identity) with the weights of ``checkpoint``.

    Parameters
    ----------
    checkpoint : path or mapping
        A file saved with ``torch.save`` or an already loaded object: a plain state_dict, or one
        wrapped under ``state_dict`` / ``model`` (see :func:`unwrap_state_dict`).  Not modified.
    prefix : str or None
        Key prefix to strip; ``None`` finds it (see :func:`map_backbone_keys`).
    trust_checkpoint : bool
        Load files with ``torch.load(weights_only=False)``, which can run arbitrary code: only
        for files you trust whose pickles hold Python objects (e.g. an ``argparse.Namespace``).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        No state_dict inside, backbone keys missing or unexpected (a few are listed), or tensor
        shapes that do not fit a ResNet-50.
    """
    _require_torch()
    if isinstance(checkpoint, Mapping):
        raw = checkpoint
        source = "the given mapping"
    else:
        path = Path(checkpoint)
        raw = _load_checkpoint_file(path, trust=trust_checkpoint)
        source = str(path)
        if not isinstance(raw, Mapping):
            raise ValueError(f"checkpoint {path} holds a {type(raw).__name__}, not a mapping")
    state = unwrap_state_dict(raw)
    model = build_backbone()
    own = model.state_dict()
    targets = list(own)
    mapped, used_prefix, heads, outside = map_backbone_keys(state, targets, prefix=prefix)
    if heads:
        logger.info(
            "checkpoint %s: ignored %d head key(s): %s", source, len(heads), _summarise(heads, 8)
        )
    if outside:
        groups: dict[str, int] = {}
        for key in outside:
            group = ".".join(key.split(".")[:2])
            groups[group] = groups.get(group, 0) + 1
        logger.info(
            "checkpoint %s: ignored %d key(s) outside the prefix %r: %s",
            source, len(outside), used_prefix,
            ", ".join(f"{g}.* ({n})" for g, n in groups.items()),
        )  # fmt: skip
    missing = [k for k in targets if k not in mapped]
    # BatchNorm counters are absent from old checkpoints and unused in eval mode.
    tolerated = [k for k in missing if k.endswith("num_batches_tracked")]
    missing = [k for k in missing if k not in tolerated]
    unexpected = [k for k in mapped if k not in own]
    if missing or unexpected:
        parts = [f"checkpoint {source} does not fit a torchvision ResNet-50 backbone"]
        parts.append(f"(prefix stripped: {used_prefix!r})")
        if missing:
            parts.append(f"; missing backbone keys: {_summarise(missing)}")
        if unexpected:
            parts.append(f"; unexpected keys: {_summarise(unexpected)}")
        parts.append(
            ". Pass prefix=... (--key-prefix) if the backbone sits under another prefix."
        )
        raise ValueError(" ".join(parts[:2]) + "".join(parts[2:]))
    bad_shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in mapped.items()
        if tuple(v.shape) != tuple(own[k].shape)
    ]
    if bad_shapes:
        raise ValueError(
            f"checkpoint {source}: tensor shapes do not fit a ResNet-50: "
            f"{_summarise(bad_shapes, 3)}"
        )
    full = {k: mapped.get(k, own[k]) for k in targets}
    model.load_state_dict(full, strict=True)
    logger.info(
        "loaded %d backbone tensors from %s (prefix %r)", len(mapped), source, used_prefix
    )
    return model

