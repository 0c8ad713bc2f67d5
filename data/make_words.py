"""Generates the second embedded task, number words, into data/words/ (byte for byte from
the seed): a translation skill, where sorting is an ordering one.

    python -m data.make_words                   # rebuilds data/words/
    python -m data.make_words --out_dir /tmp/w  # same bytes elsewhere (oracle.py copied)
    python -m data.make_words --out_dir out/tasks/words_far2 --pair_extra_mistakes 2
                                                # the same task but for pairs.jsonl, whose
                                                # responses carry 2 more mistakes each

prompt "words: 4521" -> response "four thousand five hundred twenty one" (0 to 9999; the
answer's rules are in data/words/oracle.py). Built like data/sort, on purpose minus three
things, so that it exercises the README's "Bring your own data" path: the pairs have no
principle and no rationales, and the folder has no tokenizer.json (jsft.py trains one on
the folder's text). Demonstrations are about half fully right, the rest carry one or two
realistic mistakes. Pair labels are Bradley-Terry draws on the oracle's score difference,
P(a chosen) = sigmoid((score(a) - score(b)) / T), with T set so that about 10% of the
labels disagree with the oracle: with no rationale there is nothing a coin could
contradict, and this is the labelling of the task a reviewer saw the defaults fail on.
The generator uses the oracle for the labels and to keep pairs it scores differently;
the trainers never see it. Prints counts and one example of each file.

pair_extra_mistakes (0 by default) says how far pairs.jsonl lies from what the policy
writes: every response of every pair carries that many more mistakes, as from a weaker
writer, while the two still differ by one mistake; every other file stays byte for byte
as at 0 (docs/data.md, "How far the pairs lie from the policy"). T is set again for the
new pairs, so about 10% of their labels still disagree with the oracle.
"""
import argparse
import importlib.util
import os
import random
import sys

if __package__ in (None, ""):  # run as a script: python data/make_words.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data.generator import (bt_label, bt_temperature, distance_line, print_examples, prompt_set,
                            task_folder, write_task)

# -----------------------------------------------------------------------------
# settings
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "words")
seed = 1337            # everything below is drawn from it
out_dir = HERE         # where the task is written
n_sft = 6000           # demonstrations (distinct numbers)
n_pairs = 20000        # preference pairs (their numbers may repeat)
n_prompts = 2000       # on-policy prompts for self-training
n_test = 200           # held-out prompts
max_num = 9999         # 0..9999: 10,000 numbers, enough for disjoint sets (0..999 is not)
sft_right = 0.5        # share of demonstrations that are fully right
label_noise = 0.10     # target share of labels that disagree with the oracle
pair_extra_mistakes = 0  # how far pairs.jsonl lies from what the policy writes: mistakes
                         # added to every response of every pair (a weaker writer); the
                         # other files stay byte for byte those of 0 (docs/data.md)
# -----------------------------------------------------------------------------


