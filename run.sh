#!/usr/bin/env bash
# The whole pipeline on the default task, in run order (about 5 minutes on 2 CPU cores):
#   stage 1  JSFT                               -> out/jsft/ckpt.pt
#   stage 2  SELF-JUDGE (on-policy)             -> out/selfjudge/ckpt.pt
#   baseline DPO on pairs.jsonl, same steps     -> out/dpo/ckpt.pt
#   results  self-rejection on JSFT, then the table over all three (+ best-of-N)
# Usage: bash run.sh [SEED]    (extra flags for every stage: FLAGS="--device=cuda" bash run.sh)
set -euo pipefail
cd "$(dirname "$0")"
SEED=${1:-1337}
FLAGS=${FLAGS:-}
OUT=${OUT:-out}
python jsft.py --seed=$SEED --out_dir=$OUT/jsft $FLAGS
python selfjudge.py --seed=$SEED --init=$OUT/jsft/ckpt.pt --out_dir=$OUT/selfjudge $FLAGS
python selfjudge.py --seed=$SEED --init=$OUT/jsft/ckpt.pt --out_dir=$OUT/dpo --mode=offline $FLAGS
python evaluate.py --seed=$SEED --ckpt=$OUT/jsft/ckpt.pt --best_of=16 $FLAGS
python evaluate.py --seed=$SEED --report=$OUT/jsft,$OUT/dpo,$OUT/selfjudge $FLAGS
