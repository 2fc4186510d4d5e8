#!/usr/bin/env bash
# One prepared check of the GPU training path (issue #5), run on a lent GPU machine through the device tool:
# the gpu-8b preset's settings (bf16 weights and autocast, LoRA r=16 on all linear layers, gradient checkpointing)
# on a tiny random Llama built in code (the GPU machine cannot reach a hub and the tool carries at most 64 MiB, so no
# real 7-8B or even SmolLM2 weights can travel), trained on the bundled sample dialogues, merged and exported, then
# reloaded on the GPU and asked for a reply.
#
# Prepare here (wheels for what the GPU image lacks), then run there with `.whl` carried:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 ... -d .whl pydantic==2.14.4 ...
#   bash benchmarks/gpu_sft_check.sh          # writes $OUT/gpu_sft_check.json and $OUT/sft.log
set -euo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-outputs/gpu_check}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "
from pathlib import Path
from tests.tiny_model import build_tiny_llama
build_tiny_llama(Path('/tmp/tiny-base'))
"
start=$(date +%s)
python3 -m training.sft --config training/configs/gpu-8b.yaml --base_model /tmp/tiny-base \
  --data training/assets/samples.jsonl --max_steps 60 --save_steps 30 --logging_steps 10 \
  --per_device_train_batch_size 8 --gradient_accumulation_steps 1 --max_seq_length 512 \
  --output_dir /tmp/gpu-run --export_name gpu-check --export_max_model_len 1024 2>&1 | tee "$OUT/sft.log"
end=$(date +%s)
python3 - "$OUT" "$((end - start))" <<'PY'
import json, sys
from pathlib import Path
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

out, seconds = Path(sys.argv[1]), int(sys.argv[2])
folder = Path("model_repo/gpu-check")
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).to("cuda")
ids = tok.apply_chat_template([{"role": "user", "content": "I failed my exam."}], add_generation_prompt=True,
                              tokenize=True, return_tensors="pt")["input_ids"].to("cuda")
gen = model.generate(ids, max_new_tokens=12, do_sample=False)
summary = json.loads(Path("/tmp/gpu-run/train_summary.json").read_text()) if Path("/tmp/gpu-run/train_summary.json").exists() else {}
result = {
    "device": torch.cuda.get_device_name(),
    "torch": torch.__version__,
    "train_wall_seconds": seconds,
    "train_summary": summary,
    "exported_files": sorted(p.name for p in folder.iterdir()),
    "manifest": (folder / "model.yaml").read_text(),
    "export_dtype": str(next(model.parameters()).dtype),
    "has_lora_weights_after_merge": any("lora" in n for n, _ in model.named_parameters()),
    "reply_tokens": gen.shape[-1] - ids.shape[-1],
    "peak_gpu_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
}
(out / "gpu_sft_check.json").write_text(json.dumps(result, indent=2))
print(json.dumps(result, indent=2))
PY
