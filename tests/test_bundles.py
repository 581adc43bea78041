"""Run bundles: a round trip between two data directories, and every way a bundle may be refused
(a flipped byte, a tampered manifest, unsafe member paths, a run under another key's name, a
conflicting stored run) without anything half-written in the store; then the command line."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from green_profiles.runs.bundles import BundleError, export_runs, import_runs, read_manifest, trusted_checksums
from green_profiles.cli import main
from green_profiles.analysis.profiles import list_runs, load_run
from green_profiles.runs.keys import METADATA_CHECKSUM, metadata_checksum, recorded_keys
from green_profiles.runs.store import CorruptRunError, runs_directory


@pytest.fixture(scope="module")
def measured(tiny_store, tmp_path_factory) -> tuple[Path, list[str]]:
    """A data directory holding two real tiny runs (seeds 0 and 1: copies of the session's), and their keys
    (sorted). Its tests only read it (export); a test that damages a run copies the directory first."""
    data = tiny_store.copy(tmp_path_factory.mktemp("measured"), "plain", "seed 1")
    return data, sorted(tiny_store.key(name) for name in ("plain", "seed 1"))


@pytest.fixture(scope="module")
def bundle(measured, tmp_path_factory) -> Path:
    data, keys = measured
    return export_runs(runs_directory(data), keys, tmp_path_factory.mktemp("bundle") / "runs.tar.gz")


def rewrite(source: Path, destination: Path, change: Callable[[str, bytes], bytes | None] = lambda name, data: data,
            extra: tuple[tarfile.TarInfo, bytes] | None = None) -> Path:
    """A copy of a bundle with each member's content passed through ``change`` (None drops it), plus ``extra``."""
    with tarfile.open(source, "r:gz") as original, tarfile.open(destination, "w:gz") as copy:
        for member in original.getmembers():
            data = change(member.name, original.extractfile(member).read())
            if data is not None:
                info = tarfile.TarInfo(member.name)
                info.size = len(data)
                copy.addfile(info, io.BytesIO(data))
        if extra is not None:
            info, payload = extra
            copy.addfile(info, io.BytesIO(payload) if info.isfile() else None)
    return destination


def change_manifest(edit: Callable[[dict], None]) -> Callable[[str, bytes], bytes]:
    def change(name: str, data: bytes) -> bytes:
        if name != "MANIFEST.json":
            return data
        manifest = json.loads(data)
        edit(manifest)
        return json.dumps(manifest).encode()
    return change


def nothing_written(store: Path) -> bool:
    """No run directory (nor a staging leftover) in the store."""
    return not store.exists() or not [p for p in store.iterdir() if p.name != ".locks"]


def test_round_trip_between_two_data_directories(measured, bundle, tmp_path):
    data, keys = measured
    report = import_runs(bundle, runs_directory(tmp_path))
    assert sorted(report.imported) == keys and not report.already_present and report.ok
    for key in keys:
        before, after = load_run(runs_directory(data) / key), load_run(runs_directory(tmp_path) / key)
        assert after.metadata == before.metadata and after.config == before.config
        assert set(after.arrays) == set(before.arrays)
        for name in before.arrays:
            np.testing.assert_array_equal(after.arrays[name], before.arrays[name])
        assert after.table.equals(before.table)
    assert sorted(list_runs(tmp_path)["key"]) == keys


def test_the_manifest_describes_every_run_and_the_members_come_in_a_fixed_order(measured, bundle):
    data, keys = measured
    manifest = read_manifest(bundle)
    assert manifest["format_version"] == 1 and manifest["green_profiles_version"] and manifest["created"]
    assert [entry["key"] for entry in manifest["runs"]] == keys
    for entry in manifest["runs"]:
        metadata = json.loads((runs_directory(data) / entry["key"] / "metadata.json").read_text())
        assert entry["settings"] == metadata["config"] and entry["provenance"] == metadata["provenance"]
        assert entry["rows"] == metadata["n_rows"] == 15
        assert sorted(entry["files"]) == ["metadata.json", "profiles.npz", "rows.csv"]
        assert entry["files"]["profiles.npz"]["sha256"] == metadata["sha256"]["profiles.npz"]
    with tarfile.open(bundle, "r:gz") as archive:
        names = archive.getnames()
    assert names == ["MANIFEST.json"] + [f"runs/{key}/{name}" for key in keys
                                         for name in ("metadata.json", "profiles.npz", "rows.csv")]


def test_a_flipped_byte_in_a_data_file_refuses_the_bundle_and_writes_nothing(bundle, tmp_path):
    def flip(name: str, data: bytes) -> bytes:
        if not name.endswith("rows.csv"):
            return data
        return data[:100] + bytes([data[100] ^ 1]) + data[101:]

    damaged = rewrite(bundle, tmp_path / "damaged.tar.gz", flip)
    store = runs_directory(tmp_path / "data")
    with pytest.raises(BundleError, match="rows.csv does not match the checksum"):
        import_runs(damaged, store)
    assert nothing_written(store)


def test_a_damaged_archive_is_refused(bundle, tmp_path):
    raw = bytearray(bundle.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    damaged = tmp_path / "damaged.tar.gz"
    damaged.write_bytes(bytes(raw))
    store = runs_directory(tmp_path / "data")
    with pytest.raises(BundleError):
        import_runs(damaged, store)
    assert nothing_written(store)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["runs"][0]["files"]["profiles.npz"].update(sha256="0" * 64), "does not match the checksum"),
    (lambda m: m["runs"][1]["files"]["rows.csv"].update(size=1), "does not match the checksum"),
    (lambda m: m["runs"][0]["files"].pop("rows.csv"), "in the bundle but not in its manifest"),
    (lambda m: m["runs"][0]["files"].update({"extra.txt": {"sha256": "0" * 64, "size": 0}}),
     "in the manifest but not in the bundle"),
    (lambda m: m.update(format_version=99), "format version 99"),
])
def test_a_tampered_manifest_refuses_the_bundle(bundle, tmp_path, edit, message):
    tampered = rewrite(bundle, tmp_path / "tampered.tar.gz", change_manifest(edit))
    store = runs_directory(tmp_path / "data")
    with pytest.raises(BundleError, match=message):
        import_runs(tampered, store)
    assert nothing_written(store)


