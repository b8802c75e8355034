"""snnconvert.data: every on-disk format on tiny synthetic stand-ins, plus the real data when present."""
from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from snnconvert.data import (
    calibration_subset,
    dataset_as_tensors,
    dataset_info,
    get_dataset,
    list_datasets,
    make_loader,
)
from snnconvert.data.safe_pickle import safe_load, safe_loads
from snnconvert.errors import CalibrationError, ConfigError, DataError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CIFAR10_MEAN = np.array([0.4914, 0.4822, 0.4465])
CIFAR10_STD = np.array([0.2470, 0.2435, 0.2616])


# ---------------------------------------------------------------- writers of the original formats


def _pstr(b: bytes) -> bytes:
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<i", len(b)) + b)


def _pint(i: int) -> bytes:
    return (b"K" + bytes([i])) if 0 <= i < 256 else (b"J" + struct.pack("<i", i))


def _pndarray(a: np.ndarray) -> bytes:
    """A 2-D uint8 array as Python 2 + numpy 1 pickled it (numpy.core names, str payload)."""
    return (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _pint(0) + b"\x85" + _pstr(b"b") + b"\x87R"
        + b"(" + _pint(1) + _pint(a.shape[0]) + _pint(a.shape[1]) + b"\x86"
        + b"cnumpy\ndtype\n" + _pstr(b"u1") + _pint(0) + _pint(1) + b"\x87R"
        + b"(" + _pint(3) + _pstr(b"|") + b"NNN" + b"J\xff\xff\xff\xff" * 2 + _pint(0) + b"tb"
        + b"\x89" + _pstr(a.tobytes()) + b"tb"
    )


def py2_pickle(d: dict) -> bytes:
    """Protocol-2 bytes shaped like the original cifar-10-batches-py files (written by Python 2)."""
    out = b"\x80\x02}("
    for k, v in d.items():
        out += _pstr(k.encode())
        if isinstance(v, np.ndarray):
            out += _pndarray(v)
        elif isinstance(v, list):
            out += b"](" + b"".join(_pint(i) for i in v) + b"e"
        else:
            out += _pstr(v.encode())
    return out + b"u."


def fake_cifar(n: int, num_classes: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, num_classes, n)]


def write_cifar10_pickles(folder: Path, per_batch: int = 3, test: int = 4) -> dict[str, tuple[np.ndarray, list[int]]]:
    folder.mkdir(parents=True)
    batches = {f"data_batch_{i}": fake_cifar(per_batch, 10, i) for i in range(1, 6)}
    batches["test_batch"] = fake_cifar(test, 10, 99)
    for name, (data, labels) in batches.items():
        (folder / name).write_bytes(py2_pickle({"batch_label": name, "labels": labels, "data": data}))
    return batches


def write_cifar10_npz(folder: Path, batches: dict[str, tuple[np.ndarray, list[int]]]) -> None:
    folder.mkdir(parents=True)
    for name, (data, labels) in batches.items():
        np.savez(folder / f"{name}.npz", data=data, labels=np.array(labels, dtype=np.uint8))


def write_idx(path: Path, array: np.ndarray, magic: int | None = None, gz: bool = False) -> None:
    magic = magic if magic is not None else (2051 if array.ndim == 3 else 2049)
    raw = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)


def write_mnist(folder: Path, gz: bool, n_train: int = 6, n_test: int = 4) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for name, a in arrays.items():
        write_idx(folder / name, a, gz=gz)
    return arrays


# ---------------------------------------------------------------- registry


