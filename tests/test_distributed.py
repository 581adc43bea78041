"""Sharded runs: one run's windows across the processes of a torchrun job (here 2 CPU processes with gloo).

A sharded run must store what one process stores (same key, bitwise the same arrays: every window is
computed on its own, and both sides run one thread), record which rank measured which window, and
resume after the whole job is killed with only the windows it had not flushed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from support import tiny_config

import green_profiles.report.book as book
from green_profiles.runs import distributed
from green_profiles.report.book import measure_runs, processes_from_environment
from green_profiles.runs.configuration import config_arguments
from green_profiles.runs.configuration import PRESETS
from green_profiles.analysis.profiles import run_profile
from green_profiles.analysis.profiles import load_run
from green_profiles.runs.store import key_lock, waiting_message

SOURCE = Path(distributed.__file__).resolve().parents[1]

# A torchrun worker that measures the tiny run with its kernel slowed down (windows slow enough to act
# between them), flushing every `flush` seconds; rank `fail_rank` fails on its window number `fail_at`.
SLOWED_WORKER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    import green_profiles.kernel.jacobian as jacobian
    from green_profiles.runs.configuration import RunConfig
    from green_profiles.analysis.profiles import run_profile

    config, data, pause, flush, fail_rank, fail_at = json.loads(sys.argv[1])
    real = jacobian.protocol_gradient_norms
    calls = []
    def slowed(*args, **kwargs):
        calls.append(1)
        if int(os.environ["RANK"]) == fail_rank and len(calls) == fail_at:
            raise RuntimeError("injected failure")
        time.sleep(pause)
        return real(*args, **kwargs)
    jacobian.protocol_gradient_norms = slowed
    run_profile(RunConfig.from_dict(config), data_dir=Path(data), progress=False, flush_seconds=flush)
""")


def slowed_job(config, data: Path, script: Path, *, pause: float, flush: float = 0.0, fail_rank: int = -1,
               fail_at: int = 0) -> list[str]:
    script.write_text(SLOWED_WORKER)
    return torchrun(str(script), json.dumps([config.to_dict(), str(data), pause, flush, fail_rank, fail_at]))


@pytest.fixture
def worker_environment(monkeypatch) -> dict[str, str]:
    """The package under test first on the path, and one thread per process (torchrun's own default
    for several processes), set here too so that the single-process reference runs alike."""
    path = os.pathsep.join(filter(None, [str(SOURCE), os.environ.get("PYTHONPATH")]))
    for name, value in {"PYTHONPATH": path, "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error"}.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


