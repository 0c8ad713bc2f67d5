#!/usr/bin/env bash
# The whole pipeline on one task, in run order (about 10 minutes on 2 CPU cores):
#   stage 1   JSFT                                         -> out/jsft/ckpt.pt
#   stage 2   SELF-JUDGE (on-policy)                       -> out/selfjudge
#             and the paper's comparisons, same steps:      off-policy, offline DPO, RAFT
#   results   self-rejection (best-of-N) on JSFT, the table over all five models
#   lesson    a weaker judge (a third of the steps) self-trained aggressively and by default
#   pictures  out/img/*.svg
# Usage: bash run.sh [SEED]
#   DATA=data/words bash run.sh      another task folder (default data/sort)
#   OUT=out/seed2 bash run.sh 2      another output folder
#   FLAGS="--device=cuda" bash run.sh   extra flags for every stage
#   JSFT_FLAGS="--rationale=False" bash run.sh   extra flags for jsft.py only
set -euo pipefail
cd "$(dirname "$0")"
SEED=${1:-1337}
DATA=${DATA:-data/sort}
OUT=${OUT:-out}
FLAGS=${FLAGS:-}
JSFT_FLAGS=${JSFT_FLAGS:-}
S="--seed=$SEED --data=$DATA $FLAGS"
python jsft.py $S $JSFT_FLAGS --out_dir=$OUT/jsft
python selfjudge.py $S --init=$OUT/jsft/ckpt.pt --out_dir=$OUT/selfjudge
python selfjudge.py $S --init=$OUT/jsft/ckpt.pt --out_dir=$OUT/offpolicy --mode=offpolicy
python selfjudge.py $S --init=$OUT/jsft/ckpt.pt --out_dir=$OUT/dpo --mode=offline
python selfjudge.py $S --init=$OUT/jsft/ckpt.pt --out_dir=$OUT/raft --mode=raft
python evaluate.py $S --ckpt=$OUT/jsft/ckpt.pt --best_of=16
python evaluate.py $S --report=$OUT/jsft,$OUT/dpo,$OUT/offpolicy,$OUT/raft,$OUT/selfjudge
# the over-optimisation lesson: a weaker judge, pushed hard, and by the defaults (both
# allowed to run even if the judge is near chance, which selfjudge.py otherwise refuses)
python jsft.py $S $JSFT_FLAGS --max_steps=1000 --out_dir=$OUT/weak
W="--init=$OUT/weak/ckpt.pt --max_steps=200 --allow_weak_judge"
python selfjudge.py $S $W --out_dir=$OUT/overopt --lr=1e-4 --beta=0.1 --min_confidence=0
python selfjudge.py $S $W --out_dir=$OUT/overopt_guard
python plot.py --runs=$OUT --to=$OUT/img --task=$(basename $DATA)