def test_registry_names_and_unknown_name():
    assert set(list_datasets()) >= {"digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "imagefolder"}
    with pytest.raises(ConfigError, match="cifar10") as err:
        get_dataset("cifar-10")
    assert "known datasets" in str(err.value)
    with pytest.raises(ConfigError, match="unknown dataset"):
        dataset_info("svhn")
    with pytest.raises(ConfigError, match="image_size"):
        get_dataset("digits", image_size=32)


def test_dataset_info_values():
    info = dataset_info("cifar10")
    assert (info.num_classes, info.input_shape) == (10, (3, 32, 32))
    assert info.mean == pytest.approx(tuple(CIFAR10_MEAN)) and len(info.std) == 3
    assert dataset_info("cifar100").num_classes == 100
    assert dataset_info("mnist").input_shape == (1, 28, 28)
    assert dataset_info("fashion-mnist").input_shape == (1, 28, 28)
    with pytest.raises(ConfigError, match="root"):
        dataset_info("imagefolder")


# ---------------------------------------------------------------- digits


def test_digits_split_normalisation_and_determinism():
    pytest.importorskip("sklearn")
    train, test = get_dataset("digits"), get_dataset("digits", train=False)
    assert (len(train), len(test)) == (1437, 360)
    x, y = train[0]
    assert x.dtype == torch.float32 and x.shape == (1, 8, 8) and isinstance(y, int)
    xs, ys = dataset_as_tensors(train)
    assert abs(xs.mean().item()) < 1e-4 and abs(xs.std(unbiased=False).item() - 1) < 1e-4
    counts = np.bincount(dataset_as_tensors(test)[1].numpy(), minlength=10)
    assert counts.sum() == 360 and counts.min() >= 35 and counts.max() <= 37  # stratified
    info = dataset_info("digits")
    assert info.input_shape == (1, 8, 8) and 0 < info.mean[0] < 1
    # the 17 grey levels map exactly onto v / 16
    levels = torch.unique(xs * info.std[0] + info.mean[0]) * 16
    assert torch.allclose(levels, levels.round(), atol=1e-4) and len(levels) == 17
    again = dataset_as_tensors(get_dataset("digits", train=False))
    assert torch.equal(again[0], dataset_as_tensors(test)[0])


# ---------------------------------------------------------------- CIFAR


def _expected_pixels(data: np.ndarray, index: int) -> torch.Tensor:
    img = data[index].reshape(3, 32, 32).astype(np.float64) / 255.0
    return torch.tensor((img - CIFAR10_MEAN[:, None, None]) / CIFAR10_STD[:, None, None], dtype=torch.float32)


def test_cifar10_pickle_layout(tmp_path):
    batches = write_cifar10_pickles(tmp_path / "cifar-10-batches-py")
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):  # parent or the folder itself
        train = get_dataset("cifar10", root)
        assert len(train) == 15
        x, y = train[4]  # batch 2, image 1
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert y == batches["data_batch_2"][1][1]
        assert torch.allclose(x, _expected_pixels(batches["data_batch_2"][0], 1), atol=1e-5)
    test = get_dataset("cifar10", tmp_path, train=False)
    assert len(test) == 4 and [test[i][1] for i in range(4)] == batches["test_batch"][1]
    assert test.info.name == "cifar10" and test.classes[0] == "airplane"


def test_cifar10_npz_layout_matches_pickles_and_is_cached(tmp_path):
    batches = write_cifar10_pickles(tmp_path / "p" / "cifar-10-batches-py")
    write_cifar10_npz(tmp_path / "n" / "cifar10", batches)
    from_pickle = dataset_as_tensors(get_dataset("cifar10", tmp_path / "p", train=True))
    npz_set = get_dataset("cifar10", tmp_path / "n", train=True)
    from_npz = dataset_as_tensors(npz_set)
    assert torch.equal(from_pickle[0], from_npz[0]) and torch.equal(from_pickle[1], from_npz[1])
    assert from_npz[1].dtype == torch.int64
    again = get_dataset("cifar10", tmp_path / "n" / "cifar10", train=True)
    assert again.images.data_ptr() == npz_set.images.data_ptr()  # decoded once per process


