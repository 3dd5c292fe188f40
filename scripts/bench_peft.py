#!/usr/bin/env python3
"""Hugging Face transformers + PEFT on the same LoRA step as `slmforge bench lm-train`.

Loads SmolLM2-135M-Instruct from the same GGUF (dequantized to f32), adds PEFT
LoRA adapters (rank 8, alpha 16, no dropout, on q/k/v/o/gate/up/down) and
times one training step (forward, backward, AdamW lr 1e-4 over the adapters,
zero_grad) on PyTorch's CPU backend: batch 4 x 256 random token ids (100 ..
vocab), loss on the last half of each row. One warm-up step, then the mean of
--steps timed steps. Two variants, each in a process of its own so that their
peak RSS (VmHWM, load included, as ours) are not mixed:

  all_positions     transformers' default `model(input_ids, labels=...)`, the
                    LM head (576 x 49152) at every position;
  answer_positions  the decoder's last hidden state, the LM head only at the
                    positions that predict an answer token (what slmforge does).

With --slmforge it also runs `slmforge bench lm-train` on the same shape and
prints both with the ratios ours / PEFT, so they are taken in one run on one
machine, on --threads threads (default all cores; torch's and rayon's
pools alike). Every measured process holds an exclusive flock on --lock
(/tmp/bench.lock), which other benchmarks on the machine take too.

    python3 -m venv /tmp/peftvenv
    /tmp/peftvenv/bin/pip install torch transformers peft gguf
    /tmp/peftvenv/bin/python scripts/bench_peft.py \\
        --model ~/.cache/slmforge/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --slmforge target/release/slmforge

The default torch wheel from PyPI brings the CUDA libraries along (unused
here). JSON on stdout, progress on stderr.
"""

import argparse
import fcntl
import gc
import json
import os
import subprocess
import sys
import time

DEFAULT_MODEL = os.path.join(
    os.environ.get("SLMFORGE_MODELS", os.path.expanduser("~/.cache/slmforge/models")),
    "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
VARIANTS = ["all_positions", "answer_positions"]


def proc_status_bytes(field):
    """A memory figure of this process from /proc/self/status (VmHWM: peak RSS), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def peft_figures(a):
    """One variant's step time, losses and peak RSS (run in a process of its own)."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # before the imports: the GGUF loader's bars
    import torch
    import torch.nn.functional as F
    import peft
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(os.path.abspath(a.model)), gguf_file=os.path.basename(a.model),
        dtype=torch.float32)
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(
        r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0, target_modules=TARGETS,
        task_type="CAUSAL_LM"))
    model.train()
    lora = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(lora, lr=1e-4)

    base = model.get_base_model()
    vocab = base.config.vocab_size
    ids = torch.randint(100, vocab, (a.batch, a.seq), generator=torch.Generator().manual_seed(1))
    # The last n_answer tokens of each row are the answer; the first token is never a target.
    start = max(1, a.seq - int(a.seq * a.answer_frac + 0.5))
    if a.variant == "all_positions":
        labels = ids.clone()
        labels[:, :start] = -100

        def loss_fn():
            return model(input_ids=ids, labels=labels).loss
    else:
        targets = ids[:, start:].reshape(-1)

        def loss_fn():
            hidden = base.model(input_ids=ids, use_cache=False).last_hidden_state
            rows = hidden[:, start - 1:-1].reshape(-1, hidden.shape[-1])
            return F.cross_entropy(base.lm_head(rows), targets)

    load_peak = proc_status_bytes("VmHWM")
    gc.collect()
    loaded_rss = proc_status_bytes("VmRSS")
    times, fwd_times, losses = [], [], []
    for step in range(a.steps + 1):
        t = time.perf_counter()
        loss = loss_fn()
        tf = time.perf_counter() - t
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t
        losses.append(loss.item())
        print(f"peft {a.variant} step {step}: {dt:.3f}s (forward {tf:.3f}s) loss {losses[-1]:.4f}"
              + (" [warm-up]" if step == 0 else ""), file=sys.stderr)
        if step > 0:
            times.append(dt)
            fwd_times.append(tf)
    mean = sum(times) / len(times)
    return {
        "engine": "transformers + PEFT (PyTorch CPU)",
        "variant": a.variant,
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "attn_implementation": base.config._attn_implementation,
        "threads": torch.get_num_threads(),
        "batch": a.batch,
        "seq": a.seq,
        "rank": a.rank,
        "lora_params": sum(p.numel() for p in lora),
        "answer_tokens": a.batch * (a.seq - start),
        "step_secs": mean,
        "forward_secs": sum(fwd_times) / len(fwd_times),
        "step_secs_all": times,
        "tokens_per_sec": a.batch * a.seq / mean,
        "losses": losses,
        # Peak RSS of the process, loading included (as slmforge's figure);
        # the peak until the model was ready; the RSS then.
        "peak_rss_bytes": proc_status_bytes("VmHWM"),
        "peak_rss_load_bytes": load_peak,
        "rss_after_load_bytes": loaded_rss,
    }


