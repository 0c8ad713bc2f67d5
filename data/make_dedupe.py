"""Generates a third task, deduplication, for checking that jsft.py's defaults hold on a
task nobody tuned them for. Its data is not committed: generate it where you need it.

    python -m data.make_dedupe --out_dir out/tasks/dedupe
    python -m data.make_dedupe --out_dir /tmp/d --n_sft 100 --n_pairs 300   # a small one
    python -m data.make_dedupe --out_dir out/tasks/dedupe_nested --pair_style nested
    python -m data.make_dedupe --out_dir out/tasks/dedupe_far2 --pair_extra_mistakes 2

prompt "dedupe: red fox red owl sun fox" -> response "red fox owl sun": keep each word's
first occurrence, in order (a filtering skill, where sorting orders and number words
translate). The layout is the README's "Bring your own data": no principle, no
rationales, no tokenizer.json. Its pairs are deliberately rougher than data/sort's, like
those of a reviewer's content-based task: two responses corrupted independently, so
about a fifth of the pairs are oracle ties, labelled by a fair coin; the rest are
Bradley-Terry draws on the oracle's score difference, T set for about 10% disagreement.
--pair_style nested builds the pairs as data/sort does instead (the worse response is the
better one plus one mistake; no ties), to tell the pairs' design from the task's skill.
The generator uses the oracle (data/dedupe_oracle.py, copied in as oracle.py) for those
labels; the trainers never see it. Prints counts and one example of each file.
--pair_extra_mistakes K gives every response of every pair K more mistakes (a weaker
writer; in nested pairs, the better one's before the worse is made from it), leaving the
other files as they are at 0: how far the pairs lie from what the policy writes
(docs/data.md, "How far the pairs lie from the policy").
"""
import argparse
import importlib.util
import os
import random
import shutil
import sys

if __package__ in (None, ""):  # run as a script: python data/make_dedupe.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data.generator import (bt_label, bt_temperature, distance_line, print_examples,
                            prompt_set, write_task)

# -----------------------------------------------------------------------------
# settings
ORACLE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dedupe_oracle.py")
seed = 1337            # everything below is drawn from it
out_dir = "out/tasks/dedupe"  # where the task is written
n_sft = 8000           # demonstrations (distinct prompts)
n_pairs = 20000        # preference pairs (their prompts may repeat)
n_prompts = 2000       # on-policy prompts for self-training
n_test = 200           # held-out prompts
min_unique, max_unique = 3, 8  # words in the answer
min_dups, max_dups = 1, 3      # repeats added to make the prompt
sft_right = 0.5        # share of demonstrations that are fully right
label_noise = 0.10     # target share of non-tied labels that disagree with the oracle
pair_style = "independent"  # independent: two responses corrupted apart (ties happen);
                            # nested: the worse is the better plus one mistake, as in sort
pair_extra_mistakes = 0  # how far pairs.jsonl lies from what the policy writes: mistakes
                         # added to every response of every pair; other files unchanged
WORDS = ("red blue green gold pink gray cat dog fox owl bee cow pig hen ant elk sun moon "
         "star rain snow wind tree leaf rock sand lake hill road door lamp cup pen book box "
         "key hat bell ship car").split()
# -----------------------------------------------------------------------------