def test_cifar100_pickle_layout(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for split, n in (("train", 5), ("test", 3)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        fine[0] = 99
        obj = {"filenames": [f"{i}.png" for i in range(n)], "fine_labels": fine, "coarse_labels": [0] * n, "data": data}
        (folder / split).write_bytes(pickle.dumps(obj, protocol=4))
    train = get_dataset("cifar100", tmp_path)
    assert len(train) == 5 and train[0][1] == 99 and train[0][0].shape == (3, 32, 32)
    assert len(get_dataset("cifar100", folder, train=False)) == 3
    assert train.info.num_classes == 100


def test_cifar_augmentation_shape_and_determinism(tmp_path):
    write_cifar10_pickles(tmp_path / "cifar-10-batches-py", per_batch=4)
    plain = get_dataset("cifar10", tmp_path)
    aug = get_dataset("cifar10", tmp_path, augment=True)
    x_plain, _ = dataset_as_tensors(plain)

    def epoch(seed: int) -> torch.Tensor:
        return torch.cat([x for x, _ in make_loader(aug, batch_size=8, shuffle=True, seed=seed)])

    a, b, c = epoch(0), epoch(0), epoch(1)
    assert a.shape == (20, 3, 32, 32)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, x_plain)
    # a crop of a zero-padded image: padding shows as the normalised value of black
    black = torch.tensor(-CIFAR10_MEAN / CIFAR10_STD, dtype=torch.float32)
    assert torch.isclose(a.permute(0, 2, 3, 1), black, atol=1e-5).all(-1).any()


def test_make_loader_order_is_seeded(tmp_path):
    write_cifar10_pickles(tmp_path / "c", per_batch=4)
    ds = get_dataset("cifar10", tmp_path / "c")
    labels = lambda seed: torch.cat([y for _, y in make_loader(ds, 6, shuffle=True, seed=seed)])  # noqa: E731
    assert torch.equal(labels(3), labels(3))
    unshuffled = torch.cat([y for _, y in make_loader(ds, 6, shuffle=False)])
    assert torch.equal(unshuffled, dataset_as_tensors(ds)[1])
    assert len(make_loader(ds, 6, shuffle=False, drop_last=True)) == 3
    with pytest.raises(ConfigError, match="batch_size"):
        make_loader(ds, 0, shuffle=False)


def test_calibration_subset(tmp_path):
    write_cifar10_pickles(tmp_path / "c")
    ds = get_dataset("cifar10", tmp_path / "c")
    batch = calibration_subset(ds, 5, seed=1)
    assert batch.shape == (5, 3, 32, 32) and batch.dtype == torch.float32
    assert torch.equal(batch, calibration_subset(ds, 5, seed=1))
    assert len({tuple(b.flatten()[:8].tolist()) for b in batch}) == 5  # without replacement
    with pytest.raises(CalibrationError, match="only 15"):
        calibration_subset(ds, 16)


def test_missing_cifar_names_directory_and_files(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        get_dataset("cifar10", missing)
    msg = str(err.value)
    assert str(missing) in msg and "data_batch_1" in msg and "test_batch" not in msg and "data_batch_5.npz" in msg
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10_pickles(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="lacks data_batch_3") as err:
        get_dataset("cifar10", tmp_path)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(DataError, match=r"\[test\] OR \[test.npz\]"):
        get_dataset("cifar100", tmp_path, train=False)


def test_corrupt_cifar_batches(tmp_path):
    folder = tmp_path / "c"
    write_cifar10_pickles(folder)
    (folder / "test_batch").write_bytes(py2_pickle({"labels": [1], "data": np.zeros((1, 100), np.uint8)}))
    with pytest.raises(DataError, match=r"expected uint8 \(N, 3072\)"):
        get_dataset("cifar10", folder, train=False)
    (folder / "test_batch").write_bytes(b"\x80\x02}(Ulabels")  # truncated
    with pytest.raises(DataError, match="corrupt pickle"):
        get_dataset("cifar10", folder, train=False)
    npz = tmp_path / "n"
    npz.mkdir()
    (npz / "test_batch.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="corrupt .npz"):
        get_dataset("cifar10", npz, train=False)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_os_system(tmp_path):
    marker = tmp_path / "executed"
    evil = pickle.dumps({"data": _Evil(marker), "labels": [0]}, protocol=2)
    with pytest.raises(DataError, match="refusing to load global"):
        safe_loads(evil)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(evil)
    with pytest.raises(DataError, match="system"):
        get_dataset("cifar10", tmp_path, train=False)
    with pytest.raises(DataError):
        safe_load(folder / "test_batch")
    assert not marker.exists()
    # also refused: any other global, e.g. a builtin callable
    with pytest.raises(DataError, match="builtins.eval"):
        safe_loads(pickle.dumps(eval))


# ---------------------------------------------------------------- MNIST / Fashion-MNIST (IDX)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_raw_and_gzipped(tmp_path, gz):
    arrays = write_mnist(tmp_path / "mnist", gz=gz)
    train = get_dataset("mnist", tmp_path)
    test = get_dataset("mnist", tmp_path / "mnist", train=False)
    assert (len(train), len(test)) == (6, 4)
    x, y = test[2]
    assert x.shape == (1, 28, 28) and y == int(arrays["t10k-labels-idx1-ubyte"][2])
    expected = (arrays["t10k-images-idx3-ubyte"][2] / 255.0 - 0.1307) / 0.3081
    assert torch.allclose(x[0], torch.tensor(expected, dtype=torch.float32), atol=1e-5)
    aug = get_dataset("mnist", tmp_path, augment=True)
    assert aug[0][0].shape == (1, 28, 28)


def test_fashion_mnist_torchvision_layout(tmp_path):
    arrays = write_mnist(tmp_path / "FashionMNIST" / "raw", gz=True)
    ds = get_dataset("fashion-mnist", tmp_path, train=True)
    assert len(ds) == 6 and ds[5][1] == int(arrays["train-labels-idx1-ubyte"][5])
    assert ds.info.name == "fashion-mnist" and ds.classes[0] == "T-shirt/top"


def test_missing_mnist_names_directory_and_files(tmp_path):
    with pytest.raises(DataError) as err:
        get_dataset("mnist", tmp_path / "absent")
    msg = str(err.value)
    assert str(tmp_path / "absent") in msg
    assert "train-images-idx3-ubyte(.gz)" in msg and "train-labels-idx1-ubyte(.gz)" in msg
    write_mnist(tmp_path / "m", gz=False)
    (tmp_path / "m" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="lacks t10k-labels-idx1-ubyte"):
        get_dataset("mnist", tmp_path / "m", train=False)


def test_corrupt_idx(tmp_path):
    folder = tmp_path / "m"
    write_mnist(folder, gz=False)
    images = np.zeros((6, 28, 28), np.uint8)
    write_idx(folder / "train-images-idx3-ubyte", images, magic=2049)
    with pytest.raises(DataError, match="magic number 2049; expected 2051"):
        get_dataset("mnist", folder)
    write_idx(folder / "train-images-idx3-ubyte", images)
    raw = (folder / "train-images-idx3-ubyte").read_bytes()
    (folder / "train-images-idx3-ubyte").write_bytes(raw[:-10])
    with pytest.raises(DataError, match="file has"):
        get_dataset("mnist", folder)
    write_idx(folder / "train-images-idx3-ubyte", images[:5])  # 5 images, 6 labels
    with pytest.raises(DataError, match="must match"):
        get_dataset("mnist", folder)
    gzfolder = tmp_path / "g"
    write_mnist(gzfolder, gz=True)
    (gzfolder / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bgarbage")
    with pytest.raises(DataError, match="gunzip"):
        get_dataset("mnist", gzfolder, train=False)


# ---------------------------------------------------------------- image folder


def test_imagefolder(tmp_path):
    image_mod = pytest.importorskip("PIL.Image")
    colours = {"zebra": (255, 0, 0), "ant": (0, 255, 0), "cat": (0, 0, 255)}
    for split, n in (("train", 2), ("val", 1)):
        for name, colour in colours.items():
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(n):
                image_mod.new("RGB", (20, 12), colour).save(tmp_path / split / name / f"{i}.png")
    (tmp_path / "train" / "ant" / "notes.txt").write_text("not an image")
    train = get_dataset("imagefolder", tmp_path, image_size=8)
    val = get_dataset("imagefolder", tmp_path, train=False, image_size=8)
    assert train.classes == ["ant", "cat", "zebra"] and (len(train), len(val)) == (6, 3)
    x, y = train[4]
    assert x.shape == (3, 8, 8) and y == 2
    pixel = x[:, 4, 4] * torch.tensor([0.229, 0.224, 0.225]) + torch.tensor([0.485, 0.456, 0.406])
    assert torch.allclose(pixel, torch.tensor([1.0, 0.0, 0.0]), atol=1e-5)
    assert [val[i][1] for i in range(3)] == [0, 1, 2]
    info = dataset_info("imagefolder", root=tmp_path, image_size=8)
    assert info.num_classes == 3 and info.input_shape == (3, 8, 8)
    assert get_dataset("imagefolder", tmp_path, augment=True, image_size=8)[0][0].shape == (3, 8, 8)
    with pytest.raises(DataError, match="does not exist"):
        get_dataset("imagefolder", tmp_path / "absent")
    (tmp_path / "train" / "empty").mkdir()
    with pytest.raises(DataError, match="no images in class folder"):
        get_dataset("imagefolder", tmp_path, image_size=8)


# ---------------------------------------------------------------- the real datasets, when present


@pytest.mark.skipif(not (SHARED_DATA / "cifar10").is_dir(), reason="no shared/data/cifar10")
def test_real_cifar10_test_split():
    ds = get_dataset("cifar10", SHARED_DATA, train=False)
    assert len(ds) == 10000
    _, y = dataset_as_tensors(ds)
    assert np.bincount(y.numpy(), minlength=10).tolist() == [1000] * 10
    assert ds[0][0].shape == (3, 32, 32) and ds[0][1] == 3  # the first test image is a cat


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="no shared/data/mnist")
def test_real_mnist_test_split():
    ds = get_dataset("mnist", SHARED_DATA, train=False)
    assert len(ds) == 10000
    _, y = dataset_as_tensors(ds)
    assert np.bincount(y.numpy(), minlength=10).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert ds[0][1] == 7


def test_holdout_split_is_a_seeded_partition():
    from torch.utils.data import TensorDataset

    from snnconvert.data import holdout_split

    ds = TensorDataset(torch.arange(50))
    rest, held = holdout_split(ds, 12, seed=3)
    assert len(held) == 12 and len(rest) == 38
    assert sorted(held.indices + rest.indices) == list(range(50))
    assert held.indices == sorted(held.indices) and holdout_split(ds, 12, seed=3)[1].indices == held.indices
    assert holdout_split(ds, 12, seed=4)[1].indices != held.indices
    plain = TensorDataset(-torch.arange(50))
    _, held_plain = holdout_split(ds, 12, seed=3, holdout_from=plain)
    assert held_plain.indices == held.indices and held_plain.dataset is plain
    for bad in (0, 50, -1, True):
        with pytest.raises(ConfigError, match="0 < n < 50"):
            holdout_split(ds, bad)
