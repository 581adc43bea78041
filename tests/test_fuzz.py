"""Fuzzing the command line (green_profiles.cli) and the corpus readers (green_profiles.text.local) with
seeded random input: every invocation ends with exit 0, or exit 2 and one ``error:`` line, never a
traceback, and leaves nothing in the store that ``list`` would call damaged.

Argument values come from pools of the bad values a user types (negative and huge numbers, words for
numbers, empty strings, missing and binary files, unknown names) mixed with good ones. Every command that
would start long work when its arguments happen to be valid (measuring, training, executing a notebook,
preparing the corpora) always gets one value that cannot be valid, so the fuzz stays bounded in time:
what it tests is that bad input is refused cleanly, not that good input works (the other tests do that).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from green_profiles.analysis.profiles import list_runs
from green_profiles.cli import main
from green_profiles.text.local import load_local_file

SEED = 20261203
N_COMMANDS = 160
TIME_LIMIT_S = 45.0  # the fuzz stops early rather than run past this (it normally takes far less)


def random_text_file(rng: random.Random, path: Path) -> Path:
    """Random bytes, random UTF-8 or nothing."""
    kind = rng.choice(["bytes", "utf8", "empty", "bom"])
    if kind == "bytes":
        path.write_bytes(rng.randbytes(rng.randint(1, 400)))
    elif kind == "utf8":
        path.write_text("".join(chr(rng.choice([rng.randint(32, 126), rng.randint(0x80, 0x2FFF)]))
                                for _ in range(rng.randint(1, 300))), encoding="utf-8")
    elif kind == "bom":
        path.write_bytes(b"\xef\xbb\xbf" + b"text " * rng.randint(0, 50))
    else:
        path.write_bytes(b"")
    return path


def random_jsonl_file(rng: random.Random, path: Path) -> Path:
    """Lines from good documents to broken JSON, wrong types and invalid UTF-8."""
    makers = [
        lambda: json.dumps({"text": "a few words " * rng.randint(0, 30), "title": "t"}),
        lambda: json.dumps({"text": rng.randint(0, 9)}),
        lambda: json.dumps({"title": "no text"}),
        lambda: json.dumps([1, 2, 3]),
        lambda: json.dumps("just a string"),
        lambda: '{"text": "unterminated',
        lambda: '{"text": "control \x01 character"}',
        lambda: "",
        lambda: "   ",
        lambda: json.dumps({"text": "x", "title": None, "source": 5, "source_index": "a"}),
    ]
    lines = [rng.choice(makers)().encode("utf-8") for _ in range(rng.randint(1, 8))]
    if rng.random() < 0.2:
        lines.insert(rng.randrange(len(lines) + 1), b'{"text": "\xf0\x28\x8c\x28"}')
    path.write_bytes(b"\n".join(lines) + rng.choice([b"\n", b""]))
    return path


@pytest.fixture(scope="module")
def fuzz_files(tmp_path_factory) -> dict[str, list[str]]:
    """Files a fuzzed argument may name: random corpora, a random 'bundle', a directory, a missing path."""
    rng = random.Random(SEED)
    root = tmp_path_factory.mktemp("fuzz-files")
    corpora = [str(random_text_file(rng, root / f"random{i}.txt")) for i in range(4)]
    corpora += [str(random_jsonl_file(rng, root / f"random{i}.jsonl")) for i in range(6)]
    bundle = root / "random.tar.gz"
    bundle.write_bytes(rng.randbytes(300))
    return {"corpora": corpora, "bundles": [str(bundle), str(root), str(root / "missing.tar.gz")],
            "settings": [corpora[0], corpora[5], str(root / "missing.yml")]}


def fuzzed_command(rng: random.Random, files: dict[str, list[str]], key: str, data: Path) -> list[str]:
    """One random invocation of a random subcommand."""
    numbers = ["-5", "0", "1", "3", "10000000000000", "x", "", "1.5", "nan", "-0"]
    words = ["", "nosuch", "../..", "ünïcödé", "--", "-", "a" * 300]
    keys = [key, "0123456789abcdef", "xyz", "", key.upper()]
    pick = rng.choice

    def options(pool: dict[str, list[str]], k: int) -> list[str]:
        chosen = rng.sample(sorted(pool), k=min(k, len(pool)))
        return [part for name in chosen for part in (name, pick(pool[name]))]

    command = pick(["run", "show", "list", "export", "import", "verify", "plan", "notebook", "train",
                    "experiments", "nosuch"])
    arguments = ["--data-dir", str(data)]
    if command == "run":  # the model is never a valid one (nothing is measured), the corpus never a prepared one
        arguments += ["run", "--model", pick(["nosuch-model", "", files["corpora"][0], "smollm2-135m@nosuch"]),
                      "--corpus", pick(files["corpora"] + words)]
        arguments += options({"--seq-len": numbers, "--n-windows": numbers,
                              "--target-min": numbers, "--target-max": numbers, "--target-stride": numbers,
                              "--source-min-index": numbers, "--distances": ["0,1,2", "1,x", "", "-1,0", "5,5"],
                              "--shuffle": ["none", "window", "bogus"], "--dtype": ["float32", "float8", ""],
                              "--seed": numbers, "--bootstrap": numbers, "--selection": ["pred", "true", "both", ""],
                              "--flush-seconds": numbers, "--device": ["cpu", "tpu", ""]}, rng.randint(0, 6))
    elif command == "show":
        arguments += ["show", pick(keys)] + options({"--bootstrap": ["-5", "0", "x", "2.5"],
                                                    "--selection": ["pred", "true", "nope"]}, rng.randint(0, 2))
    elif command == "list":
        arguments += ["list"] + (["--markdown"] if rng.random() < 0.5 else [])
    elif command == "export":
        arguments += ["export"] + rng.sample(keys, k=rng.randint(0, 2)) + options(
            {"--model": words, "--corpus": words, "-o": files["bundles"] + [str(data / "out.tar.gz")]},
            rng.randint(0, 3)) + (["--all"] if rng.random() < 0.3 else [])
    elif command == "import":
        arguments += ["import"] + rng.sample(files["bundles"], k=rng.randint(0, 2)) + options(
            {"--trusted": files["settings"]}, rng.randint(0, 1)) + (["--require-listed"] if rng.random() < 0.3 else [])
    elif command == "verify":
        arguments += ["verify"] + rng.sample(keys, k=rng.randint(0, 2)) + options(
            {"--windows": ["-1", "0", "1", "x"], "--seed": numbers, "--device": ["cpu", "tpu"]}, rng.randint(0, 2))
    elif command in ("plan", "train", "notebook"):  # the settings are never valid: nothing is trained or executed
        arguments += [command] + ([pick(["coherent_text", "nosuch", ""])] if command == "notebook" else [])
        arguments += ["--settings", pick(["nosuch", "", "DEFAULT"])]
        arguments += options({"--settings-file": files["settings"]}, rng.randint(0, 1))
    else:
        arguments += [command]
    return arguments


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No hub, and an empty hub cache: a fuzzed model name is looked up nowhere."""
    import datasets  # noqa: F401 - imported first: its config copies the hub's offline flag at import
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))


