"""Random-weight bf16 checkpoints shaped like published models, for memory and loading checks.

    python3 scripts/shaped-checkpoint.py qwen3-0.6b|llama3.2-3b OUT_DIR [--shared ../shared]

The configs are the published ones (sizes from the models' Hub pages); the weights are
transformers' random init (seed 0), saved as bf16 safetensors (5 GB shards). A tokenizer from
`fixtures/archs/` is copied beside them: Qwen3's for qwen3-0.6b, the llama3 fixture's (49,152
ids, within Llama 3.2's vocabulary) for llama3.2-3b. Needs torch and transformers.
"""
import argparse
import shutil
from pathlib import Path

import torch
import transformers

parser = argparse.ArgumentParser()
parser.add_argument("which", choices=["qwen3-0.6b", "llama3.2-3b"])
parser.add_argument("out", type=Path)
parser.add_argument("--shared", type=Path, default=Path("../shared"))
args = parser.parse_args()

torch.manual_seed(0)
if args.which == "qwen3-0.6b":
    config = transformers.Qwen3Config(
        vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128,
        max_position_embeddings=40960, rms_norm_eps=1e-6, rope_theta=1000000.0,
        tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645,
        attention_bias=False)
    model_class, tokenizer = transformers.Qwen3ForCausalLM, "qwen3"
else:
    config = transformers.LlamaConfig(
        vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
        num_attention_heads=24, num_key_value_heads=8, head_dim=128,
        max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
        tie_word_embeddings=True,
        rope_scaling={"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                      "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        bos_token_id=128000, eos_token_id=128009)
    model_class, tokenizer = transformers.LlamaForCausalLM, "llama3"

torch.set_default_dtype(torch.bfloat16)
model = model_class(config)
model.save_pretrained(args.out, max_shard_size="5GB")
source = args.shared / "fixtures/archs" / tokenizer
for name in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]:
    if (source / name).exists():
        shutil.copy(source / name, args.out / name)
print(args.out, sum(p.numel() for p in model.parameters()), "parameters")
