"""The ``ped extract`` command: ResNet-50 features of a dataset (:mod:`ped.fullscale.extraction`)."""

from __future__ import annotations

import argparse
import hashlib
import logging
from pathlib import Path
from typing import Any

from ped._io import check_output_path
from ped.fullscale.extraction import (
    PAPER_DATASETS,
    build_backbone,
    build_dataset,
    check_names,
    extract_to_directory,
    extraction_settings,
    load_backbone,
    output_paths,
    paper_transform,
    reusable_outputs,
    samples_to_extract,
)

logger = logging.getLogger("ped.fullscale.extraction")


def _file_fingerprint(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]


def extract_one(
    model: str,
    *,
    checkpoint: str | None,
    dataset: str,
    root: str | None,
    out: str | Path,
    name: str | None = None,
    split: str | None = None,
    image_size: int = 224,
    key_prefix: str | None = None,
    trust_checkpoint: bool = False,
    seed: int = 0,
    batch_size: int = 64,
    shard_size: int | None = None,
    device: str = "auto",
    workers: int = 0,
    limit: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Any:
    """Extract one model's features of a dataset into ``out`` (``ped extract``, and ``ped rank
    --images``): everything that can be checked before the model is loaded is checked first;
    finished outputs with the same settings are reused.  Returns the
    :class:`ped.fullscale.extraction.ExtractionResult`."""
    model_name, dataset_name = check_names(model, name or dataset)
    check_output_path(output_paths(out, model_name, dataset_name)[0], what="features")
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint file not found: {path}")
        source = {"checkpoint": str(path.resolve()), "fingerprint": _file_fingerprint(path)}
    else:
        source = {"checkpoint": None, "seed": seed}
    metadata = {**source, "source_dataset": dataset, "split": split or "all",
                "image_size": image_size,
                "root": None if root is None else str(Path(root).resolve())}  # fmt: skip
    data = build_dataset(dataset, root, split=split, transform=paper_transform(image_size))
    settings = extraction_settings(model_name, dataset_name, samples_to_extract(data, limit),
                                   metadata)  # fmt: skip
    result = None if overwrite else reusable_outputs(out, settings)
    if result is not None:
        return result
    if checkpoint is not None:
        net = load_backbone(checkpoint, prefix=key_prefix, trust_checkpoint=trust_checkpoint)
    else:
        logger.warning("--random-init: features of a random-weight ResNet-50 (tests/demos only)")
        import torch

        torch.manual_seed(seed)
        net = build_backbone()
    return extract_to_directory(
        net, data, out, model_name=model_name, dataset_name=dataset_name,
        batch_size=batch_size, shard_size=shard_size, device=device, num_workers=workers,
        limit=limit, progress=progress, overwrite=overwrite, metadata=metadata,
    )  # fmt: skip


def _cmd_extract(args: argparse.Namespace) -> int:
    result = extract_one(
        args.model, checkpoint=args.checkpoint, dataset=args.dataset, root=args.root, out=args.out,
        name=args.name, split=args.split, image_size=args.image_size, key_prefix=args.key_prefix,
        trust_checkpoint=args.trust_checkpoint, seed=args.seed, batch_size=args.batch_size,
        shard_size=args.shard_size, device=args.device, workers=args.workers, limit=args.limit,
        progress=not args.no_progress, overwrite=args.overwrite,
    )  # fmt: skip
    if result.skipped:
        print(
            f"{result.feature_path} exists ({result.n_samples} samples, same settings); "
            "--overwrite to redo"
        )
    else:
        rate = result.n_samples / result.seconds if result.seconds > 0 else float("nan")
        print(
            f"wrote {result.feature_path} and {result.label_path.name}: {result.n_samples} "
            f"samples, {result.n_shards} shard(s) ({result.shards_reused} reused), "
            f"{result.seconds:.1f} s, {rate:.1f} images/s"
        )
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``ped extract`` to the ``ped`` command line."""
    p = subparsers.add_parser(
        "extract",
        help="extract ResNet-50 features of a dataset (resumable)",
        description=(
            "Extract 2048-d average-pooled ResNet-50 features with the paper's transform "
            "(Resize 224 bicubic, CenterCrop 224, ImageNet normalisation) into "
            "OUT/<model>_<dataset>_feature.npy and _label.npy, with the settings in "
            "OUT/<model>_<dataset>_extract.json.  Interrupted runs resume from their last "
            "finished shard; finished outputs are reused only when their settings match "
            "(otherwise: an error, or --overwrite).  Nothing is downloaded."
        ),
    )
    p.add_argument("--model", required=True, help="model name used in the output file names")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint file (state_dict, possibly wrapped)")
    src.add_argument(
        "--random-init", action="store_true", help="random weights instead (tests and demos)"
    )
    p.add_argument("--key-prefix", default=None, help="checkpoint key prefix (default: found)")
    p.add_argument(
        "--trust-checkpoint", action="store_true",
        help="allow checkpoints holding Python objects (torch.load weights_only=False)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of --random-init")
    p.add_argument("--dataset", required=True, help=f"one of: {', '.join(sorted(PAPER_DATASETS))}")
    p.add_argument("--root", default=None, help="dataset folder (torchvision layout)")
    p.add_argument("--split", default=None, help="split (default: all = every split, once)")
    p.add_argument(
        "--name", default=None,
        help="dataset name in the output file names (default: --dataset; no '_', which "
        "`ped score` reads as the model/dataset separator); e.g. 'imagenet' for the reference "
        "features that `ped score --reference` reads",
    )  # fmt: skip
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shard-size", type=int, default=None, help="samples per shard (64 batches)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    p.add_argument("--limit", type=int, default=None, help="only the first N samples")
    p.add_argument(
        "--image-size", type=int, default=224, help="resize/crop size (224 in the paper)"
    )
    p.add_argument("--overwrite", action="store_true", help="redo finished or partial work")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_extract)
