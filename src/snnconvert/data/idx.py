"""MNIST and Fashion-MNIST from the original IDX files, gzipped or not."""
from __future__ import annotations

import functools
import gzip
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
from torch.utils.data import Dataset

from ..errors import DataError
from .arrays import ImageArrayDataset
from .labels import check_labels
from .locate import find_files, stat_key
from .registry import DatasetInfo, default_root, register_dataset

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
IMAGE_SIZE = (28, 28)  # (rows, cols) of every MNIST-format image
FASHION_MNIST_DEFAULT = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist

MNIST_INFO = DatasetInfo("mnist", 10, (1, 28, 28), (0.1307,), (0.3081,))
FASHION_MNIST_INFO = DatasetInfo("fashion-mnist", 10, (1, 28, 28), (0.2860,), (0.3530,))
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


_CHUNK = 1 << 24


def _open_idx(path: Path) -> BinaryIO:
    """`path` opened for reading, through gzip if it starts with the gzip signature."""
    with path.open("rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else path.open("rb")  # type: ignore[return-value]


def _read_at_most(f: BinaryIO, n: int) -> bytes:
    """Up to `n` bytes of `f`, in chunks: memory grows with what the file holds, not with `n`."""
    parts, left = [], n
    while left > 0:
        part = f.read(min(left, _CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _header_dims(path: Path, head: bytes, magic: int, item_shape: tuple[int, ...]) -> list[int]:
    """The dimensions in IDX header `head` (magic + one big-endian uint32 per dimension).

    DataError for a magic other than `magic`, a short header, or items (the dimensions after
    the first) other than `item_shape` when it is given.
    """
    ndim = magic & 0xFF
    found = int.from_bytes(head[:4], "big") if len(head) >= 4 else None
    if found != magic:
        raise DataError(
            f"{str(path)!r}: bad IDX magic number {found}; expected {magic} "
            f"({'images' if magic == IMAGES_MAGIC else 'labels'}, unsigned bytes, {ndim}-D)"
        )
    if len(head) < 4 + 4 * ndim:
        raise DataError(f"{str(path)!r}: truncated IDX header ({len(head)} bytes, need {4 + 4 * ndim})")
    dims = [int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if item_shape and tuple(dims[1:]) != item_shape:
        raise DataError(f"{str(path)!r}: IDX header says items of shape {tuple(dims[1:])}; expected {item_shape}")
    return dims


def _read_payload(f: BinaryIO, header_len: int, claimed: int) -> tuple[bytes, int]:
    """(the payload, the file's size) -- the payload only when the size is what the header claims.

    A raw file's size comes from the file system; a gzipped one is decompressed up to one byte
    past the claim (enough to tell it is too long), never further.
    """
    if isinstance(f, gzip.GzipFile):
        payload = _read_at_most(f, claimed - header_len + 1)
        return payload, header_len + len(payload)
    size = os.fstat(f.fileno()).st_size
    return (f.read() if size == claimed else b""), size


def read_idx(path: Path, magic: int, item_shape: tuple[int, ...] = ()) -> np.ndarray:
    """Parse an IDX file (gzipped if it starts with the gzip signature) of unsigned bytes.

    The 4-byte big-endian magic must equal `magic` (2051 images, 2049 labels), the dimensions
    after the first must equal `item_shape` when given (e.g. (28, 28)), and the file must hold
    exactly the header plus the product of its dimensions in bytes; otherwise DataError, raised
    before reading a payload the header does not match (a header claiming terabytes costs nothing).
    """
    header_len = 4 + 4 * (magic & 0xFF)
    try:
        with _open_idx(path) as f:
            gz = isinstance(f, gzip.GzipFile)
            dims = _header_dims(path, f.read(header_len), magic, item_shape)
            claimed = header_len + math.prod(dims)
            payload, size = _read_payload(f, header_len, claimed)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{str(path)!r}: cannot read or gunzip ({exc}); expected an IDX file, raw or .gz") from None
    if size != claimed:
        more = " or more" if gz and size > claimed else ""
        raise DataError(
            f"{str(path)!r}: IDX header says shape {tuple(dims)}, i.e. {claimed} bytes{' uncompressed' if gz else ''}, "
            f"but the file has {size}{more} bytes; it is truncated, padded or not an IDX file"
        )
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims).copy()


@functools.lru_cache(maxsize=8)
def _decode(key: tuple[tuple[str, int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(Path(key[0][0]), IMAGES_MAGIC, item_shape=IMAGE_SIZE)
    labels = check_labels(read_idx(Path(key[1][0]), LABELS_MAGIC), 10, repr(key[1][0]))
    if len(images) != len(labels):
        raise DataError(f"{key[0][0]!r} has {len(images)} images but {key[1][0]!r} has {len(labels)} labels; they must match")
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
