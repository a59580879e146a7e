#!/usr/bin/env python3
"""gpu_report.py — the markdown report of tools/gpu-check.sh, from the files its stages leave in one folder.

  python3 tools/gpu_report.py --dir build/gpu-check [--output FILE] [--compact]

Reads, each optional (a missing file is reported as missing):
  machine.txt     "key: value" lines (GPU, driver, CUDA, nvcc, commit), written by gpu-check.sh
  stages.tsv      stage, status, seconds, log file, detail: one line per stage of gpu-check.sh
  parity.md       nvlm_test_backend_ops --markdown (CUDA against the CPU twin), parity.log its output
  bench.json      nvlm_bench_ops --device cuda --json (tools/bench/bench_ops.cpp)
  reference.json  tools/gpu_reference.py: cuBLAS / copy ceilings, PyTorch SDPA, transformers + peft DPO step
  aot-*.log       the NativeAOT host's runs (nativevlm compare / bench on CUDA), when it was present
  dpo-step-*.json the host's `nativevlm bench --dpo_step --json` per config of tools/configs
Writes --output (default DIR/gpu-check.md); --compact also prints a shorter version to stdout for a
caller that sees only the end of the output: the big kernel table first and the summaries last, the
parity table cut to its failing rows, log tails and error lists shortened, SDPA per-backend errors left out.

Ratios: "of peak" is a kernel's TFLOP/s over the best measured bf16 cuBLAS TFLOP/s, or its GB/s over the
measured copy GB/s; "vs X" is X's time over ours (1.00 = as fast as X, 0.50 = twice X's time).
Standard library only.
"""
import argparse
import glob
import json
import os
import re
import sys


# ---- reading ------------------------------------------------------------------------------------

def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.read()
    except OSError:
        return None


def read_json(path):
    """(value, problem): the parsed file, or None and why not."""
    text = read_text(path)
    if text is None:
        return None, f"`{os.path.basename(path)}` is missing"
    try:
        return json.loads(text), None
    except ValueError as exception:
        return None, f"`{os.path.basename(path)}` is not valid JSON: {exception}"


def read_machine(path):
    text = read_text(path) or ""
    return [tuple(part.strip() for part in line.split(":", 1)) for line in text.splitlines() if ":" in line]


def read_stages(path):
    text = read_text(path) or ""
    stages = []
    for line in text.splitlines():
        fields = line.split("\t") + [""] * 5
        stages.append({"stage": fields[0], "status": fields[1], "seconds": fields[2], "log": fields[3],
                       "detail": fields[4]})
    return stages


def shorten(text, limit):
    return text if len(text) <= limit else text[:limit - 1] + "…"


def tail(text, lines):
    return "\n".join(text.rstrip().splitlines()[-lines:])


# ---- formatting ---------------------------------------------------------------------------------

def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(out)


def code_block(text):
    return "```\n" + text.rstrip() + "\n```"


def us(value):
    return "" if value is None else f"{value:,.1f}"


def ratio(value):
    return "" if value is None else f"{value:.2f}"


def dims_key(entry, names):
    return tuple(int(entry.get(name, -1)) for name in names)


# ---- sections -----------------------------------------------------------------------------------
# Each returns (full markdown, compact markdown).

def machine_section(machine, reference):
    rows = list(machine)
    if isinstance(reference, dict):
        for key in ("device", "torch", "torch_cuda", "cudnn"):
            if reference.get(key) is not None:
                rows.append((f"{key} (PyTorch)" if key != "device" else "device (PyTorch)", reference[key]))
    text = "## Machine\n\n" + (table(["", ""], rows) if rows else "`machine.txt` is missing.")
    return text, text


def stages_section(stages, folder, log_lines_full=40, log_lines_compact=12):
    if not stages:
        text = "## Stages\n\n`stages.tsv` is missing."
        return text, text
    rows = [(s["stage"], s["status"] + (f" ({s['detail']})" if s["detail"] else ""), s["seconds"], s["log"])
            for s in stages]
    full = compact = "## Stages\n\n" + table(["stage", "result", "s", "log"], rows)
    for stage in stages:
        if stage["status"] in ("ok", "skipped") or not stage["log"]:
            continue
        log = read_text(os.path.join(folder, stage["log"]))
        if log is None:
            continue
        full += failing_log(stage, log, log_lines_full)
        compact += failing_log(stage, log, log_lines_compact)
    return full, compact


