"""The command line (:mod:`green_profiles.cli`): a run end to end in a process of its own; configurations
through the command line and back unchanged; the messages and exit codes: one line and exit 2 for bad
input or data that cannot be had here, a traceback (exit 1) for anything else, and ``--debug`` to see
every traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support import tiny_config

import green_profiles.analysis.profiles as profiles
import green_profiles.runs.measurement as measurement
from green_profiles.cli import _parser, config_from_args, main
from green_profiles.runs.configuration import PRESETS, RunConfig, config_arguments


# --- a run end to end ------------------------------------------------------------------------------


def test_cli_runs_end_to_end_and_prints_the_fits(tiny_setup, tmp_path):
    model_dir, corpus = tiny_setup
    command = [sys.executable, "-m", "green_profiles", "--data-dir", str(tmp_path), "run", "--model", str(model_dir),
               "--corpus", str(corpus), "--seq-len", "48", "--n-windows", "4", "--target-min", "36",
               "--target-stride", "4", "--source-min-index", "8", "--distances", "0,1,2,4,8,16,28",
               "--bootstrap", "20", "--no-progress"]
    environment = os.environ | {"TRANSFORMERS_VERBOSITY": "error"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr
    for expected in ("[pred] fits over r >= 1", "[true] fits over r >= 1", "power_floor", "exp_floor",
                     "window bootstrap, 20 replicates, 4 windows", "stored in"):
        assert expected in result.stdout
    listing = subprocess.run([sys.executable, "-m", "green_profiles", "--data-dir", str(tmp_path), "list"],
                             capture_output=True, text=True, env=environment, timeout=120)
    assert str(model_dir) in listing.stdout and " 12 " in listing.stdout and "float32" in listing.stdout

    bad = subprocess.run(command[:-1] + ["--seq-len", "4096"], capture_output=True, text=True, env=environment,
                         timeout=300)
    assert bad.returncode == 2 and "error:" in bad.stderr


# --- configurations through the command line ------------------------------------------------------


def test_a_config_goes_through_the_command_line_unchanged(tiny_setup):
    for config in (tiny_config(tiny_setup), tiny_config(tiny_setup).resolved(), PRESETS["qwen"]):
        arguments = _parser().parse_args(["run", *config_arguments(config)])
        assert config_from_args(arguments) == config


def test_per_layer_goes_through_the_command_line(tiny_setup):
    for per_layer in (False, True):
        config = tiny_config(tiny_setup, per_layer=per_layer)
        arguments = config_arguments(config)
        assert ("--per-layer" in arguments) == per_layer
        assert config_from_args(_parser().parse_args(["run", *arguments])) == config


def test_full_rows_must_be_a_bool_and_survive_the_command_line():
    with pytest.raises(ValueError, match="full_rows"):
        RunConfig(full_rows=1).resolved()
    config = RunConfig(full_rows=True, n_windows=3)
    arguments = config_arguments(config)
    assert "--full-rows" in arguments and "--per-layer" not in arguments
    assert config_from_args(_parser().parse_args(["run", *arguments])) == config
    assert "--full-rows" not in config_arguments(RunConfig())


# --- messages and exit codes ----------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No hub, and an empty hub cache, whatever this machine can reach."""
    import datasets  # noqa: F401 - imported first: its config copies the hub's offline flag at import
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))


def tiny_arguments(tiny_setup, tmp_path, *extra: str) -> list[str]:
    model_dir, corpus = tiny_setup
    return ["--data-dir", str(tmp_path), "run", "--model", str(model_dir), "--corpus", str(corpus),
            "--seq-len", "48", "--n-windows", "2", "--target-min", "36", "--target-stride", "4",
            "--source-min-index", "8", "--distances", "0,1,2,4,8,16,28", "--bootstrap", "0", "--no-progress",
            *extra]


