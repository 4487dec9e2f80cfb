r"""The datasets of the full-scale reproduction: the paper's transform (:func:`paper_transform`:
``Resize(224, bicubic)``, ``CenterCrop(224)``, ImageNet mean and std) and its 11 target datasets
as torchvision classes that never download (:data:`PAPER_DATASETS`, :func:`build_dataset`; the
splits are documented in :mod:`ped.fullscale.extraction`), plus an image folder and fake data.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np


if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch.utils.data import Dataset

from ped.fullscale.backbones import _require_torch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "VOC_CLASSES", "PAPER_DATASETS", "DatasetSpec",
           "VOCLargestObject", "paper_transform", "build_dataset"]

logger = logging.getLogger("ped.fullscale.extraction")


#: ImageNet channel statistics used by the paper's normalisation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The 20 PASCAL VOC classes; a VOC label is the index into this tuple.
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


class _ToRGB:
    """Convert a PIL image to RGB (Caltech101 holds grey-scale images)."""

    def __call__(self, image: Any) -> Any:
        return image.convert("RGB") if getattr(image, "mode", "RGB") != "RGB" else image

    def __repr__(self) -> str:
        return "ToRGB()"


def paper_transform(image_size: int = 224) -> Callable[[Any], torch.Tensor]:
    """The paper's test transform: RGB, ``Resize(size, bicubic)``, ``CenterCrop(size)``, tensor,
    ImageNet normalisation.  ``image_size`` other than 224 is for tests and quick demos."""
    _require_torch()
    from torchvision import transforms as T

    return T.Compose(
        [
            _ToRGB(),
            T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(image_size),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


class VOCLargestObject:
    """``target_transform`` of VOCDetection: the class index of the image's largest box.

    Non-difficult boxes are preferred; when every box is difficult the largest of all is used.
    Indices follow :data:`VOC_CLASSES`.
    """

    def __call__(self, target: Mapping[str, Any]) -> int:
        objects = target["annotation"]["object"]
        if isinstance(objects, Mapping):
            objects = [objects]
        if not objects:
            raise ValueError("VOC annotation without objects")
        names = [o["name"] for o in objects]
        boxes = np.array(
            [[float(o["bndbox"][c]) for c in ("xmin", "ymin", "xmax", "ymax")] for o in objects]
        )
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        difficult = np.array([str(o.get("difficult", "0")) == "1" for o in objects])
        if not difficult.all():
            area = np.where(difficult, -np.inf, area)
        return VOC_CLASSES.index(names[int(np.argmax(area))])

    def __repr__(self) -> str:
        return "VOCLargestObject()"


@dataclass(frozen=True)
class DatasetSpec:
    """How to build one dataset from torchvision.

    ``splits`` maps a split name to the keyword arguments of each torchvision dataset to
    concatenate (in order); ``layout`` describes the folder torchvision expects under ``root``.
    """

    name: str
    class_name: str
    layout: str
    splits: Mapping[str, tuple[Mapping[str, Any], ...]]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    target_transform: Callable[[Any], int] | None = None
    default_split: str = "all"

    def __call__(
        self, root: str | os.PathLike[str] | None, split: str | None = None,
        transform: Callable[[Any], Any] | None = None,
    ) -> Dataset:  # fmt: skip
        """Build the dataset (never downloads)."""
        _require_torch()
        import torchvision.datasets as tvd
        from torch.utils.data import ConcatDataset

        split = self.default_split if split is None else split
        if split not in self.splits:
            raise ValueError(
                f"dataset {self.name!r} has no split {split!r}; known splits: "
                f"{sorted(self.splits)}"
            )
        root_path = _check_root(self.name, root, self.layout)
        cls = getattr(tvd, self.class_name)
        parts = []
        for kwargs in self.splits[split]:
            try:
                parts.append(
                    cls(
                        str(root_path), transform=transform,
                        target_transform=self.target_transform, download=False,
                        **self.fixed, **kwargs,
                    )  # fmt: skip
                )
            except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
                raise FileNotFoundError(
                    f"dataset {self.name!r} not found under {root_path}: expected {self.layout} "
                    f"(torchvision {self.class_name} said: {exc})"
                ) from exc
        return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def _check_root(name: str, root: str | os.PathLike[str] | None, layout: str) -> Path:
    if root is None:
        raise ValueError(f"dataset {name!r} needs a root folder (--root): expected {layout}")
    path = Path(root)
    if not path.is_dir():
        raise FileNotFoundError(
            f"root folder {path} for dataset {name!r} not found: expected {layout}"
        )
    return path


class _ImageFolderSpec(DatasetSpec):
    """ImageFolder: ``split`` is an optional sub-folder of ``root``."""

    def __call__(self, root, split=None, transform=None):  # type: ignore[no-untyped-def]
        _require_torch()
        from torchvision.datasets import ImageFolder

        base = _check_root(self.name, root, self.layout)
        folder = base if split in (None, "all") else base / split
        if not folder.is_dir():
            raise FileNotFoundError(f"split folder {folder} not found: expected {self.layout}")
        try:
            return ImageFolder(str(folder), transform=transform)
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"no images found under {folder}: expected {self.layout} ({exc})"
            ) from exc


class _FakeSpec(DatasetSpec):
    """FakeData: random images, deterministic per index; no root needed."""

    def __call__(self, root=None, split=None, transform=None):  # type: ignore[no-untyped-def]
        _require_torch()
        from torchvision.datasets import FakeData

        if split not in (None, "all"):
            raise ValueError(f"dataset 'fake' has only the split 'all', got {split!r}")
        return FakeData(
            size=int(self.fixed.get("size", 1000)),
            image_size=tuple(self.fixed.get("image_size", (3, 64, 64))),
            num_classes=int(self.fixed.get("num_classes", 10)),
            transform=transform,
        )


def _tv(train: Mapping[str, Any], test: Mapping[str, Any]) -> dict[str, tuple[dict, ...]]:
    return {"train": (dict(train),), "test": (dict(test),), "all": (dict(train), dict(test))}


def _three(key: str) -> dict[str, tuple[dict, ...]]:
    return {
        "train": ({key: "train"},),
        "val": ({key: "val"},),
        "test": ({key: "test"},),
        "trainval": ({key: "train"}, {key: "val"}),
        "all": ({key: "train"}, {key: "val"}, {key: "test"}),
    }


#: Dataset name -> builder ``(root, split=None, transform=None) -> torch Dataset``.
PAPER_DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(
        "cifar10", "CIFAR10", "ROOT/cifar-10-batches-py/ (the python version)",
        _tv({"train": True}, {"train": False}),
    ),
    "cifar100": DatasetSpec(
        "cifar100", "CIFAR100", "ROOT/cifar-100-python/ (the python version)",
        _tv({"train": True}, {"train": False}),
    ),
    "dtd": DatasetSpec(
        "dtd", "DTD", "ROOT/dtd/dtd/images/ and ROOT/dtd/dtd/labels/", _three("split"),
        fixed={"partition": 1},
    ),
    "flowers": DatasetSpec(
        "flowers", "Flowers102", "ROOT/flowers-102/jpg/, imagelabels.mat, setid.mat",
        _three("split"),
    ),
    "pets": DatasetSpec(
        "pets", "OxfordIIITPet", "ROOT/oxford-iiit-pet/images/ and annotations/",
        {"trainval": ({"split": "trainval"},), "test": ({"split": "test"},),
         "all": ({"split": "trainval"}, {"split": "test"})},
        fixed={"target_types": "category"},
    ),
    "food": DatasetSpec(
        "food", "Food101", "ROOT/food-101/images/ and meta/",
        _tv({"split": "train"}, {"split": "test"}),
    ),
    "aircraft": DatasetSpec(
        "aircraft", "FGVCAircraft", "ROOT/fgvc-aircraft-2013b/data/",
        {"train": ({"split": "train"},), "val": ({"split": "val"},),
         "test": ({"split": "test"},), "trainval": ({"split": "trainval"},),
         "all": ({"split": "trainval"}, {"split": "test"})},
        fixed={"annotation_level": "variant"},
    ),
    "cars": DatasetSpec(
        "cars", "StanfordCars",
        "ROOT/stanford_cars/ with cars_train/, cars_test/, devkit/ and "
        "cars_test_annos_withlabels.mat",
        _tv({"split": "train"}, {"split": "test"}),
    ),
    "caltech101": DatasetSpec(
        "caltech101", "Caltech101", "ROOT/caltech101/101_ObjectCategories/ and Annotations/",
        {"all": ({},)}, fixed={"target_type": "category"},
    ),
    "sun397": DatasetSpec(
        "sun397", "SUN397", "ROOT/SUN397/ with ClassName.txt and the class folders",
        {"all": ({},)},
    ),
    "voc2007": DatasetSpec(
        "voc2007", "VOCDetection", "ROOT/VOCdevkit/VOC2007/ (JPEGImages/, Annotations/, "
        "ImageSets/Main/; the test set's files merged into the same tree)",
        {"train": ({"image_set": "train"},), "val": ({"image_set": "val"},),
         "test": ({"image_set": "test"},), "trainval": ({"image_set": "trainval"},),
         "all": ({"image_set": "trainval"}, {"image_set": "test"})},
        fixed={"year": "2007"}, target_transform=VOCLargestObject(),
    ),
    "imagefolder": _ImageFolderSpec(
        "imagefolder", "ImageFolder",
        "ROOT/<class name>/<image file> (or ROOT/<split>/<class name>/<image file>)", {},
    ),
    "fake": _FakeSpec(
        "fake", "FakeData", "nothing (random images)", {"all": ({},)},
        fixed={"size": 1000, "image_size": (3, 64, 64), "num_classes": 10},
    ),
}  # fmt: skip


def build_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    split: str | None = None,
    transform: Callable[[Any], Any] | None = None,
) -> Dataset:
    """Build dataset ``name`` of :data:`PAPER_DATASETS` (``split=None``: ``"all"``; never downloads).

    Raises ``ValueError`` for an unknown name (listing the known ones) or split, and
    ``FileNotFoundError`` naming the path and the expected layout when ``root`` is wrong.
    """
    try:
        spec = PAPER_DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(PAPER_DATASETS))}"
        ) from None
    return spec(root, split, transform)
