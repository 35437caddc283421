#!/usr/bin/env bash
# The GPU check of issue #18, one command on a machine with a GPU (<= 8 minutes on one H100/H200):
#   1. the tests marked `gpu` (bf16 step, compiled and captured steps, fused and Triton LSTMs,
#      sparse updates, no host sync in a step; DDP where two GPUs exist);
#   2. scripts/benchmark.py --device cuda: biLM and training step for elmo_small and
#      elmo_original at the 1B Word vocabulary, agreement checked in float32 first;
#   3. scripts/bench_train.py: `elmo train` end to end, elmo_original at 128x20 and 384x20 rows;
#   4. one summary table: tokens/s, ms/step, peak memory, MFU, days for 10 epochs of 1B Word.
# Needs only the project's install (pip install -e .); results go to $GPU_CHECK_OUT (runs/gpu_check/).
#
#   bash scripts/gpu_check.sh
#   GPU_CHECK_DRY_RUN=1 bash scripts/gpu_check.sh   # the same stages shrunk to run on a CPU
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${GPU_CHECK_OUT:-runs/gpu_check}
mkdir -p "$OUT"
failed=()

if [[ "${GPU_CHECK_DRY_RUN:-0}" == 1 ]]; then
  device=cpu presets=tiny vocab=5000 rounds=1 batches=(4 8) steps=6 warmup=2
  train_extra=(trainer=cpu model=tiny data.num_workers=0)
  bench_extra=(--batch-size 8 --steps 5 --types 1000 --threads 2 --quiet-budget 0)
  limit_tests=600 limit_bilm=900 limit_step=900 limit_train=900
else
  # The test suite's conftest hides GPUs unless CUDA_VISIBLE_DEVICES is set: show them all.
  count=$(python -c "import torch; print(torch.cuda.device_count())")
  if [[ "$count" -lt 1 ]]; then echo "gpu_check: no CUDA device" >&2; exit 2; fi
  export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-$(seq -s, 0 $((count - 1)))}
  device=cuda presets=elmo_small,elmo_original vocab=793471 rounds=5 batches=(128 384)
  steps=50 warmup=15 train_extra=() bench_extra=(--batch-size 128)
  limit_tests=120 limit_bilm=90 limit_step=150 limit_train=60  # seconds: 8 minutes in all
fi

stage() {  # stage NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.txt
  local name=$1 limit=$2
  shift 2
  echo "== $name (at most ${limit} s): $*"
  local start=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
  local rc=$?
  echo "   exit $rc after $((SECONDS - start)) s; log $OUT/$name.txt"
  [[ $rc == 0 ]] || failed+=("$name (exit $rc)")
}

stage tests "$limit_tests" python -m pytest -q -p no:cacheprovider -m gpu tests
tail -n 3 "$OUT/tests.txt"
# biLM: eager fp32 and bf16 and the Triton cell; step (bf16, as `trainer=gpu` trains): eager,
# dense output updates (before issue #18), and the LSTM captured as CUDA graphs.
stage bench_bilm "$limit_bilm" python scripts/benchmark.py --device "$device" --mode bilm \
  --presets "$presets" --rounds "$rounds" --lstm-impls triton "${bench_extra[@]}" \
  --json "$OUT/bench_bilm.json"
stage bench_step "$limit_step" python scripts/benchmark.py --device "$device" --mode step \
  --presets "$presets" --vocab-size "$vocab" --rounds "$rounds" --precisions bf16 \
  --compile lstm:cudagraphs "${bench_extra[@]}" --json "$OUT/bench_step.json"
for batch in "${batches[@]}"; do
  stage "train_$batch" "$limit_train" python scripts/bench_train.py --only elmo_original \
    --batch-sizes "$batch" --steps "$steps" --warmup "$warmup" --vocab-size "$vocab" \
    --extra "${train_extra[@]}" --json "$OUT/train_$batch.json"
done

python - "$OUT" <<'EOF'
"""One table from the benchmark and bench_train JSON files that exist."""
import json
import sys
from pathlib import Path

PAPER_TOKENS = 10 * 768_648_884
out = Path(sys.argv[1])
rows = []
for mode in ("bilm", "step"):
    path = out / f"bench_{mode}.json"
    if not path.exists():
        continue
    report = json.loads(path.read_text())
    batch = report["args"]["batch_size"] + "x" + report["args"]["steps"]
    for result in report["modes"].get(mode, []):
        for r in result["rows"]:
            if r["implementation"] == "reference":
                continue
            what = f"benchmark {mode}: {result['preset']} {r['implementation']}"
            ms = r["median_ms"]
            mfu = f"{100 * r['mfu']:.1f} %" if r.get("mfu") else "–"
            days = PAPER_TOKENS / r["tokens_per_s"] / 86400 if mode == "step" else None
            rows.append((what, batch, r["tokens_per_s"], ms, None, mfu, days))
for path in sorted(out.glob("train_*.json")):
    for r in json.loads(path.read_text())["rows"]:
        mfu = f"{100 * r['mfu']:.1f} %" if r["mfu"] is not None else "–"
        rows.append((f"elmo train: {r['config']}", r["batch"], r["tokens_per_s"],
                     r["ms_per_step"], r["peak_memory_gb"], mfu, r["days_10_epochs"]))
print("\n| what | batch | tokens/s | ms/step | peak memory GB | MFU | 10 epochs of 1B Word |")
print("|---|---|---|---|---|---|---|")
for what, batch, rate, ms, memory, mfu, days in rows:
    memory = f"{memory:.1f}" if memory is not None else "–"
    days = f"{days:,.1f} days" if days is not None else "–"
    print(f"| {what} | {batch} | {rate:,.0f} | {ms:.1f} | {memory} | {mfu} | {days} |")
EOF

if ((${#failed[@]})); then
  echo "gpu_check: failed or timed out: ${failed[*]}" >&2
  exit 1
fi
echo "gpu_check: all stages passed"