def load_score():
    spec = importlib.util.spec_from_file_location("dedupe_oracle", ORACLE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.score


def new_prompt(rng):
    """Distinct words in order, then repeats of earlier words inserted after them."""
    ws = rng.sample(WORDS, rng.randint(min_unique, max_unique))
    for _ in range(rng.randint(min_dups, max_dups)):
        i = rng.randrange(len(ws))
        ws.insert(rng.randint(i + 1, len(ws)), ws[i])
    return ws


def prompt_text(ws):
    return "dedupe: " + " ".join(ws)


def first_occurrences(ws):
    return list(dict.fromkeys(ws))


# one realistic mistake each; ws is a fresh list (the response so far), prompt the
# prompt's words; returned changed, or unchanged if the mistake does not apply
def keep_repeat(rng, ws, prompt):
    i = rng.randrange(len(ws))
    ws.insert(rng.randint(i + 1, len(ws)), ws[i])
    return ws


def drop_word(rng, ws, prompt):
    if len(ws) >= 2:
        del ws[rng.randrange(len(ws))]
    return ws


def swap_words(rng, ws, prompt):
    if len(ws) >= 2:
        i = rng.randrange(len(ws) - 1)
        ws[i], ws[i + 1] = ws[i + 1], ws[i]
    return ws


def keep_last(rng, ws, prompt):
    """A repeated word kept where it last occurs instead of where it first does."""
    repeated = [w for w in ws if prompt.count(w) > 1]
    if repeated:
        w = rng.choice(repeated)
        last = len(prompt) - 1 - prompt[::-1].index(w)
        after = [x for x in prompt[:last] if x in ws and x != w]  # kept words before it
        ws.remove(w)
        ws.insert(max((ws.index(x) + 1 for x in after), default=0), w)
    return ws


MISTAKES = (keep_repeat, drop_word, swap_words, keep_last)


def corrupt(rng, prompt, right, k):
    """right with k mistakes applied; always differs from right when k > 0."""
    while True:
        ws = list(right)
        for _ in range(k):
            ws = rng.choice(MISTAKES)(rng, ws, prompt)
        if k == 0 or ws != right:
            return ws


def n_mistakes(rng):
    """Mistakes in a pair's response: 0 (25%), 1 (60%) or 2 (15%); many one-mistake
    responses make about a fifth of the pairs oracle ties."""
    u = rng.random()
    return 0 if u < 0.25 else (1 if u < 0.85 else 2)


def generate(seed=seed, out_dir=out_dir, n_sft=n_sft, n_pairs=n_pairs, n_prompts=n_prompts,
             n_test=n_test, pair_style=pair_style, pair_extra_mistakes=pair_extra_mistakes):
    """Writes the task folder; every random draw comes from a stream named after seed."""
    print(f"seed={seed} out_dir={out_dir} n_sft={n_sft} n_pairs={n_pairs} "
          f"n_prompts={n_prompts} n_test={n_test} answers={min_unique}..{max_unique} words "
          f"from {len(WORDS)}, repeats={min_dups}..{max_dups} pair_style={pair_style} "
          f"pair_extra_mistakes={pair_extra_mistakes}")
    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(ORACLE_FILE, os.path.join(out_dir, "oracle.py"))
    score = load_score()

    # 1) prompts: test, on-policy and SFT prompts distinct; pair prompts avoid the first
    # two and may repeat
    def prompts_of(name, n, avoid, repeat=False):
        return prompt_set(f"{seed}-{name}", n, new_prompt, prompt_text, avoid, repeat)
    taken = set()
    test = prompts_of("test", n_test, taken)
    prompts = prompts_of("prompts", n_prompts, taken)
    held_out = set(taken)
    sft_ws = prompts_of("sft", n_sft, taken)
    pair_ws = prompts_of("pairs", n_pairs, held_out, repeat=True)

    # 2) demonstrations: about half right, the rest with one or two mistakes
    rng = random.Random(f"{seed}-sft-responses")
    sft = []
    for ws in sft_ws:
        k = 0 if rng.random() < sft_right else (1 if rng.random() < 0.75 else 2)
        sft.append({"prompt": prompt_text(ws),
                    "response": " ".join(corrupt(rng, ws, first_occurrences(ws), k))})

    # 3) pairs: two responses corrupted independently (so some tie under the oracle), or
    # nested, a pair differing by one mistake, which the oracle always tells apart; each
    # response with pair_extra_mistakes more (none drawn at 0, which gives today's pairs)
    rng, extra = random.Random(f"{seed}-pair-responses"), pair_extra_mistakes
    raw = []
    for ws in pair_ws:
        p, right = prompt_text(ws), first_occurrences(ws)
        while True:
            if pair_style == "nested":
                a = corrupt(rng, ws, right, 0 if rng.random() < 0.6 else 1)
                if extra:
                    a = corrupt(rng, ws, a, extra)
                a, b = " ".join(a), " ".join(corrupt(rng, ws, a, 1))
                if rng.random() < 0.5:
                    a, b = b, a
            else:
                a = " ".join(corrupt(rng, ws, right, n_mistakes(rng) + extra))
                b = " ".join(corrupt(rng, ws, right, n_mistakes(rng) + extra))
            # a far pair holds no right answer (the policy writes many): drawn again when
            # the extra mistakes undid an earlier one
            if extra and " ".join(right) in (a, b):
                continue
            if a != b and (pair_style != "nested" or score(p, a) != score(p, b)):
                break
        raw.append((p, a, b, score(p, a) - score(p, b)))

    # 4) labels: a fair coin on ties, Bradley-Terry on the oracle otherwise
    T = bt_temperature([d for *_, d in raw if d != 0], label_noise)
    rng = random.Random(f"{seed}-labels")
    pairs, disagree, ties = [], 0, 0
    for p, a, b, d in raw:
        a_wins = bt_label(rng, d, T)
        ties += d == 0
        disagree += d != 0 and (d > 0) != a_wins
        chosen, rejected = (a, b) if a_wins else (b, a)
        pairs.append({"prompt": p, "chosen": chosen, "rejected": rejected})

    # 5) write (no tokenizer.json: a trainer trains one on the folder's text)
    task = write_task(out_dir, sft, pairs, [{"prompt": prompt_text(ws)} for ws in prompts],
                      [{"prompt": prompt_text(ws)} for ws in test])

    # 6) report
    sft_full = sum(score(r["prompt"], r["response"]) == 1.0 for r in sft) / len(sft)
    sft_mean = sum(score(r["prompt"], r["response"]) for r in sft) / len(sft)
    print(f"sft.jsonl     {len(sft):5d}  fully right {sft_full:.1%}, "
          f"mean oracle score {sft_mean:.3f}")
    print(f"pairs.jsonl   {len(pairs):5d}  oracle ties {ties / len(pairs):.1%} (a fair coin); "
          f"Bradley-Terry T={T} on the rest: labels disagreeing with the oracle "
          f"{disagree / (len(pairs) - ties):.1%} of them (target {label_noise:.0%})")
    print(distance_line(score, pairs, sft_mean, pair_extra_mistakes))
    print(f"prompts.jsonl {len(prompts):5d}")
    print(f"test.jsonl    {len(test):5d}")
    print("no tokenizer.json: jsft.py trains one on the folder's text")
    print_examples(task)
    return dict(sft=len(sft), pairs=len(pairs), prompts=len(prompts), test=len(test),
                sft_fully_right=sft_full, tie_share=ties / len(pairs),
                label_disagreement=disagree / (len(pairs) - ties), T=T)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=seed, help="everything is drawn from it")
    ap.add_argument("--out_dir", default=out_dir, help="where the task is written")
    for name, value in (("n_sft", n_sft), ("n_pairs", n_pairs), ("n_prompts", n_prompts),
                        ("n_test", n_test)):
        ap.add_argument("--" + name, type=int, default=value, help=f"default {value}")
    ap.add_argument("--pair_style", default=pair_style, choices=("independent", "nested"),
                    help=f"how a pair's two responses relate (default {pair_style})")
    ap.add_argument("--pair_extra_mistakes", type=int, default=pair_extra_mistakes,
                    help="mistakes added to every response of every pair, moving pairs.jsonl "
                         "away from what the policy writes; other files unchanged "
                         f"(default {pair_extra_mistakes})")
    args = ap.parse_args(argv)
    if args.pair_extra_mistakes < 0:
        ap.error("--pair_extra_mistakes must be 0 or more")
    generate(args.seed, args.out_dir, args.n_sft, args.n_pairs, args.n_prompts, args.n_test,
             args.pair_style, args.pair_extra_mistakes)


if __name__ == "__main__":
    main()