def test_a_manifest_whose_settings_are_not_the_runs_refuses_that_run(measured, bundle, tmp_path):
    _, keys = measured
    tampered = rewrite(bundle, tmp_path / "tampered.tar.gz",
                       change_manifest(lambda m: m["runs"][0]["settings"].update(seq_len=4096)))
    report = import_runs(tampered, runs_directory(tmp_path))
    assert report.imported == [keys[1]] and "settings or provenance differ" in report.refused[keys[0]]
    assert not (runs_directory(tmp_path) / keys[0]).exists()


@pytest.mark.parametrize("name, kind", [("../evil.txt", tarfile.REGTYPE), ("/tmp/evil.txt", tarfile.REGTYPE),
                                        ("runs/0123456789abcdef/../../evil.txt", tarfile.REGTYPE),
                                        ("runs/0123456789abcdef/link", tarfile.SYMTYPE),
                                        ("runs/0123456789abcdef/device", tarfile.CHRTYPE)])
def test_unsafe_members_refuse_the_bundle(bundle, tmp_path, name, kind):
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/passwd"
    payload = b"boo" if kind == tarfile.REGTYPE else b""
    info.size = len(payload)
    unsafe = rewrite(bundle, tmp_path / "unsafe.tar.gz", extra=(info, payload))
    store = runs_directory(tmp_path / "data")
    with pytest.raises(BundleError, match="unsafe member|not a plain file"):
        import_runs(unsafe, store)
    assert nothing_written(store) and not (tmp_path / "evil.txt").exists()


def test_a_run_under_another_keys_name_is_refused(measured, bundle, tmp_path):
    _, keys = measured
    impostor = "0123456789abcdef"

    def rename(name: str, data: bytes) -> bytes:
        return data.replace(keys[0].encode(), impostor.encode()) if name == "MANIFEST.json" else data

    with tarfile.open(bundle, "r:gz") as original, tarfile.open(tmp_path / "renamed.tar.gz", "w:gz") as copy:
        for member in original.getmembers():
            data = rename(member.name, original.extractfile(member).read())
            info = tarfile.TarInfo(member.name.replace(keys[0], impostor))
            info.size = len(data)
            copy.addfile(info, io.BytesIO(data))
    report = import_runs(tmp_path / "renamed.tar.gz", runs_directory(tmp_path))
    assert report.imported == [keys[1]] and f"give key {keys[0]}" in report.refused[impostor]
    assert not (runs_directory(tmp_path) / impostor).exists()


