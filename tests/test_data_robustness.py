"""Dataset readers never give a silent wrong answer or a raw traceback.

Every malformed input -- wrong label types or values, IDX headers that lie, image folders with
symlink loops, broken links or decompression bombs, mutated files of every format -- ends in a
correct load or a snnconvert error naming the file; plain-data pickles of any protocol load,
and nothing else in a pickle ever runs.
"""
from __future__ import annotations

import gzip
import math
import os
import pickle
import struct
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from snnconvert.data import get_dataset
from snnconvert.data.arrays import ImageArrayDataset
from snnconvert.data.idx import read_idx
from snnconvert.data.labels import check_labels
from snnconvert.data.registry import DatasetInfo
from snnconvert.data.safe_pickle import safe_loads
from snnconvert.errors import DataError, SnnConvertError

# FUZZ_N=3000 in the environment runs the fuzz tests longer (60 examples each keeps the file ~5 s).
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_N", 60)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PROTOCOLS = [2, 3, 4, 5]
N = 2  # images per synthetic batch: small files, so mutations often hit the structure


# ---------------------------------------------------------------- writers


def cifar_batch(n: int = N, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [int(v) for v in rng.integers(0, 10, n)]}


def py2_pickle(d: dict[str, Any]) -> bytes:
    from test_data import py2_pickle as writer  # the hand-written Python 2 layout of the original files

    return writer(d)


def write_cifar_test_batch(folder: Path, batch: dict[Any, Any], fmt: str) -> Path:
    """`batch` as CIFAR-10's test batch in `fmt`: "py2", "p2".."p5" (Python 3 pickle protocols) or "npz"."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "npz":
        path = folder / "test_batch.npz"
        np.savez(path, **batch)
    else:
        path = folder / "test_batch"
        path.write_bytes(py2_pickle(batch) if fmt == "py2" else pickle.dumps(batch, protocol=int(fmt[1:])))
    return path


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()


def write_mnist_test(folder: Path, images: bytes, labels: bytes, gz: bool = False) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = (folder / "t10k-images-idx3-ubyte", folder / "t10k-labels-idx1-ubyte")
    for path, raw in zip(paths, (images, labels)):
        path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    return paths


def mnist_arrays(n: int = N) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def fresh(tmp_path: Path) -> Path:
    """A new empty folder per hypothesis example (the readers cache by path, size and mtime)."""
    return Path(tempfile.mkdtemp(dir=tmp_path))


# ---------------------------------------------------------------- oracles


def assert_valid_dataset(ds: Any, shape: tuple[int, int, int], num_classes: int) -> None:
    """A correct load: int64 labels in range, one per image, images of the declared shape."""
    c, h, w = shape
    assert ds.images.dtype == torch.uint8 and tuple(ds.images.shape[1:]) == (h, w, c)
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (len(ds.images),)
    assert bool(((ds.labels >= 0) & (ds.labels < num_classes)).all())
    if len(ds):
        x, y = ds[0]
        assert tuple(x.shape) == shape and isinstance(y, int)


def load_or_library_error(load: Callable[[], Any], shape: tuple[int, int, int], num_classes: int) -> Any:
    """`load()`'s dataset after checking it is valid, or None if it raised a SnnConvertError."""
    try:
        ds = load()
    except SnnConvertError as exc:
        event(f"refused: {type(exc).__name__}")
        return None
    event("loaded")
    assert_valid_dataset(ds, shape, num_classes)
    return ds


def labels_are_valid(value: Any, n: int, num_classes: int) -> bool:
    """Independent statement of the label contract: 1-D integers (never bools) in range, n of them."""
    if isinstance(value, np.ndarray):
        items = value.tolist() if value.ndim == 1 and value.dtype.kind in "iu" else None
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = None
    if items is None or len(items) != n:
        return False
    return all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and 0 <= v < num_classes for v in items)


