#!/usr/bin/env python3
"""gpu_reference.py — this GPU's ceilings and PyTorch's figures at NativeVlm's shapes, as JSON for
tools/gpu_report.py (tools/gpu-check.sh runs it; needs torch, and transformers + peft for the DPO step).

  python3 tools/gpu_reference.py --output build/gpu-check/reference.json [--skip-dpo]

Measures, each in its own try/except so that a failure records an error string and the rest still runs
(the file is rewritten after every section, so a timeout keeps what was measured):
  gemm_bf16   bf16 cuBLAS GEMMs: torch.matmul at 8192³, and F.linear x (m, k) · w (n, k)ᵀ at the NF4
              training shapes of nvlm_bench_ops (m = 4096; (k, n) = (576, 1536), (2048, 8192), (8192, 2048))
  gemm_f32    torch.matmul at 8192³ in f32, with TF32 tensor cores and without (nvlm.h's ops take f32)
  copy        device-to-device copy_ of 1 GiB; bytes counted read + write, as nvlm_bench_ops' buffer_copy
  sdpa        F.scaled_dot_product_attention in bf16 at nvlm_bench_ops' attention shapes (batch 1), forward
              and forward + backward, under each backend of torch.nn.attention.sdpa_kernel (flash,
              efficient, cudnn, math); the fastest that runs is kept, the others' times or errors listed.
              FLOP counts as nvlm_bench_ops: 4·heads·seq²·head_dim forward (half when causal), 2.5× that backward.
  dpo_step    transformers + peft: Idefics3ForConditionalGeneration built from tools/configs/smolvlm-instruct.json
              with random weights (no download), bf16, LoRA r=8 on q,k,v,o,gate,up,down (suffix match, so the
              vision tower's q/k/v too), one 4×4-tiled image (17 tiles of 384², the global one included),
              200 completion tokens, chosen + rejected as one batch of 2; reference log-probs with the adapters
              disabled under no_grad, sigmoid DPO loss (β = 0.1), backward, AdamW step. Reports ms/step
              (median after warm-up), pairs/s and torch.cuda.max_memory_allocated. If a step runs out of
              memory it is retried with gradient checkpointing, and the report says so.
Timing: CUDA events around N calls after warm-up, N sized to about 20 ms, median of 5 repeats.
"""
import argparse
import gc
import json
import os
import statistics
import sys
import time
import traceback

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICE = "cuda"

# The shapes of nvlm_bench_ops (tools/bench/bench_ops.cpp, full_sizes()).
NF4_TRAINING_SHAPES = [(4096, 576, 1536), (4096, 2048, 8192), (4096, 8192, 2048)]  # (m, k, n)
ATTENTION_SHAPES = (  # (seq, heads, kv_heads, head_dim, causal)
    [(seq, 16, 16, 64, True) for seq in (1024, 2048, 4096)]
    + [(seq, 32, 8, 128, True) for seq in (1024, 2048, 4096)]
    + [(1024, 16, 16, 72, False)]
)


def error_text(exception):
    """The exception's type and message on one line, at most 500 characters."""
    return f"{type(exception).__name__}: {' '.join(str(exception).split())}"[:500]


def time_us(fn, target_ms=20.0, repeats=5, warmup=3):
    """Median microseconds per call of fn over `repeats` timed runs of about target_ms each."""
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    iterations = max(1, min(1000, int(target_ms / max(start.elapsed_time(end), 1e-3))))
    per_call = []
    for _ in range(repeats):
        start.record()
        for _ in range(iterations):
            fn()
        end.record()
        end.synchronize()
        per_call.append(start.elapsed_time(end) * 1000.0 / iterations)
    return statistics.median(per_call)


