"""Datasets, loaders, partitioners and federated splits: shapes, coverage, skew, determinism, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedcore.data import (
    Dataset,
    build_federated,
    cache_dir,
    dirichlet,
    iid,
    load_digits_dataset,
    load_leaf_json,
    load_mnist1d,
    load_npz,
    partition,
    shards,
    synthetic,
)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits_dataset()


def balanced_labels(per_class: int = 100, classes: int = 10) -> np.ndarray:
    return np.repeat(np.arange(classes, dtype=np.int64), per_class)


def assert_exact_cover(parts: list[np.ndarray], n: int) -> None:
    everything = np.concatenate(parts)
    assert everything.dtype == np.int64
    np.testing.assert_array_equal(np.sort(everything), np.arange(n))


def label_skew(parts: list[np.ndarray], labels: np.ndarray) -> float:
    """Mean total-variation distance between each client's label mix and the global one."""
    classes = int(labels.max()) + 1
    overall = np.bincount(labels, minlength=classes) / len(labels)
    mixes = [np.bincount(labels[p], minlength=classes) / len(p) for p in parts]
    return float(np.mean([0.5 * np.abs(m - overall).sum() for m in mixes]))


def test_digits_are_float32_pixels_in_unit_range(digits: Dataset) -> None:
    assert digits.x.shape == (1797, 64)
    assert digits.x.dtype == np.float32
    assert digits.y.dtype == np.int64
    assert (digits.x.min(), digits.x.max()) == (0.0, 1.0)
    assert digits.n_classes == 10
    assert digits.in_features == 64


def test_mnist1d_is_generated_once_then_read_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDCORE_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    legacy_state = np.random.get_state()  # noqa: NPY002  (mnist1d reseeds it; we must restore it)
    first = load_mnist1d(num_samples=200, seed=3)
    np.testing.assert_equal(np.random.get_state(), legacy_state)  # noqa: NPY002
    assert len(list(tmp_path.glob("mnist1d-*.npz"))) == 1
    again = load_mnist1d(num_samples=200, seed=3)
    other = load_mnist1d(num_samples=200, seed=4)
    assert first.x.shape == (200, 40)
    assert first.x.dtype == np.float32
    assert first.y.dtype == np.int64
    np.testing.assert_array_equal(first.label_counts(), np.full(10, 20))
    np.testing.assert_array_equal(first.x, again.x)
    assert not np.array_equal(first.x, other.x)
    assert len(list(tmp_path.glob("mnist1d-*.npz"))) == 2


def test_synthetic_is_naturally_partitioned_and_seeded() -> None:
    clients = synthetic(1.0, 1.0, num_clients=12, seed=0)
    assert len(clients) == 12
    for data in clients:
        assert data.feature_shape == (60,)
        assert data.n_classes == 10
        assert len(data) >= 50
    again = synthetic(1.0, 1.0, num_clients=12, seed=0)
    np.testing.assert_array_equal(clients[3].x, again[3].x)
    assert not np.array_equal(clients[3].x[:50], synthetic(1.0, 1.0, num_clients=12, seed=1)[3].x[:50])


def test_synthetic_beta_moves_client_inputs_apart() -> None:
    def spread(beta: float) -> float:
        means = [c.x.mean(axis=0) for c in synthetic(0.0, beta, num_clients=20, seed=0)]
        return float(np.std(means, axis=0).mean())

    assert spread(5.0) > 2 * spread(0.0)


