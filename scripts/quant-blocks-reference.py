#!/usr/bin/env python3
"""Random quantised blocks and their dequantisation by python's `gguf` package.

    python3 scripts/quant-blocks-reference.py > tests/data/quant_blocks.json

Per ggml type: two blocks of seeded random bytes whose f16 scale fields (`d`, `dmin`/`m`) are
overwritten with finite values, the bytes as hex, and gguf-py's `dequantize` of them.
"""
import json, sys

import numpy as np
import gguf

rng = np.random.default_rng(20250713)
T = gguf.GGMLQuantizationType
# ggml type -> (block bytes, byte offsets of its f16 scale fields)
LAYOUTS = {
    T.Q4_0: (18, [0]),
    T.Q4_1: (20, [0, 2]),
    T.Q8_0: (34, [0]),
    T.Q4_K: (144, [0, 2]),
    T.Q5_K: (176, [0, 2]),
    T.Q6_K: (210, [208]),
}
out = []
for ty, (size, scale_offsets) in LAYOUTS.items():
    blocks = bytearray(rng.integers(0, 256, size=2 * size, dtype=np.uint8).tobytes())
    for b in range(2):
        for off in scale_offsets:
            value = np.float16(rng.uniform(-0.1, 0.1) if ty == T.Q4_1 and off == 2 else rng.uniform(0.001, 0.05))
            blocks[b * size + off : b * size + off + 2] = value.tobytes()
    values = gguf.quants.dequantize(np.frombuffer(bytes(blocks), dtype=np.uint8), ty).reshape(-1)
    out.append({"type": ty.name, "bytes": bytes(blocks).hex(), "values": [float(x) for x in values.astype(np.float32)]})
json.dump(out, sys.stdout)
print()
