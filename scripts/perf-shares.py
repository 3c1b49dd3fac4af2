#!/usr/bin/env python3
"""Per-op shares of a `perf record` profile of a gram run, for the README's performance notes.

    perf record -F 499 -o perf.data target/release/examples/judge_bench --pairs 8 --no-torch
    python3 scripts/perf-shares.py perf.data

Each sampled symbol is put in one class — matmul (gemm micro-kernels and packing: flex's gemm
crate, or the system BLAS's sgemm and its thread server), attention (softmax exponentials,
flex's attention kernel), elementwise (flex's unary/binary/zip/SIMD loops), memory
(allocation, page faults, copies), threads (the scheduler: waking, yielding and switching
threads), load (dequantising and transposing weights, tokenizing) or other — and the shares
are printed with load excluded, so that they describe the forward passes.
"""

import re
import subprocess
import sys
from collections import defaultdict

CLASSES = [
    ("load", r"dequantize|weights::transpose|tokenizers|gguf|checkpoint"),
    ("matmul", r"gemm|blas_thread_server|exec_blas|inner_thread"),
    ("attention", r"expf|xflowf|attention|softmax|simd::.*(exp_minus|row_max|scale_in_place)"),
    ("elementwise", r"macerator|burn_flex::(zip|ops::unary|ops::binary)|scalar_op|FnOnce::call_once|simd::.*silu_mul"),
    ("threads", r"sched|finish_task_switch|futex|switch_to|syscall|irqentry"),
    ("memory", r"page|memmove|memset|memcpy|alloc|malloc|free|mmap|munmap|clear_page|copy_2d|mem_cgroup|memcg|lruvec"),
]


def main() -> int:
    report = subprocess.run(
        ["perf", "report", "-i", sys.argv[1], "--no-children", "--sort", "symbol", "--stdio"],
        capture_output=True, text=True, check=True,
    ).stdout
    shares = defaultdict(float)
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[[.k]\]\s+(.*)", line)
        if not m:
            continue
        share, symbol = float(m.group(1)), m.group(2)
        kind = next((k for k, pattern in CLASSES if re.search(pattern, symbol)), "other")
        shares[kind] += share
    load = shares.pop("load", 0.0)
    total = sum(shares.values())
    print(f"(load excluded: {load:.1f}% of samples)")
    for kind in ["matmul", "attention", "elementwise", "memory", "threads", "other"]:
        print(f"{kind:12s} {100 * shares[kind] / total:5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
