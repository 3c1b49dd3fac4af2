#!/usr/bin/env python3
"""Expected dequantised values from the real SmolLM2 GGUF, computed with python's `gguf` package.

    python3 scripts/gguf-reference.py [model.gguf] > tests/data/smollm2_gguf_rows.json

For each tensor: a few rows (row-major, HF shape = GGUF dims reversed), the first `cols` values.
`hf_layout` rows are after transformers' `reverse_permute_weights` (the q/k RoPE un-permutation
transformers applies to llama GGUF files), written here independently of the Rust code.
"""
import json, os, sys

import numpy as np
import gguf

path = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
    "GRAM_MODEL", os.path.expanduser("~/.cache/gram/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
reader = gguf.GGUFReader(path)
tensors = {t.name: t for t in reader.tensors}


def dense(name):
    t = tensors[name]
    return t.tensor_type.name, gguf.quants.dequantize(t.data, t.tensor_type).reshape(list(reversed(t.shape.tolist())))


def reverse_permute(w, n_head):
    # transformers.integrations.ggml: reshape(n_head, dim, 2, ...).swapaxes(2, 1)
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


heads = int(reader.fields["llama.attention.head_count"].contents())
kv_heads = int(reader.fields["llama.attention.head_count_kv"].contents())
out = []
for name, rows, cols, permute_heads in [
    ("token_embd.weight", [0, 49, 50, 49151], 96, None),
    ("blk.0.ffn_down.weight", [0, 575], 96, None),
    ("blk.29.ffn_gate.weight", [0, 1535], 64, None),
    ("blk.0.attn_q.weight", [0, 1, 31, 32, 33, 63, 64, 575], 32, heads),
    ("blk.0.attn_k.weight", [0, 1, 32, 33, 191], 32, kv_heads),
]:
    ggml_type, w = dense(name)
    layout = "gguf"
    if permute_heads is not None:
        w, layout = reverse_permute(w, permute_heads), "hf"
    out.append({
        "name": name, "ggml_type": ggml_type, "shape": list(w.shape), "layout": layout,
        "rows": {str(r): [float(x) for x in w[r, :cols].astype(np.float32)] for r in rows},
    })
json.dump({"model": os.path.basename(path), "tensors": out}, sys.stdout)
print()