def single_process_run(config, data: Path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_profile(config, data_dir=data, progress=False)
    finally:
        torch.set_num_threads(threads)


def torchrun(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", *arguments]


def workers_of(pid: int) -> list[int]:
    """The worker processes of the torchrun process ``pid``: its children (each in a session of its own,
    so they outlive a kill of torchrun's process group)."""
    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # "pid (name) state ppid ..."
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            workers.append(int(stat.parent.name))
    return workers


def flushed_windows(partial: Path) -> list[int]:
    windows: list[int] = []
    for part in partial.glob("part-*.npz"):  # renamed into place whole: never read half-written
        with np.load(part) as archive:
            windows += archive["indices"].tolist()
    return windows


def assert_same_run(reference, run) -> None:
    assert run.key == reference.key
    assert sorted(run.arrays) == sorted(reference.arrays)
    for name in reference.arrays:
        np.testing.assert_array_equal(run.arrays[name], reference.arrays[name], err_msg=name)
    pd.testing.assert_frame_equal(run.table, reference.table)


def test_a_sharded_run_stores_what_one_process_stores(tiny_setup, tmp_path, worker_environment):
    config = tiny_config(tiny_setup, n_windows=5)
    reference = single_process_run(config, tmp_path / "single")
    command = torchrun("-m", "green_profiles", "--data-dir", str(tmp_path / "sharded"), "run",
                       *config_arguments(config), "--bootstrap", "0")
    # Another process holds the key's lock at first: the job waits for it (its ranks polling in short rounds,
    # so none runs into a timeout), then measures.
    with key_lock(tmp_path / "sharded" / "runs", reference.key):
        job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=worker_environment)
        stderr: list[str] = []
        reader = threading.Thread(target=lambda: [stderr.append(line) for line in job.stderr], daemon=True)
        reader.start()
        deadline = time.monotonic() + 180
        while not any(waiting_message(reference.key) in line for line in stderr) and time.monotonic() < deadline:
            assert job.poll() is None, "".join(stderr)[-4000:]
            time.sleep(0.05)
    stdout = job.stdout.read()
    assert job.wait(timeout=240) == 0, "".join(stderr)[-4000:]
    reader.join(timeout=30)
    assert sum(waiting_message(reference.key) in line for line in stderr) == 1, "rank 0 says it once"
    assert stdout.count("stored in ") == 1, "one report, from rank 0"

    sharded = load_run(tmp_path / "sharded" / "runs" / reference.key)
    assert_same_run(reference, sharded)
    assert reference.metadata["world_size"] == 1 and reference.metadata["windows_by_rank"] == [[0, 1, 2, 3, 4]]
    assert sharded.metadata["world_size"] == 2
    by_rank = sharded.metadata["windows_by_rank"]
    assert by_rank == [distributed.shard(range(5), rank, 2) for rank in range(2)]
    assert sorted(by_rank[0] + by_rank[1]) == list(range(5)), "every window measured once"
    assert [rank["pid"] for rank in sharded.metadata["ranks"]][0] == sharded.metadata["environment"]["pid"]
    assert sorted(p.name for p in (tmp_path / "sharded" / "runs").iterdir()) == [".locks", reference.key]

    # Stored: asking for it with processes=2 reads it, starting no job.
    again = run_profile(config, data_dir=tmp_path / "sharded", progress=False, processes=2)
    assert again.metadata["created"] == sharded.metadata["created"]


def test_a_killed_job_resumes_with_only_the_windows_it_had_not_flushed(tiny_setup, tmp_path, worker_environment):
    config = tiny_config(tiny_setup, n_windows=12)
    reference = single_process_run(config, tmp_path / "single")
    data = tmp_path / "killed"
    partial = data / "runs" / f"{reference.key}.partial"
    job = subprocess.Popen(slowed_job(config, data, tmp_path / "worker.py", pause=0.25),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=worker_environment)
    deadline = time.monotonic() + 180
    while len(flushed_windows(partial)) < 4 and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.02)
    for pid in [*workers_of(job.pid), job.pid]:  # no process gets to clean up or flush
        os.kill(pid, signal.SIGKILL)
    job.wait(timeout=30)
    stderr = job.stderr.read().decode(errors="replace")
    job.stderr.close()
    flushed = flushed_windows(partial)
    assert 4 <= len(flushed) < 12, f"killed after {len(flushed)} windows: {stderr[-3000:]}"
    assert len(set(flushed)) == len(flushed), "no window flushed twice"
    assert all(part.stem.endswith(("-rank0", "-rank1")) for part in partial.glob("part-*.npz"))

    # The same run again, through the launcher of run_profile(processes=2): torchrun -m green_profiles run ...
    resumed = run_profile(config, data_dir=data, progress=False, processes=2, flush_seconds=0.0)
    assert_same_run(reference, resumed)
    assert resumed.metadata["n_windows_resumed"] == len(flushed)
    missing = sorted(set(range(12)) - set(flushed))
    by_rank = resumed.metadata["windows_by_rank"]
    assert sorted(by_rank[0] + by_rank[1]) == missing, "only the windows not flushed were measured"
    assert not partial.exists()


def test_a_failing_rank_stops_the_job_and_the_others_keep_their_windows(tiny_setup, tmp_path, worker_environment):
    config = tiny_config(tiny_setup, n_windows=12)
    data = tmp_path / "failing"
    # Rank 1 fails on its third window; rank 0 has finished one or two by then, kept in memory only (no
    # flush for an hour): torchrun's SIGTERM must let it flush them instead of ending it on the spot.
    command = slowed_job(config, data, tmp_path / "worker.py", pause=0.3, flush=3600.0, fail_rank=1, fail_at=3)
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=worker_environment)
    assert done.returncode != 0 and "injected failure" in done.stderr
    parts = list((data / "runs").glob("*.partial/part-*.npz"))
    assert {part.stem.rsplit("-", 1)[1] for part in parts} == {"rank0", "rank1"}, done.stderr[-3000:]
    flushed = flushed_windows(parts[0].parent)
    assert {0, 1, 3} <= set(flushed) and not any(path.is_dir() and not path.name.startswith(".")
                                                 and not path.name.endswith(".partial")
                                                 for path in (data / "runs").iterdir())