def measure_gemm_bf16():
    results = []
    shapes = [("matmul", 8192, 8192, 8192)] + [("linear", m, k, n) for m, k, n in NF4_TRAINING_SHAPES]
    for op, m, k, n in shapes:
        entry = {"op": op, "m": m, "k": k, "n": n}
        try:
            x = torch.randn(m, k, device=DEVICE, dtype=torch.bfloat16)
            if op == "matmul":
                b = torch.randn(k, n, device=DEVICE, dtype=torch.bfloat16)
                us = time_us(lambda: torch.matmul(x, b))
            else:
                w = torch.randn(n, k, device=DEVICE, dtype=torch.bfloat16)
                us = time_us(lambda: F.linear(x, w))
            entry.update(time_us=us, tflops=2.0 * m * k * n / us / 1e6)
        except Exception as exception:
            entry["error"] = error_text(exception)
        results.append(entry)
    return results


def measure_gemm_f32():
    results = []
    size = 8192
    allow_tf32 = torch.backends.cuda.matmul.allow_tf32
    for math in ("tf32", "fp32"):
        entry = {"math": math, "m": size, "k": size, "n": size}
        try:
            torch.backends.cuda.matmul.allow_tf32 = math == "tf32"
            a = torch.randn(size, size, device=DEVICE)
            b = torch.randn(size, size, device=DEVICE)
            us = time_us(lambda: torch.matmul(a, b))
            entry.update(time_us=us, tflops=2.0 * size**3 / us / 1e6)
        except Exception as exception:
            entry["error"] = error_text(exception)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = allow_tf32
        results.append(entry)
    return results


