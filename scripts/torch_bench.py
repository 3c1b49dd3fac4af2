#!/usr/bin/env python3
"""The PyTorch side of gram's side-by-side benchmarks (examples/judge_bench.rs, train_bench.rs).

The Rust benchmark writes a workload file (JSON) holding the exact token ids gram runs, starts
this script as a child process, and drives it over stdin/stdout so that the two sides run
interleaved, round by round, on the same machine:

    python3 scripts/torch_bench.py --model M.gguf --workload W.json
    < ready                                   (the model is loaded)
    > matmul 1024                             < {"seconds": s}   best of 5 n×n f32 matmuls
    > judge                                   < {"seconds": s}   every judge sequence once
    > train                                   < {"seconds": s, "peak_rss_bytes": b, "loss": l}
    > quit

The model is the same GGUF file, dequantised to f32 by transformers (`pip install torch
transformers accelerate gguf`), as scripts/transformers-crosscheck.py does. The recipes are the usual
transformers ones:

* judge: batch 1, each ordered sequence whole (no prefix reuse), `model(ids)` under
  `torch.inference_mode()`, the verdict logits read at the last position;
* stage 2 ("objective": "gram"): right-padded micro-batches with an attention mask, hidden states
  at each sequence's last real token, the two verdict rows of the output projection, the
  label-smoothed loss −(1−ε)·log p(correct) − ε·log p(other) (= −log σ(Δ) + ε·Δ up to a
  constant), AdamW with burn's ε = 1e-5 (PyTorch's default is 1e-8), gradients clipped to
  norm 1;
* stage 1 ("objective": "generation"): the same batches, full-vocabulary logits at the target
  positions, mean token cross-entropy.

Only the top `train_layers` decoder layers and the final norm train (as gram's
--train-layers), the rest is frozen (`requires_grad_(False)`).

`peak_rss_bytes` is the process's peak resident set during the timed steps: the peak is reset
(`/proc/self/clear_refs`) before them and read from VmHWM after, as gram's side does.
"""

import argparse
import json
import pathlib
import sys
import time

import torch
from transformers import AutoModelForCausalLM


def reset_peak_rss() -> None:
    """Reset VmHWM to the current resident set (Linux; ignored elsewhere)."""
    try:
        pathlib.Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_bytes() -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def matmul_seconds(n: int) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return best


def pad(sequences, pad_id):
    """Right-padded ids [B, T], attention mask [B, T], last real positions [B]."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, s in enumerate(sequences):
        ids[row, : len(s)] = torch.tensor(s)
        mask[row, : len(s)] = 1
    last = torch.tensor([len(s) - 1 for s in sequences])
    return ids, mask, last


class Bench:
    def __init__(self, model_path: pathlib.Path, workload: dict):
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path.parent, gguf_file=model_path.name, dtype=torch.float32
        )
        self.workload = workload
        self.verdict = torch.tensor(workload["verdict_tokens"])
        self.pad_id = workload.get("pad_id", 0)
        self.optimizer = None

    def judge(self) -> dict:
        self.model.eval()
        start = time.perf_counter()
        with torch.inference_mode():
            for ids in self.workload["judge"]:
                logits = self.model(torch.tensor([ids])).logits[0, -1, self.verdict]
                float(logits[0] - logits[1])
        return {"seconds": time.perf_counter() - start}

    def prepare_training(self) -> None:
        train = self.workload["train"]
        layers = self.model.model.layers
        keep = len(layers) - train["train_layers"]
        for p in self.model.parameters():
            p.requires_grad_(False)
        for layer in layers[keep:]:
            for p in layer.parameters():
                p.requires_grad_(True)
        for p in self.model.model.norm.parameters():
            p.requires_grad_(True)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        # gram's optimizer is burn's AdamW, whose ε defaults to 1e-5: the same update here.
        self.optimizer = torch.optim.AdamW(
            trainable, lr=train["lr"], weight_decay=0.0, eps=train["adam_epsilon"]
        )
        self.trainable = trainable

    def loss(self, batch) -> torch.Tensor:
        train = self.workload["train"]
        sequences = [example["ids"] for example in batch]
        ids, mask, last = pad(sequences, self.pad_id)
        hidden = self.model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        weight = self.model.lm_head.weight
        if train["objective"] == "gram":
            h = hidden[torch.arange(len(batch)), last]  # [B, d]
            z = h @ weight[self.verdict].T  # [B, 2]
            log_p = torch.log_softmax(z, dim=1)
            correct = torch.tensor([example["correct"] for example in batch])
            eps = train["label_smoothing"]
            weights = torch.nn.functional.one_hot(correct, 2) * (1 - 2 * eps) + eps
            return -(weights * log_p).sum(1).mean()
        rows, targets = [], []
        for b, example in enumerate(batch):
            for t in range(example["target_start"], len(example["ids"])):
                rows.append((b, t - 1))
                targets.append(example["ids"][t])
        rows = torch.tensor(rows)
        h = hidden[rows[:, 0], rows[:, 1]]  # [N, d]
        logits = h @ weight.T  # [N, vocab]
        return torch.nn.functional.cross_entropy(logits, torch.tensor(targets))

    def train(self) -> dict:
        batches = self.workload["train"]["batches"]
        self.model.train()
        if self.optimizer is None:
            self.prepare_training()
            # One untimed step before the first round (first-call allocations), as gram's side
            # does: once, so that both sides take the same optimizer steps in every round.
            self.step(batches[0])
        reset_peak_rss()
        start = time.perf_counter()
        losses = [self.step(batch) for batch in batches]
        seconds = time.perf_counter() - start
        return {
            "seconds": seconds,
            "peak_rss_bytes": peak_rss_bytes(),
            "loss": sum(losses) / len(losses),
        }

    def step(self, batch) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.trainable, 1.0)
        self.optimizer.step()
        return loss.item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--workload", required=True)
    args = parser.parse_args()
    workload = json.loads(pathlib.Path(args.workload).read_text())
    bench = Bench(pathlib.Path(args.model), workload)
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command:
            continue
        if command[0] == "quit":
            break
        if command[0] == "matmul":
            reply = {"seconds": matmul_seconds(int(command[1]))}
        elif command[0] == "judge":
            reply = bench.judge()
        elif command[0] == "train":
            reply = bench.train()
        else:
            reply = {"error": f"unknown command {command[0]!r}"}
        print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
