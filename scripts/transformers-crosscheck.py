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

With --pairs FILE --write-reference OUT.json it instead writes the transformers values (p_a,
p_a_forward, p_a_reverse, token counts) of FILE's rows without runs of digits, with how they were
made, as the fixture tests/data/smollm2_p_a_reference.json that tests/p_a_reference.rs checks
gram against:

    python3 scripts/transformers-crosscheck.py --model M.gguf --pairs examples/pairs.jsonl \
        --write-reference tests/data/smollm2_p_a_reference.json
"""

import argparse
import datetime
import hashlib
import json
import math
import pathlib
import platform
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
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--scores", help="gram judge's output JSONL")
    source.add_argument("--pairs", help="pairs JSONL to write a reference for (--write-reference)")
    parser.add_argument("--write-reference", help="with --pairs: the fixture JSON to write")
    parser.add_argument("--max-pairs", type=int, default=6)
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

    def judge_input(prompt: str, a: str, b: str):
        messages = [{"role": "user", "content": fill(template, prompt, a, b)}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids

    def p_first(prompt: str, a: str, b: str) -> float:
        """P(verdict A) from the two verdict logits for the order (a, b)."""
        ids = judge_input(prompt, a, b)
        with torch.no_grad():
            z = model(ids).logits[0, -1, [ids_a[0], ids_b[0]]].double()
        return 1.0 / (1.0 + math.exp(float(z[1] - z[0])))

    if args.pairs:
        if not args.write_reference:
            parser.error("--pairs needs --write-reference")
        return write_reference(args, gguf, template, judge_input, p_first)

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
        has_digit_runs = digit_runs(row["prompt"], a, b)
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


def digit_runs(*texts: str) -> bool:
    """Whether any text has two digits in a row (tokenised differently by transformers)."""
    return any(ch.isdigit() and nxt.isdigit() for t in texts for ch, nxt in zip(t, t[1:]))


def sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_reference(args, gguf, template, judge_input, p_first) -> int:
    """Write the transformers f32 verdicts of the digit-free rows of --pairs as a fixture."""
    import gguf as gguf_package
    import transformers

    here = pathlib.Path(__file__).resolve().parent.parent
    rows = []
    for line_no, line in enumerate(open(args.pairs), 1):
        row = json.loads(line)
        a = row.get("chosen", row.get("response_a"))
        b = row.get("rejected", row.get("response_b"))
        if digit_runs(row["prompt"], a, b):
            continue
        forward = p_first(row["prompt"], a, b)
        reverse = 1.0 - p_first(row["prompt"], b, a)
        rows.append(
            {
                "id": row.get("id", f"line {line_no}"),
                "prompt": row["prompt"],
                "response_a": a,
                "response_b": b,
                "p_a": (forward + reverse) / 2,
                "p_a_forward": forward,
                "p_a_reverse": reverse,
                "tokens_forward": int(judge_input(row["prompt"], a, b).shape[1]),
                "tokens_reverse": int(judge_input(row["prompt"], b, a).shape[1]),
            }
        )
        print(f"{rows[-1]['id']}: p_a {rows[-1]['p_a']:.6f}", file=sys.stderr)
        if len(rows) == args.max_pairs:
            break

    def shown(path) -> str:
        path = pathlib.Path(path).resolve()
        return str(path.relative_to(here)) if path.is_relative_to(here) else path.name

    reference = {
        "made_by": {
            "command": "python3 scripts/transformers-crosscheck.py --model "
            f"{gguf.name} --pairs {shown(args.pairs)} --write-reference "
            f"{shown(args.write_reference)}",
            "model": gguf.name,
            "model_sha256": sha256(gguf),
            "template": shown(args.template),
            "template_sha256": sha256(pathlib.Path(args.template)),
            "template_text": template,
            "how": "transformers loads the GGUF dequantised to float32; the template is filled "
            "in one pass and wrapped in the tokenizer's chat template as one user turn with the "
            "generation prompt; p_a_forward = softmax(z_A, z_B)[A] at the last position for "
            "(a, b), p_a_reverse = softmax(z_A, z_B)[B] for (b, a), p_a = their mean. Rows with "
            "runs of digits are left out (transformers' GGUF tokenizer splits digits differently).",
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "gguf": getattr(gguf_package, "__version__", None) or package_version("gguf"),
            "date": datetime.date.today().isoformat(),
        },
        "pairs": rows,
    }
    pathlib.Path(args.write_reference).write_text(json.dumps(reference, indent=2) + "\n")
    print(f"{len(rows)} pairs written to {args.write_reference}", file=sys.stderr)
    return 0


def package_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    sys.exit(main())
