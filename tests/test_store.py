"""Whole runs through the run store (:mod:`green_profiles.runs.store`): a cache hit, Ctrl-C and resuming,
damaged runs measured again, unreadable and foreign parts; and with real processes, two writers of one key,
a hard kill between flushes, damaged runs in a listing, and the periodic flush.

Every test here works on a store of its own: runs it damages are copies of the session's tiny runs
(``tiny_store.copy``), and what it tests the measuring of is measured here."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from support import tiny_config

import green_profiles.kernel.jacobian as jacobian
import green_profiles.runs.store as store_module
from green_profiles.analysis.profiles import list_runs, load_run, run_profile
from green_profiles.runs.configuration import config_arguments

# A child process that measures the tiny run with the given settings and prints its key and measuring pid.
CHILD = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import green_profiles.kernel.jacobian as jacobian
    from green_profiles.runs.configuration import RunConfig
    from green_profiles.analysis.profiles import run_profile

    config, data, flush, pause, command_line = json.loads(sys.argv[1])
    real = jacobian.protocol_gradient_norms
    def slowed(*args, **kwargs):  # windows slow enough for the parent to act between them
        time.sleep(pause)
        rows = real(*args, **kwargs)
        with open(Path(data) / "windows-measured", "a") as count:  # one line per finished window
            count.write("1\\n")
        return rows
    jacobian.protocol_gradient_norms = slowed
    if command_line:  # as a user runs it: the CLI's signal handling and exit status
        from green_profiles.cli import main
        from green_profiles.runs.configuration import config_arguments
        sys.exit(main(["--data-dir", data, "run", *config_arguments(RunConfig.from_dict(config)),
                       f"--flush-seconds={flush}", "--bootstrap=0", "--no-progress"]))
    run = run_profile(RunConfig.from_dict(config), data_dir=Path(data), progress=True, flush_seconds=flush)
    print(json.dumps({"key": run.key, "measured_by": run.metadata["environment"]["pid"]}))
""")


def start_child(config, data: Path, *, flush: float = 60.0, pause: float = 0.0,
                command_line: bool = False) -> subprocess.Popen:
    Path(data).mkdir(parents=True, exist_ok=True)
    argument = json.dumps([config.to_dict(), str(data), flush, pause, command_line])
    environment = os.environ | {"TRANSFORMERS_VERBOSITY": "error"}
    return subprocess.Popen([sys.executable, "-c", CHILD, argument], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=environment)


def windows_in_parts(partial: Path) -> int:
    total = 0
    for part in partial.glob("part-*.npz"):
        with np.load(part) as archive:
            total += len(archive["indices"])
    return total


def forbid_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the kernel ran, but the run should have come from the store")

    monkeypatch.setattr(jacobian, "protocol_gradient_norms", refuse)


def visible(store: Path) -> list[str]:
    """The store's entries other than its lock files."""
    return sorted(p.name for p in store.iterdir() if p.name != ".locks")


def assert_same_arrays(a, b) -> None:
    """Bitwise: a run served from the store, or measured again, on the same machine and threads."""
    assert sorted(a.arrays) == sorted(b.arrays)
    for name in a.arrays:
        np.testing.assert_array_equal(a.arrays[name], b.arrays[name], err_msg=name)


# --- in this process: cache hits, Ctrl-C and resuming, damage, parts ----------------------------


def test_identical_configuration_is_a_cache_hit(tiny_store, tmp_path, monkeypatch):
    config = tiny_store.config("plain")
    tiny_store.copy(tmp_path, "plain")  # the run as measured: served, not measured, from here on
    first = load_run(tmp_path / "runs" / tiny_store.key("plain"))
    forbid_kernel(monkeypatch)
    second = run_profile(dataclasses.replace(config, dtype="float32"), data_dir=tmp_path, progress=False)
    assert second.key == first.key
    assert_same_arrays(first, second)
    assert [p.name for p in (tmp_path / "runs").iterdir() if p.name != ".locks"] == [first.key]  # nothing half-written


