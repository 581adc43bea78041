"""The steps of measuring a run, each on its own (:mod:`green_profiles.runs.measurement`): the stored run
or None, starting anew, the inputs and their checks, resuming from flushed parts, the kernel loop, and
assembling the arrays, and the kernel time of a run's sessions. Whole runs through these steps (cache hits,
damaged runs measured again, Ctrl-C and resuming, flushing, sharding) are tested in test_store.py and
test_distributed.py."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from support import TINY_CONTEXT, tiny_config

from green_profiles.runs import measurement
from green_profiles.runs.measurement import (
    Work,
    assemble_arrays,
    check_context,
    check_token_ids,
    device_seconds,
    measure_run,
    measure_windows,
    prepare_inputs,
    resume,
    start_anew,
    stored_or_none,
)
from green_profiles.runs.provenance import Provenance
from green_profiles.runs.keys import METADATA_CHECKSUM, metadata_checksum, recorded_keys
from green_profiles.runs.store import StoredRun, flush_partial, partial_directory, read_run
from green_profiles.text import load_corpus
from green_profiles.text.windows import Windows


@pytest.fixture
def stored(tiny_store) -> StoredRun:
    """The tiny run (5 windows x 3 targets) of the session store, read afresh for each test: only read."""
    return read_run(tiny_store.path("plain"))


@pytest.fixture
def store(stored, tmp_path) -> Path:
    """A store of this test's own holding a copy of the tiny run, to damage at will."""
    runs = tmp_path / "runs"
    shutil.copytree(stored.path, runs / stored.path.name)
    return runs


def resolved(tiny_setup, **changes):
    return tiny_config(tiny_setup, **changes).resolved()


# --- the stored run or None --------------------------------------------------------------------


def test_an_intact_run_is_read_and_a_missing_one_is_none_without_a_word(stored, store):
    key = stored.path.name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = stored_or_none(store, key, recompute=False)
        assert stored_or_none(store, "0123456789abcdef", recompute=False) is None
        assert stored_or_none(store.parent / "elsewhere", key, recompute=False) is None
    assert run is not None and run.path == store / key
    np.testing.assert_array_equal(run.arrays["pred_raw"], stored.arrays["pred_raw"])


def test_recompute_ignores_the_stored_run_without_reading_it(stored, store):
    key = stored.path.name
    (store / key / "profiles.npz").write_bytes(b"damaged")  # would warn if it were read
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stored_or_none(store, key, recompute=True) is None


def test_a_damaged_run_is_none_with_one_warning_naming_the_callers_line(stored, store):
    key = stored.path.name
    (store / key / "metadata.json").unlink()
    with pytest.warns(UserWarning, match="measuring it again") as caught:
        assert stored_or_none(store, key, recompute=False) is None
    assert len(caught) == 1 and key in str(caught[0].message)
    assert caught[0].filename == __file__  # stacklevel 1: the caller's own line


