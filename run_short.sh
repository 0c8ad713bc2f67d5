#!/usr/bin/env bash
# The whole pipeline, short, for class: run.sh's five stages in the same order with its
# model, JSFT for 2000 steps (two thirds of run.sh's: a shorter JSFT leaves a judge too
# weak for self-training to beat DPO), 300 steps of each stage-2 run and 100 held-out
# prompts everywhere. About two and a half minutes on 2 CPU cores; it ends with a self-check
# table, each quantity against its range over seeds (tests/short_run.py, docs/exercises.md,
# "The short run").
# Usage: bash run_short.sh [SEED]    (writes under out/short; OUT=... and FLAGS=... as in run.sh)
set -euo pipefail
cd "$(dirname "$0")"
SEED=${1:-1337}
FLAGS=${FLAGS:-}
OUT=${OUT:-out/short}
LOG=$OUT/short_run.log  # everything printed, which the self-check at the end reads
mkdir -p "$OUT"
{
python jsft.py --seed=$SEED --out_dir=$OUT/jsft --max_steps=2000 \
    --eval_interval=0 --eval_prompts=100 $FLAGS
STAGE2="--seed=$SEED --init=$OUT/jsft/ckpt.pt --max_steps=300 --eval_interval=100 --eval_prompts=100"
python selfjudge.py $STAGE2 --out_dir=$OUT/selfjudge $FLAGS
python selfjudge.py $STAGE2 --out_dir=$OUT/dpo --mode=offline $FLAGS
python evaluate.py --seed=$SEED --ckpt=$OUT/jsft/ckpt.pt --best_of=8 --n_prompts=100 $FLAGS
python evaluate.py --seed=$SEED --ckpt=$OUT/jsft/ckpt.pt \
    --report=$OUT/jsft,$OUT/dpo,$OUT/selfjudge --n_prompts=100 --report_samples=4 $FLAGS
} 2>&1 | tee "$LOG"
# each quantity against its range over seeds and thread counts (exit 1 if one is outside)
python tests/short_run.py "$LOG"
