#!/bin/bash
# Multi-GPU / multi-node pretraining with torchrun (Lightning detects TorchElastic and uses its
# ranks). Run on every node with NODE_RANK set; MASTER_ADDR is node 0.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 GPUS=8 scripts/torchrun_train.sh experiment=elmo_original data.train='1b/train/*'
set -euo pipefail
torchrun --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --nproc_per_node="${GPUS:-8}" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-29500}" \
  -m elmo_train.train trainer=ddp trainer.devices="${GPUS:-8}" trainer.num_nodes="${NNODES:-1}" \
  run_name="${RUN:-elmo-torchrun}" resume=auto "$@"
