"""`--engine ray`: Ray actors train the clients, and the run is the process pool's, bit for bit."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from fedcore.cli import main
from fedcore.config import FLConfig
from fedcore.records import without_timing
from fedcore.sim import simulate
from fedcore.sim.engine import SimResult
from fedcore.sim.workers import RAY_MISSING, WorkerError, WorkerJob, load_data

# Ray's driver leaves /dev/null handles and its processes' Popen objects to the garbage collector
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

# small, but every part that crosses to a worker: a lossy codec with per-client residuals, dropouts
SMALL = FLConfig(
    clients=20,
    per_round=6,
    rounds=3,
    local_epochs=2,
    codec="topk:0.1+quant:8",
    error_feedback=True,
    dropout=0.2,
    workers=3,
    seed=11,
)


@pytest.fixture(scope="module")
def ray() -> Iterator[ModuleType]:
    """One local Ray for the module (it takes seconds to start); every pool here joins it."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'fedcore[ray]'")
    from fedcore.sim.ray_pool import connect

    assert connect(replace(SMALL, engine="ray"))  # quiet, no dashboard, a CPU per worker
    yield ray
    ray.shutdown()
    gc.collect()  # here, under this module's warning filter, not in a later module's test


def test_the_engine_is_checked_when_the_config_is_made() -> None:
    with pytest.raises(ValueError, match="unknown engine 'dask'; choose from process, ray"):
        FLConfig(engine="dask")
    with pytest.raises(ValueError, match="ray_address needs engine = ray"):
        FLConfig(ray_address="auto")
    with pytest.raises(ValueError, match="ray_address must be auto, HOST:PORT or ray://HOST:PORT"):
        FLConfig(engine="ray", ray_address="head-node")
    for address in ("auto", "10.0.0.1:6379", "ray://head:10001"):
        assert FLConfig(engine="ray", ray_address=address).ray_address == address
    # where the clients ran is not part of the run: summary.json's config is the same on both engines
    assert FLConfig(engine="ray").run_settings() == FLConfig().run_settings()


def test_without_ray_installed_the_error_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    monkeypatch.delitem(sys.modules, "fedcore.sim.ray_pool", raising=False)
    run = ["--clients", "8", "--per-round", "2", "--rounds", "1", "--out", str(tmp_path / "run")]
    assert main(["sim", "--engine", "ray", *run]) == 2
    assert capsys.readouterr().err == f"fedcore: error: {RAY_MISSING}\n"
    assert not (tmp_path / "run").exists()
    with pytest.raises(WorkerError, match=r"pip install 'fedcore\[ray\]'"):
        simulate(replace(SMALL, engine="ray", rounds=1))


def test_ray_gives_the_process_pools_numbers(ray: ModuleType) -> None:
    on_processes = simulate(SMALL)
    on_ray = simulate(replace(SMALL, engine="ray"))
    assert on_ray.summary["timing"]["engine"] == "ray"
    assert on_ray.summary["timing"]["workers"] == on_processes.summary["timing"]["workers"] == 3
    assert without_timing(on_ray.summary) == without_timing(on_processes.summary)
    assert records(on_ray) == records(on_processes)
    assert on_ray.weights.tobytes() == on_processes.weights.tobytes()
    # each client's error-feedback residual went to an actor and came back, the same as from a process
    residuals = [on_ray.clients.get(cid).stages.get("residual") for cid in range(SMALL.clients)]
    assert sum(r is not None for r in residuals) >= SMALL.per_round
    for cid, residual in enumerate(residuals):
        theirs = on_processes.clients.get(cid).stages.get("residual")
        assert (residual is None) == (theirs is None)
        if residual is not None:
            assert residual.tobytes() == theirs.tobytes()


def records(result: SimResult) -> list[dict[str, object]]:
    return [without_timing(r.to_dict()) for r in result.records]


def my_perceptron() -> object:
    """Your own model, in your own module: actors import it by name, as worker processes do."""
    from sklearn.linear_model import Perceptron

    return Perceptron(random_state=0)


def test_your_own_model_by_import_path_trains_on_ray_with_the_same_numbers(ray: ModuleType) -> None:
    config = FLConfig(
        clients=6, per_round=4, rounds=1, backend="sklearn", model="test_ray_engine:my_perceptron", workers=2
    )
    on_processes = simulate(config)
    on_ray = simulate(replace(config, engine="ray"))
    assert on_ray.summary["model"] == "test_ray_engine:my_perceptron"
    assert records(on_ray) == records(on_processes)
    assert on_ray.weights.tobytes() == on_processes.weights.tobytes()


def test_a_failure_in_an_actor_surfaces_with_its_traceback(ray: ModuleType) -> None:
    config = FLConfig(
        clients=8, per_round=4, rounds=2, backend="sklearn", model="logreg", strategy="scaffold", workers=2
    )
    with pytest.raises(WorkerError, match="SCAFFOLD"):
        simulate(replace(config, engine="ray"))


def _answer_until_dead(ray: ModuleType, actor: object, tries: int = 600) -> None:
    """Ask a killed actor until its death shows (RayActorError), at most `tries` times."""
    for _ in range(tries):
        ray.get(actor.ready.remote(), timeout=60)  # type: ignore[attr-defined]
        time.sleep(0.1)


def test_a_dead_actor_is_a_worker_error_not_a_hang(ray: ModuleType) -> None:
    from fedcore.sim.ray_pool import RayPool

    config = replace(SMALL, engine="ray", workers=2)
    pool = RayPool(config, load_data(config), round_timeout_s=60)
    try:
        assert pool.size == 2
        actor = pool._actors[0]
        ray.kill(actor)  # as a node lost mid-run would; the kill lands asynchronously, so wait for it
        with pytest.raises(ray.exceptions.RayActorError):
            _answer_until_dead(ray, actor)
        nothing = WorkerJob((), (), make_aggregator=list)  # the dead actor never runs it
        with pytest.raises(WorkerError, match="a Ray simulation worker died while running a round"):
            pool.run([nothing])
    finally:
        pool.close()


def test_actors_that_never_start_are_a_timeout(ray: ModuleType) -> None:
    from fedcore.sim.ray_pool import RayPool

    config = replace(SMALL, engine="ray", workers=2)
    with pytest.raises(WorkerError, match=r"no answer within 0 s while starting"):
        RayPool(config, load_data(config), start_timeout_s=0.001)


def test_too_many_workers_for_the_cluster_are_refused_before_any_starts(ray: ModuleType) -> None:
    from fedcore.sim.ray_pool import RayPool

    config = replace(SMALL, engine="ray", workers=5)
    with pytest.raises(WorkerError, match="--workers 5 needs 5 CPUs; the Ray cluster has 3"):
        RayPool(config, load_data(config))


def test_an_address_where_nobody_listens_is_one_line_not_a_hang(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'fedcore[ray]'")
    run = ["--clients", "8", "--per-round", "2", "--rounds", "1", "--out", str(tmp_path / "run")]
    done = subprocess.run(
        [sys.executable, "-m", "fedcore.cli", "sim", "--engine", "ray", "--ray-address", "127.0.0.1:1", *run],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "fedcore: error: cannot start Ray on 127.0.0.1:1: nothing answers at 127.0.0.1:1 (Connection refused)"
    ]
    assert not (tmp_path / "run").exists()
