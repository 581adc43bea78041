"""``python -m green_profiles.prepare``: fetch and prepare the offline default's data, then report it."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from green_profiles.corpora import load_corpus, prepare_offline_data
from green_profiles.locations import default_data_dir
from green_profiles.models import smollm2_directory
from green_profiles.windows import tokenize_documents


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=None, help="default: $GREEN_PROFILES_DATA or ./data")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
    prepare_offline_data(data_dir)
    model_dir = smollm2_directory(data_dir)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    print(f"{'corpus':<11} {'documents':>9} {'tokens':>10} {'>= 513':>7} {'>= 2049':>8}   (SmolLM2 tokens)")
    for name in ("gutenberg", "wikipedia"):
        documents = load_corpus(name, data_dir=data_dir)
        lengths = np.array([len(ids) for ids in tokenize_documents(documents, tokenizer)])
        print(f"{name:<11} {len(documents):>9} {lengths.sum():>10,} {(lengths >= 513).sum():>7} "
              f"{(lengths >= 2049).sum():>8}")
    print(f"model weights: {model_dir}")


if __name__ == "__main__":
    main()
