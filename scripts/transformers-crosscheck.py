#!/usr/bin/env python3
"""Check `gram judge` against Hugging Face transformers on the same pairs.

For every row of gram's output (rows {"prompt","chosen","rejected"} or
{"prompt","response_a","response_b"} plus gram's p_a, p_a_forward, p_a_reverse) this script
rebuilds the judge input independently — gram's default template (src/judge_template.txt) or
--template FILE, filled in one pass, wrapped by the tokenizer's own chat template as one user turn
with the generation prompt — runs the GGUF model in transformers (dequantised to f32, as the
fixture was made), and computes

    p_fwd = softmax(z_A, z_B) at the last position for (a, b)
    p_rev = the same for (b, a)
    p_a   = (p_fwd[A] + p_rev[B]) / 2

then prints the largest |p_a(gram) - p_a(transformers)| and exits 1 if it exceeds --tolerance.
Token ids are compared too: transformers' GGUF tokenizer is plain ByteLevel BPE, while gram (like
llama.cpp) honours the file's `tokenizer.ggml.pre = smollm` and splits digits one by one, so rows
with runs of digits are reported separately.

    pip install torch transformers gguf
    gram judge --model M.gguf --input examples/pairs.jsonl --output scores.jsonl --device cpu
    python3 scripts/transformers-crosscheck.py --model M.gguf --scores scores.jsonl
"""

import argparse
import json
import math
import pathlib
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

SLOTS = ("{prompt}", "{response_a}", "{response_b}")


def fill(template: str, prompt: str, a: str, b: str) -> str:
    """One pass over the template, like gram's PromptTemplate::fill."""
    values = (prompt, a, b)
    out, i = [], 0
    while True:
        j = template.find("{", i)
        if j < 0:
            out.append(template[i:])
            return "".join(out)
        out.append(template[i:j])
        for slot, value in zip(SLOTS, values):
            if template.startswith(slot, j):
                out.append(value)
                i = j + len(slot)
                break
        else:
            out.append("{")
            i = j + 1


def main() -> int:
    here = pathlib.Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the GGUF file gram judged with")
    parser.add_argument("--scores", required=True, help="gram judge's output JSONL")
    parser.add_argument("--template", default=str(here / "src" / "judge_template.txt"))
    parser.add_argument("--tolerance", type=float, default=2e-3)
    args = parser.parse_args()

    gguf = pathlib.Path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, torch_dtype=torch.float32
    )
    model.eval()
    template = pathlib.Path(args.template).read_text()
    ids_a = tokenizer.encode("A", add_special_tokens=False)
    ids_b = tokenizer.encode("B", add_special_tokens=False)
    assert len(ids_a) == 1 and len(ids_b) == 1, (ids_a, ids_b)

    def p_first(prompt: str, a: str, b: str) -> float:
        """P(verdict A) from the two verdict logits for the order (a, b)."""
        messages = [{"role": "user", "content": fill(template, prompt, a, b)}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            z = model(ids).logits[0, -1, [ids_a[0], ids_b[0]]].double()
        return 1.0 / (1.0 + math.exp(float(z[1] - z[0])))

    worst, worst_digits, rows, digit_rows = 0.0, 0.0, 0, 0
    for line_no, line in enumerate(open(args.scores), 1):
        row = json.loads(line)
        a = row.get("chosen", row.get("response_a"))
        b = row.get("rejected", row.get("response_b"))
        if a is None or b is None or "p_a" not in row:
            print(f"{args.scores}:{line_no}: not a gram judge output row", file=sys.stderr)
            return 2
        forward = p_first(row["prompt"], a, b)
        reverse = 1.0 - p_first(row["prompt"], b, a)
        p_a = (forward + reverse) / 2
        gap = abs(p_a - row["p_a"])
        has_digit_runs = any(
            ch.isdigit() and nxt.isdigit()
            for text in (row["prompt"], a, b)
            for ch, nxt in zip(text, text[1:])
        )
        print(
            f"row {line_no}: p_a gram {row['p_a']:.6f} transformers {p_a:.6f} |diff| {gap:.2e}"
            f"  (forward {row['p_a_forward']:.6f}/{forward:.6f}, reverse "
            f"{row['p_a_reverse']:.6f}/{reverse:.6f}){'  digit runs' if has_digit_runs else ''}"
        )
        rows += 1
        if has_digit_runs:
            digit_rows += 1
            worst_digits = max(worst_digits, gap)
        else:
            worst = max(worst, gap)
    print(
        f"{rows} rows: largest |p_a diff| {worst:.2e} over {rows - digit_rows} rows without digit "
        f"runs, {worst_digits:.2e} over {digit_rows} rows with them (tolerance {args.tolerance})"
    )
    return 0 if max(worst, worst_digits) <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
