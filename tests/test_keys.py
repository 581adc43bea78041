"""Run keys recomputed from what a run records (green_profiles.runs.keys) and the store's use of them: a run
filed under another key, or whose metadata was edited after it was written, is damaged, not served.

Each test that edits a run works on a copy of a session run (``tiny_store.copy``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from green_profiles.analysis.profiles import list_runs, load_run, run_profile
from green_profiles.cli import main
from green_profiles.runs.keys import METADATA_CHECKSUM, metadata_checksum, recorded_keys
from green_profiles.runs.provenance import Provenance, run_key, settings_key
from green_profiles.runs.store import CorruptRunError, read_checked, read_run


def edit_metadata(run: Path, edit, *, rechecksum: bool = False) -> None:
    """Change a stored run's metadata.json in place (as a user with an editor would)."""
    metadata = json.loads((run / "metadata.json").read_text())
    edit(metadata)
    if rechecksum:
        metadata[METADATA_CHECKSUM] = metadata_checksum(metadata)
    (run / "metadata.json").write_text(json.dumps(metadata, indent=2))


def test_the_key_recomputed_from_the_metadata_is_the_measured_key(tiny_store):
    # Catches a key formula that drifts from run_key (a flag recorded differently, the dtype left out).
    for name in ("plain", "per_layer", "full_rows", "shuffled"):
        run = tiny_store.run(name)
        config, provenance = run.config, Provenance(**run.metadata["provenance"])
        assert recorded_keys(run.metadata) == (run_key(config, provenance, "cpu"), settings_key(config, "cpu"))
        assert recorded_keys(run.metadata)[0] == run.path.name


def test_a_metadata_checksum_is_written_and_holds_after_a_json_round_trip(tiny_store):
    metadata = tiny_store.run("plain").metadata
    assert metadata[METADATA_CHECKSUM] == metadata_checksum(json.loads(json.dumps(metadata)))
    changed = json.loads(json.dumps(metadata)) | {"top1_accuracy": 0.99}
    assert metadata_checksum(changed) != metadata[METADATA_CHECKSUM]


@pytest.mark.parametrize("field, edit", [
    ("config.model", lambda m: m["config"].update(model="pythia-410m")),
    ("config.seq_len", lambda m: m["config"].update(seq_len=2048)),
    ("seed", lambda m: m["config"].update(seed=7)),
    ("dtype", lambda m: m.update(dtype="bfloat16")),
    ("provenance", lambda m: m["provenance"].update(weights="hub:other@0")),
    ("top1_accuracy", lambda m: m.update(top1_accuracy=0.99)),
])
def test_an_edited_metadata_file_is_damage_for_list_show_and_run(tiny_store, tmp_path, capsys, field, edit):
    data = tiny_store.copy(tmp_path, "plain")
    key = tiny_store.key("plain")
    edit_metadata(data / "runs" / key, edit)
    with pytest.raises(CorruptRunError, match=key):
        read_run(data / "runs" / key)
    with pytest.warns(UserWarning, match="skipping a damaged run"):
        assert list_runs(data).empty
    assert main(["--data-dir", str(data), "show", key, "--bootstrap", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    # `run` does not serve it: it measures the run again and stores it as measured.
    with pytest.warns(UserWarning, match="measuring it again"):
        again = run_profile(tiny_store.config("plain"), data_dir=data, progress=False)
    assert again.metadata["config"] == tiny_store.run("plain").metadata["config"]


@pytest.mark.parametrize("field, edit", [
    ("config.model", lambda m: m["config"].update(model="pythia-410m")),
    ("seed", lambda m: m["config"].update(seed=7)),
])
def test_an_edit_with_its_checksum_recomputed_still_gives_another_key(tiny_store, tmp_path, field, edit):
    # The metadata checksum catches damage; the key catches an edit made by someone who recomputed it.
    data = tiny_store.copy(tmp_path, "plain")
    key = tiny_store.key("plain")
    edit_metadata(data / "runs" / key, edit, rechecksum=True)
    with pytest.raises(CorruptRunError, match=f"give key [0-9a-f]{{16}} and it records key {key}, but it is stored as {key}"):
        read_run(data / "runs" / key)


def test_a_run_moved_under_another_key_is_refused_naming_both_keys(tiny_store, tmp_path):
    data = tiny_store.copy(tmp_path, "plain")
    key, other = tiny_store.key("plain"), "0123456789abcdef"
    shutil.move(data / "runs" / key, data / "runs" / other)
    with pytest.raises(CorruptRunError, match=f"give key {key} .* stored as {other}"):
        load_run(data / "runs" / other)


def test_runs_stored_before_the_metadata_checksum_are_read_with_the_key_checks(tiny_store, tmp_path):
    data = tiny_store.copy(tmp_path, "plain")
    run = data / "runs" / tiny_store.key("plain")
    edit_metadata(run, lambda m: m.pop(METADATA_CHECKSUM))
    assert read_run(run).metadata["key"] == run.name  # an older run of the user's own store
    with pytest.raises(CorruptRunError, match=f"no {METADATA_CHECKSUM}"):
        read_checked(run, require_checksum=True)  # what a bundle's run must have
    edit_metadata(run, lambda m: m["config"].update(seed=7))
    with pytest.raises(CorruptRunError, match="give key"):
        read_run(run)