def test_random_command_lines_give_exit_0_or_one_error_line(tiny_store, fuzz_files, tmp_path, capsys, offline):
    data = tiny_store.copy(tmp_path, "plain")
    key = tiny_store.key("plain")
    rng = random.Random(SEED)
    started, ran = time.monotonic(), 0
    for _ in range(N_COMMANDS):
        if time.monotonic() - started > TIME_LIMIT_S:
            break
        argv = fuzzed_command(rng, fuzz_files, key, data)
        try:
            status = main(argv)
        except SystemExit as exit:  # argparse: usage and one error line
            status = exit.code
        except BaseException as error:  # a traceback is what the fuzz is looking for
            pytest.fail(f"green-profiles {' '.join(argv)} raised {error!r}")
        ran += 1
        err = capsys.readouterr().err
        assert status in (0, 2), (argv, status, err)
        assert "Traceback" not in err, (argv, err)
        if status == 2:
            errors = [line for line in err.splitlines() if "error:" in line]
            assert len(errors) == 1 or all(line.startswith("error:") for line in errors), (argv, err)
    assert ran >= 40, f"only {ran} commands in {TIME_LIMIT_S} s"
    listing = list_runs(data)
    assert listing.attrs["damaged"] == 0 and listing["key"].tolist() == [key]
    assert not [path for path in (data / "runs").iterdir() if path.name.startswith((".staging-", ".trash-"))]


def test_random_corpus_files_load_or_fail_naming_the_file(tmp_path):
    rng = random.Random(SEED + 1)
    for i in range(200):
        path = (random_jsonl_file if i % 2 else random_text_file)(rng, tmp_path / f"c{i}{'.jsonl' if i % 2 else '.txt'}")
        try:
            documents = load_local_file(path)
        except ValueError as error:
            message = str(error)
            assert message.startswith(str(path)), message
            if path.suffix == ".jsonl":
                assert ", line " in message, message
            assert "\n" not in message
        else:
            assert all(isinstance(doc.text, str) for doc in documents)


def test_the_issues_bad_files_name_the_file_and_line(tmp_path):
    text = tmp_path / "latin1.txt"
    text.write_bytes("caf\u00e9 and more".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"{text} is not UTF-8 text \(byte 0xe9 on line 1"):
        load_local_file(text)
    lines = tmp_path / "bad.jsonl"
    lines.write_text('{"text": "fine"}\n{"text": "fine too"}\n{"text": "a \x01 control"}\n')
    with pytest.raises(ValueError, match=rf"{lines}, line 3: not valid JSON \(Invalid control character"):
        load_local_file(lines)