def test_interrupted_run_resumes_to_the_same_arrays(tiny_setup, tmp_path, monkeypatch):
    config = tiny_config(tiny_setup, n_windows=6)
    reference = run_profile(config, data_dir=tmp_path / "uninterrupted", progress=False)

    real = jacobian.protocol_gradient_norms
    calls: list[int] = []

    def interrupt_after_two(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(jacobian, "protocol_gradient_norms", interrupt_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_profile(config, data_dir=tmp_path / "interrupted", progress=False)
    store = tmp_path / "interrupted" / "runs"
    assert visible(store) == [f"{reference.key}.partial"]  # no final directory yet

    calls.clear()
    monkeypatch.setattr(jacobian, "protocol_gradient_norms", lambda *a, **k: calls.append(1) or real(*a, **k))
    resumed = run_profile(config, data_dir=tmp_path / "interrupted", progress=False)
    assert len(calls) == 4  # only the windows not done before
    assert resumed.metadata["n_windows_resumed"] == 2
    assert_same_arrays(reference, resumed)
    assert visible(store) == [reference.key]


@pytest.mark.parametrize("damage", ["flip_byte", "drop_metadata", "drop_rows"])
def test_corrupt_run_is_detected_and_measured_again(tiny_store, tmp_path, damage):
    config = tiny_store.config("plain")
    tiny_store.copy(tmp_path, "plain")
    first = load_run(tmp_path / "runs" / tiny_store.key("plain"))
    if damage == "flip_byte":
        data = bytearray((first.path / "profiles.npz").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (first.path / "profiles.npz").write_bytes(bytes(data))
    elif damage == "drop_metadata":
        (first.path / "metadata.json").unlink()
    else:
        (first.path / "rows.csv").unlink()
    with pytest.warns(UserWarning, match="measuring it again"):
        again = run_profile(config, data_dir=tmp_path, progress=False)
    assert_same_arrays(first, again)
    load_run(again.path)  # valid again


def test_unreadable_partial_part_is_ignored(tiny_store, tmp_path):
    config = tiny_store.config("plain")
    key = tiny_store.key("plain")  # the same key in any store
    partial = tmp_path / "runs" / f"{key}.partial"
    partial.mkdir(parents=True)
    (partial / "part-000000-000002.npz").write_bytes(b"not an archive")
    with pytest.warns(UserWarning, match="ignoring"):
        run = run_profile(config, data_dir=tmp_path, progress=False)
    assert run.metadata["n_windows_resumed"] == 0
    assert not partial.exists()


def test_finished_windows_are_flushed_while_the_run_goes_on(tiny_setup, tmp_path, monkeypatch):
    config = tiny_config(tiny_setup, n_windows=4)
    seen: list[int] = []
    real_kernel = jacobian.protocol_gradient_norms
    store = tmp_path / "runs"

    def watching(*args, **kwargs):  # before each window: how many windows are already on disk
        partials = list(store.glob("*.partial"))
        seen.append(windows_in_parts(partials[0]) if partials else 0)
        return real_kernel(*args, **kwargs)

    monkeypatch.setattr(jacobian, "protocol_gradient_norms", watching)
    run_profile(config, data_dir=tmp_path, progress=False, flush_seconds=0.0)
    assert seen == [0, 1, 2, 3]
    seen.clear()
    run_profile(config, data_dir=tmp_path / "rarely", progress=False, flush_seconds=3600.0)
    assert seen == [0, 0, 0, 0]


def test_parts_of_other_windows_are_not_used(tiny_setup, tmp_path, monkeypatch):
    config = tiny_config(tiny_setup, n_windows=3)
    other = run_profile(tiny_config(tiny_setup, n_windows=3, seed=1), data_dir=tmp_path / "other", progress=False)
    key = run_profile(config, data_dir=tmp_path / "probe", progress=False).key
    partial = tmp_path / "runs" / f"{key}.partial"
    fields = {name: other.arrays[name][:2] for name in ("true_raw", "pred_raw", "true_tokens", "pred_tokens",
                                                          "true_log_probs")}
    store_module.flush_partial(partial, key, other.arrays["window_ids"], {i: {n: v[i] for n, v in fields.items()}
                                                                        for i in range(2)},
                               distances=other.distances)
    calls: list[int] = []
    real = jacobian.protocol_gradient_norms
    monkeypatch.setattr(jacobian, "protocol_gradient_norms", lambda *a, **k: calls.append(1) or real(*a, **k))
    with pytest.warns(UserWarning, match="not this run's windows"):
        run = run_profile(config, data_dir=tmp_path, progress=False)
    assert len(calls) == 3 and run.metadata["n_windows_resumed"] == 0


def test_a_listing_skips_and_names_damaged_runs(tiny_setup, tiny_store, tmp_path):
    tiny_store.copy(tmp_path, "plain", "seed 1")
    good = load_run(tmp_path / "runs" / tiny_store.key("plain"))
    damaged = load_run(tmp_path / "runs" / tiny_store.key("seed 1"))
    broken_metadata = run_profile(tiny_config(tiny_setup, seed=2), data_dir=tmp_path, progress=False)
    (damaged.path / "rows.csv").write_text("window,document\n0,0\n")
    (broken_metadata.path / "metadata.json").write_text("{ not json")
    with pytest.warns(UserWarning, match="skipping a damaged run") as caught:
        listing = list_runs(tmp_path)
    assert listing["key"].tolist() == [good.key]
    messages = " ".join(str(w.message) for w in caught)
    assert damaged.key in messages and broken_metadata.key in messages
    with pytest.raises(store_module.CorruptRunError):
        load_run(damaged.path)


def test_replacing_a_damaged_run_never_leaves_staging_behind(tiny_store, tmp_path):
    config = tiny_store.config("plain")
    tiny_store.copy(tmp_path, "plain")
    first = load_run(tmp_path / "runs" / tiny_store.key("plain"))
    (first.path / "profiles.npz").write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="measuring it again"):
        again = run_profile(config, data_dir=tmp_path, progress=False)
    assert again.key == first.key
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [".locks", first.key]


# --- with real processes ----------------------------------------------------------------------


def test_two_processes_asking_for_one_key_measure_it_once(tiny_setup, tmp_path):
    config = tiny_config(tiny_setup, n_windows=6)
    first = start_child(config, tmp_path, pause=0.3)
    deadline = time.monotonic() + 120
    lock = tmp_path / "runs" / ".locks"
    while not (lock.is_dir() and any(lock.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)  # the first holds the key's lock before the second starts
    second = start_child(config, tmp_path)
    outputs = [process.communicate(timeout=300) for process in (first, second)]
    assert [process.returncode for process in (first, second)] == [0, 0], [err for _, err in outputs]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert results[0] == results[1], "both processes must return the one run, measured by the first"
    assert results[0]["measured_by"] == first.pid
    assert "another process is measuring run" in outputs[1][1]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [".locks", results[0]["key"]]


def test_a_hard_kill_keeps_every_flushed_window(tiny_setup, tmp_path):
    config = tiny_config(tiny_setup, n_windows=12)
    reference = run_profile(config, data_dir=tmp_path / "uninterrupted", progress=False)
    partial = tmp_path / "killed" / "runs" / f"{reference.key}.partial"
    child = start_child(config, tmp_path / "killed", flush=0.0, pause=0.2)
    deadline = time.monotonic() + 120
    while windows_in_parts(partial) < 3 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)  # no Python cleanup, no final flush
    child.wait(timeout=30)
    flushed = windows_in_parts(partial)
    assert 3 <= flushed < 12, f"the child was killed after {flushed} windows"

    resumed = run_profile(config, data_dir=tmp_path / "killed", progress=False)
    assert resumed.metadata["n_windows_resumed"] == flushed
    for name in reference.arrays:
        # Bitwise: every window is the same kernel call alone, in either process (the child inherits the environment).
        np.testing.assert_array_equal(reference.arrays[name], resumed.arrays[name], err_msg=name)



@pytest.mark.parametrize("stop, status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_stop_signal_flushes_finished_windows_like_ctrl_c(tiny_setup, tmp_path, stop, status):
    # A scheduler's SIGTERM (or a closed terminal's SIGHUP) between flushes: with flushes an hour apart, only
    # an orderly stop writes the finished windows. Before, the default action lost them all.
    config = tiny_config(tiny_setup, n_windows=12)
    reference = run_profile(config, data_dir=tmp_path / "uninterrupted", progress=False)
    data = tmp_path / "stopped"
    child = start_child(config, data, flush=3600.0, pause=0.2, command_line=True)
    counter, deadline = data / "windows-measured", time.monotonic() + 120
    # The counter's line is written when a window's kernel call returns, before the loop records the window: a
    # fourth line means the third window is recorded (a stop right after the third line could lose the third).
    while (not counter.exists() or len(counter.read_text().split()) < 4) and time.monotonic() < deadline \
            and child.poll() is None:
        time.sleep(0.02)
    child.send_signal(stop)
    _, err = child.communicate(timeout=60)
    assert child.returncode == status, err
    assert f"stopped by {signal.Signals(stop).name}" in err and "Traceback" not in err
    partial = data / "runs" / f"{reference.key}.partial"
    flushed = windows_in_parts(partial)
    assert 3 <= flushed < 12 and not list(partial.glob(".staging-*"))
    assert not (data / "runs" / reference.key).exists()

    resumed = run_profile(config, data_dir=data, progress=False)
    assert resumed.metadata["n_windows_resumed"] == flushed
    assert_same_arrays(reference, resumed)  # the same kernel calls, one window each, on this machine


# --- parts of other runs --------------------------------------------------------------------------


@pytest.mark.parametrize("other", [
    {"distances": (0, 1, 2, 4, 8, 16)},  # another grid: other shapes
    {"model": "@random"},  # the untrained twin: the same windows and shapes, another key
    {"dtype": "bfloat16"},  # another precision: the same windows and shapes, another key
])
def test_parts_of_another_run_are_set_aside_naming_them(tiny_setup, tmp_path, monkeypatch, other):
    config = tiny_config(tiny_setup, n_windows=3)
    changes = {"model": config.model + "@random"} if other.get("model") else other
    foreign = run_profile(dataclasses.replace(config, **changes), data_dir=tmp_path / "other", progress=False)
    key = run_profile(config, data_dir=tmp_path / "probe", progress=False).key
    assert foreign.key != key
    partial = tmp_path / "runs" / f"{key}.partial"
    names = [name for name in foreign.arrays if name.endswith(("_raw", "_tokens", "_log_probs"))]
    # Exactly what an interrupted attempt at the other run would have flushed, placed in this run's folder.
    store_module.flush_partial(partial, foreign.key, foreign.arrays["window_ids"],
                               {i: {name: foreign.arrays[name][i] for name in names} for i in range(2)},
                               distances=foreign.distances)
    (partial / "key.json").write_text(json.dumps({"key": key}))  # the folder itself claims to be this run's
    calls: list[int] = []
    real = jacobian.protocol_gradient_norms
    monkeypatch.setattr(jacobian, "protocol_gradient_norms", lambda *a, **k: calls.append(1) or real(*a, **k))
    with pytest.warns(UserWarning, match=r"ignoring .*part-000000-000002\.npz: (it belongs to run|its distances)"):
        run = run_profile(config, data_dir=tmp_path, progress=False)
    assert len(calls) == 3 and run.metadata["n_windows_resumed"] == 0


def test_a_partial_folder_of_another_run_is_set_aside(tiny_store, tmp_path):
    config, key = tiny_store.config("plain"), tiny_store.key("plain")
    run = tiny_store.run("plain")
    partial = tmp_path / "parts"
    store_module.flush_partial(partial, key, run.arrays["window_ids"],
                               {0: {name: run.arrays[name][0] for name in ("true_raw", "pred_raw")}},
                               distances=run.distances)
    (partial / "key.json").write_text(json.dumps({"key": "0123456789abcdef"}))
    with pytest.warns(UserWarning, match="key.json names run 0123456789abcdef"):
        done = store_module.read_partial(partial, run.arrays["window_ids"], key=key, distances=run.distances,
                                         n_targets=len(config.targets))
    assert done == {} and [p.name for p in partial.glob("part-*")] == ["part-000000-000001.npz.set-aside"]


# --- a read-only store --------------------------------------------------------------------------


def test_a_read_only_store_serves_its_runs(tiny_store, tiny_setup, tmp_path):
    # Files 0444 and folders 0555; as root (for whom permission bits do not apply) the store is also mounted
    # read-only in a mount namespace of the child's own. `run` serves the stored run with a shared lock (or
    # none where the lock file cannot be had) and `show` prints it. Before, `run` opened the key's lock file
    # for writing even to serve a stored run, and failed.
    data = tmp_path / "data"
    tiny_store.copy(data, "plain")
    key = tiny_store.key("plain")
    (data / "runs" / ".locks").mkdir()
    (data / "runs" / ".locks" / f"{key}.lock").touch()  # as a store that was written to has it
    for path in [data, *data.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        arguments = ["--data-dir", str(data), "run", *config_arguments(tiny_store.config("plain")), "--bootstrap=0",
                     "--no-progress"]
        result = read_only(data, [sys.executable, "-m", "green_profiles", *arguments])
        assert result.returncode == 0, result.stderr
        assert f"stored in {data / 'runs' / key}" in result.stdout and "measuring" not in result.stderr
        shown = read_only(data, [sys.executable, "-m", "green_profiles", "--data-dir", str(data), "show", key,
                                 "--bootstrap", "0"])
        assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    finally:
        for path in [data, *data.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def read_only(data: Path, command: list[str]) -> subprocess.CompletedProcess:
    """Run ``command`` with ``data`` read-only: as root, under a read-only bind mount of it in a private mount
    namespace (``unshare``); otherwise its permission bits already forbid writing."""
    environment = os.environ | {"TRANSFORMERS_VERBOSITY": "error"}
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            pytest.skip("running as root without unshare: no way to make the store read-only for root")
        mount = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, str(data), *command]
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    if os.geteuid() == 0 and result.returncode != 0 and result.stderr.startswith(("unshare:", "mount:")):
        pytest.skip(f"cannot mount the store read-only here: {result.stderr.strip()}")
    return result