def test_a_damaged_run_is_none_silently_for_a_launcher(stored, store):
    key = stored.path.name
    (store / key / "rows.csv").write_text("window\n0\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stored_or_none(store, key, recompute=False, warn=False) is None
    assert (store / key).is_dir(), "the damaged run is replaced only when measured again"


# --- starting anew -------------------------------------------------------------------------------


def test_starting_anew_drops_flushed_windows_only_for_recompute(stored, tmp_path, capsys):
    key, provenance = stored.path.name, Provenance(**stored.metadata["provenance"])
    partial = partial_directory(tmp_path, key)
    flush_partial(partial, key, stored.arrays["window_ids"], {0: {"true_tokens": stored.arrays["true_tokens"][0]}},
                  distances=stored.arrays["distances"])
    start_anew(tmp_path, key, stored.metadata["settings_key"], provenance, recompute=False)
    assert partial.is_dir()
    start_anew(tmp_path, key, stored.metadata["settings_key"], provenance, recompute=True)
    assert not partial.exists()
    assert capsys.readouterr().err == ""  # no earlier version of these settings in this store


def test_starting_anew_says_what_changed_since_an_earlier_version(stored, store, capsys):
    key, settings = stored.path.name, stored.metadata["settings_key"]
    metadata = json.loads((store / key / "metadata.json").read_text())
    metadata["provenance"]["results_version"] -= 1
    metadata["key"] = recorded_keys(metadata)[0]  # an intact run as the older code stored it, under its own key
    metadata[METADATA_CHECKSUM] = metadata_checksum(metadata)
    older = store / metadata["key"]
    shutil.copytree(store / key, older)
    (older / "metadata.json").write_text(json.dumps(metadata))
    start_anew(store, key, settings, Provenance(**stored.metadata["provenance"]), recompute=False)
    said = capsys.readouterr().err
    assert said.startswith(f"green-profiles: measuring anew: since run {older.name}, ")
    assert "the code's results version changed" in said and said.count("\n") == 1


# --- the inputs and their checks ---------------------------------------------------------------


def test_the_inputs_are_the_stored_runs_windows_and_grid(tiny_setup, stored):
    config = resolved(tiny_setup)
    documents = load_corpus(config.corpus, split=config.split)
    inputs = prepare_inputs(config, documents, data_dir=None, device=torch.device("cpu"))
    np.testing.assert_array_equal(inputs.windows.ids, stored.arrays["window_ids"])
    np.testing.assert_array_equal(inputs.windows.document, stored.arrays["document"])
    np.testing.assert_array_equal(inputs.targets, stored.arrays["targets"])
    np.testing.assert_array_equal(inputs.distances, stored.arrays["distances"])
    assert inputs.distances.dtype == np.int64
    np.testing.assert_array_equal(inputs.sources.numpy(), inputs.targets[:, None] - inputs.distances[None, :])
    assert list(inputs.timings) == ["load_model_s", "windows_s"]


def test_a_window_longer_than_the_context_is_refused_before_any_sampling(tiny_setup):
    config = resolved(tiny_setup, seq_len=TINY_CONTEXT + 1)
    # No documents at all: sampling would fail with another error, were it reached.
    with pytest.raises(ValueError, match=rf"seq_len = {TINY_CONTEXT + 1} is longer than .*'s context of "
                                         rf"{TINY_CONTEXT} tokens"):
        prepare_inputs(config, [], data_dir=None, device=torch.device("cpu"))


def test_the_context_check_passes_a_window_that_fits_or_a_model_without_a_context(tiny_setup):
    config = resolved(tiny_setup)
    check_context(SimpleNamespace(config=SimpleNamespace(max_position_embeddings=config.seq_len)), config)
    check_context(SimpleNamespace(config=SimpleNamespace()), config)
    with pytest.raises(ValueError, match="context of 47 tokens"):
        check_context(SimpleNamespace(config=SimpleNamespace(max_position_embeddings=config.seq_len - 1)), config)


def test_window_longer_than_the_context_is_refused(tiny_setup, tmp_path):
    with pytest.raises(ValueError, match="context"):
        measure_run(tiny_config(tiny_setup, seq_len=TINY_CONTEXT + 1), data_dir=tmp_path, progress=False)


def test_corpus_too_short_for_the_window_says_so(tiny_setup, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("the sea " * 10)
    with pytest.raises(ValueError, match="long enough"):
        measure_run(tiny_config(tiny_setup, corpus=str(short)), data_dir=tmp_path, progress=False)


def test_token_ids_beyond_the_embeddings_mean_a_foreign_tokenizer():
    model = SimpleNamespace(get_input_embeddings=lambda: torch.nn.Embedding(10, 2))
    ids = np.arange(12, dtype=np.int64).reshape(2, 6)
    zeros = np.zeros(2, dtype=np.int64)
    check_token_ids(model, Windows(ids=ids % 10, document=zeros, start=zeros), "tiny")
    with pytest.raises(ValueError, match="produced token id 11, but the model has only 10 embeddings: "
                                         "the tokenizer does not belong to these weights"):
        check_token_ids(model, Windows(ids=ids, document=zeros, start=zeros), "tiny")


# --- resuming ------------------------------------------------------------------------------------


def flush_windows(partial: Path, stored: StoredRun, indices: list[int], **kwargs) -> None:
    arrays = {name: stored.arrays[name] for name in ("true_raw", "pred_raw", "true_tokens", "pred_tokens",
                                                      "true_log_probs")}
    flush_partial(partial, "key", stored.arrays["window_ids"],
                  {i: {name: values[i] for name, values in arrays.items()} for i in indices},
                  distances=stored.arrays["distances"], **kwargs)


def resume_stored(partial: Path, stored: StoredRun, group=None):
    """:func:`resume` for the parts :func:`flush_windows` writes (run key ``"key"``)."""
    return resume(partial, stored.arrays["window_ids"], group, key="key", distances=stored.arrays["distances"],
                  n_targets=stored.arrays["targets"].size)


def test_resuming_picks_only_the_windows_in_no_part(stored, tmp_path):
    window_ids = stored.arrays["window_ids"]
    fresh = resume_stored(tmp_path / "none.partial", stored)
    assert fresh.done == {} and fresh.pending == fresh.mine == [0, 1, 2, 3, 4]
    partial = tmp_path / "key.partial"
    flush_windows(partial, stored, [0])
    flush_windows(partial, stored, [3], writer="rank1")
    work = resume_stored(partial, stored)
    assert sorted(work.done) == [0, 3] and work.pending == [1, 2, 4] and work.mine == [1, 2, 4]
    np.testing.assert_array_equal(work.done[3]["pred_raw"], stored.arrays["pred_raw"][3])


class FakeGroup:
    """A rank of a two-process group whose broadcasts carry rank 0's values."""

    def __init__(self, rank: int, from_rank_0: list) -> None:
        self.rank, self.world_size, self.sent = rank, 2, list(from_rank_0)

    def broadcast(self, value):
        return value if self.rank == 0 else self.sent.pop(0)


def test_under_a_group_the_first_rank_reads_the_parts_and_each_takes_its_share(stored, tmp_path):
    partial = tmp_path / "key.partial"
    flush_windows(partial, stored, [1])
    first = resume_stored(partial, stored, FakeGroup(0, []))
    assert sorted(first.done) == [1] and first.pending == [0, 2, 3, 4] and first.mine == [0, 3]
    other = resume_stored(partial, stored, FakeGroup(1, [first.pending]))
    assert other.done == {}, "the other ranks read no part"
    assert other.pending == [0, 2, 3, 4] and other.mine == [2, 4]


# --- the kernel loop and the arrays ------------------------------------------------------------


class Bar:
    def __init__(self) -> None:
        self.rows, self.closed = 0, False

    def update(self, rows: int) -> None:
        self.rows += rows

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def tiny_inputs(tiny_setup) -> tuple:
    config = resolved(tiny_setup)
    inputs = prepare_inputs(config, load_corpus(config.corpus, split=config.split), data_dir=None,
                            device=torch.device("cpu"))
    return config, inputs


def test_measuring_windows_gives_the_stored_rows_and_flushes_them_at_the_end(tiny_setup, stored, tmp_path):
    config, inputs = tiny_inputs(tiny_setup)
    work, bar, partial = Work(done={}, pending=[1, 3], mine=[1, 3]), Bar(), tmp_path / "key.partial"
    seconds, backward_rows = measure_windows(inputs, config, work, partial=partial, key="key", bar=bar,
                                             kernel_options={}, flush_seconds=3600.0)
    assert sorted(work.done) == [1, 3] and bar.rows == 2 * 3 and bar.closed and seconds > 0
    wrong = sum(int((stored.arrays["pred_tokens"][i] != stored.arrays["true_tokens"][i]).sum()) for i in (1, 3))
    assert backward_rows == 2 * 3 + wrong
    for index in (1, 3):
        assert list(work.done[index]) == ["true_raw", "pred_raw", "true_tokens", "pred_tokens", "true_log_probs"]
        for name, values in work.done[index].items():
            np.testing.assert_array_equal(values, stored.arrays[name][index], err_msg=name)
    assert [p.name for p in partial.glob("part-*.npz")] == ["part-000001-000002.npz"]  # one flush, at the end


def test_an_interrupted_loop_keeps_its_finished_windows_and_closes_the_bar(tiny_setup, tmp_path, monkeypatch):
    config, inputs = tiny_inputs(tiny_setup)
    real, calls = measurement.jacobian.protocol_gradient_norms, []

    def interrupt_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(measurement.jacobian, "protocol_gradient_norms", interrupt_on_the_third)
    work, bar, partial = Work(done={}, pending=[0, 1, 2, 4], mine=[0, 1, 2, 4]), Bar(), tmp_path / "key.partial"
    with pytest.raises(KeyboardInterrupt):
        measure_windows(inputs, config, work, partial=partial, key="key", bar=bar, kernel_options={},
                        flush_seconds=3600.0)
    assert sorted(work.done) == [0, 1] and bar.closed
    assert sorted(resume(partial, inputs.windows.ids, key="key", distances=inputs.distances,
                         n_targets=len(inputs.targets)).done) == [0, 1]


def test_assembling_names_the_windows_that_no_part_holds(tiny_setup, stored, tmp_path):
    config, inputs = tiny_inputs(tiny_setup)
    done = {i: {"pred_tokens": stored.arrays["pred_tokens"][i]} for i in (0, 2, 4)}
    with pytest.raises(RuntimeError, match=r"windows \[1, 3\] of run k are not in .*every rank of a sharded run "
                                           "must use one data directory"):
        assemble_arrays(inputs, done, key="k", partial=tmp_path / "k.partial")
    done.update({i: {"pred_tokens": stored.arrays["pred_tokens"][i]} for i in (1, 3)})
    arrays = assemble_arrays(inputs, done, key="k", partial=tmp_path / "k.partial")
    assert list(arrays) == ["distances", "targets", "window_ids", "document", "start", "pred_tokens"]
    np.testing.assert_array_equal(arrays["pred_tokens"], stored.arrays["pred_tokens"])


# --- the kernel time of a run's sessions ---------------------------------------------------------


def test_kernel_time_counts_each_device_once():
    sessions = [{"host": "a", "device": "cpu", "kernel_s": 3.0}, {"host": "a", "device": "cpu", "kernel_s": 4.0},
                {"host": "b", "device": "cpu", "kernel_s": 2.0}]
    assert device_seconds(sessions) == 6.0  # ranks sharing a host's CPU overlap; other hosts add up
    gpus = [{"host": "a", "device": f"cuda:{i}", "kernel_s": 5.0} for i in range(4)]
    assert device_seconds(gpus) == 20.0
