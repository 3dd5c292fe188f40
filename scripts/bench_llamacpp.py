#!/usr/bin/env python3
"""llama.cpp on the same GGUF as `slmforge bench lm-infer`, side by side.

Measures llama.cpp (through llama-cpp-python) on one GGUF: prompt processing
of N tokens and greedy decode at batch 1, on the same number of threads, then
(with --slmforge) runs `slmforge bench lm-infer` on the same file and prints
both with the ratios, so the comparison is taken in one run on one machine.

    python3 -m venv /tmp/llvenv && /tmp/llvenv/bin/pip install llama-cpp-python
    /tmp/llvenv/bin/python scripts/bench_llamacpp.py \
        --model ~/.cache/slmforge/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \
        --slmforge target/release/slmforge

The prompt is random token ids (speed does not depend on which); the decode
runs a fixed number of tokens without stopping. JSON on stdout.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import time


def llama_cpp_figures(model, prompt_len, decode_tokens, threads, repeats):
    from llama_cpp import Llama

    llm = Llama(
        model_path=model,
        n_ctx=max(512, prompt_len + decode_tokens + 64),
        n_threads=threads,
        n_threads_batch=threads,
        n_batch=max(512, prompt_len),
        logits_all=False,
        verbose=False,
    )
    rng = random.Random(0)
    vocab = llm.n_vocab()
    # Skip the first ids (control tokens in most vocabularies).
    prompt = [rng.randrange(16, vocab) for _ in range(prompt_len)]
    best = float("inf")
    for _ in range(max(1, repeats)):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        best = min(best, time.perf_counter() - t)
    # Decode at batch 1: greedy, fixed length, after a short prompt (as ours: 32 tokens).
    llm.reset()
    llm.eval(prompt[:32])
    t = time.perf_counter()
    for _ in range(decode_tokens):
        tok = llm.sample(temp=0.0)
        llm.eval([tok])
    decode_secs = time.perf_counter() - t
    return {
        "engine": "llama.cpp (llama-cpp-python)",
        "threads": threads,
        "prompt_len": prompt_len,
        "prompt_secs": best,
        "prompt_tokens_per_sec": prompt_len / best,
        "decode_batch1_tokens": decode_tokens,
        "decode_batch1_secs": decode_secs,
        "decode_batch1_tokens_per_sec": decode_tokens / decode_secs,
    }


PARITY_PROMPTS = [
    "The weather in Paris is",
    "user: cancel my order 42",
    "{\"name\": \"create_ticket\", \"arguments\":",
    "One, two, three, four,",
    "The capital of Japan is",
]


def llama_cpp_greedy(model, threads, prompts, n):
    """llama.cpp's greedy continuation (text) of each raw prompt."""
    from llama_cpp import Llama

    llm = Llama(model_path=model, n_ctx=256, n_threads=threads, verbose=False)
    out = []
    for p in prompts:
        llm.reset()
        llm.eval(llm.tokenize(p.encode(), add_bos=False, special=False))
        toks = []
        for _ in range(n):
            t = llm.sample(temp=0.0)
            if t == llm.token_eos():
                break
            toks.append(t)
            llm.eval([t])
        out.append(llm.detokenize(toks).decode("utf-8", errors="replace"))
    return out


def slmforge_greedy(binary, model, prompts, n):
    """Our greedy continuation (text) of each raw prompt, on the quantized decoder."""
    out = []
    for p in prompts:
        r = subprocess.run(
            [binary, "generate", "--model", model, "--raw", "--prompt", p,
             "--max-tokens", str(n), "--json"],
            check=True, capture_output=True, text=True,
            env={**os.environ, "SLMFORGE_NO_PROGRESS": "1"},
        )
        out.append(json.loads(r.stdout)["text"])
    return out


def slmforge_figures(binary, model, prompt_len, decode_tokens, batches):
    out = subprocess.run(
        [binary, "bench", "lm-infer", "--model", model, "--prompt-len", str(prompt_len),
         "--decode-tokens", str(decode_tokens), "--batches", ",".join(map(str, batches))],
        check=True, capture_output=True, text=True,
        env={**os.environ, "SLMFORGE_NO_PROGRESS": "1"},
    )
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="GGUF file")
    ap.add_argument("--slmforge", help="slmforge binary: also run its bench and print ratios")
    ap.add_argument("--prompt-len", type=int, default=256)
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--batches", default="8,16", help="slmforge's batched decode rows (besides 1)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()

    ref = llama_cpp_figures(a.model, a.prompt_len, a.decode_tokens, a.threads, a.repeats)
    print(f"llama.cpp: prompt {ref['prompt_tokens_per_sec']:.1f} tok/s, "
          f"decode batch 1 {ref['decode_batch1_tokens_per_sec']:.1f} tok/s", file=sys.stderr)
    result = {"model": a.model, "llama_cpp": ref}
    if a.slmforge:
        batches = [1] + [int(b) for b in a.batches.split(",") if b and int(b) != 1]
        ours = slmforge_figures(a.slmforge, a.model, a.prompt_len, a.decode_tokens, batches)
        by = {d["batch"]: d["tokens_per_sec"] for d in ours["decode"]}
        ratios = {
            "prompt_vs_llama_cpp": ours["prompt_tokens_per_sec"] / ref["prompt_tokens_per_sec"],
            "decode_batch1_vs_llama_cpp": by[1] / ref["decode_batch1_tokens_per_sec"],
        }
        for b in batches[1:]:
            ratios[f"decode_batch{b}_vs_our_batch1"] = by[b] / by[1]
        result["slmforge"] = ours
        result["ratios"] = ratios
        print(f"slmforge ({ours.get('decode_weights', '')}): prompt {ours['prompt_tokens_per_sec']:.1f} tok/s, "
              + ", ".join(f"decode batch {b} {by[b]:.1f}" for b in batches) + " tok/s", file=sys.stderr)
        for k, v in ratios.items():
            print(f"  {k}: {v:.2f}x", file=sys.stderr)
        # greedy parity with llama.cpp (which quantizes activations to 8 bits)
        ref_t = llama_cpp_greedy(a.model, a.threads, PARITY_PROMPTS, 24)
        our_t = slmforge_greedy(a.slmforge, a.model, PARITY_PROMPTS, 24)
        same = [r == o for r, o in zip(ref_t, our_t)]
        result["greedy_parity"] = {"tokens": 24, "prompts": len(same), "same": sum(same),
                                   "pairs": [{"prompt": p, "llama_cpp": r, "slmforge": o}
                                             for p, r, o in zip(PARITY_PROMPTS, ref_t, our_t)]}
        print(f"greedy continuations equal to llama.cpp's: {sum(same)}/{len(same)}", file=sys.stderr)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
