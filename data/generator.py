"""Helpers the task generators (data/make_*.py) share: seeded prompt
sets, Bradley-Terry labels, writing the files and printing what was written.

Every random draw of a generator comes from a stream named after its seed and a purpose
(random.Random(f"{seed}-{name}")), so that one file's size can change without moving
another file's draws. Imports nothing from the rest of the project but data.task.
"""
import json
import math
import os
import random
import shutil

from data.task import load_task


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def prompt_set(stream, n, draw, text, avoid, repeat=False):
    """n items from the seeded stream `stream`, drawn by draw(rng), none whose prompt
    text(item) is in `avoid`; each prompt joins `avoid` unless repeat (so the sets drawn
    without repeat are distinct from one another and from themselves)."""
    rng, out = random.Random(stream), []
    while len(out) < n:
        item = draw(rng)
        p = text(item)
        if p not in avoid:
            out.append(item)
            if not repeat:
                avoid.add(p)
    return out


def bt_temperature(diffs, target):
    """T such that the expected share of Bradley-Terry labels that disagree with the
    oracle, mean(sigmoid(-|d| / T)), equals target (bisection; it grows with T)."""
    def expected(t):
        return sum(1.0 / (1.0 + math.exp(min(700.0, abs(d) / t))) for d in diffs) / len(diffs)
    lo, hi = 1e-4, 10.0
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if expected(mid) < target else (lo, mid)
    return float(f"{lo:.4g}")  # rounded so that the labels do not hang on the last ulp


def bt_label(rng, diff, T):
    """True if the first response is chosen: P = sigmoid(diff / T), diff its oracle score
    minus the other's; a tie (diff 0) is a fair coin."""
    return rng.random() < 1.0 / (1.0 + math.exp(max(-700.0, min(700.0, -diff / T))))


def write_task(out_dir, sft, pairs, prompts, test):
    """Writes the four JSON Lines files (lists of records) and returns the loaded task,
    read back the way the trainers read it."""
    os.makedirs(out_dir, exist_ok=True)
    for name, records in (("sft", sft), ("pairs", pairs), ("prompts", prompts),
                          ("test", test)):
        write_jsonl(os.path.join(out_dir, name + ".jsonl"), records)
    return load_task(out_dir)


def print_examples(task):
    """One example of each file, as its line reads (minus the loader's _file, _line)."""
    for name in ("sft", "pairs", "prompts", "test"):
        r = {k: v for k, v in task.require(name)[0].items() if not k.startswith("_")}
        print(f"  {name}: {json.dumps(r, ensure_ascii=False)}")


def distance_line(score, pairs, sft_mean, extra):
    """How far the pairs lie from what the policy writes, in the oracle's terms: the mean
    score of their responses, chosen and rejected, beside the demonstrations' (which the
    JSFT policy imitates)."""
    got = [score(r["prompt"], r[k]) for r in pairs for k in ("chosen", "rejected")]
    return (f"pairs.jsonl responses: mean oracle score {sum(got) / len(got):.3f} "
            f"(demonstrations {sft_mean:.3f}): {extra} extra mistake{'' if extra == 1 else 's'}"
            f" each (--pair_extra_mistakes)")


def task_folder(out_dir, committed, pair_extra_mistakes=0):
    """Make out_dir ready for a generated task. A copy whose pairs lie further from the
    policy (pair_extra_mistakes > 0) never goes into the committed folder, which the
    tests rebuild byte for byte; elsewhere the folder gets the task's oracle.py, so that
    it is a complete task."""
    if pair_extra_mistakes and os.path.abspath(out_dir) == os.path.abspath(committed):
        raise ValueError(f"pair_extra_mistakes={pair_extra_mistakes} would overwrite the "
                         f"committed {committed}: write the far copy elsewhere (--out_dir)")
    os.makedirs(out_dir, exist_ok=True)
    if os.path.abspath(out_dir) != os.path.abspath(committed):
        shutil.copyfile(os.path.join(committed, "oracle.py"), os.path.join(out_dir, "oracle.py"))