def shape_args(a):
    """Options that both this script and `slmforge bench lm-train` take."""
    return ["--model", a.model, "--batch", str(a.batch), "--seq", str(a.seq),
            "--rank", str(a.rank), "--steps", str(a.steps), "--answer-frac", str(a.answer_frac)]


def run_locked(cmd, lock, env=None):
    """Run `cmd` holding the benchmark lock; its stdout's last JSON object."""
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=env).stdout
    # Pretty-printed JSON: the last object starts with "{" at the start of a line.
    return json.loads(out[out.rfind("\n{") + 1:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="GGUF file")
    ap.add_argument("--slmforge", help="slmforge binary: also run its bench and print ratios")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    ap.add_argument("--answer-frac", type=float, default=0.5,
                    help="fraction of each sequence (its end) that is answer tokens")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of "
                    + ", ".join(VARIANTS))
    ap.add_argument("--lock", default="/tmp/bench.lock", help="flock held while measuring")
    ap.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # child process
    a = ap.parse_args()

    if a.variant:
        print(json.dumps(peft_figures(a)))
        return
    if a.steps < 1:
        ap.error("--steps: at least one timed step")
    variants = [v for v in a.variants.split(",") if v]
    if not set(variants) <= set(VARIANTS):
        ap.error(f"--variants: unknown variant in {a.variants!r}")
    ref = {}
    for v in variants:
        cmd = [sys.executable, os.path.abspath(__file__), *shape_args(a),
               "--threads", str(a.threads), "--variant", v]
        ref[v] = run_locked(cmd, a.lock)
        print(f"peft {v}: {ref[v]['tokens_per_sec']:.1f} trained tok/s, peak RSS "
              f"{ref[v]['peak_rss_bytes'] / 1e9:.2f} GB", file=sys.stderr)
    result = {"model": a.model, "peft": ref}
    if a.slmforge:
        env = {**os.environ, "SLMFORGE_NO_PROGRESS": "1", "RAYON_NUM_THREADS": str(a.threads)}
        ours = run_locked([a.slmforge, "bench", "lm-train", *shape_args(a)], a.lock, env)
        ratios = {}
        for v, r in ref.items():
            ratios[f"tokens_per_sec_vs_peft_{v}"] = ours["tokens_per_sec"] / r["tokens_per_sec"]
            if ours.get("peak_rss_bytes"):
                ratios[f"peak_rss_vs_peft_{v}"] = ours["peak_rss_bytes"] / r["peak_rss_bytes"]
            if r["lora_params"] != ours["lora_params"]:
                print(f"warning: LoRA parameters differ: PEFT {r['lora_params']}, "
                      f"slmforge {ours['lora_params']}", file=sys.stderr)
        result["slmforge"] = ours
        result["ratios"] = ratios
        print(f"slmforge: {ours['tokens_per_sec']:.1f} trained tok/s, peak RSS "
              f"{(ours.get('peak_rss_bytes') or 0) / 1e9:.2f} GB", file=sys.stderr)
        for k, x in ratios.items():
            print(f"  {k}: {x:.2f}x", file=sys.stderr)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