def test_importing_twice_reports_already_present(measured, bundle, tmp_path):
    _, keys = measured
    store = runs_directory(tmp_path)
    import_runs(bundle, store)
    again = import_runs(bundle, store)
    assert sorted(again.already_present) == keys and not again.imported and again.ok


def test_a_conflicting_stored_run_is_left_alone_unless_replace(measured, bundle, tmp_path):
    data, keys = measured
    store = runs_directory(tmp_path)
    import_runs(bundle, store)
    metadata_file = store / keys[0] / "metadata.json"
    ours = json.loads(metadata_file.read_text()) | {"created": "measured here, differently"}
    ours[METADATA_CHECKSUM] = metadata_checksum(ours)
    metadata_file.write_text(json.dumps(ours))  # still an intact run of this key, but not the bundle's
    report = import_runs(bundle, store)
    assert "a different run with this key is stored" in report.refused[keys[0]] and not report.ok
    assert report.already_present == [keys[1]]
    assert load_run(store / keys[0]).metadata["created"] == "measured here, differently"
    replaced = import_runs(bundle, store, replace=True)
    assert replaced.imported == [keys[0]] and replaced.ok
    assert metadata_file.read_bytes() == (runs_directory(data) / keys[0] / "metadata.json").read_bytes()
    assert not [p for p in store.iterdir() if p.name.startswith((".staging-", ".trash-"))]


def test_a_damaged_stored_run_is_replaced_without_asking(measured, bundle, tmp_path):
    _, keys = measured
    store = runs_directory(tmp_path)
    import_runs(bundle, store)
    (store / keys[0] / "profiles.npz").write_bytes(b"damaged")
    report = import_runs(bundle, store)
    assert report.imported == [keys[0]] and report.already_present == [keys[1]]
    load_run(store / keys[0])


def test_export_refuses_a_damaged_run_naming_it(measured, tmp_path):
    data, keys = measured
    copy = shutil.copytree(data, tmp_path / "data")
    (runs_directory(copy) / keys[1] / "rows.csv").write_text("damaged")
    with pytest.raises(CorruptRunError, match=f"{keys[1]}: rows.csv is missing or does not match"):
        export_runs(runs_directory(copy), keys, tmp_path / "runs.tar.gz")
    assert not (tmp_path / "runs.tar.gz").exists() and not list(tmp_path.glob(".staging-*"))
    with pytest.raises(FileNotFoundError, match="no stored run 0123456789abcdef"):
        export_runs(runs_directory(copy), ["0123456789abcdef"], tmp_path / "runs.tar.gz")


