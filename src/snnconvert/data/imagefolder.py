"""Class-per-folder image trees (torchvision ImageFolder / ImageNet layout), decoded with Pillow."""
from __future__ import annotations

import functools
import os
import stat
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..errors import ConfigError, DataError
from .arrays import ImageArrayDataset
from .registry import DatasetInfo, register_dataset

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def split_dir(root: str | Path, train: bool) -> Path:
    """root/train (train) or root/val, else root/test (test) if present, else root itself."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(
            f"imagefolder: directory {str(base)!r} does not exist; expected root/<class>/<image> "
            f"(or root/train/<class>/... and root/val/<class>/...) with {', '.join(IMG_EXTENSIONS)} images"
        )
    for name in (["train"] if train else ["val", "test"]):
        if (base / name).is_dir():
            return base / name
    return base


def find_classes(directory: Path) -> list[str]:
    """Class names: the sub-folders of `directory`, sorted (as torchvision does)."""
    classes = sorted(e.name for e in os.scandir(directory) if e.is_dir())
    if not classes:
        raise DataError(f"imagefolder: no class folders in {str(directory)!r}; expected {directory}/<class>/<image>")
    return classes


def _is_within(path: str, ancestor: str) -> bool:
    """Whether real path `path` is `ancestor` or lies inside it."""
    return os.path.commonpath([path, ancestor]) == ancestor


def _walk_error(exc: OSError) -> None:
    """os.walk's onerror: an unlistable folder is an error, not a silently missing part of the data."""
    raise DataError(f"imagefolder: cannot list {exc.filename!r} ({exc.strerror}); make it readable or remove it")


def walk_once(top: Path, fence: Path) -> Iterator[tuple[str, list[str]]]:
    """(directory, file names) under `top`, following directory symlinks, each real directory once.

    A symlinked directory is entered unless its target was already walked (a second link, or a
    loop back into `top`) or contains `fence` (the split folder: a link up to it or above would
    walk every class again); such a link is skipped, so no image is ever counted twice.
    An unreadable directory is a DataError, not silently skipped.
    """
    fence_real = os.path.realpath(fence)
    seen = {os.path.realpath(top)}
    for dirpath, dirnames, files in os.walk(top, followlinks=True, onerror=_walk_error):
        kept = []
        for name in sorted(dirnames):
            real = os.path.realpath(os.path.join(dirpath, name))
            if real not in seen and not _is_within(fence_real, real):
                seen.add(real)
                kept.append(name)
        dirnames[:] = kept
        yield dirpath, sorted(files)


def sample_stat(path: str) -> tuple[int, int]:
    """(size, mtime_ns) of image file `path`; DataError for a broken symlink or a non-regular file."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if os.path.islink(path):
            raise DataError(
                f"imagefolder: {path!r} is a symbolic link to {os.readlink(path)!r}, which does not exist "
                f"or cannot be read; restore the target or remove the link"
            ) from None
        raise DataError(f"imagefolder: cannot read {path!r} ({exc.strerror}); make it readable or remove it") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"imagefolder: {path!r} is not a regular file; expected an image file, remove or rename it")
    return st.st_size, st.st_mtime_ns


def list_samples(directory: Path, classes: list[str]) -> list[tuple[str, int]]:
    """(path, class index) for every image, class by class, paths sorted within a class.

    Each class folder is walked with `walk_once` (directory symlinks followed, but never into a
    loop or twice into the same directory).
    """
    samples: list[tuple[str, int]] = []
    empty: list[str] = []
    for index, name in enumerate(classes):
        top = directory / name
        if _is_within(os.path.realpath(directory), os.path.realpath(top)):
            raise DataError(
                f"imagefolder: class folder {str(top)!r} is a link to {os.path.realpath(top)!r}, which contains "
                f"the image folder itself (a loop); point it at a folder of images or remove it"
            )
        found = []
        for dirpath, files in sorted(walk_once(top, directory)):
            found += [os.path.join(dirpath, f) for f in files if f.lower().endswith(IMG_EXTENSIONS)]
        if not found:
            empty.append(name)
        samples += [(p, index) for p in found]
    if empty:
        raise DataError(
            f"imagefolder: no images in class folder(s) {', '.join(empty)} under {str(directory)!r}; "
            f"expected files ending in {', '.join(IMG_EXTENSIONS)}"
        )
    return samples


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise DataError(
            "imagefolder needs the Pillow package to decode images, and it is not installed; `pip install Pillow`"
        ) from None
    return Image


def _decode_rgb(path: str) -> PILImage:
    """The image at `path`, fully decoded, as RGB; DataError for anything Pillow cannot or will not decode.

    Images over Pillow's decompression-bomb limit (`PIL.Image.MAX_IMAGE_PIXELS` pixels) are
    refused -- also those between 1x and 2x the limit, which Pillow itself only warns about.
    """
    image_mod = _pil()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", image_mod.DecompressionBombWarning)
            with image_mod.open(path) as img:
                return img.convert("RGB")
    except (image_mod.DecompressionBombError, image_mod.DecompressionBombWarning) as exc:
        raise DataError(
            f"imagefolder: {path!r} is too large to decode safely ({exc}); remove it, or if it is "
            f"trusted raise PIL.Image.MAX_IMAGE_PIXELS (now {image_mod.MAX_IMAGE_PIXELS})"
        ) from None
    except Exception as exc:  # Pillow's decoders raise many types on a damaged file
        raise DataError(f"imagefolder: cannot decode image {path!r} ({type(exc).__name__}: {exc}); remove or replace it") from None


def load_image(path: str, image_size: int, resize_size: int) -> np.ndarray:
    """RGB uint8 [image_size, image_size, 3]: shorter side resized (bilinear) to resize_size, then center crop."""
    image_mod = _pil()
    img = _decode_rgb(path)
    w, h = img.size
    if w <= h:
        new_w, new_h = resize_size, max(1, int(resize_size * h / w))
    else:
        new_w, new_h = max(1, int(resize_size * w / h)), resize_size
    img = img.resize((new_w, new_h), image_mod.BILINEAR)
    top = int(round((new_h - image_size) / 2.0))
    left = int(round((new_w - image_size) / 2.0))
    img = img.crop((left, top, left + image_size, top + image_size))
    return np.asarray(img, dtype=np.uint8)


@functools.lru_cache(maxsize=4)
def _decode(
    samples: tuple[tuple[str, int, int, int], ...], image_size: int, resize_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Decode every (path, class, size, mtime_ns) sample once per process (the stats key the cache)."""
    images = np.empty((len(samples), image_size, image_size, 3), dtype=np.uint8)
    for i, sample in enumerate(tqdm(samples, desc="decoding images", disable=len(samples) < 1000, leave=False)):
        images[i] = load_image(sample[0], image_size, resize_size)
    return images, np.array([s[1] for s in samples], dtype=np.int64)


