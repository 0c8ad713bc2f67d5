"""Generates the default task, sorting, into data/sort/ (byte for byte from the seed).

    python -m data.make_sort                   # rebuilds data/sort/
    python -m data.make_sort --out_dir /tmp/s  # same bytes elsewhere (oracle.py copied)
    python -m data.make_sort --out_dir out/tasks/sort_far2 --pair_extra_mistakes 2
                                               # the same task but for pairs.jsonl, whose
                                               # responses carry 2 more mistakes each

prompt "sort: 7 3 9 1 4" -> response "1 3 4 7 9". Demonstrations are imperfect on
purpose (about half fully right) and preference labels are noisy, so that alignment has
room to help (docs/data.md). Prints counts and one example of each file.

The labels come from a simulated annotator that reads each response of a pair once. The
generator uses the oracle twice: it keeps only pairs the oracle scores differently, and the
oracle's answer defines each response's true mistakes (mistakes(): "drops 7", "puts 7
before 2", ...). The annotator perceives those noisily (perceive()): it overlooks each
true mistake with probability miss_rate, and in imagine_rate of the responses it sees one
that is not there (imagined(): the same words, naming numbers the list holds). From that
one reading it writes the response's rationale, and it chooses the response it saw fewer
mistakes in (cost(): one each, two for "is out of order", as the oracle charges a move
two edits and a swap one); a tie goes to a coin from the annotator's seeded stream. So the
label and both rationales come from one judgment: the chosen response's rationale never
names more mistakes than the rejected's, and a wrong label is wrong because a mistake was
overlooked or imagined, as its rationale says. The two rates were set so that about 10%
of the labels disagree with the oracle. The trainers never see the oracle.

pair_extra_mistakes (0 by default) says how far pairs.jsonl lies from what the policy
writes: every response of every pair carries that many more mistakes, as from a weaker
writer, while the two still differ as they do at 0; every other file stays byte for
byte as at 0 (docs/data.md, "How far the pairs lie from the policy"). The annotator is
unchanged, and reads responses with more mistakes less well: a larger share of the
labels disagrees with the oracle (printed).
"""
import argparse
import os
import random
import sys
import tempfile
from collections import Counter

if __package__ in (None, ""):  # run as a script: python data/make_sort.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data.generator import (distance_line, print_examples, prompt_set, task_folder,
                            write_task)
from data.task import load_oracle, train_tokenizer

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
label_noise = 0.10     # target share of labels that disagree with the oracle, which
miss_rate = 0.10       # the annotator reaches by overlooking each real mistake this often
imagine_rate = 0.10    # and seeing one that is not there in this share of responses
vocab_size = 520       # BPE vocabulary cap; training stops at 515, when every word is one token
pair_extra_mistakes = 0  # how far pairs.jsonl lies from what the policy writes: mistakes
                         # added to every response of every pair (a weaker writer); the
                         # other files stay byte for byte those of 0 (docs/data.md)
# -----------------------------------------------------------------------------


def fmt(xs):
    return " ".join(str(x) for x in xs)


def prompt_text(xs):
    return "sort: " + fmt(xs)


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


# -----------------------------------------------------------------------------
# the annotator: one noisy reading of each response gives its rationale, and the two
# readings of a pair give the label. A mistake is a tuple: ("has", x, y) has x instead of
# y, ("drops", v), ("repeats", v), ("adds", v) (extra numbers, not all in the prompt),
# ("puts", x, y) two neighbours the wrong way round, ("order",) anything else unsorted.

def mistakes(right, xs):
    """The true mistakes of xs, as the oracle's answer `right` defines them."""
    if xs == right:
        return []
    missing = sorted((Counter(right) - Counter(xs)).elements())
    extra = sorted((Counter(xs) - Counter(right)).elements())
    out = []
    if len(missing) == 1 and len(extra) == 1:
        out.append(("has", extra[0], missing[0]))
    else:
        out += [("drops", v) for v in missing]
        verb = "repeats" if all(v in right for v in extra) else "adds"
        out += [(verb, v) for v in extra]
    if xs != sorted(xs):
        bad = [i for i in range(len(xs)) if xs[i] != right[i]] if not out else []
        if len(bad) == 2 and bad[1] == bad[0] + 1:
            out.append(("puts", xs[bad[0]], xs[bad[1]]))
        else:
            out.append(("order",))
    return out


def imagined(rng, right, xs, seen):
    """A mistake xs does not have but a hasty reader could see, in the words of real ones:
    a number that is there overlooked ("drops 3"), read twice ("repeats 3") or misread
    ("has 4 instead of 3", the near number a real change makes), or two neighbours read
    the wrong way round ("puts 7 before 2"). It names only numbers the list holds exactly
    as often as the answer does, so it never contradicts a real mistake on the same number,
    and no swap beside an order mistake already `seen`. None when nothing fits."""
    kind = rng.choice(("drops", "repeats", "has", "puts"))
    if kind == "puts":
        ups = [(xs[i + 1], xs[i]) for i in range(len(xs) - 1) if xs[i] < xs[i + 1]]
        if not ups or any(m[0] in ("puts", "order") for m in seen):
            return None
        return ("puts",) + rng.choice(ups)
    exact = sorted({v for v in xs if xs.count(v) == right.count(v)})
    if not exact:
        return None
    v = rng.choice(exact)
    if kind == "has":
        near = [x for x in range(v - 3, v + 4) if x != v and 0 <= x <= max_num]
        m = ("has", rng.choice(near), v)
    else:
        m = (kind, v)
    return None if m in seen else m