def data_is_valid(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 2 and value.shape[1] == 3072


# ---------------------------------------------------------------- 1. labels


BAD_LABELS = [
    pytest.param([3.7, 2.0], "float", id="float-list"),
    pytest.param(np.array([3.7, 2.0]), "float64", id="float-array"),
    pytest.param(np.array([3.0, 2.0], dtype=np.float32), "whole numbers", id="integral-floats"),
    pytest.param(["3", "2"], "str", id="strings"),
    pytest.param(None, "NoneType", id="none"),
    pytest.param([1, None], "NoneType", id="none-item"),
    pytest.param([True, False], "bool", id="bools"),
    pytest.param(np.array([True, False]), "bool", id="bool-array"),
    pytest.param([[1], [2]], "list", id="nested"),
    pytest.param(np.array([[1], [2]]), "shape", id="2-d-array"),
    pytest.param({"a": 1}, "dict", id="dict"),
    pytest.param(7, "int", id="scalar"),
    pytest.param(np.array([1, 2], dtype=object), "object", id="object-array"),
    pytest.param(b"\x01\x02", "bytes", id="bytes"),
]


@pytest.mark.parametrize("fmt", ["p2", "p5"])
@pytest.mark.parametrize(("labels", "detail"), BAD_LABELS)
def test_non_integer_labels_are_refused_naming_file_key_and_expectation(tmp_path, fmt, labels, detail):
    path = write_cifar_test_batch(tmp_path / "c", {"data": cifar_batch()["data"], "labels": labels}, fmt)
    with pytest.raises(DataError) as err:
        get_dataset("cifar10", tmp_path / "c", train=False)
    msg = str(err.value)
    assert str(path) in msg and "'labels'" in msg and "integer class indices in 0..9" in msg and detail in msg


@pytest.mark.parametrize(
    "labels", [np.array([3.7, 2.0]), np.array([3.0, 2.0]), np.array([1, 0], dtype=np.float16), np.array(["1", "2"]), np.array([True, False])]
)
def test_npz_labels_of_a_non_integer_dtype_are_refused(tmp_path, labels):
    path = write_cifar_test_batch(tmp_path / "n", {"data": cifar_batch()["data"], "labels": labels}, "npz")
    with pytest.raises(DataError, match="integer class indices in 0..9") as err:
        get_dataset("cifar10", tmp_path / "n", train=False)
    assert str(path) in str(err.value) and "'labels'" in str(err.value)


@pytest.mark.parametrize("fmt", ["py2", "p2", "p5", "npz"])
@pytest.mark.parametrize("labels", [[0, 10], [-1, 3], [2**70, 0]], ids=["too-high", "negative", "huge"])
def test_out_of_range_labels_are_refused(tmp_path, fmt, labels):
    if fmt in ("npz", "py2") and labels[0] == 2**70:
        pytest.skip("neither numpy's int64 nor the Python 2 writer holds 2**70")
    path = write_cifar_test_batch(tmp_path / "c", {"data": cifar_batch()["data"], "labels": np.array(labels) if fmt == "npz" else labels}, fmt)
    with pytest.raises(DataError, match=r"span .*; expected a 1-D sequence of integer class indices in 0\.\.9") as err:
        get_dataset("cifar10", tmp_path / "c", train=False)
    assert str(path) in str(err.value)


def test_cifar100_labels_are_checked_against_100_classes_under_their_key(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = cifar_batch()["data"]
    (folder / "test").write_bytes(pickle.dumps({"data": data, "fine_labels": [99, 0], "coarse_labels": [0, 0]}, protocol=4))
    assert get_dataset("cifar100", tmp_path, train=False).labels.tolist() == [99, 0]
    (folder / "test").write_bytes(pickle.dumps({"data": data, "fine_labels": [100, 0.5]}, protocol=4))
    with pytest.raises(DataError, match="'fine_labels' must be .* in 0..99; got a list whose item 1 is float 0.5"):
        get_dataset("cifar100", tmp_path, train=False)


@pytest.mark.parametrize(
    "labels",
    [[3, 7], (3, 7), np.array([3, 7], np.uint8), np.array([3, 7], np.int16), np.array([3, 7], ">i4"), [np.int64(3), np.uint8(7)]],
    ids=["list", "tuple", "uint8", "int16", "big-endian", "numpy-scalars"],
)
def test_integer_labels_of_any_integer_type_load(tmp_path, labels):
    write_cifar_test_batch(tmp_path / "c", {"data": cifar_batch()["data"], "labels": labels}, "p4")
    ds = get_dataset("cifar10", tmp_path / "c", train=False)
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == [3, 7]


def test_idx_labels_outside_0_to_9_are_refused_naming_the_file(tmp_path):
    images, labels = mnist_arrays()
    labels[1] = 10
    _, label_path = write_mnist_test(tmp_path / "m", idx_bytes(images, 2051), idx_bytes(labels, 2049))
    with pytest.raises(DataError, match=r"labels span \d+\.\.10; expected") as err:
        get_dataset("mnist", tmp_path / "m", train=False)
    assert str(label_path) in str(err.value)


def test_check_labels_contract():
    out = check_labels([1, 2, 0], 3, "f")
    assert out.dtype == np.int64 and out.tolist() == [1, 2, 0]
    assert check_labels([], 3, "f").shape == (0,) and check_labels(np.zeros(0, np.uint8), 3, "f").dtype == np.int64
    with pytest.raises(DataError, match=r"^f: 'y' must be a 1-D sequence of integer class indices in 0\.\.2; got an array of float64 \(e\.g\. 1\.5\)$"):
        check_labels(np.array([1.5]), 3, "f", "y")
    with pytest.raises(DataError, match=r"^f: labels span 0\.\.3"):
        check_labels(np.array([0, 3]), 3, "f")


def test_image_array_dataset_refuses_float_labels_and_wrong_shapes():
    info = DatasetInfo("toy", 2, (1, 2, 2), (0.0,), (1.0,))
    images = np.zeros((2, 2, 2, 1), np.uint8)
    assert ImageArrayDataset(images, np.array([0, 1]), info).labels.tolist() == [0, 1]
    with pytest.raises(DataError, match="toy: labels must be .*got an array of float64"):
        ImageArrayDataset(images, np.array([0.0, 1.7]), info)
    with pytest.raises(DataError, match=r"toy: images are .*\(2, 3, 3, 1\); expected .*\(1, 2, 2\)"):
        ImageArrayDataset(np.zeros((2, 3, 3, 1), np.uint8), np.array([0, 1]), info)


def test_cifar_data_that_is_not_an_array_is_a_data_error(tmp_path):
    for i, data in enumerate([[[1, 2], [3]], "pixels", None, np.zeros((2, 3072), np.int64)]):
        write_cifar_test_batch(tmp_path / str(i), {"data": data, "labels": [0, 1]}, "p4")
        with pytest.raises(DataError, match=r"'data' is .*; expected uint8 \(N, 3072\)"):
            get_dataset("cifar10", tmp_path / str(i), train=False)


def test_odd_keys_are_reported_not_crashed_on(tmp_path):
    write_cifar_test_batch(tmp_path / "c", {1: "x", "labels": [0, 1], (2, 3): None}, "p4")
    with pytest.raises(DataError, match="no 'data' entry"):
        get_dataset("cifar10", tmp_path / "c", train=False)


# ---------------------------------------------------------------- 2. IDX headers


def test_idx_header_whose_dimensions_overflow_is_refused_with_claim_and_size(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(struct.pack(">IIII", 2051, 2**31, 2**31, 4))  # product 2**64: 0 in int64
    with pytest.raises(DataError) as err:
        read_idx(path, 2051)
    msg = str(err.value)
    assert str(path) in msg and "(2147483648, 2147483648, 4)" in msg and f"{16 + 2**64} bytes" in msg and "file has 16 bytes" in msg


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("count", [2**32 - 1, 3, 1])
def test_idx_header_that_disagrees_with_the_file_size_is_refused(tmp_path, gz, count):
    images, labels = mnist_arrays(2)
    raw = struct.pack(">IIII", 2051, count, 28, 28) + images.tobytes()
    image_path, _ = write_mnist_test(tmp_path / "m", raw, idx_bytes(labels, 2049), gz=gz)
    claimed = 16 + count * 784
    with pytest.raises(DataError) as err:
        get_dataset("mnist", tmp_path / "m", train=False)
    msg = str(err.value)
    assert str(image_path) in msg and f"({count}, 28, 28), i.e. {claimed} bytes" in msg
    more = " or more" if gz and count == 1 else ""
    assert f"the file has {16 + (785 if more else 2 * 784)}{more} bytes" in msg


def test_idx_images_of_another_size_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    write_mnist_test(tmp_path / "m", idx_bytes(rng.integers(0, 256, (2, 20, 20), dtype=np.uint8), 2051), idx_bytes(np.zeros(2, np.uint8), 2049))
    with pytest.raises(DataError, match=r"items of shape \(20, 20\); expected \(28, 28\)"):
        get_dataset("mnist", tmp_path / "m", train=False)


# ---------------------------------------------------------------- 3. image folders


def _png_tree(root: Path, classes: str = "ab", per_class: int = 2) -> None:
    image_mod = pytest.importorskip("PIL.Image")
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            image_mod.new("RGB", (6, 6), (40 * i, 0, 200)).save(root / c / f"{i}.png")


def _symlink(target: str | Path, link: Path) -> None:
    try:
        os.symlink(target, link, target_is_directory=True)
    except (OSError, NotImplementedError):
        pytest.skip("no symlinks here")


def test_imagefolder_symlink_loops_add_no_image(tmp_path):
    root = tmp_path / "images"
    _png_tree(root)
    _symlink("..", root / "a" / "up")  # to the split folder: every class again
    _symlink("../a", root / "a" / "self")  # to its own class folder
    (root / "b" / "sub").mkdir()
    _symlink("../..", root / "b" / "sub" / "twoup")
    _symlink("..", root / "b" / "sub" / "back")  # to b
    _symlink(tmp_path, root / "b" / "ancestor")  # to a folder above the image folder
    ds = get_dataset("imagefolder", root, image_size=4)
    assert len(ds) == 4 and ds.labels.tolist() == [0, 0, 1, 1]


def test_imagefolder_follows_symlinked_directories_once(tmp_path):
    root, extra = tmp_path / "images", tmp_path / "extra"
    _png_tree(root)
    _png_tree(extra, classes="x", per_class=3)
    _symlink(extra / "x", root / "a" / "more")
    _symlink(extra / "x", root / "a" / "same-again")
    _symlink(extra / "x", root / "c")  # a class folder that is a link
    ds = get_dataset("imagefolder", root, image_size=4)
    assert ds.classes == ["a", "b", "c"] and ds.labels.tolist() == [0] * 5 + [1] * 2 + [2] * 3


def test_imagefolder_class_folder_linking_to_its_parent_is_refused(tmp_path):
    root = tmp_path / "images"
    _png_tree(root)
    _symlink("..", root / "c")
    with pytest.raises(DataError, match=r"class folder '.*/c' is a link to .*contains the image folder itself \(a loop\)"):
        get_dataset("imagefolder", root, image_size=4)


def test_imagefolder_dangling_symlink_is_a_data_error_naming_it(tmp_path):
    root = tmp_path / "images"
    _png_tree(root)
    try:
        os.symlink("nowhere.png", root / "b" / "gone.png")
    except (OSError, NotImplementedError):
        pytest.skip("no symlinks here")
    with pytest.raises(DataError, match=r"gone.png' is a symbolic link to 'nowhere.png', which does not exist"):
        get_dataset("imagefolder", root, image_size=4)


@pytest.mark.parametrize("limit", [10, 30], ids=["over-2x-limit-error", "over-limit-warning"])
def test_imagefolder_decompression_bomb_is_a_data_error(tmp_path, monkeypatch, limit):
    image_mod = pytest.importorskip("PIL.Image")
    root = tmp_path / "images"
    _png_tree(root)  # 36-pixel images: > 2 * 10 (Pillow raises), > 30 but < 2 * 30 (Pillow only warns)
    monkeypatch.setattr(image_mod, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(DataError, match=r"0.png' is too large to decode safely .*MAX_IMAGE_PIXELS"):
        get_dataset("imagefolder", root, image_size=4)


def test_imagefolder_undecodable_image_is_a_data_error(tmp_path):
    root = tmp_path / "images"
    _png_tree(root)
    good = (root / "a" / "0.png").read_bytes()
    (root / "a" / "1.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"cannot decode image .*1.png"):
        get_dataset("imagefolder", root, image_size=4)


# ---------------------------------------------------------------- 4. the safe unpickler


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("labels_as", ["ints", "numpy-scalars", "array"])
def test_python3_repickled_cifar_batch_loads(tmp_path, protocol, labels_as):
    batch = cifar_batch(3, seed=protocol)
    labels = {"ints": batch["labels"], "numpy-scalars": list(np.array(batch["labels"])), "array": np.array(batch["labels"])}[labels_as]
    repickled = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": labels,
        b"data": batch["data"],
        b"filenames": [b"a.png", b"", b"c.png"],
    }
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(repickled, f, protocol=protocol)
    ds = get_dataset("cifar10", tmp_path, train=False)
    assert ds.labels.tolist() == batch["labels"]
    assert torch.equal(ds.images, torch.from_numpy(batch["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()))


ARRAYS = [
    np.zeros((2, 3), np.uint8),
    np.arange(5),
    np.float32([1.5, -2]),
    np.array([True]),
    np.array(["ab", "c"]),
    np.array([b"x"]),
    np.asfortranarray(np.arange(6).reshape(2, 3)),
    np.arange(12).reshape(3, 4)[:, ::2],
    np.array(3),
    np.zeros((0, 3)),
    np.array([1, 2], dtype=">i4"),
    np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
    np.array([1, "a", None], dtype=object),
    np.int64(3),
    np.float32(1.5),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("value", ARRAYS, ids=lambda a: f"{type(a).__name__}-{a.dtype}-{a.shape}")
def test_numpy_values_load_as_plain_pickle_loads_them(protocol, value):
    blob = pickle.dumps({"v": value}, protocol=protocol)
    expected, got = pickle.loads(blob)["v"], safe_loads(blob)["v"]
    assert type(got) is type(expected) and got.dtype == expected.dtype and got.shape == expected.shape
    assert np.array_equal(np.asarray(got), np.asarray(expected))


PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.lists(inner, max_size=4).map(tuple)
    | st.dictionaries(st.text(max_size=4) | st.binary(max_size=4) | st.integers(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(value=PLAIN, protocol=st.sampled_from(PROTOCOLS))
def test_plain_python3_data_of_every_protocol_round_trips(value, protocol):
    assert safe_loads(pickle.dumps(value, protocol=protocol)) == value


class _Call:
    """Pickles as a call of `fn(*args)`: what a malicious dataset file would contain."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("make", ["os.system", "eval", "exec", "getattr", "subprocess", "numpy.load"])
def test_arbitrary_globals_are_refused_and_nothing_runs(tmp_path, protocol, make):
    import subprocess

    marker = tmp_path / "executed"
    payload = {
        "os.system": _Call(os.system, f"touch {marker}"),
        "eval": _Call(eval, f"open({str(marker)!r}, 'w')"),
        "exec": _Call(exec, f"open({str(marker)!r}, 'w')"),
        "getattr": _Call(getattr, _Call(__import__, "os"), "system"),
        "subprocess": _Call(subprocess.call, ["touch", str(marker)]),
        "numpy.load": _Call(np.load, str(marker)),
    }[make]
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({"data": payload, "labels": [0]}, protocol=protocol))
    with pytest.raises(DataError, match="not a safe dataset pickle .*refusing") as err:
        get_dataset("cifar10", tmp_path, train=False)
    assert str(folder / "test_batch") in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "blob",
    [
        b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.",  # encode with another codec
        b"\x80\x02c_codecs\nencode\nK\x05X\x06\x00\x00\x00latin1\x86R.",  # encode of a non-str
        b"\x80\x02c__builtin__\nbytes\nJ\x00\xca\x9a\x3b\x85R.",  # bytes(10**9): would allocate a GB
        b"\x80\x04\x8c\x05numpy\x8c\x0endarray.tofile\x93.",  # a method by dotted name
        b"\x80\x02X\x01\x00\x00\x00aQ.",  # a persistent id
    ],
    ids=["codecs-rot13", "codecs-int", "bytes-n", "dotted-name", "persistent-id"],
)
def test_allowed_helpers_cannot_be_called_another_way(blob):
    with pytest.raises(DataError, match="not a safe dataset pickle"):
        safe_loads(blob)


# ---------------------------------------------------------------- 5. fuzzing every format


def _mutate(raw: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(raw)
    for pos, value in flips:
        out[pos % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


FLIPS = st.lists(st.tuples(st.one_of(st.integers(0, 300), st.integers(0, 2**20)), st.integers(0, 255)), max_size=4)
CUTS = st.none() | st.integers(0, 400) | st.integers(0, 2**20)


@pytest.mark.filterwarnings("ignore::numpy.exceptions.VisibleDeprecationWarning")  # numpy on a garbled dtype
@FUZZ
@given(fmt=st.sampled_from(["py2", "p2", "p3", "p4", "p5", "npz"]), flips=FLIPS, cut=CUTS)
def test_fuzz_mutated_cifar_files_load_correctly_or_raise_a_library_error(tmp_path, fmt, flips, cut):
    folder = fresh(tmp_path)
    path = write_cifar_test_batch(folder, cifar_batch(), fmt)
    path.write_bytes(_mutate(path.read_bytes(), flips, None if cut is None else cut % (path.stat().st_size + 1)))
    load_or_library_error(lambda: get_dataset("cifar10", folder, train=False), (3, 32, 32), 10)


@FUZZ
@given(which=st.sampled_from([0, 1]), gz=st.booleans(), flips=FLIPS, cut=CUTS)
def test_fuzz_mutated_idx_files_load_correctly_or_raise_a_library_error(tmp_path, which, gz, flips, cut):
    images, labels = mnist_arrays()
    folder = fresh(tmp_path)
    paths = write_mnist_test(folder, idx_bytes(images, 2051), idx_bytes(labels, 2049), gz=gz)
    raw = paths[which].read_bytes()
    paths[which].write_bytes(_mutate(raw, flips, None if cut is None else cut % (len(raw) + 1)))
    load_or_library_error(lambda: get_dataset("mnist", folder, train=False), (1, 28, 28), 10)


INT_DTYPES = ["uint8", "int8", "int16", "uint16", "int64"]
VALID_VALUES = st.one_of(  # valid data or labels (which of them depends on the field), in several types
    st.lists(st.integers(0, 9), min_size=N, max_size=N),
    st.tuples(st.sampled_from(INT_DTYPES), st.integers(0, 9)).map(lambda t: np.full(N, t[1]).astype(t[0])),
    st.integers(0, 255).map(lambda v: np.full((N, 3072), v, np.uint8)),
)
OTHER_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 12),
    st.floats(allow_nan=False, width=32),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.lists(st.integers(-2, 12), min_size=0, max_size=4),
    st.lists(st.one_of(st.integers(0, 9), st.floats(0, 9, width=32), st.booleans(), st.none(), st.text(max_size=1)), max_size=3),
    st.tuples(st.sampled_from([*INT_DTYPES, "float32", "bool"]),
              st.sampled_from([(N,), (N, 3072), (N + 1,), (N, 3072 // 2), (), (N, 1)]),
              st.integers(-2, 300)).map(lambda t: np.full(t[1], t[2]).astype(t[0])),
)
VALUES = VALID_VALUES | OTHER_VALUES


@FUZZ
@given(fmt=st.sampled_from(["p2", "p3", "p4", "p5", "npz"]), field=st.sampled_from(["data", "labels"]), value=VALUES)
def test_fuzz_replaced_cifar_entry_loads_iff_it_is_valid(tmp_path, fmt, field, value):
    batch = cifar_batch()
    batch[field] = value
    if fmt == "npz":  # .npz stores arrays: the entry is what np.asarray makes of the value
        try:
            stored = np.asarray(batch[field])
        except ValueError:  # ragged: cannot be written at all
            return
        batch[field] = stored
    valid = data_is_valid(batch["data"]) and labels_are_valid(batch["labels"], len(batch["data"]), 10)
    folder = fresh(tmp_path)
    write_cifar_test_batch(folder, batch, fmt)
    ds = load_or_library_error(lambda: get_dataset("cifar10", folder, train=False), (3, 32, 32), 10)
    assert (ds is not None) == valid
    if ds is not None:
        assert ds.labels.tolist() == [int(v) for v in batch["labels"]]


@FUZZ
@given(
    which=st.sampled_from(["magic", "count", "rows", "cols", "label-magic", "label-count", "label"]),
    value=st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 30), st.sampled_from([2049, 2051, N])),
    gz=st.booleans(),
)
def test_fuzz_replaced_idx_field_loads_iff_it_is_valid(tmp_path, which, value, gz):
    images, labels = mnist_arrays()
    image_raw, label_raw = bytearray(idx_bytes(images, 2051)), bytearray(idx_bytes(labels, 2049))
    offsets = {"magic": 0, "count": 4, "rows": 8, "cols": 12, "label-magic": 0, "label-count": 4}
    if which == "label":  # one label byte replaced by a byte value
        value %= 256
        label_raw[8] = value
        valid = value < 10
    else:
        raw = label_raw if which.startswith("label") else image_raw
        before = raw[offsets[which] : offsets[which] + 4]
        raw[offsets[which] : offsets[which] + 4] = struct.pack(">I", value)
        valid = raw[offsets[which] : offsets[which] + 4] == before
    folder = fresh(tmp_path)
    write_mnist_test(folder, bytes(image_raw), bytes(label_raw), gz=gz)
    ds = load_or_library_error(lambda: get_dataset("mnist", folder, train=False), (1, 28, 28), 10)
    assert (ds is not None) == valid
    if ds is not None:
        assert ds.labels.tolist() == list(label_raw[8:])


def test_fuzz_helpers_agree_with_the_original_files(tmp_path):
    """The writers above produce files the readers load (so the fuzz tests start from valid input)."""
    for fmt in ["py2", "p2", "p3", "p4", "p5", "npz"]:
        folder = fresh(tmp_path)
        batch = cifar_batch()
        write_cifar_test_batch(folder, batch, fmt)
        ds = get_dataset("cifar10", folder, train=False)
        assert ds.labels.tolist() == batch["labels"] and math.prod(ds.images.shape) == N * 3072
    for gz in (False, True):
        folder = fresh(tmp_path)
        images, labels = mnist_arrays()
        write_mnist_test(folder, idx_bytes(images, 2051), idx_bytes(labels, 2049), gz=gz)
        assert get_dataset("mnist", folder, train=False).labels.tolist() == labels.tolist()