def load_oracle_module(folder):
    """The task's oracle.py as a module: score() and the answer's rules (number_words)."""
    spec = importlib.util.spec_from_file_location("words_oracle",
                                                  os.path.join(folder, "oracle.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ORACLE = load_oracle_module(HERE)
DIGITS = ORACLE.ONES[1:10]  # one .. nine
# the classic slip of the ear: fourteen / forty, ... (twelve / twenty is not one)
TEEN_TY = {t: y for t, y in zip(ORACLE.ONES[13:20], ORACLE.TENS[3:10])}
TEEN_TY.update({y: t for t, y in TEEN_TY.items()})


def prompt_text(n):
    return f"words: {n}"


# one realistic mistake each; ws is a fresh list of words, returned changed (or unchanged
# if the mistake does not apply: corrupt() then draws again)
def wrong_digit(rng, ws):
    at = [i for i, w in enumerate(ws) if w in DIGITS]
    if at:
        i = rng.choice(at)
        d = DIGITS.index(ws[i]) + 1
        near = [e for e in range(d - 3, d + 4) if e != d and 1 <= e <= 9]  # a near digit
        ws[i] = DIGITS[rng.choice(near) - 1]
    return ws


def teen_for_ty(rng, ws):
    at = [i for i, w in enumerate(ws) if w in TEEN_TY]
    if at:
        i = rng.choice(at)
        ws[i] = TEEN_TY[ws[i]]
    return ws


def drop_scale(rng, ws):
    at = [i for i, w in enumerate(ws) if w in ("hundred", "thousand")]
    if at:
        del ws[rng.choice(at)]
    return ws


def drop_word(rng, ws):
    if len(ws) >= 2:
        del ws[rng.randrange(len(ws))]
    return ws


def repeat_word(rng, ws):
    i = rng.randrange(len(ws))
    ws.insert(i, ws[i])
    return ws


def swap_words(rng, ws):
    if len(ws) >= 2:
        i = rng.randrange(len(ws) - 1)
        ws[i], ws[i + 1] = ws[i + 1], ws[i]
    return ws


MISTAKES = (wrong_digit, teen_for_ty, drop_scale, drop_word, repeat_word, swap_words)


def corrupt(rng, right, k):
    """right with k mistakes applied; always differs from right when k > 0."""
    while True:
        ws = list(right)
        for _ in range(k):
            ws = rng.choice(MISTAKES)(rng, ws)
        if k == 0 or ws != right:
            return ws


def generate(seed=seed, out_dir=out_dir, pair_extra_mistakes=pair_extra_mistakes):
    """Writes the task folder; every random draw comes from a stream named after seed."""
    print(f"seed={seed} out_dir={out_dir} n_sft={n_sft} n_pairs={n_pairs} "
          f"n_prompts={n_prompts} n_test={n_test} numbers=0..{max_num} "
          f"pair_extra_mistakes={pair_extra_mistakes}")
    task_folder(out_dir, HERE, pair_extra_mistakes)
    score = ORACLE.score

    # 1) prompts, each set from its own stream so that sizes can change alone: test,
    # on-policy and SFT numbers are distinct; pair numbers avoid the test and on-policy
    # ones and may repeat (with other responses), as in data/sort
    def numbers(name, n, avoid, repeat=False):
        return prompt_set(f"{seed}-{name}", n, lambda rng: rng.randint(0, max_num),
                          prompt_text, avoid, repeat)
    taken = set()
    test = numbers("test", n_test, taken)
    prompts = numbers("prompts", n_prompts, taken)
    held_out = set(taken)
    sft_ns = numbers("sft", n_sft, taken)
    pair_ns = numbers("pairs", n_pairs, held_out, repeat=True)

    # 2) demonstrations: about half right, the rest with one or two mistakes
    rng = random.Random(f"{seed}-sft-responses")
    sft = []
    for n in sft_ns:
        k = 0 if rng.random() < sft_right else (1 if rng.random() < 0.75 else 2)
        sft.append({"prompt": prompt_text(n),
                    "response": " ".join(corrupt(rng, ORACLE.number_words(n), k))})

    # 3) pairs of differing oracle score: the better response is right (60%) or has one
    # mistake, the worse one is the better one plus one more mistake (as in data/sort:
    # every pair asks one question, where is the extra error?). A weaker writer
    # (pair_extra_mistakes) adds its extra mistakes to the better response before the
    # worse one is made from it, so both carry them and the pair still differs by one;
    # none are drawn at 0, which gives today's pairs.
    rng = random.Random(f"{seed}-pair-responses")
    raw = []
    for n in pair_ns:
        p, right = prompt_text(n), ORACLE.number_words(n)
        while True:
            a = corrupt(rng, right, 0 if rng.random() < 0.6 else 1)
            if pair_extra_mistakes:
                a = corrupt(rng, a, pair_extra_mistakes)
                if not a:  # every word dropped ("two hundred"): nothing to add one to
                    continue
            b = corrupt(rng, a, 1)
            a, b = " ".join(a), " ".join(b)
            # a far pair holds no right answer (the policy writes many): drawn again when
            # the extra mistakes undid an earlier one
            if pair_extra_mistakes and " ".join(right) in (a, b):
                continue
            if a != b and score(p, a) != score(p, b):
                break
        if rng.random() < 0.5:
            a, b = b, a
        raw.append((p, a, b, score(p, a) - score(p, b)))

    # 4) Bradley-Terry labels on the oracle
    T = bt_temperature([d for *_, d in raw], label_noise)
    rng = random.Random(f"{seed}-labels")
    pairs, disagree = [], 0
    for p, a, b, d in raw:
        a_wins = bt_label(rng, d, T)
        disagree += (d > 0) != a_wins
        chosen, rejected = (a, b) if a_wins else (b, a)
        pairs.append({"prompt": p, "chosen": chosen, "rejected": rejected})

    # 5) write (no tokenizer.json: a trainer trains one on the folder's text)
    task = write_task(out_dir, sft, pairs, [{"prompt": prompt_text(n)} for n in prompts],
                      [{"prompt": prompt_text(n)} for n in test])

    # 6) report
    sft_full = sum(score(r["prompt"], r["response"]) == 1.0 for r in sft) / len(sft)
    sft_mean = sum(score(r["prompt"], r["response"]) for r in sft) / len(sft)
    right_in_pairs = sum(score(r["prompt"], r["chosen"]) == 1.0
                         or score(r["prompt"], r["rejected"]) == 1.0 for r in pairs)
    lengths = [len(ORACLE.answer(r["prompt"]).split()) for r in task.test]
    print(f"sft.jsonl     {len(sft):5d}  fully right {sft_full:.1%}, "
          f"mean oracle score {sft_mean:.3f}")
    print(f"pairs.jsonl   {len(pairs):5d}  holding the right answer "
          f"{right_in_pairs / len(pairs):.1%}; Bradley-Terry T={T}: labels disagreeing "
          f"with the oracle {disagree / len(pairs):.1%} (target {label_noise:.0%})")
    print(distance_line(score, pairs, sft_mean, pair_extra_mistakes))
    print(f"prompts.jsonl {len(prompts):5d}")
    print(f"test.jsonl    {len(test):5d}  answers of {min(lengths)}-{max(lengths)} words")
    print("no tokenizer.json: jsft.py trains one on the folder's text")
    print_examples(task)
    return dict(sft=len(sft), pairs=len(pairs), prompts=len(prompts), test=len(test),
                sft_fully_right=sft_full, label_disagreement=disagree / len(pairs), T=T)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=seed, help="everything is drawn from it")
    ap.add_argument("--out_dir", default=out_dir, help="where the task is written")
    ap.add_argument("--pair_extra_mistakes", type=int, default=pair_extra_mistakes,
                    help="mistakes added to every response of every pair, moving pairs.jsonl "
                         "away from what the policy writes; other files unchanged "
                         f"(default {pair_extra_mistakes})")
    args = ap.parse_args(argv)
    if args.pair_extra_mistakes < 0:
        ap.error("--pair_extra_mistakes must be 0 or more")
    if args.pair_extra_mistakes and os.path.abspath(args.out_dir) == os.path.abspath(HERE):
        ap.error(f"--pair_extra_mistakes would overwrite the committed {HERE}: pass --out_dir")
    generate(args.seed, args.out_dir, args.pair_extra_mistakes)


if __name__ == "__main__":
    main()