@pytest.mark.parametrize("spec", ["iid", "dirichlet:0.3", "shards:2"])
def test_every_partition_covers_each_index_exactly_once(digits: Dataset, spec: str) -> None:
    parts = partition(digits, num_clients=15, spec=spec, seed=1)
    assert len(parts) == 15
    assert_exact_cover(parts, len(digits))
    again = partition(digits, num_clients=15, spec=spec, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


def test_iid_parts_have_near_equal_sizes() -> None:
    parts = iid(balanced_labels(), 7, np.random.default_rng(0))
    assert {len(p) for p in parts} == {142, 143}


def test_smaller_dirichlet_alpha_means_more_label_skew(digits: Dataset) -> None:
    skew = {
        alpha: label_skew(dirichlet(digits.y, 20, alpha, np.random.default_rng(0)), digits.y)
        for alpha in (0.1, 1.0, 100.0)
    }
    assert skew[0.1] > skew[1.0] > skew[100.0]
    assert skew[100.0] < 0.15


def test_dirichlet_gives_every_client_the_minimum(digits: Dataset) -> None:
    parts = dirichlet(digits.y, 50, 0.05, np.random.default_rng(0), min_size=20)
    assert min(len(p) for p in parts) >= 20
    assert_exact_cover(parts, len(digits))


def test_shards_give_each_client_few_labels() -> None:
    labels = balanced_labels(per_class=100)
    parts = shards(labels, num_clients=25, shards_per_client=2, rng=np.random.default_rng(0))
    assert_exact_cover(parts, len(labels))
    assert all(len(p) == 40 for p in parts)
    assert max(len(np.unique(labels[p])) for p in parts) <= 2


@pytest.mark.parametrize("spec", ["dirichlet", "dirichlet:x", "dirichlet:0", "shards:0", "zipf:1", "iid:2"])
def test_bad_partition_specs_are_rejected(digits: Dataset, spec: str) -> None:
    with pytest.raises(ValueError, match=r"partition|alpha|shards_per_client"):
        partition(digits, 10, spec, seed=0)


def test_more_clients_than_samples_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot give"):
        iid(balanced_labels(per_class=1), 11, np.random.default_rng(0))


def test_build_federated_keeps_a_central_test_set_apart(digits: Dataset) -> None:
    fed = build_federated("digits", num_clients=10, partition_spec="dirichlet:0.5", seed=4)
    assert fed.num_clients == 10
    assert len(fed.central_test) == round(0.2 * len(digits))
    client_total = sum(len(c.train) + len(c.test) for c in fed.clients)
    assert client_total + len(fed.central_test) == len(digits)
    parts = [fed.central_test.x] + [c.train.x for c in fed.clients] + [c.test.x for c in fed.clients]
    rows = np.concatenate(parts)
    assert len(np.unique(rows, axis=0)) == len(np.unique(digits.x, axis=0))  # nothing lost, nothing shared
    one = fed.client(3)
    assert one.client_id == 3
    assert len(one.test) == round(0.2 * (len(one.train) + len(one.test)))
    np.testing.assert_array_equal(fed.train_sizes(), [len(c.train) for c in fed.clients])
    same = build_federated("digits", num_clients=10, partition_spec="dirichlet:0.5", seed=4)
    np.testing.assert_array_equal(same.client(3).train.x, one.train.x)
    with pytest.raises(IndexError):
        fed.client(10)


def test_build_federated_synthetic_ignores_the_partition_spec() -> None:
    fed = build_federated("synthetic:0.5,0.5", num_clients=8, partition_spec="shards:2", seed=0)
    assert fed.num_clients == 8
    assert fed.in_features == 60
    assert fed.name == "synthetic(0.5,0.5)"
    natural = synthetic(0.5, 0.5, num_clients=8, seed=0)
    total = sum(len(c.train) + len(c.test) for c in fed.clients) + len(fed.central_test)
    assert total == sum(len(d) for d in natural)


@pytest.mark.parametrize("spec", ["cifar10", "synthetic:1", "synthetic:a,b", "mnist1d:many", "digits:2"])
def test_bad_dataset_specs_list_the_choices(spec: str) -> None:
    with pytest.raises(ValueError, match="synthetic"):
        build_federated(spec, num_clients=4)


def write_leaf(path: Path, users: dict[str, tuple[list[list[float]], list[int]]]) -> Path:
    doc = {
        "users": list(users),
        "num_samples": [len(y) for _, y in users.values()],
        "user_data": {u: {"x": x, "y": y} for u, (x, y) in users.items()},
    }
    path.write_text(json.dumps(doc))
    return path


def test_leaf_json_gives_one_dataset_per_user(tmp_path: Path) -> None:
    file = write_leaf(
        tmp_path / "train.json",
        {"f_001": ([[0.0, 1.0], [1.0, 0.0]], [0, 3]), "f_002": ([[0.5, 0.5]], [1])},
    )
    users = load_leaf_json(file)
    assert list(users) == ["f_001", "f_002"]
    assert users["f_001"].x.shape == (2, 2)
    assert users["f_001"].x.dtype == np.float32
    assert users["f_002"].y.tolist() == [1]
    assert {d.n_classes for d in users.values()} == {4}


def test_leaf_directory_merges_users_across_files(tmp_path: Path) -> None:
    write_leaf(tmp_path / "a.json", {"u": ([[1.0]], [0])})
    write_leaf(tmp_path / "b.json", {"u": ([[2.0]], [1]), "v": ([[3.0]], [2])})
    users = load_leaf_json(tmp_path)
    assert users["u"].x[:, 0].tolist() == [1.0, 2.0]
    assert sorted(users) == ["u", "v"]


def test_leaf_users_feed_build_federated(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    users = {f"u{i}": (rng.random((10, 3)).tolist(), rng.integers(0, 4, 10).tolist()) for i in range(6)}
    write_leaf(tmp_path / "all.json", users)
    fed = build_federated(f"leaf:{tmp_path / 'all.json'}", num_clients=4, seed=0)
    assert fed.num_clients == 4
    assert fed.feature_shape == (3,)
    with pytest.raises(ValueError, match="fewer than 7 clients"):
        build_federated(f"leaf:{tmp_path / 'all.json'}", num_clients=7)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"users": ["a"]}, "missing key 'user_data'"),
        ({"users": ["a"], "user_data": {}}, "missing from 'user_data'"),
        ({"users": ["a"], "user_data": {"a": {"x": [[1.0]]}}}, "missing key 'y'"),
        ({"users": ["a"], "user_data": {"a": {"x": [[1.0], [1.0, 2.0]], "y": [0, 1]}}}, "ragged"),
        ({"users": ["a"], "user_data": {"a": {"x": [[1.0]], "y": [0, 1]}}}, "1 rows but y has 2"),
        ({"users": ["a"], "num_samples": [3], "user_data": {"a": {"x": [[1.0]], "y": [0]}}}, "num_samples"),
        ({"users": ["a"], "user_data": {"a": {"x": [[1.0]], "y": [0.5]}}}, "integers"),
        ([1, 2], "top level"),
    ],
)
def test_bad_leaf_files_say_what_is_wrong(tmp_path: Path, doc: object, message: str) -> None:
    file = tmp_path / "bad.json"
    file.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=message):
        load_leaf_json(file)