def test_command_line_round_trip(measured, tiny_setup, tmp_path, capsys):
    data, keys = measured
    bundle = tmp_path / "runs.tar.gz"
    assert main(["--data-dir", str(data), "export", *keys, "-o", str(bundle)]) == 0
    assert "exported 2 run(s)" in capsys.readouterr().out
    target = tmp_path / "target"
    assert main(["--data-dir", str(target), "import", str(bundle)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{bundle}: {key} imported" for key in keys]
    assert main(["--data-dir", str(target), "import", str(bundle)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{bundle}: {key} already present" for key in keys]

    model_dir, corpus = tiny_setup
    chosen = tmp_path / "chosen.tar.gz"
    assert main(["--data-dir", str(data), "export", "--model", str(model_dir), "--corpus", str(corpus),
                 "-o", str(chosen)]) == 0
    assert [entry["key"] for entry in read_manifest(chosen)["runs"]] == keys
    assert main(["--data-dir", str(data), "export", "--all", "-o", str(tmp_path / "all.tar.gz")]) == 0
    capsys.readouterr()


def test_command_line_user_errors_exit_2(measured, bundle, tmp_path, capsys):
    data, keys = measured
    output = ["-o", str(tmp_path / "x.tar.gz")]
    assert main(["--data-dir", str(data), "export", *output]) == 2  # neither keys nor --all
    assert main(["--data-dir", str(data), "export", keys[0], "--all", *output]) == 2
    assert main(["--data-dir", str(data), "export", "--model", "not-a-model", *output]) == 2
    assert main(["--data-dir", str(data), "export", "0123456789abcdef", *output]) == 2
    err = capsys.readouterr().err
    assert "matches --model/--corpus" in err and "no stored run 0123456789abcdef" in err
    damaged = rewrite(bundle, tmp_path / "damaged.tar.gz", lambda name, data: data.replace(b"0", b"1")
                      if name.endswith("rows.csv") else data)
    target = tmp_path / "target"
    assert main(["--data-dir", str(target), "import", str(damaged), str(bundle)]) == 2  # the good one still imports
    captured = capsys.readouterr()
    assert "does not match the checksum" in captured.err and f"{bundle}: {keys[0]} imported" in captured.out


def test_a_run_failing_the_stores_check_at_install_leaves_nothing_behind(measured, bundle, tmp_path, monkeypatch):
    import green_profiles.runs.bundles as bundles

    def refuse(path, **checks):
        raise CorruptRunError(f"run {path}: refused for the test")

    monkeypatch.setattr(bundles, "read_checked", refuse)
    store = runs_directory(tmp_path)
    report = import_runs(bundle, store)
    assert not report.imported and all("fails the store's check" in why for why in report.refused.values())
    assert nothing_written(store)


# --- crafted bundles: consistent manifests, every checksum recomputed ------------------------------------


def craft(bundle: Path, destination: Path, key: str, edit: Callable[[dict[str, bytes]], tuple[str, dict[str, bytes]]]
          ) -> Path:
    """A bundle as an attacker with the format's documentation would write it: run ``key``'s files passed through
    ``edit`` (which may also file them under another key), and a manifest recomputed to match every file."""
    with tarfile.open(bundle, "r:gz") as original:
        members = {member.name: original.extractfile(member).read() for member in original.getmembers()}
    manifest = json.loads(members.pop("MANIFEST.json"))
    runs: dict[str, dict[str, bytes]] = {}
    for name, data in members.items():
        _, run, file = name.split("/")
        runs.setdefault(run, {})[file] = data
    new_key, runs[key] = edit(runs[key])
    runs[new_key] = runs.pop(key)
    entries = []
    for run, files in sorted(runs.items()):
        metadata = json.loads(files["metadata.json"])
        entries.append({"key": run, "settings": metadata["config"], "provenance": metadata["provenance"],
                        "rows": metadata.get("n_rows"),
                        "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                                  for name, data in sorted(files.items())}})
    manifest["runs"] = entries
    with tarfile.open(destination, "w:gz") as copy:
        for name, data in [("MANIFEST.json", json.dumps(manifest).encode())] + [
                (f"runs/{run}/{file}", data) for run, files in sorted(runs.items()) for file, data in sorted(files.items())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            copy.addfile(info, io.BytesIO(data))
    return destination


def with_metadata(files: dict[str, bytes], edit: Callable[[dict], None]) -> dict[str, bytes]:
    """The run's files with its metadata edited and every checksum in it recomputed."""
    metadata = json.loads(files["metadata.json"])
    edit(metadata)
    metadata["sha256"] = {name: hashlib.sha256(files[name]).hexdigest() for name in ("profiles.npz", "rows.csv")}
    metadata[METADATA_CHECKSUM] = metadata_checksum(metadata)
    return files | {"metadata.json": json.dumps(metadata, indent=2).encode()}


def scaled_norms(files: dict[str, bytes], factor: float) -> dict[str, bytes]:
    with np.load(io.BytesIO(files["profiles.npz"])) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["pred_raw"] = arrays["pred_raw"] * factor
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return files | {"profiles.npz": buffer.getvalue()}


def test_crafted_bundle_a_run_filed_under_a_key_of_the_senders_choosing_is_refused(measured, bundle, tmp_path,
                                                                                   capsys):
    _, keys = measured
    chosen = "00000000deadbeef"

    def refile(files):
        return chosen, with_metadata(files, lambda m: m.update(key=chosen))

    crafted = craft(bundle, tmp_path / "crafted.tar.gz", keys[0], refile)
    target = tmp_path / "target"
    assert main(["--data-dir", str(target), "import", str(crafted)]) == 2
    out = capsys.readouterr().out
    assert f"{chosen} refused" in out and f"give key {keys[0]}" in out
    assert not (runs_directory(target) / chosen).exists()


def test_crafted_bundle_other_settings_under_the_runs_own_key_are_refused(measured, bundle, tmp_path, capsys):
    # The case: metadata claiming pythia-410m at L = 2048 under the measured run's key.
    _, keys = measured

    def claim(files):
        return keys[0], with_metadata(files, lambda m: m["config"].update(model="pythia-410m", seq_len=2048))

    crafted = craft(bundle, tmp_path / "crafted.tar.gz", keys[0], claim)
    target = tmp_path / "target"
    assert main(["--data-dir", str(target), "import", str(crafted)]) == 2
    assert f"{keys[0]} refused" in capsys.readouterr().out
    assert not (runs_directory(target) / keys[0]).exists()
    assert (runs_directory(target) / keys[1]).is_dir()  # the honest run of the bundle is imported


def test_crafted_bundle_forged_numbers_need_the_trusted_list_or_verify(measured, bundle, tmp_path, capsys):
    # Norms multiplied by 5 with every checksum recomputed: consistent, so no check of the bundle alone can
    # tell. The list of trusted SHA-256s refuses it; `verify` measures it again and finds it out.
    _, keys = measured
    forged = craft(bundle, tmp_path / "forged.tar.gz", keys[0],
                   lambda files: (keys[0], with_metadata(scaled_norms(files, 5.0), lambda m: None)))
    trusted = tmp_path / "SHA256SUMS"
    trusted.write_text(f"{hashlib.sha256(bundle.read_bytes()).hexdigest()}  published/{bundle.name}\n")
    target = tmp_path / "target"
    assert main(["--data-dir", str(target), "import", "--trusted", str(trusted), str(forged)]) == 2
    assert "not in the list of trusted checksums" in capsys.readouterr().err
    assert nothing_written(runs_directory(target))
    assert main(["--data-dir", str(target), "import", "--trusted", str(trusted), str(bundle)]) == 0
    capsys.readouterr()

    unchecked = tmp_path / "unchecked"
    assert main(["--data-dir", str(unchecked), "import", str(forged)]) == 0  # the limit the README states
    capsys.readouterr()
    assert main(["--data-dir", str(unchecked), "verify", keys[0], "--windows", "1"]) == 2
    assert "DOES NOT MATCH" in capsys.readouterr().out
    assert main(["--data-dir", str(target), "verify", keys[0], "--windows", "1"]) == 0
    assert ": matches" in capsys.readouterr().out


def test_a_bundle_run_without_a_metadata_checksum_is_refused(measured, bundle, tmp_path):
    _, keys = measured

    def strip(files):
        metadata = json.loads(files["metadata.json"])
        metadata.pop(METADATA_CHECKSUM)
        return keys[0], files | {"metadata.json": json.dumps(metadata).encode()}

    crafted = craft(bundle, tmp_path / "crafted.tar.gz", keys[0], strip)
    report = import_runs(crafted, runs_directory(tmp_path / "target"))
    assert f"no {METADATA_CHECKSUM}" in report.refused[keys[0]]


def test_an_older_stored_run_is_exported_with_its_metadata_checksum_added(measured, tmp_path):
    data, keys = measured
    copy = shutil.copytree(data, tmp_path / "data")
    metadata_file = runs_directory(copy) / keys[0] / "metadata.json"
    metadata = json.loads(metadata_file.read_text())
    metadata.pop(METADATA_CHECKSUM)
    metadata_file.write_text(json.dumps(metadata))  # as stored before the checksum was written
    exported = export_runs(runs_directory(copy), keys, tmp_path / "runs.tar.gz")
    report = import_runs(exported, runs_directory(tmp_path / "target"))
    assert sorted(report.imported) == keys
    imported = json.loads((runs_directory(tmp_path / "target") / keys[0] / "metadata.json").read_text())
    assert imported[METADATA_CHECKSUM] == metadata_checksum(imported)
    assert recorded_keys(imported)[0] == keys[0]


def test_trusted_checksum_lists_are_read_as_sha256sum_writes_them(tmp_path):
    listed = tmp_path / "SHA256SUMS"
    listed.write_text(f"# published runs\n{'a' * 64}  published/one.tar.gz\n{'B' * 64} *two.tar.gz\n\n")
    assert trusted_checksums(listed) == {"a" * 64: "published/one.tar.gz", "b" * 64: "two.tar.gz"}
    listed.write_text("not a checksum line\n")
    with pytest.raises(ValueError, match=f"{listed}, line 1"):
        trusted_checksums(listed)