def measure_copy():
    nbytes = 1 << 30
    src = torch.empty(nbytes // 4, device=DEVICE, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    us = time_us(lambda: dst.copy_(src))
    return {"nbytes": nbytes, "bytes": 2 * nbytes, "time_us": us, "gbps": 2 * nbytes / us / 1e3}


def sdpa_backends():
    from torch.nn.attention import SDPBackend

    names = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION", "math": "MATH"}
    return {name: getattr(SDPBackend, member) for name, member in names.items() if hasattr(SDPBackend, member)}


def measure_sdpa_shape(seq, heads, kv_heads, head_dim, causal):
    from torch.nn.attention import sdpa_kernel

    forward_flops = 4.0 * heads * seq * seq * head_dim * (0.5 if causal else 1.0)
    q = torch.randn(1, heads, seq, head_dim, device=DEVICE, dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(1, kv_heads, seq, head_dim, device=DEVICE, dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(1, kv_heads, seq, head_dim, device=DEVICE, dtype=torch.bfloat16, requires_grad=True)
    dout = torch.randn(1, heads, seq, head_dim, device=DEVICE, dtype=torch.bfloat16)
    gqa = {"enable_gqa": True} if kv_heads != heads else {}

    def forward():
        with torch.no_grad():
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, **gqa)

    def forward_backward():
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, **gqa)
        return torch.autograd.grad(out, (q, k, v), dout)

    entry = {"batch": 1, "seq": seq, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim,
             "causal": int(causal), "backends": {}}
    for name, backend in sdpa_backends().items():
        tried = {}
        for mode, fn in (("fwd", forward), ("fwd_bwd", forward_backward)):
            try:
                with sdpa_kernel(backend):
                    tried[f"{mode}_us"] = time_us(fn)
            except Exception as exception:
                tried[f"{mode}_error"] = error_text(exception)
        entry["backends"][name] = tried
    for mode, flops in (("fwd", forward_flops), ("fwd_bwd", 3.5 * forward_flops)):
        timed = [(tried[f"{mode}_us"], name) for name, tried in entry["backends"].items() if f"{mode}_us" in tried]
        if timed:
            us, name = min(timed)
            entry.update({f"{mode}_us": us, f"{mode}_backend": name, f"{mode}_tflops": flops / us / 1e6})
        else:
            entry[f"{mode}_error"] = "no SDPA backend ran this shape"
    return entry


def measure_sdpa():
    results = []
    for shape in ATTENTION_SHAPES:
        try:
            results.append(measure_sdpa_shape(*shape))
        except Exception as exception:
            seq, heads, kv_heads, head_dim, causal = shape
            results.append({"batch": 1, "seq": seq, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim,
                            "causal": int(causal), "error": error_text(exception)})
    return results


# ---- the DPO step ------------------------------------------------------------------------------

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TILES = 17            # a 4×4 split plus the global image
COMPLETION_TOKENS = 200
BETA = 0.1


def load_config(path):
    from transformers import Idefics3Config

    with open(path) as file:
        raw = json.load(file)
    # transformers' own bookkeeping, written by to_dict(): left in, it can stop the attention choice below.
    for section in (raw, raw["text_config"], raw["vision_config"]):
        section.pop("_attn_implementation_autoset", None)
    return Idefics3Config.from_dict(raw)


def build_model(config):
    """Random weights on the GPU in bf16, with SDPA attention where this transformers supports it.
    Returns the model, the attention implementations of its text and vision parts, and the failed tries."""
    from transformers import Idefics3ForConditionalGeneration

    tries = [
        ("sdpa", lambda: Idefics3ForConditionalGeneration._from_config(config, attn_implementation="sdpa")),
        ("eager", lambda: Idefics3ForConditionalGeneration._from_config(config, attn_implementation="eager")),
        ("default", lambda: Idefics3ForConditionalGeneration(config)),
    ]
    errors = []
    for name, build in tries:
        try:
            with torch.device(DEVICE):
                model = build()
        except Exception as exception:
            errors.append(f"attn_implementation={name}: {error_text(exception)}")
            continue
        vision = next((m for m in model.modules() if type(m).__name__.endswith("VisionTransformer")), None)
        attention = {"text": model.config._attn_implementation,
                     "vision": vision.config._attn_implementation if vision is not None else "unknown"}
        return model.to(torch.bfloat16), attention, errors
    raise RuntimeError("; ".join(errors))


def dpo_batch(config):
    """chosen and rejected (batch of 2): text, the image's tokens, text, then 200 completion tokens.
    With random weights only the count of image tokens matters (TILES · image_seq_len); the ids of the
    processor's other special tokens are arbitrary text ids here."""
    vision = config.vision_config
    image_seq_len = (vision.image_size // vision.patch_size) ** 2 // config.scale_factor**2
    generator = torch.Generator().manual_seed(0)

    def text(count):
        ids = torch.randint(0, config.text_config.vocab_size, (count,), generator=generator)
        return torch.where(ids == config.image_token_id, ids - 1, ids)

    image_block = []
    for _ in range(TILES):
        image_block += [text(2), torch.full((image_seq_len,), config.image_token_id)]
    prompt = torch.cat([text(8)] + image_block + [text(24)])
    rows = [torch.cat([prompt, text(COMPLETION_TOKENS)]) for _ in ("chosen", "rejected")]
    input_ids = torch.stack(rows).to(DEVICE)
    side = vision.image_size
    batch = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": torch.randn(2, TILES, 3, side, side, generator=generator).to(DEVICE, torch.bfloat16),
        "pixel_attention_mask": torch.ones(2, TILES, side, side, dtype=torch.long, device=DEVICE),
    }
    return batch, prompt.numel(), image_seq_len


def completion_logps(model, batch, prompt_len):
    """Σ log p(completion token) per row."""
    logits = model(**batch, use_cache=False).logits[:, prompt_len - 1:-1].float()
    targets = batch["input_ids"][:, prompt_len:]
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1).sum(-1)


def dpo_step(model, optimizer, batch, prompt_len):
    with torch.no_grad(), model.disable_adapter():
        reference = completion_logps(model, batch, prompt_len)
    policy = completion_logps(model, batch, prompt_len)
    margin = (policy[0] - reference[0]) - (policy[1] - reference[1])
    loss = -F.logsigmoid(BETA * margin)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def timed_steps(model, optimizer, batch, prompt_len, warmup=2, measured=5):
    for _ in range(warmup):
        dpo_step(model, optimizer, batch, prompt_len)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step_ms = []
    for _ in range(measured):
        start = time.perf_counter()
        loss = dpo_step(model, optimizer, batch, prompt_len)
        torch.cuda.synchronize()
        step_ms.append((time.perf_counter() - start) * 1000.0)
    return step_ms, loss