def test_missing_files_raise_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_leaf_json(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError):
        load_leaf_json(tmp_path)  # a directory without any *.json
    with pytest.raises(FileNotFoundError):
        load_npz(tmp_path / "nope.npz")


def test_npz_round_trip_with_custom_keys(tmp_path: Path) -> None:
    x = np.arange(24, dtype=np.float64).reshape(6, 2, 2)
    np.savez(tmp_path / "d.npz", features=x, labels=np.array([0, 1, 2, 0, 1, 2]))
    data = load_npz(tmp_path / "d.npz", x_key="features", y_key="labels")
    assert data.x.dtype == np.float32
    assert data.feature_shape == (2, 2)
    assert data.n_classes == 3
    assert data.name == "d"


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((3, 2))}, "missing key 'y'"),
        ({"x": np.zeros(3), "y": np.zeros(3, dtype=np.int64)}, "x must be"),
        ({"x": np.zeros((3, 2)), "y": np.zeros((3, 1), dtype=np.int64)}, "1-D"),
        ({"x": np.zeros((3, 2)), "y": np.array([0.0, 1.5, 2.0])}, "integers"),
        ({"x": np.zeros((3, 2)), "y": np.array([0, -1, 2])}, ">= 0"),
    ],
)
def test_bad_npz_files_say_what_is_wrong(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        load_npz(tmp_path / "bad.npz")


def test_a_file_that_is_not_npz_is_a_value_error(tmp_path: Path) -> None:
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not a readable"):
        load_npz(tmp_path / "text.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"not an \.npz archive"):
        load_npz(tmp_path / "one.npy")


def test_dataset_checks_its_invariants() -> None:
    x = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="float32"):
        Dataset(x.astype(np.float64), np.zeros(2, dtype=np.int64), 2)
    with pytest.raises(ValueError, match="labels must lie"):
        Dataset(x, np.array([0, 5], dtype=np.int64), 2)
    with pytest.raises(ValueError, match="rows"):
        Dataset(x, np.zeros(3, dtype=np.int64), 2)