def perceive(rng, right, xs):
    """The annotator's reading of xs: it overlooks each true mistake with probability
    miss_rate, and sees one that is not there with probability imagine_rate."""
    seen = [m for m in mistakes(right, xs) if rng.random() >= miss_rate]
    if rng.random() < imagine_rate:
        m = imagined(rng, right, xs, seen)
        if m:
            seen.append(m)
    return seen


def cost(seen):
    """How bad the annotator finds a response: one per mistake, two for a list out of
    order beyond a neighbour swap (the oracle too charges a move two edits, a swap one)."""
    return sum(2 if m[0] == "order" else 1 for m in seen)


def rationale(seen):
    """The annotator's phrase for what it saw, following the response's letter
    ("B drops 7."); for the true mistakes, the words the oracle's answer gives."""
    if not seen:
        return "is sorted and complete."
    parts = [f"has {m[1]} instead of {m[2]}" for m in seen if m[0] == "has"]
    for verb in ("drops", "repeats", "adds"):
        vs = [str(m[1]) for m in seen if m[0] == verb]
        if vs:
            parts.append(verb + " " + " and ".join(vs))
    parts += [f"puts {m[1]} before {m[2]}" for m in seen if m[0] == "puts"]
    parts += ["is out of order" for m in seen if m[0] == "order"]
    return " and ".join(parts) + "."


def annotate(rng, right, a, b):
    """One judgment of a pair -> (a chosen?, rationale of a, rationale of b). The response
    the annotator sees fewer (lighter) mistakes in is chosen; a perceived tie goes to a
    coin from the annotator's own seeded stream."""
    sa, sb = perceive(rng, right, a), perceive(rng, right, b)
    ca, cb = cost(sa), cost(sb)
    a_wins = ca < cb if ca != cb else rng.random() < 0.5
    return a_wins, rationale(sa), rationale(sb)


def make_pairs(seed, pair_xs, score, extra=0):
    """The preference pairs of the prompts pair_xs -> (records, counts), their responses
    from the stream "{seed}-pair-responses" and their labels and rationales from the
    annotator's. extra is pair_extra_mistakes: each response carries that many more
    mistakes, drawn from the same stream (none drawn at 0, so 0 gives today's pairs)."""
    # pairs of differing oracle score
    rng = random.Random(f"{seed}-pair-responses")
    raw, n_plausible = [], 0
    for xs in pair_xs:
        right, p = sorted(xs), prompt_text(xs)
        plausible = rng.random() < plausible_share
        n_plausible += plausible
        while True:
            if plausible:
                # a weaker writer's plausible pair: the good response gets the extra
                # mistakes, the plausible-but-wrong one that many more wrong numbers, so
                # it stays sorted and of the right length (the blind spot it is there for)
                a = right if rng.random() < 0.8 else corrupt(rng, right, 1)
                if extra:
                    a = corrupt(rng, a, extra)
                b = plausible_wrong(rng, right, min(len(right), rng.choice((1, 2)) + extra))
            else:
                # the worse response is the better one plus one more mistake, so "fewer
                # mistakes" is well defined and every pair asks one question: where is the
                # extra error? (Two independently corrupted responses differ for incidental
                # reasons, e.g. a swap costs 1 edit and a move 2: near coin-flip labels.)
                # A weaker writer's better response has `extra` more mistakes first.
                a = corrupt(rng, right, 0 if rng.random() < 0.6 else 1)
                if extra:
                    a = corrupt(rng, a, extra)
                b = corrupt(rng, a, 1)
            # a far pair holds no right answer (the policy writes many): drawn again when
            # the extra mistakes undid an earlier one
            if extra and right in (a, b):
                continue
            if a != b and score(p, fmt(a)) != score(p, fmt(b)):
                break
        if rng.random() < 0.5:
            a, b = b, a
        raw.append((p, right, a, b, score(p, fmt(a)) - score(p, fmt(b))))

    # one noisy judgment per pair: the label and both rationales (the annotator, above)
    rng = random.Random(f"{seed}-annotator")
    pairs, disagree, misread = [], 0, 0
    for p, right, a, b, d in raw:
        a_wins, ra, rb = annotate(rng, right, a, b)
        disagree += (d > 0) != a_wins
        misread += (ra != rationale(mistakes(right, a))) + (rb != rationale(mistakes(right, b)))
        (chosen, rc), (rejected, rr) = ((a, ra), (b, rb)) if a_wins else ((b, rb), (a, ra))
        pairs.append({"prompt": p, "chosen": fmt(chosen), "rejected": fmt(rejected),
                      "principle": "correctness", "rationale_chosen": rc,
                      "rationale_rejected": rr})
    return pairs, dict(plausible=n_plausible, disagree=disagree, misread=misread)


