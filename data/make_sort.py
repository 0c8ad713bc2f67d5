"""Generates the default task, sorting, into data/sort/ (byte for byte from the seed).

    python -m data.make_sort                   # rebuilds data/sort/
    python -m data.make_sort --out_dir /tmp/s  # same bytes elsewhere (oracle.py copied)

prompt "sort: 7 3 9 1 4" -> response "1 3 4 7 9". Demonstrations are imperfect on
purpose (about half fully right) and preference labels carry Bradley-Terry noise, so
that alignment has room to help (DESIGN.md, "Data"). Prints counts and one example of
each file.
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
from collections import Counter

if __package__ in (None, ""):  # run as a script: python data/make_sort.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data.task import load_oracle, load_task, train_tokenizer

# -----------------------------------------------------------------------------
# settings
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sort")
seed = 1337            # everything below is drawn from it
out_dir = HERE         # where the task is written
n_sft = 6000           # demonstrations
n_pairs = 24000        # preference pairs (6000 were memorised: the judge is data-bound)
n_prompts = 2000       # on-policy prompts for self-training
n_test = 200           # held-out prompts
min_len, max_len = 3, 6  # list length
max_num = 9            # numbers are 0..max_num: digits, whose order a tiny GPT learns fast
sft_right = 0.5        # share of demonstrations that are fully right
plausible_share = 0.25  # share of pairs with a sorted, right-length, wrong-number response
label_noise = 0.10     # target share of labels that disagree with the oracle
vocab_size = 520       # BPE vocabulary cap; training stops at 515, when every word is one token
# -----------------------------------------------------------------------------


def fmt(xs):
    return " ".join(str(x) for x in xs)


def new_prompt(rng):
    return [rng.randint(0, max_num) for _ in range(rng.randint(min_len, max_len))]


# one realistic mistake each; xs is a fresh list, returned changed (or unchanged if the
# mistake does not apply to a list this short: corrupt() then draws again)
def swap_neighbours(rng, xs):
    if len(xs) >= 2:
        i = rng.randrange(len(xs) - 1)
        xs[i], xs[i + 1] = xs[i + 1], xs[i]
    return xs


def drop_one(rng, xs):
    if len(xs) >= 2:
        del xs[rng.randrange(len(xs))]
    return xs


def repeat_one(rng, xs):
    i = rng.randrange(len(xs))
    xs.insert(i, xs[i])
    return xs


def change_one(rng, xs):
    i = rng.randrange(len(xs))
    xs[i] = min(max_num, max(0, xs[i] + rng.choice((-3, -2, -1, 1, 2, 3))))
    return xs


def misplace_one(rng, xs):
    if len(xs) >= 3:
        i = rng.randrange(len(xs))
        to = [j for j in range(len(xs)) if abs(j - i) >= 2]  # nearer would be a swap
        if to:
            xs.insert(rng.choice(to), xs.pop(i))
    return xs


MISTAKES = (swap_neighbours, drop_one, repeat_one, change_one, misplace_one)


def corrupt(rng, right, k):
    """right with k mistakes applied; always differs from right when k > 0."""
    while True:
        xs = list(right)
        for _ in range(k):
            xs = rng.choice(MISTAKES)(rng, xs)
        if k == 0 or xs != right:
            return xs


def plausible_wrong(rng, right, m):
    """Sorted and of the right length, but m numbers are wrong: a judge blind spot."""
    while True:
        xs = list(right)
        for i in rng.sample(range(len(xs)), m):
            xs[i] = min(max_num, max(0, xs[i] + rng.choice((-1, 1)) * rng.randint(1, 9)))
        xs.sort()
        if xs != right:
            return xs


def describe(right, xs):
    """Rationale: a phrase that follows the response's letter ("B drops 7.")."""
    if xs == right:
        return "is sorted and complete."
    missing = sorted((Counter(right) - Counter(xs)).elements())
    extra = sorted((Counter(xs) - Counter(right)).elements())
    parts = []
    if len(missing) == 1 and len(extra) == 1:
        parts.append(f"has {extra[0]} instead of {missing[0]}")
    else:
        if missing:
            parts.append("drops " + " and ".join(map(str, missing)))
        if extra:
            verb = "repeats " if all(x in right for x in extra) else "adds "
            parts.append(verb + " and ".join(map(str, extra)))
    if xs != sorted(xs):
        bad = [i for i in range(len(xs)) if xs[i] != right[i]] if not parts else []
        if len(bad) == 2 and bad[1] == bad[0] + 1:
            parts.append(f"puts {xs[bad[0]]} before {xs[bad[1]]}")
        else:
            parts.append("is out of order")
    return " and ".join(parts) + "."


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


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def generate(seed=seed, out_dir=out_dir):
    """Writes the task folder; every random draw comes from a stream named after seed."""
    print(f"seed={seed} out_dir={out_dir} n_sft={n_sft} n_pairs={n_pairs} "
          f"n_prompts={n_prompts} n_test={n_test} lengths={min_len}..{max_len} "
          f"numbers=0..{max_num} vocab_size={vocab_size}")
    os.makedirs(out_dir, exist_ok=True)
    if os.path.abspath(out_dir) != os.path.abspath(HERE):  # a complete task folder
        shutil.copyfile(os.path.join(HERE, "oracle.py"), os.path.join(out_dir, "oracle.py"))
    score = load_oracle(HERE)

    # 1) prompts, each set from its own stream so that sizes can change alone. Test,
    # on-policy and SFT prompts are distinct. Pair prompts only avoid the test and on-policy
    # ones and may repeat: there are just 1000 lists of three digits, and distinct draws
    # left the pairs 84 of them (0.3% of pairs against 31% of test prompts), so the judge
    # never learned to judge a short list (it preferred "2 2 7 9" to "2 7 9" at p = 0.92).
    def prompt_set(name, n, avoid, repeat=False):
        """n prompts from the set's own stream, none of them in `avoid`; each joins `avoid`
        unless repeat (so the sets drawn without repeat are distinct from one another)."""
        rng, out = random.Random(f"{seed}-{name}"), []
        while len(out) < n:
            xs = new_prompt(rng)
            p = "sort: " + fmt(xs)
            if p not in avoid:
                out.append(xs)
                if not repeat:
                    avoid.add(p)
        return out
    taken = set()
    test = prompt_set("test", n_test, taken)
    prompts = prompt_set("prompts", n_prompts, taken)
    held_out = set(taken)  # pairs never show a test or on-policy prompt
    sft_xs = prompt_set("sft", n_sft, taken)
    pair_xs = prompt_set("pairs", n_pairs, held_out, repeat=True)

    # 2) demonstrations: about half right, the rest with one or two mistakes
    rng = random.Random(f"{seed}-sft-responses")
    sft = []
    for xs in sft_xs:
        right = sorted(xs)
        k = 0 if rng.random() < sft_right else (1 if rng.random() < 0.75 else 2)
        sft.append({"prompt": "sort: " + fmt(xs), "response": fmt(corrupt(rng, right, k))})

    # 3) pairs of differing oracle score, then Bradley-Terry labels
    rng = random.Random(f"{seed}-pair-responses")
    raw, n_plausible = [], 0
    for xs in pair_xs:
        right, p = sorted(xs), "sort: " + fmt(xs)
        plausible = rng.random() < plausible_share
        n_plausible += plausible
        while True:
            if plausible:
                a = right if rng.random() < 0.8 else corrupt(rng, right, 1)
                b = plausible_wrong(rng, right, rng.choice((1, 2)))
            else:
                # the worse response is the better one plus one more mistake, so "fewer
                # mistakes" is well defined and every pair asks one question: where is the
                # extra error? (Two independently corrupted responses differ for incidental
                # reasons, e.g. a swap costs 1 edit and a move 2: near coin-flip labels.)
                a = corrupt(rng, right, 0 if rng.random() < 0.6 else 1)
                b = corrupt(rng, a, 1)
            if a != b and score(p, fmt(a)) != score(p, fmt(b)):
                break
        if rng.random() < 0.5:
            a, b = b, a
        raw.append((p, right, a, b, score(p, fmt(a)) - score(p, fmt(b))))
    T = bt_temperature([d for *_, d in raw], label_noise)
    rng = random.Random(f"{seed}-labels")
    pairs, disagree = [], 0
    for p, right, a, b, d in raw:
        a_wins = rng.random() < 1.0 / (1.0 + math.exp(-d / T))
        chosen, rejected = (a, b) if a_wins else (b, a)
        disagree += (d > 0) != a_wins
        pairs.append({"prompt": p, "chosen": fmt(chosen), "rejected": fmt(rejected),
                      "principle": "correctness",
                      "rationale_chosen": describe(right, chosen),
                      "rationale_rejected": describe(right, rejected)})

    # 4) write, then train the tokenizer on the folder's text as a trainer would
    write_jsonl(os.path.join(out_dir, "sft.jsonl"), sft)
    write_jsonl(os.path.join(out_dir, "pairs.jsonl"), pairs)
    for name, lists in (("prompts", prompts), ("test", test)):
        write_jsonl(os.path.join(out_dir, name + ".jsonl"),
                    [{"prompt": "sort: " + fmt(xs)} for xs in lists])
    task = load_task(out_dir)
    tok = train_tokenizer(task.texts(), vocab_size=vocab_size)
    tok.save(os.path.join(out_dir, "tokenizer.json"))

    # 5) checks the trainers rely on
    numbers = [str(x) for x in range(max_num + 1)]
    for s in ["A", "B"] + numbers + [" " + x for x in numbers]:
        if len(tok.encode(s).ids) != 1:
            raise RuntimeError(f"{s!r} is not one token: raise vocab_size")
    for s in task.texts()[:1000]:
        if tok.decode(tok.encode(s).ids) != s:
            raise RuntimeError(f"tokenizer round trip failed on {s!r}")

    # 6) report
    sft_full = sum(score(r["prompt"], r["response"]) == 1.0 for r in sft) / len(sft)
    sft_mean = sum(score(r["prompt"], r["response"]) for r in sft) / len(sft)
    print(f"sft.jsonl     {len(sft):5d}  fully right {sft_full:.1%}, "
          f"mean oracle score {sft_mean:.3f}")
    print(f"pairs.jsonl   {len(pairs):5d}  with a plausible-but-wrong response "
          f"{n_plausible / len(pairs):.1%}; Bradley-Terry T={T}: labels disagreeing with "
          f"the oracle {disagree / len(pairs):.1%} (target {label_noise:.0%})")
    print(f"prompts.jsonl {len(prompts):5d}")
    print(f"test.jsonl    {len(test):5d}")
    print(f"tokenizer.json vocab {tok.get_vocab_size()}")
    for name in ("sft", "pairs", "prompts", "test"):
        r = {k: v for k, v in task.require(name)[0].items() if not k.startswith("_")}
        print(f"  {name}: {json.dumps(r)}")
    return dict(sft=len(sft), pairs=len(pairs), prompts=len(prompts), test=len(test),
                sft_fully_right=sft_full, label_disagreement=disagree / len(pairs), T=T)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=seed, help="everything is drawn from it")
    ap.add_argument("--out_dir", default=out_dir, help="where the task is written")
    args = ap.parse_args(argv)
    generate(args.seed, args.out_dir)


if __name__ == "__main__":
    main()