def failing_log(stage, log, lines):
    """The first lines that mention an error (a compiler's first complaint is the useful one), then the tail."""
    errors = [line for line in log.splitlines() if re.search(r"\berror\b", line, re.IGNORECASE)]
    text = f"\n\n`{stage['log']}` ({stage['stage']} {stage['status']})"
    if errors:
        text += ", first error lines:\n\n" + code_block("\n".join(errors[:lines // 2])) + "\n\nlast lines:"
    return text + "\n\n" + code_block(tail(log, lines))


def parity_section(folder):
    log = read_text(os.path.join(folder, "parity.log"))
    markdown = read_text(os.path.join(folder, "parity.md"))
    summary = "parity suite did not run (no `parity.log`)"
    if log is not None:
        lines = [line for line in log.splitlines() if line.strip()]
        summary = lines[-1].strip() if lines else "parity.log is empty"
    head = f"## Parity: CUDA against the CPU twin (nvlm_test_backend_ops)\n\n**{summary}**"
    if markdown is None:
        text = head + "\n\n`parity.md` is missing."
        return text, text
    table_lines = [line for line in markdown.splitlines() if line.startswith("|")]
    failing = [line for line in table_lines[2:] if re.search(r"fail", line, re.IGNORECASE)]
    compact = head + "\n\n"
    if failing:
        compact += "Failing cases (the full table is in gpu-check.md):\n\n" + "\n".join(table_lines[:2] + failing[:40])
        if len(failing) > 40:
            compact += f"\n\n… and {len(failing) - 40} more failing rows."
    else:
        compact += f"No failing rows among {max(0, len(table_lines) - 2)} (the full table is in gpu-check.md)."
    return head + "\n\n" + markdown.strip(), compact


def ceilings(reference):
    """(best bf16 cuBLAS TFLOP/s, copy GB/s), None where not measured."""
    if not isinstance(reference, dict):
        return None, None
    gemms = [g["tflops"] for g in reference.get("gemm_bf16", []) if isinstance(g, dict) and "tflops" in g]
    copy = reference.get("copy", {})
    return (max(gemms) if gemms else None), (copy.get("gbps") if isinstance(copy, dict) else None)


def ceilings_section(reference, problem):
    if reference is None:
        text = f"## Ceilings (tools/gpu_reference.py)\n\n{problem}"
        return text, text
    rows = []
    for g in reference.get("gemm_bf16", []):
        rows.append((f"bf16 {g['op']} m={g['m']} k={g['k']} n={g['n']}", us(g.get("time_us")),
                     f"{g['tflops']:.1f} TFLOP/s" if "tflops" in g else g.get("error", "")))
    for g in reference.get("gemm_f32", []):
        rows.append((f"f32 matmul ({g['math']}) {g['m']}³", us(g.get("time_us")),
                     f"{g['tflops']:.1f} TFLOP/s" if "tflops" in g else g.get("error", "")))
    copy = reference.get("copy")
    if isinstance(copy, dict):
        rows.append(("copy_ of 1 GiB (read + write)", us(copy.get("time_us")),
                     f"{copy['gbps']:.0f} GB/s" if "gbps" in copy else copy.get("error", "")))
    text = "## Ceilings (tools/gpu_reference.py)\n\n" + table(["measurement", "time (µs)", "result"], rows)
    if reference.get("error"):
        text += f"\n\nerror: {reference['error']}"
    return text, text


def kernels_section(bench, problem, peak_tflops, copy_gbps):
    head = "## Kernels (nvlm_bench_ops --device cuda)"
    if bench is None:
        text = f"{head}\n\n{problem}"
        return text, text
    rows, compact_rows = [], []
    for entry in bench:
        if "error" in entry:
            rows.append((entry["op"], entry["shape"], "", "error: " + entry["error"], ""))
            compact_rows.append(rows[-1][:3] + ("error: " + shorten(entry["error"], 120), ""))
            continue
        if "tflops" in entry:
            throughput = f"{entry['tflops']:.2f} TFLOP/s"
            of_peak = entry["tflops"] / peak_tflops if peak_tflops else None
        else:
            throughput = f"{entry['gbps']:.0f} GB/s"
            of_peak = entry["gbps"] / copy_gbps if copy_gbps else None
        rows.append((entry["op"], entry["shape"], us(entry["time_us"]), throughput, ratio(of_peak)))
        compact_rows.append(rows[-1])
    basis = (f"of peak: TFLOP/s over bf16 cuBLAS {peak_tflops:.0f} TFLOP/s" if peak_tflops else "no bf16 peak measured") + \
            "; " + (f"GB/s over copy {copy_gbps:.0f} GB/s" if copy_gbps else "no copy bandwidth measured") + "."
    header = ["op", "shape", "time (µs)", "throughput", "of peak"]
    return f"{head}\n\n{basis}\n\n" + table(header, rows), f"{head}\n\n{basis}\n\n" + table(header, compact_rows)


def math_of(entry):
    """The math mode a benchmark ran in: its shape ends in "math=bf16" for the BF16 mode (nvlm_math_mode)."""
    return "bf16" if "math=bf16" in entry.get("shape", "") else "f32"


def bench_index(bench, op, names, math="f32"):
    return {dims_key(e["dims"], names): e for e in (bench or [])
            if e.get("op") == op and "time_us" in e and math_of(e) == math}


def nf4_section(bench, reference):
    head = "## NF4 linear against cuBLAS bf16 (training shapes)"
    gemms = [g for g in (reference or {}).get("gemm_bf16", []) if g.get("op") == "linear"]
    if not gemms:
        text = f"{head}\n\nNo cuBLAS bf16 linear was measured."
        return text, text
    names = ("m", "k", "n")
    nf4_forward = bench_index(bench, "nf4_linear_forward", names)
    nf4_backward = bench_index(bench, "nf4_linear_backward", names)
    dense_forward = bench_index(bench, "linear_forward", names)
    dense_forward_bf16 = bench_index(bench, "linear_forward", names, math="bf16")
    rows = []
    for g in gemms:
        key = dims_key(g, names)
        cublas = g.get("time_us")
        cells = []
        for index in (nf4_forward, nf4_backward, dense_forward, dense_forward_bf16):
            ours = index.get(key, {}).get("time_us")
            cells += [us(ours), ratio(cublas / ours if cublas and ours else None)]
        rows.append([f"m={key[0]} k={key[1]} n={key[2]}", us(cublas) or g.get("error", "")] + cells)
    text = (f"{head}\n\nnf4_linear_backward computes dx only (the same FLOPs as the forward). "
            "vs cuBLAS = cuBLAS bf16 time / our time.\n\n" +
            table(["shape", "cuBLAS bf16 (µs)", "nf4 fwd (µs)", "vs cuBLAS", "nf4 bwd dx (µs)", "vs cuBLAS",
                   "dense fwd, f32 math (µs)", "vs cuBLAS", "dense fwd, bf16 math (µs)", "vs cuBLAS"], rows))
    return text, text


def attention_section(bench, reference):
    head = "## Attention against PyTorch SDPA (bf16, best backend)"
    sdpa = (reference or {}).get("sdpa")
    if not isinstance(sdpa, list):
        text = f"{head}\n\nNo SDPA reference was measured" + (f": {sdpa['error']}" if isinstance(sdpa, dict) else ".")
        return text, text
    names = ("batch", "seq", "heads", "kv_heads", "head_dim", "causal")
    indices = {math: (bench_index(bench, "attention_forward", names, math), bench_index(bench, "attention_backward", names, math))
               for math in ("f32", "bf16")}
    rows, backend_notes = [], []
    for s in sdpa:
        key = dims_key(s, names)
        shape = f"seq={s['seq']} heads={s['heads']}/{s['kv_heads']} d={s['head_dim']} " + \
                ("causal" if s["causal"] else "bidirectional")
        for math, (forward, backward) in indices.items():
            ours_forward = forward.get(key, {}).get("time_us")
            ours_backward = backward.get(key, {}).get("time_us")
            ours_both = ours_forward + ours_backward if ours_forward and ours_backward else None
            rows.append((shape, math, us(ours_forward),
                         us(s.get("fwd_us")) + (f" ({s['fwd_backend']})" if "fwd_backend" in s else ""),
                         ratio(s["fwd_us"] / ours_forward if ours_forward and "fwd_us" in s else None),
                         us(ours_both), us(s.get("fwd_bwd_us")) + (f" ({s['fwd_bwd_backend']})" if "fwd_bwd_backend" in s else ""),
                         ratio(s["fwd_bwd_us"] / ours_both if ours_both and "fwd_bwd_us" in s else None)))
        for problem in ("error", "fwd_error", "fwd_bwd_error"):
            if problem in s:
                backend_notes.append(f"- {shape}: {s[problem]}")
        for backend, tried in s.get("backends", {}).items():
            for mode in ("fwd", "fwd_bwd"):
                if f"{mode}_error" in tried:
                    backend_notes.append(f"- {shape}, {backend} {mode}: {tried[mode + '_error']}")
    text = (f"{head}\n\nOurs: attention_forward, and attention_forward + attention_backward (f32 buffers), in f32 math "
            "(CUDA cores) and in bf16 math (tensor cores). vs SDPA = SDPA time / our time.\n\n" +
            table(["shape", "our math", "ours fwd (µs)", "SDPA fwd (µs)", "vs SDPA", "ours fwd+bwd (µs)", "SDPA fwd+bwd (µs)",
                   "vs SDPA"], rows))
    full = text + ("\n\nSDPA backends that did not run:\n\n" + "\n".join(backend_notes) if backend_notes else "")
    return full, text


def read_dpo_steps(folder):
    """{config name: (figures, problem)} of nativevlm bench --dpo_step's dpo-step-<config>.json files."""
    steps = {}
    for path in sorted(glob.glob(os.path.join(folder, "dpo-step-*.json"))):
        config = os.path.basename(path)[len("dpo-step-"):-len(".json")]
        steps[config] = read_json(path)
    return steps


def reference_config(dpo):
    """The tools/configs name gpu_reference.py's DPO step was built from (its "model" names the file)."""
    match = re.search(r"tools/configs/([\w.-]+)\.json", (dpo or {}).get("model", ""))
    return match.group(1) if match else None


def gib(value):
    return "" if value is None else f"{value / 2**30:.2f}"


ADAPTER_NAMES = {"dora": "DoRA", "lora": "LoRA"}


def dpo_section(reference, dpo_steps):
    """NativeVlm's DPO step per config beside transformers + peft's at the same shapes; "vs transformers"
    is their time over ours."""
    head = "## DPO step: NativeVlm (nativevlm bench --dpo_step) and transformers + peft, random weights"
    dpo = (reference or {}).get("dpo_step")
    dpo = dpo if isinstance(dpo, dict) else None
    theirs_config = reference_config(dpo)
    theirs_ms = dpo.get("step_ms") if dpo else None
    notes = []
    rows = []
    for config, (ours, problem) in dpo_steps.items():
        if ours is None:
            notes.append(f"{config}: {problem}")
            continue
        ms = ours.get("step_ms")
        # dpo-step-<config>-bf16.json is the same config's step in bf16 math: compared with the same reference.
        compared = theirs_ms is not None and config.removesuffix("-bf16") == theirs_config
        if compared:
            for key in ("sequence_tokens", "image_tokens", "completion_tokens", "batch"):
                if ours.get(key) != dpo.get(key):
                    notes.append(f"{config}: {key} {ours.get(key)} here, {dpo.get(key)} in transformers + peft: not like for like")
        settings = (f"{'NF4' if ours.get('quant') == 'nf4' else 'f32'} base, {ADAPTER_NAMES.get(ours.get('adapter'), ours.get('adapter'))} "
                    f"r{ours.get('lora_r')}" + (", grad. ckpt" if ours.get("gradient_checkpointing") else "")
                    + (", bf16 math" if ours.get("bf16") else ", fp32 math")
                    + (", bf16 activations" if ours.get("saved_activations") == "bf16" else ""))
        rows.append((config, settings, f"{ours.get('sequence_tokens')} × {ours.get('batch')}",
                     f"{ms:.0f}" if ms is not None else "", f"{ours.get('pairs_per_s', 0):.2f}",
                     f"{ours.get('tokens_per_s', 0):,.0f}", gib(ours.get("peak_device_memory_bytes")),
                     gib(ours.get("held_before_step_bytes")),
                     f"{theirs_ms:.0f}" if compared else "",
                     gib(dpo.get("max_memory_allocated_bytes")) if compared else "",
                     ratio(theirs_ms / ms) if compared and ms else ""))
    text = head + "\n\n"
    if rows:
        text += table(["config", "NativeVlm settings", "tokens × rows", "ms / step", "pairs / s", "tokens / s",
                       "peak GiB", "held GiB", "transformers ms / step", "transformers GiB", "vs transformers"], rows)
    else:
        text += "NativeVlm: not measured (see Stages: aot-dpo-step-*)."
    if dpo is None:
        text += "\n\ntransformers + peft: not measured."
    elif theirs_ms is None:
        text += f"\n\ntransformers + peft ({theirs_config}): error: {dpo.get('error', 'no step time recorded')}"
    else:
        details = [
            ("config", theirs_config),
            ("settings", f"{dpo.get('dtype')} base, LoRA r{dpo.get('lora', {}).get('r')} (no NF4, no DoRA)"),
            ("ms / step (median)", f"{theirs_ms:.0f}  (all: {', '.join(f'{t:.0f}' for t in dpo.get('step_ms_all', []))})"),
            ("pairs / s", f"{dpo['pairs_per_s']:.2f}"),
            ("max memory allocated", f"{dpo['max_memory_allocated_bytes'] / 2**30:.1f} GiB"),
            ("sequence", f"{dpo.get('sequence_tokens')} tokens ({dpo.get('image_tokens')} image, "
                         f"{dpo.get('completion_tokens')} completion) × batch {dpo.get('batch')}"),
            ("attention", ", ".join(f"{part} {name}" for part, name in dpo.get("attn_implementation", {}).items())),
            ("gradient checkpointing", "yes (out of memory without it)" if dpo.get("gradient_checkpointing") else "no"),
            ("trainable / all params", f"{dpo.get('trainable_params', 0):,} / {dpo.get('all_params', 0):,}"),
            ("versions", f"transformers {dpo.get('transformers')}, peft {dpo.get('peft')}"),
        ]
        text += "\n\ntransformers + peft:\n\n" + table(["", ""], details)
        for key in ("attn_implementation_errors", "out_of_memory_without_checkpointing"):
            if dpo.get(key):
                notes.append(f"transformers + peft {key}: {dpo[key]}")
    if notes:
        text += "\n\n" + "\n".join(f"- {note}" for note in notes)
    return text, text


def aot_section(folder):
    head = "## NativeAOT host on CUDA (nativevlm)"
    logs = sorted(glob.glob(os.path.join(folder, "aot-*.log")))
    if not logs:
        text = f"{head}\n\nNot run (see Stages)."
        return text, text
    full = compact = head
    for path in logs:
        log = read_text(path) or ""
        full += f"\n\n`{os.path.basename(path)}`:\n\n" + code_block(tail(log, 60))
        compact += f"\n\n`{os.path.basename(path)}`, last lines:\n\n" + code_block(tail(log, 8))
    return full, compact


def errors_section(bench, bench_problem, reference, reference_problem):
    errors = [bench_problem, reference_problem]
    errors += [f"nvlm_bench_ops {e['op']} {e['shape']}: {e['error']}" for e in (bench or []) if "error" in e]
    if isinstance(reference, dict):
        if reference.get("error"):
            errors.append(f"gpu_reference: {reference['error']}")
        for name in ("gemm_bf16", "gemm_f32", "copy", "sdpa", "dpo_step"):
            section = reference.get(name)
            entries = section if isinstance(section, list) else [section]
            errors += [f"gpu_reference {name}: {e['error']}" for e in entries if isinstance(e, dict) and "error" in e]
    errors = [e for e in errors if e]
    if not errors:
        return "## Errors\n\nNone.", "## Errors\n\nNone."
    full = "## Errors\n\n" + "\n".join(f"- {e}" for e in errors)
    compact = "## Errors\n\n" + "\n".join(f"- {shorten(e, 300)}" for e in errors[:25])
    if len(errors) > 25:
        compact += f"\n- … {len(errors) - 25} more in gpu-check.md"
    return full, compact


# ---- main ---------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=os.path.join("build", "gpu-check"), help="folder of gpu-check.sh's files")
    parser.add_argument("--output", help="report path (default DIR/gpu-check.md)")
    parser.add_argument("--compact", action="store_true", help="also print a compact report to stdout")
    args = parser.parse_args()
    folder = args.dir
    output = args.output or os.path.join(folder, "gpu-check.md")

    machine = read_machine(os.path.join(folder, "machine.txt"))
    stages = read_stages(os.path.join(folder, "stages.tsv"))
    bench, bench_problem = read_json(os.path.join(folder, "bench.json"))
    reference, reference_problem = read_json(os.path.join(folder, "reference.json"))
    peak_tflops, copy_gbps = ceilings(reference)

    machine_part = machine_section(machine, reference)
    stages_part = stages_section(stages, folder)
    parity_part = parity_section(folder)
    ceilings_part = ceilings_section(reference, reference_problem)
    kernels_part = kernels_section(bench, bench_problem, peak_tflops, copy_gbps)
    nf4_part = nf4_section(bench, reference)
    attention_part = attention_section(bench, reference)
    dpo_part = dpo_section(reference, read_dpo_steps(folder))
    aot_part = aot_section(folder)
    errors_part = errors_section(bench, bench_problem, reference, reference_problem)

    title = "# GPU check (tools/gpu-check.sh)\n\n"
    full_order = [machine_part, stages_part, parity_part, ceilings_part, kernels_part, nf4_part, attention_part,
                  dpo_part, aot_part, errors_part]
    with open(output, "w", encoding="utf-8") as file:
        file.write(title + "\n\n".join(full for full, _ in full_order) + "\n")
    if args.compact:
        compact_order = [kernels_part, nf4_part, attention_part, dpo_part, aot_part, ceilings_part, machine_part,
                         parity_part, stages_part, errors_part]
        sys.stdout.reconfigure(encoding="utf-8", errors="replace")
        print(title + "\n\n".join(compact for _, compact in compact_order))
        print(f"\n(full report: {output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
