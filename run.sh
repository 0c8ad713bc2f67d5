#!/usr/bin/env bash
# The whole pipeline on one task, in run order (about 10 minutes on 2 CPU cores):
#   stage 1   JSFT                                         -> out/jsft/ckpt.pt
#   stage 2   SELF-JUDGE (on-policy)                       -> out/selfjudge
#             and the paper's comparisons, same steps:      off-policy, offline DPO, RAFT
#   the knob  offline DPO again, on pairs written two mistakes further from the policy
#             (the task's generator with --pair_extra_mistakes=2) -> out/dpo_k2
#   results   self-rejection (best-of-N) on JSFT, the table over every model
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
# the knob (docs/data.md): a copy of the task whose pairs.jsonl alone differs, each
# response two mistakes further from what the policy writes; a task without a generator
# in data/ (your own folder, an import) skips it
TASK=$(basename "$DATA")
FAR=""
if [ -f "data/make_$TASK.py" ]; then
  python -m "data.make_$TASK" --out_dir=$OUT/task_k2 --pair_extra_mistakes=2 | grep "^pairs"
  python selfjudge.py $S --data=$OUT/task_k2 --init=$OUT/jsft/ckpt.pt --out_dir=$OUT/dpo_k2 \
      --mode=offline
  FAR=",$OUT/dpo_k2"
fi
python evaluate.py $S --ckpt=$OUT/jsft/ckpt.pt --best_of=16
python evaluate.py $S --report=$OUT/jsft,$OUT/dpo$FAR,$OUT/offpolicy,$OUT/raft,$OUT/selfjudge
# the over-optimisation lesson: a weaker judge, pushed hard with no guard, and by the
# defaults (both allowed to run even if the judge is near chance, which selfjudge.py
# otherwise refuses)
python jsft.py $S $JSFT_FLAGS --max_steps=1000 --out_dir=$OUT/weak
W="--init=$OUT/weak/ckpt.pt --max_steps=200 --allow_weak_judge"
python selfjudge.py $S $W --out_dir=$OUT/overopt --lr=1e-4 --beta=0.1 --min_confidence=0 \
    --max_position_bias=0
python selfjudge.py $S $W --out_dir=$OUT/overopt_guard
python plot.py --runs=$OUT --to=$OUT/img --task=$(basename $DATA)