def generate(seed=seed, out_dir=out_dir, pair_extra_mistakes=pair_extra_mistakes):
    """Writes the task folder; every random draw comes from a stream named after seed."""
    print(f"seed={seed} out_dir={out_dir} n_sft={n_sft} n_pairs={n_pairs} "
          f"n_prompts={n_prompts} n_test={n_test} lengths={min_len}..{max_len} "
          f"numbers=0..{max_num} vocab_size={vocab_size} "
          f"pair_extra_mistakes={pair_extra_mistakes}")
    task_folder(out_dir, HERE, pair_extra_mistakes)
    score = load_oracle(HERE)

    # 1) prompts, each set from its own stream so that sizes can change alone. Test,
    # on-policy and SFT prompts are distinct. Pair prompts only avoid the test and on-policy
    # ones and may repeat: there are just 1000 lists of three digits, and distinct draws
    # left the pairs 84 of them (0.3% of pairs against 31% of test prompts), so the judge
    # never learned to judge a short list (it preferred "2 2 7 9" to "2 7 9" at p = 0.92).
    def prompts_of(name, n, avoid, repeat=False):
        return prompt_set(f"{seed}-{name}", n, new_prompt, prompt_text, avoid, repeat)
    taken = set()
    test = prompts_of("test", n_test, taken)
    prompts = prompts_of("prompts", n_prompts, taken)
    held_out = set(taken)  # pairs never show a test or on-policy prompt
    sft_xs = prompts_of("sft", n_sft, taken)
    pair_xs = prompts_of("pairs", n_pairs, held_out, repeat=True)

    # 2) demonstrations: about half right, the rest with one or two mistakes
    rng = random.Random(f"{seed}-sft-responses")
    sft = []
    for xs in sft_xs:
        right = sorted(xs)
        k = 0 if rng.random() < sft_right else (1 if rng.random() < 0.75 else 2)
        sft.append({"prompt": prompt_text(xs), "response": fmt(corrupt(rng, right, k))})

    # 3) pairs of differing oracle score, and 4) one noisy judgment each (make_pairs)
    pairs, n = make_pairs(seed, pair_xs, score, pair_extra_mistakes)
    n_plausible, disagree, misread = n["plausible"], n["disagree"], n["misread"]

    # 5) write, then train the tokenizer on the folder's text as a trainer would. With
    # extra mistakes, on the text the folder has without them (pairs made at 0, in a
    # scratch folder): BPE merges follow word counts, so the far pairs would give another
    # tokenizer.json, and a far copy is to differ from the default folder in pairs.jsonl
    # alone (one JSFT checkpoint, which carries its own tokenizer anyway, serves both)
    on_policy = [{"prompt": prompt_text(xs)} for xs in prompts]
    held = [{"prompt": prompt_text(xs)} for xs in test]
    task = write_task(out_dir, sft, pairs, on_policy, held)
    texts = task.texts()
    if pair_extra_mistakes:
        with tempfile.TemporaryDirectory() as tmp:
            texts = write_task(tmp, sft, make_pairs(seed, pair_xs, score)[0], on_policy,
                               held).texts()
    tok = train_tokenizer(texts, vocab_size=vocab_size)
    tok.save(os.path.join(out_dir, "tokenizer.json"))

    # 6) checks the trainers rely on
    numbers = [str(x) for x in range(max_num + 1)]
    for s in ["A", "B"] + numbers + [" " + x for x in numbers]:
        if len(tok.encode(s).ids) != 1:
            raise RuntimeError(f"{s!r} is not one token: raise vocab_size")
    for s in task.texts()[:1000]:
        if tok.decode(tok.encode(s).ids) != s:
            raise RuntimeError(f"tokenizer round trip failed on {s!r}")

    # 7) report
    sft_full = sum(score(r["prompt"], r["response"]) == 1.0 for r in sft) / len(sft)
    sft_mean = sum(score(r["prompt"], r["response"]) for r in sft) / len(sft)
    print(f"sft.jsonl     {len(sft):5d}  fully right {sft_full:.1%}, "
          f"mean oracle score {sft_mean:.3f}")
    print(f"pairs.jsonl   {len(pairs):5d}  with a plausible-but-wrong response "
          f"{n_plausible / len(pairs):.1%}; annotator (misses {miss_rate:.0%} of mistakes, "
          f"imagines one in {imagine_rate:.0%} of responses) misreads "
          f"{misread / (2 * len(pairs)):.1%} of responses: labels disagreeing with the "
          f"oracle {disagree / len(pairs):.1%} (target {label_noise:.0%})")
    print(distance_line(score, pairs, sft_mean, pair_extra_mistakes))
    print(f"prompts.jsonl {len(prompts):5d}")
    print(f"test.jsonl    {len(test):5d}")
    print(f"tokenizer.json vocab {tok.get_vocab_size()}")
    print_examples(task)
    return dict(sft=len(sft), pairs=len(pairs), prompts=len(prompts), test=len(test),
                sft_fully_right=sft_full, label_disagreement=disagree / len(pairs))


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