def _sizes(image_size: int, resize_size: int | None) -> tuple[int, int]:
    if int(image_size) < 1:
        raise ConfigError(f"imagefolder: image_size must be a positive int, got {image_size!r}")
    resize = int(resize_size) if resize_size is not None else int(round(image_size * 256 / 224))
    if resize < image_size:
        raise ConfigError(f"imagefolder: resize_size ({resize}) must be >= image_size ({image_size})")
    return int(image_size), resize


def imagefolder_info(root: str | Path | None = None, image_size: int = 224, resize_size: int | None = None) -> DatasetInfo:
    """DatasetInfo of an image folder: classes counted from root's (train) folder; ImageNet mean/std."""
    if root is None:
        raise ConfigError("imagefolder: the number of classes depends on the folder; pass root=<image folder>")
    size, _ = _sizes(image_size, resize_size)
    classes = find_classes(split_dir(root, train=True))
    return DatasetInfo("imagefolder", len(classes), (3, size, size), IMAGENET_MEAN, IMAGENET_STD)


@register_dataset("imagefolder", info=imagefolder_info)
def imagefolder(
    root: str | Path | None = None,
    train: bool = True,
    augment: bool = False,
    image_size: int = 224,
    resize_size: int | None = None,
) -> Dataset:
    """Images under root/<class>/... (or root/train/<class>/..., root/val|test/<class>/... by split).

    Classes are the folder names sorted alphabetically (torchvision's indices). Each image is
    converted to RGB, its shorter side resized to `resize_size` (default image_size * 256/224),
    center-cropped to image_size, and the whole split cached once in memory as uint8 -- meant
    for small folders or subsets (ImageNet-val at 224 px takes 7.5 GB). Normalised with ImageNet's
    mean/std. Augment: zero-padded (image_size // 8) random crop + horizontal flip.

    Symbolic links: class folders and folders inside them may be directory symlinks, and are
    followed -- but each real directory at most once per class, and never one that contains the
    split folder, so a link loop adds no image (a class folder that is itself such a loop is a
    DataError). Two class folders linking to the same directory do share its images.
    A broken symlink to an image, an unreadable folder, an undecodable image or one over Pillow's
    decompression-bomb limit (`PIL.Image.MAX_IMAGE_PIXELS`) is a DataError naming the file;
    nothing is skipped silently.
    """
    if root is None:
        raise ConfigError("imagefolder: pass root=<folder with one sub-folder of images per class>")
    size, resize = _sizes(image_size, resize_size)
    directory = split_dir(root, train)
    classes = find_classes(directory)
    samples = [(path, label, *sample_stat(path)) for path, label in list_samples(directory, classes)]
    images, labels = _decode(tuple(samples), size, resize)
    info = DatasetInfo("imagefolder", len(classes), (3, size, size), IMAGENET_MEAN, IMAGENET_STD)
    return ImageArrayDataset(images, labels, info, augment=augment, pad=size // 8, flip=True, classes=classes)
