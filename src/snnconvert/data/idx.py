"""MNIST and Fashion-MNIST from the original IDX files, gzipped or not."""
from __future__ import annotations

import functools
import gzip
import zlib
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ..errors import DataError
from .arrays import ImageArrayDataset
from .locate import find_files, stat_key
from .registry import DatasetInfo, default_root, register_dataset

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
FASHION_MNIST_DEFAULT = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist

MNIST_INFO = DatasetInfo("mnist", 10, (1, 28, 28), (0.1307,), (0.3081,))
FASHION_MNIST_INFO = DatasetInfo("fashion-mnist", 10, (1, 28, 28), (0.2860,), (0.3530,))
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an IDX file (gzipped if it starts with the gzip signature) of unsigned bytes.

    The 4-byte big-endian magic must equal `magic` (2051 images, 2049 labels) and the payload
    must hold exactly the product of the header's dimensions; otherwise DataError.
    """
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{str(path)!r}: cannot read or gunzip ({exc}); expected an IDX file, raw or .gz") from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < 4 or int.from_bytes(raw[:4], "big") != magic:
        found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
        raise DataError(
            f"{str(path)!r}: bad IDX magic number {found}; expected {magic} "
            f"({'images' if magic == IMAGES_MAGIC else 'labels'}, unsigned bytes, {ndim}-D)"
        )
    if len(raw) < header:
        raise DataError(f"{str(path)!r}: truncated IDX header ({len(raw)} bytes, need {header})")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(f"{str(path)!r}: IDX header says shape {tuple(dims)} ({expected} bytes) but the file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


@functools.lru_cache(maxsize=8)
def _decode(key: tuple[tuple[str, int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(Path(key[0][0]), IMAGES_MAGIC)
    labels = read_idx(Path(key[1][0]), LABELS_MAGIC).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(f"{key[0][0]!r} has {len(images)} images but {key[1][0]!r} has {len(labels)} labels; they must match")
    if len(labels) and labels.max() > 9:
        raise DataError(f"{key[1][0]!r}: labels go up to {labels.max()}; expected 0..9")
    return images[..., None], labels  # [N,H,W,1]


def load_idx_arrays(title: str, root: Path, subdirs: list[str], train: bool) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N,28,28,1], labels int64 [N]) of an MNIST-format split, cached per process."""
    prefix = "train" if train else "t10k"
    names = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
    layout = [[n, n + ".gz"] for n in names]
    paths, _ = find_files(
        f"{title} ({'train' if train else 'test'})", root, subdirs, [layout],
        hint=" Give root= the folder holding these files or its parent.",
    )
    return _decode(stat_key(paths))


@register_dataset("mnist", info=lambda root=None: MNIST_INFO)
def mnist(root: str | Path | None = None, train: bool = True, augment: bool = False) -> Dataset:
    """MNIST: 60,000 train / 10,000 test 28x28 grey digits from `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`
    in root or root/mnist or root/MNIST/raw. Augment: 3-pixel zero-padded random crop (no flip)."""
    images, labels = load_idx_arrays("MNIST", default_root(root), ["", "mnist", "MNIST/raw", "MNIST"], train)
    return ImageArrayDataset(images, labels, MNIST_INFO, augment=augment, pad=3, flip=False,
                             classes=[str(i) for i in range(10)])


@register_dataset("fashion-mnist", info=lambda root=None: FASHION_MNIST_INFO)
def fashion_mnist(root: str | Path | None = None, train: bool = True, augment: bool = False) -> Dataset:
    """Fashion-MNIST, same IDX names as MNIST, in root or root/fashion-mnist or root/FashionMNIST/raw.

    With root=None: `/usr/share/datasets/fashion-mnist` (Debian's `dataset-fashion-mnist` package).
    Augment: 3-pixel zero-padded random crop + horizontal flip.
    """
    base = Path(root).expanduser() if root is not None else FASHION_MNIST_DEFAULT
    hint = "" if root is not None else " (no root given: on Debian/Ubuntu, `apt-get install dataset-fashion-mnist` installs it here)"
    try:
        images, labels = load_idx_arrays(
            "Fashion-MNIST", base, ["", "fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "FashionMNIST"], train
        )
    except DataError as exc:
        raise DataError(f"{exc}{hint}") from None
    return ImageArrayDataset(images, labels, FASHION_MNIST_INFO, augment=augment, pad=3, flip=True,
                             classes=FASHION_CLASSES)
