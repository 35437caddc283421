#!/bin/bash
# What pretraining and domain adaptation buy a downstream tagger (issue #19, docs/RESULTS.md):
# entity F1 on the NCBI-disease and BC5CDR test splits of one tagger setting with no biLM
# (`none`), with `elmo` features of a general biLM, of that biLM adapted to biomedical text,
# and of a biLM trained from scratch on biomedical text with the same budget; SEEDS seeds each.
# The biLMs are model directories (scripts/experiment_domain.sh makes all three):
#   GENERAL=runs/domain/general/model ADAPTED=runs/domain/adapted/model \
#   SCRATCH=runs/domain/scratch/model scripts/experiment_ner.sh
# A row whose variable is empty is left out. Smallest end-to-end run (first 200 sentences of
# each split, one seed, one epoch):
#   GENERAL=runs/x/model SLICE=200 SEEDS=0 EPOCHS=1 OUT=runs/ner_dry scripts/experiment_ner.sh
# Each run writes OUT/DATASET/ROW/seedS.json ({"dev": ..., "test": ...}) and its tagger
# directory; a run whose JSON exists is not repeated, so the script resumes where it stopped.
# OUT/summary.md and OUT/summary.json: mean ± sd (n - 1) of entity F1 per dataset and row.
set -euo pipefail
D=${ELMO_DATA:-../shared/data}/ner
OUT=${OUT:-runs/ner}
SEEDS=${SEEDS:-0 1 2}
EPOCHS=${EPOCHS:-10}
DATASETS=${DATASETS:-ncbi-disease bc5cdr}
SLICE=${SLICE:-}  # first N sentences of every split (a dry run); empty: all
declare -A MODEL=([none]="" [general]="${GENERAL:-}" [adapted]="${ADAPTED:-}" [scratch]="${SCRATCH:-}")
mkdir -p "$OUT"

split_file() {  # dataset, split name -> the file to read (a slice of it with SLICE)
  local source="$D/$1/$2.tsv"
  if [[ -z "$SLICE" ]]; then
    echo "$source"
    return
  fi
  local sliced="$OUT/data/$1/$2.tsv"
  mkdir -p "$(dirname "$sliced")"
  awk -v n="$SLICE" 'BEGIN { RS = ""; ORS = "\n\n" } NR <= n' "$source" >"$sliced"
  echo "$sliced"
}

for dataset in $DATASETS; do
  train=$(split_file "$dataset" train)
  dev=$(split_file "$dataset" devel)
  test=$(split_file "$dataset" test)
  for row in none general adapted scratch; do
    if [[ $row == none ]]; then
      bilm=()
    elif [[ -n "${MODEL[$row]}" ]]; then
      bilm=(--model "${MODEL[$row]}" --features elmo)
    else
      continue
    fi
    for seed in $SEEDS; do
      run="$OUT/$dataset/$row/seed$seed"
      [[ -f "$run.json" ]] && continue
      echo "== $dataset / $row / seed $seed"
      elmo tag train --train "$train" --dev "$dev" --test "$test" --output "$run" \
        --epochs "$EPOCHS" --seed "$seed" --json "$run.json.partial" "${bilm[@]}"
      mv "$run.json.partial" "$run.json"
    done
  done
done

python - "$OUT" <<'EOF'
"""Mean ± sd over seeds of entity F1 (percent), per dataset and row: summary.md, summary.json."""
import json
import statistics
import sys
from pathlib import Path

out = Path(sys.argv[1])
rows = {
    "none": "none (char CNN + word embeddings only)",
    "general": "elmo: general biLM",
    "adapted": "elmo: general biLM adapted to biomed",
    "scratch": "elmo: biomed biLM from scratch (same budget)",
}
summary, lines = {}, ["| dataset | features | test F1 | dev F1 | seeds |", "|---|---|---|---|---|"]
for dataset_dir in sorted(p for p in out.iterdir() if p.is_dir() and p.name != "data"):
    for row, label in rows.items():
        runs = sorted((dataset_dir / row).glob("seed*.json"))
        if not runs:
            continue
        scores = [json.loads(p.read_text()) for p in runs]
        figures = {}
        for split in ("test", "dev"):
            f1 = [100 * s[split]["f1"] for s in scores]
            sd = statistics.stdev(f1) if len(f1) > 1 else 0.0
            figures[split] = {"mean": statistics.mean(f1), "sd": sd, "runs": f1}
        summary.setdefault(dataset_dir.name, {})[row] = figures
        t, d = figures["test"], figures["dev"]
        lines.append(
            f"| {dataset_dir.name} | {label} | {t['mean']:.2f} ± {t['sd']:.2f} | "
            f"{d['mean']:.2f} ± {d['sd']:.2f} | {len(runs)} |"
        )
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