def measure_dpo_step():
    import peft
    import transformers

    result = {"model": "HuggingFaceTB/SmolVLM-Instruct (random weights, tools/configs/smolvlm-instruct.json)",
              "transformers": transformers.__version__, "peft": peft.__version__, "dtype": "bfloat16",
              "lora": {"r": 8, "lora_alpha": 8, "target_modules": LORA_TARGETS}, "beta": BETA,
              "tiles": TILES, "completion_tokens": COMPLETION_TOKENS, "batch": 2}
    try:
        run_dpo_step(result)
    except Exception as exception:  # what was learnt before the failure stays in the result
        traceback.print_exc()
        result["error"] = error_text(exception)
    return result


def run_dpo_step(result):
    from peft import LoraConfig, get_peft_model

    config = load_config(os.path.join(ROOT, "tools", "configs", "smolvlm-instruct.json"))
    started = time.perf_counter()
    model, attention, attention_errors = build_model(config)
    result["attn_implementation"] = attention
    if attention_errors:
        result["attn_implementation_errors"] = attention_errors
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=8, lora_dropout=0.0, target_modules=LORA_TARGETS))
    model.train()
    trainable, total = model.get_nb_trainable_parameters()
    result.update(trainable_params=trainable, all_params=total, build_s=time.perf_counter() - started)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batch, prompt_len, image_seq_len = dpo_batch(config)
    result.update(sequence_tokens=batch["input_ids"].shape[1], prompt_tokens=prompt_len,
                  image_tokens=TILES * image_seq_len, gradient_checkpointing=False)

    oom = None
    try:
        step_ms, loss = timed_steps(model, optimizer, batch, prompt_len)
    except torch.cuda.OutOfMemoryError as exception:
        oom = error_text(exception)
    if oom is not None:  # outside the except block, so that the failed step's tensors are already freed
        result["out_of_memory_without_checkpointing"] = oom
        optimizer.zero_grad(set_to_none=True)
        gc.collect()
        torch.cuda.empty_cache()
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        result["gradient_checkpointing"] = True
        step_ms, loss = timed_steps(model, optimizer, batch, prompt_len)
    ms = statistics.median(step_ms)
    result.update(step_ms=ms, step_ms_all=step_ms, pairs_per_s=1000.0 / ms, last_loss=loss,
                  max_memory_allocated_bytes=torch.cuda.max_memory_allocated())


# ---- main ---------------------------------------------------------------------------------------

def write(path, report):
    with open(path, "w") as file:
        json.dump(report, file, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.path.join(ROOT, "build", "gpu-check", "reference.json"))
    parser.add_argument("--skip-dpo", action="store_true", help="leave out the transformers + peft DPO step")
    args = parser.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)

    report = {"torch": torch.__version__, "torch_cuda": torch.version.cuda,
              "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}
    if not torch.cuda.is_available():
        report["error"] = "torch.cuda.is_available() is False"
    else:
        report["device"] = torch.cuda.get_device_name(0)
        report["capability"] = "%d.%d" % torch.cuda.get_device_capability(0)
        sections = [("gemm_bf16", measure_gemm_bf16), ("gemm_f32", measure_gemm_f32), ("copy", measure_copy),
                    ("sdpa", measure_sdpa)]
        if not args.skip_dpo:
            sections.append(("dpo_step", measure_dpo_step))
        for name, measure in sections:
            started = time.perf_counter()
            print(f"gpu_reference: {name} ...", flush=True)
            try:
                report[name] = measure()
            except Exception as exception:
                traceback.print_exc()
                report[name] = {"error": error_text(exception)}
            print(f"gpu_reference: {name} done in {time.perf_counter() - started:.1f} s", flush=True)
            gc.collect()
            torch.cuda.empty_cache()
            write(args.output, report)
    write(args.output, report)
    print(json.dumps(report, indent=1)[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
