"""Your own data as a federation: a function per client, a folder of .npz files, a Hugging Face dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedcore.cli import main
from fedcore.config import FLConfig
from fedcore.data import FederatedData, build_federated
from fedcore.sim import simulate

RNG = np.random.default_rng(0)


def client_rows(client_id: int) -> tuple[np.ndarray, np.ndarray]:
    """What a user's loader returns for one client: 20 rows of 5 features, labels 0..2."""
    rng = np.random.default_rng(client_id)
    return rng.standard_normal((20, 5)), rng.integers(0, 3, 20)


def test_a_function_per_client_builds_the_federation() -> None:
    test = (RNG.standard_normal((30, 5)), RNG.integers(0, 3, 30))
    data = FederatedData.from_callable(client_rows, num_clients=4, test=test)
    assert (data.num_clients, data.n_classes, data.in_features) == (4, 3, 5)
    assert [len(c.train) + len(c.test) for c in data.clients] == [20] * 4
    np.testing.assert_array_equal(
        np.sort(np.concatenate([data.client(2).train.y, data.client(2).test.y])), np.sort(client_rows(2)[1])
    )
    config = FLConfig(clients=4, per_round=2, rounds=2, local_epochs=1, workers=0)
    assert len(simulate(config, data=data).records) == 2


def write_clients(folder: Path, count: int, with_test: bool) -> None:
    folder.mkdir()
    for cid in range(count):
        x, y = client_rows(cid)
        np.savez(folder / f"client-{cid:02d}.npz", x=x.astype(np.float32), y=y)
    if with_test:
        np.savez(folder / "test.npz", x=np.zeros((7, 5), np.float32), y=np.array([0, 1, 2, 0, 1, 2, 3]))


def test_a_folder_of_npz_files_is_one_client_per_file(tmp_path: Path) -> None:
    write_clients(tmp_path / "mine", 5, with_test=True)
    data = build_federated(f"npz:{tmp_path / 'mine'}", num_clients=5)
    assert data.num_clients == 5
    assert len(data.central_test) == 7  # test.npz is the server's test set
    assert data.n_classes == 4
    first = data.client(0)
    assert len(first.train) + len(first.test) == 20
    assert set(first.train.y) | set(first.test.y) == set(client_rows(0)[1])


def test_without_test_npz_each_client_gives_a_share_to_the_central_test_set(tmp_path: Path) -> None:
    write_clients(tmp_path / "mine", 3, with_test=False)
    data = build_federated(f"npz:{tmp_path / 'mine'}", num_clients=3, test_fraction=0.25)
    assert len(data.central_test) == 3 * 5
    with pytest.raises(ValueError, match=r"holds 3 client \.npz files, fewer than 4 clients"):
        build_federated(f"npz:{tmp_path / 'mine'}", num_clients=4)


def test_the_cli_trains_on_an_npz_folder(tmp_path: Path) -> None:
    write_clients(tmp_path / "mine", 4, with_test=True)
    flags = ["--clients", "4", "--per-round", "2", "--rounds", "1", "--workers", "0"]
    assert main(["sim", "--dataset", f"npz:{tmp_path / 'mine'}", *flags, "--out", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "rounds.jsonl").read_text().count("\n") == 1


def test_a_hugging_face_dataset_partitioned_by_a_column() -> None:
    datasets = pytest.importorskip("datasets", reason='needs the hf extra: pip install "fedcore[hf]"')
    rows = 70
    everything = datasets.Dataset.from_dict(
        {
            "writer": [f"w{i % 4}" for i in range(rows)],  # 4 writers, one client each
            "pixels": RNG.random((rows, 6)).tolist(),
            "ink": RNG.random(rows).tolist(),
            "label": RNG.integers(0, 3, rows).tolist(),
        }
    )
    table, held_out = everything.select(range(60)), everything.select(range(60, 70))
    data = FederatedData.from_hf(table, by="writer", features=["pixels", "ink"], test=held_out)
    assert (data.num_clients, data.in_features, data.n_classes) == (4, 7, 3)
    assert [len(c.train) + len(c.test) for c in data.clients] == [15] * 4
    assert len(data.central_test) == 10
    two = FederatedData.from_hf(table, by="writer", features="pixels", num_clients=2)
    assert (two.num_clients, two.in_features) == (2, 6)
    with pytest.raises(ValueError, match="no column 'author'; columns: writer, pixels, ink, label"):
        FederatedData.from_hf(table, by="author", features="pixels")
    with pytest.raises(ValueError, match="feature column 'writer' is not numeric"):
        FederatedData.from_hf(table, by="writer", features="writer")
    config = FLConfig(clients=4, per_round=2, rounds=1, local_epochs=1, workers=0)
    assert len(simulate(config, data=data).records) == 1


def test_a_saved_hugging_face_dataset_folder_is_read_back(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets", reason='needs the hf extra: pip install "fedcore[hf]"')
    table = datasets.Dataset.from_dict(
        {"site": [0, 0, 1, 1], "x": [[1.0], [2.0], [3.0], [4.0]], "label": [0, 1, 0, 1]}
    )
    table.save_to_disk(str(tmp_path / "saved"))
    data = FederatedData.from_hf(tmp_path / "saved", by="site", features="x", test_fraction=0.5)
    assert data.num_clients == 2
    with pytest.raises(FileNotFoundError, match="no saved Hugging Face dataset folder"):
        FederatedData.from_hf(tmp_path / "missing", by="site", features="x")


def test_without_the_datasets_package_the_message_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from fedcore.data import hf

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "datasets" else real(name, *a)
    )
    with pytest.raises(hf.MissingExtraError, match=r'datasets package: pip install "fedcore\[hf\]"'):
        FederatedData.from_hf("some/folder", by="site", features="x")