def test_a_failed_job_raises_with_its_error(tmp_path, worker_environment):
    with pytest.raises(distributed.ShardedRunError, match="no stored run") as caught:
        distributed.launch(1, ["--data-dir", str(tmp_path), "show", "0123456789abcdef"])
    assert "exit status" in str(caught.value)


def test_the_split_covers_the_pending_windows_once_and_evenly():
    for pending in (list(range(10)), [0, 3, 4, 9], [], [5]):
        for world_size in (1, 2, 3, 4, 7):
            shares = [distributed.shard(pending, rank, world_size) for rank in range(world_size)]
            assert sorted(sum(shares, [])) == sorted(pending)
            assert max(map(len, shares)) - min(map(len, shares)) <= 1
            assert shares == [distributed.shard(pending, rank, world_size) for rank in range(world_size)]
    assert distributed.shard(range(7), 1, 3) == [1, 4]
    with pytest.raises(ValueError, match="outside a world"):
        distributed.shard(range(4), 2, 2)


def test_the_world_comes_from_torchruns_environment():
    assert distributed.world_from_environment({}) == distributed.World(0, 1, 0)
    world = distributed.world_from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert world == distributed.World(rank=3, world_size=4, local_rank=1) and world.sharded
    for bad in ({"RANK": "4", "WORLD_SIZE": "4"}, {"RANK": "x", "WORLD_SIZE": "2"}):
        with pytest.raises(ValueError):
            distributed.world_from_environment(bad)
    assert distributed.rank_device("cpu", world) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert distributed.rank_device("auto", world) == torch.device("cpu")


def test_ranks_that_disagree_fail_naming_each_value():
    distributed.check_agreement("the windows", ["ab12", "ab12"])
    with pytest.raises(ValueError, match="disagree on the windows.*rank 0: ab12; rank 1: ff00"):
        distributed.check_agreement("the windows", ["ab12", "ff00"])
    ids = np.arange(12).reshape(3, 4)
    assert distributed.windows_digest(ids) == distributed.windows_digest(ids.copy())
    assert distributed.windows_digest(ids) != distributed.windows_digest(ids[::-1])


def test_the_book_takes_its_processes_from_the_environment(monkeypatch):
    calls = []
    monkeypatch.setattr(book, "run_profile", lambda config, **options: calls.append(options["processes"]))
    monkeypatch.setenv("GREEN_PROFILES_PROCESSES", "3")
    measure_runs({"a": PRESETS["pythia"]})
    measure_runs({"a": PRESETS["pythia"]}, processes=2)
    monkeypatch.delenv("GREEN_PROFILES_PROCESSES")
    measure_runs({"a": PRESETS["pythia"]})
    assert calls == [3, 2, 1]
    for bad in ("0", "two", "-1"):
        with pytest.raises(ValueError, match="GREEN_PROFILES_PROCESSES"):
            processes_from_environment({"GREEN_PROFILES_PROCESSES": bad})


def test_a_sharded_per_layer_run_stores_the_layers_too(tiny_setup, tmp_path, worker_environment):
    config = tiny_config(tiny_setup, n_windows=4, per_layer=True)
    reference = single_process_run(config, tmp_path / "single")
    command = torchrun("-m", "green_profiles", "--data-dir", str(tmp_path / "sharded"), "run",
                       *config_arguments(config), "--bootstrap", "0", "--no-progress")
    job = subprocess.run(command, capture_output=True, text=True, env=worker_environment, timeout=300)
    assert job.returncode == 0, job.stderr[-4000:]
    run = load_run(tmp_path / "sharded" / "runs" / reference.key)
    assert "pred_layers" in run.arrays and run.n_layers == 2
    assert_same_run(reference, run)
