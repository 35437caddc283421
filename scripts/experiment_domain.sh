#!/bin/bash
# Domain adaptation, general English -> biomedical (docs/RESULTS.md): a general biLM, the same
# biLM adapted to the biomedical corpus, and one trained from scratch on it with the same
# budget; all three evaluated on biomedical validation text over the biomedical vocabulary.
#   MODEL=tiny GENERAL_EPOCHS=1 ADAPT_STEPS=3000 scripts/experiment_domain.sh
set -euo pipefail
D=${ELMO_DATA:-../shared/data}
MODEL=${MODEL:-tiny}
GENERAL_EPOCHS=${GENERAL_EPOCHS:-1}
ADAPT_STEPS=${ADAPT_STEPS:-3000}
OUT=${OUT:-runs/domain}
mkdir -p "$OUT"
elmo vocab --input "$D/biomed/train.txt" --min-count 3 --output "$OUT/vocab_biomed.txt"
elmo vocab --input "$D/general/train.txt" "$D/biomed/train.txt" --min-count 3 --output "$OUT/vocab_union.txt"
# Batch 64 x 20; sampled softmax (4096 negatives) over the 38k-65k-word vocabularies, which the
# full softmax would make ~20x slower on a CPU. Every reported perplexity is full softmax.
common=(demo=false test=false callbacks.progress_bar=null data.batch_size=64
  model.softmax.kind=sampled model.softmax.n_negatives=4096)
elmo train data=text model="$MODEL" run_name=domain/general epochs="$GENERAL_EPOCHS" "${common[@]}" \
  data.train="$D/general/train.txt" data.valid="$D/general/valid.txt" data.vocab="$OUT/vocab_union.txt"
elmo train experiment=domain_adapt run_name=domain/adapted init.model="$OUT/general/model" \
  trainer.max_steps="$ADAPT_STEPS" "${common[@]}" \
  data.train="$D/biomed/train.txt" data.valid="$D/biomed/valid.txt" data.vocab="$OUT/vocab_biomed.txt"
elmo train experiment=domain_adapt run_name=domain/scratch model="$MODEL" optimizer.lr=0.2 \
  callbacks.softmax_warmup.steps=0 trainer.max_steps="$ADAPT_STEPS" "${common[@]}" \
  data.train="$D/biomed/train.txt" data.valid="$D/biomed/valid.txt" data.vocab="$OUT/vocab_biomed.txt"
for m in general adapted scratch; do
  elmo evaluate --model "$OUT/$m/model" --input "$D/biomed/valid.txt" --vocab "$OUT/vocab_biomed.txt" \
    --batch-size 64 --json "$OUT/$m/biomed_valid.json"
done