def one_error_line(capsys) -> str:
    """The one ``error:`` line on stderr (progress bars of loading may come before it), and no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_unavailable_model_is_one_line_and_exit_2(tiny_setup, tmp_path, offline, capsys):
    arguments = tiny_arguments(tiny_setup, tmp_path)
    arguments[arguments.index("--model") + 1] = "someone/not-downloaded"
    assert main(arguments) == 2
    line = one_error_line(capsys)
    assert "someone/not-downloaded is not in the local Hugging Face cache" in line and "offline mode" in line


def test_unavailable_corpus_is_one_line_and_exit_2(tiny_setup, tmp_path, offline, monkeypatch, capsys):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "empty-datasets")
    arguments = tiny_arguments(tiny_setup, tmp_path)
    arguments[arguments.index("--corpus") + 1] = "wikitext-103"
    assert main(arguments) == 2
    assert "WikiText-103" in one_error_line(capsys)


def test_damaged_run_is_one_line_and_exit_2(tiny_store, tmp_path, capsys):
    key = tiny_store.key("plain")
    tiny_store.copy(tmp_path, "plain")
    (tmp_path / "runs" / key / "profiles.npz").write_bytes(b"damaged")
    assert main(["--data-dir", str(tmp_path), "show", key]) == 2
    assert "does not match its checksum" in one_error_line(capsys)


def test_show_prints_a_stored_run_without_measuring(tiny_store, tmp_path, capsys, monkeypatch):
    key = tiny_store.key("plain")
    tiny_store.copy(tmp_path, "plain")
    monkeypatch.setattr(measurement, "_measure", None)  # anything measuring would fail
    with pytest.warns(UserWarning, match="resamples windows instead of documents"):  # 2 documents only
        assert main(["--data-dir", str(tmp_path), "show", key, "--bootstrap", "20"]) == 0
    out = capsys.readouterr().out
    assert key in out and "[pred] fits over r >= 1" in out and "bootstrap" in out


def test_bad_setting_is_one_line_and_exit_2_but_debug_shows_the_traceback(tiny_setup, tmp_path, capsys):
    arguments = tiny_arguments(tiny_setup, tmp_path, "--seq-len", "4096")
    assert main(arguments) == 2
    assert "context" in one_error_line(capsys)
    with pytest.raises(ValueError, match="context"):
        main(["--debug", *arguments])


def test_a_fault_that_is_not_bad_input_keeps_its_traceback(tiny_setup, tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(profiles, "run_profile", out_of_memory)
    with pytest.raises(RuntimeError, match="out of memory"):
        main(tiny_arguments(tiny_setup, tmp_path))


def test_unknown_run_for_show_is_one_line(tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path), "show", "0123456789abcdef"]) == 2
    assert "no stored run" in one_error_line(capsys)


def test_a_negative_bootstrap_is_refused(tiny_store, tmp_path, capsys):
    data = tiny_store.copy(tmp_path, "plain")
    with pytest.raises(SystemExit) as exit:  # argparse's own refusal: usage and one error line, exit 2
        main(["--data-dir", str(data), "show", tiny_store.key("plain"), "--bootstrap", "-5"])
    assert exit.value.code == 2 and "--bootstrap: must be 0 or more, got -5" in capsys.readouterr().err


def test_list_says_how_many_damaged_runs_it_skipped(tiny_store, tmp_path, capsys):
    data = tiny_store.copy(tmp_path, "plain")
    (data / "runs" / tiny_store.key("plain") / "rows.csv").write_text("damaged")
    with pytest.warns(UserWarning, match="skipping a damaged run"):
        assert main(["--data-dir", str(data), "list"]) == 0
    assert capsys.readouterr().out.strip() == "no intact runs stored; 1 damaged run skipped (named above)"


@pytest.mark.parametrize("seconds, text", [(42, "42 s"), (210, "3.5 min"), (7.2 * 3600, "7.2 h"),
                                           (36 * 3600, "36.0 h"), (3 * 86400, "3.0 days"),
                                           (670266.17 * 3600, "76.5 years")])
def test_durations_print_in_the_largest_readable_unit(seconds, text):
    from green_profiles.cli import duration_text

    assert duration_text(seconds) == text


def test_a_broken_settings_file_is_named_with_its_line(tmp_path, capsys):
    broken = tmp_path / "settings.yml"
    broken.write_text("default:\n  all: {n_windows: 4\n  coherent_text: {}\n")
    assert main(["plan", "--settings", "default", "--settings-file", str(broken)]) == 2
    message = one_error_line(capsys)
    assert message.startswith(f"error: {broken}, line ") and "not valid YAML" in message
