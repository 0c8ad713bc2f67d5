"""
Self-judgment: the model reads a context and two responses and answers with one token,
A or B. P(A is better) is read from the softmax at that token, averaged over both orders
so that a preference for a position cancels out. Self-rejection picks the best of N
responses by a knockout tournament of such judgments.

    python judge.py --context="sort: 3 1 2" --a="1 2 3" --b="1 3 2"   # judge one pair

The judge prompt is defined here, once; jsft.py imports it to build training examples.
How well it agrees with the task's held-out labels is measured here (no oracle needed:
jsft.py's verdict and selfjudge.py's gate read it); with the task's oracle, in evaluate.py.
"""
import math
import sys

import torch

from common import get_device, load_checkpoint, parse_flags
from data.chat import encode_query
from data.task import DataError, check_lengths, load_task, n_held_out, principle_text
from model import autocast
from sample import pad_right

# -----------------------------------------------------------------------------
# settings (override with --name=value)
defaults = dict(
    ckpt="out/jsft/ckpt.pt",  # the checkpoint that judges
    data="data/sort",         # task folder: its pairs' principle is the judge's question
    context="sort: 3 1 2",    # the prompt both responses answer
    a="1 2 3",                # response a
    b="1 3 2",                # response b
    device="auto",            # auto: cuda, then mps, then cpu
    skip_bad_lines=False,     # skip malformed lines of the task's files (counted)
)

# -----------------------------------------------------------------------------
# the judge prompt

# the two answers a judgment ends with (the questions before them: data/task.py, PRINCIPLES)
DECISIONS = ("A", "B")


def judge_text(context, response_a, response_b, principle=None):
    """The user turn of a judgment (the chat wrapper is added by encode_query)."""
    return f"{principle_text(principle)}\n{context}\nA: {response_a}\nB: {response_b}"


def judge_query(tok, context, response_a, response_b, principle=None):
    """Token ids that end right before the decision token."""
    return encode_query(tok, judge_text(context, response_a, response_b, principle))


_decision_cache = {}


def decision_ids(tok):
    """The ids of "A" and "B", checked once per tokenizer to be what the tokenizer itself
    produces after the judge prefix: encode(prefix + d) == encode(prefix) + [id(d)]."""
    key = id(tok)
    hit = _decision_cache.get(key)
    if hit is None or hit[0] is not tok:  # id() of a freed tokenizer can be reused
        prefix = tok.decode(judge_query(tok, "x", "y", "z"), skip_special_tokens=False)
        base = tok.encode(prefix, add_special_tokens=False).ids
        ids = []
        for d in DECISIONS:
            full = tok.encode(prefix + d, add_special_tokens=False).ids
            if full[:-1] != base or len(full) != len(base) + 1:
                raise ValueError(f"tokenizer: decision {d!r} is not one token after the judge "
                                 "prompt; the judge needs single-token decisions (a "
                                 "pre-tokenizer that adds a prefix space splits them)")
            ids.append(full[-1])
        _decision_cache[key] = (tok, tuple(ids))  # holding tok keeps its id from reuse
    return _decision_cache[key][1]


def judge_overhead(tok, context, principles=(None,), margin=4):
    """The tokens of a judge prompt for `context` with two empty responses, under the
    longest of the principles' questions, plus a margin for re-tokenization inside the
    prompt (e.g. a leading space)."""
    return max(len(judge_query(tok, context, "", "", p)) for p in principles) + margin


def response_room(tok, context, block_size, principles=(None,)):
    """The most tokens a response may have so that a judge prompt for `context` holding
    two of them fits the context."""
    return (block_size - judge_overhead(tok, context, principles)) // 2


def fit_prompts(tok, prompts, block_size, max_new_tokens, principles=(None,), what="prompts",
                skip=True):
    """Long prompts, decided in one place: -> (the prompts kept, n_new). prompts: strings,
    or the records of a task file (dicts with "prompt", "_file", "_line"). Responses get
    max_new_tokens tokens, and a prompt whose judge prompt cannot hold two of them is too
    long: one long prompt must not shorten every response. A record too long is an error
    naming its file and line, or with skip dropped with a count (check_lengths); a string
    is dropped with a count. Only when no prompt leaves room for max_new_tokens (a context
    smaller than they assume) do responses get what the tightest prompt with room leaves.
    Never cut: a cut context asks another question, and a cut response is another answer."""
    if not prompts:
        return [], max_new_tokens
    records = [p if isinstance(p, dict) else dict(prompt=p, _file=what, _line=i + 1)
               for i, p in enumerate(prompts)]
    overhead = [judge_overhead(tok, r["prompt"], principles) for r in records]
    rooms = [(block_size - o) // 2 for o in overhead]
    n_new = max_new_tokens if max(rooms) >= max_new_tokens else \
        min((r for r in rooms if r >= 1), default=0)
    if n_new < 1:
        raise DataError(f"{records[0]['_file']}: all {len(prompts)} {what} are too long to "
                        "judge: a judge prompt leaves no room for two responses in the "
                        f"model's context of {block_size} tokens")
    keep = check_lengths(records, [o + 2 * n_new for o in overhead], block_size,
                         f"its judge prompt with two responses of {n_new} tokens",
                         skip or not isinstance(prompts[0], dict))
    return [records[i]["prompt"] for i in keep], n_new


# -----------------------------------------------------------------------------
# P(A better): both orders, averaged

@torch.no_grad()
def decision_probs(model, tok, queries, batch_size=64, too_long="error"):
    """Softmax over the vocabulary at each query's next position, read at the A and B ids:
    (N, 2) float32. Raw logits of a forward pass, never a sampler's warped scores.
    A query longer than the context is never cut (the decision would fall off the end):
    too_long="error" raises; "undecided" gives it (0.5, 0.5), with a warning."""
    device = next(model.parameters()).device
    a_id, b_id = decision_ids(tok)
    block = model.config.block_size
    long = [i for i, q in enumerate(queries) if len(q) > block]
    if long and too_long == "error":
        raise ValueError(f"judge prompt of {len(queries[long[0]])} tokens is longer than the "
                         f"model's context ({block}): the decision token would fall off the end")
    if long:
        print(f"warning: {len(long)} of {len(queries)} judge prompts are longer than the "
              f"context ({block}); those pairs count as undecided (0.5)")
    out = torch.full((len(queries), 2), 0.5)
    fits = [i for i, q in enumerate(queries) if len(q) <= block]
    # --- exercise decision_probs (solution below) ---
    for start in range(0, len(fits), batch_size):
        rows = fits[start:start + batch_size]
        chunk = [queries[i] for i in rows]
        idx = pad_right(chunk, device=device)
        last = torch.tensor([len(q) - 1 for q in chunk], device=device)
        with autocast(device):
            h = model.hidden(idx)[torch.arange(len(chunk), device=device), last]  # (b, C)
        probs = torch.softmax(model.lm_head(h).float(), dim=-1)                    # (b, V)
        out[rows] = probs[:, [a_id, b_id]].cpu()
    # --- end exercise ---
    return out


def judge_orders(model, tok, contexts, responses_a, responses_b, principles=None):
    """Decision probabilities in both orders: ab[:, 0] = P("A" | a shown first),
    ba[:, 1] = P("B" | a shown second). principles: None, one name, or one per pair.
    A pair too long for the context is undecided: (0.5, 0.5) in both orders."""
    n = len(contexts)
    if not (len(responses_a) == len(responses_b) == n):
        raise ValueError("judge: contexts, responses_a and responses_b differ in length")
    ps = principles if isinstance(principles, (list, tuple)) else [principles] * n
    q_ab = [judge_query(tok, c, a, b, p) for c, a, b, p in zip(contexts, responses_a,
                                                                  responses_b, ps)]
    q_ba = [judge_query(tok, c, b, a, p) for c, a, b, p in zip(contexts, responses_a,
                                                                  responses_b, ps)]
    both = decision_probs(model, tok, q_ab + q_ba, too_long="undecided")
    return both[:n], both[n:]


def swap_average(ab, ba):
    """p_a = (P(A | a,b) + P(B | b,a)) / 2, p_b likewise; returns p_a / (p_a + p_b), so a
    judge that always answers "A" gives exactly 0.5. ab, ba: (N, 2) -> (N,)"""
    # --- exercise swap_average (solution below) ---
    p_a = (ab[:, 0] + ba[:, 1]) / 2
    p_b = (ab[:, 1] + ba[:, 0]) / 2
    return p_a / (p_a + p_b).clamp(min=1e-12)
    # --- end exercise ---


def follows_position(ab, ba):
    """(N,) bool: the single-order decisions name the same letter in both orders, so the
    decision followed the position, not the responses. ab, ba: (N, 2) from judge_orders."""
    return (ab[:, 0] > ab[:, 1]) == (ba[:, 0] > ba[:, 1])


def judge_prob(model, tok, contexts, responses_a, responses_b, principles=None):
    """P(response A is better than response B) per pair, averaged over both orders."""
    if len(contexts) == 0:
        return torch.zeros(0)
    return swap_average(*judge_orders(model, tok, contexts, responses_a, responses_b,
                                      principles))


def majority(probs):
    """Several principles: probs (K, N) P(A better) under each. A wins a pair when most
    principles say so (p > 0.5); a tied vote goes by the mean probability, and a mean of
    exactly 0.5 goes to A (the first response), so the outcome is deterministic.
    Returns (a_wins (N,) bool, mean (N,))."""
    votes = (probs > 0.5).float().sum(0) - (probs < 0.5).float().sum(0)
    mean = probs.mean(0)
    return torch.where(votes != 0, votes > 0, mean >= 0.5), mean


def task_principles(task):
    """The principles a task's pairs were labelled under ([None]: the default question).
    Judge with these: a question the judge never saw in training is a different task."""
    return list(task.principles) or [None]


def judge_by_principles(model, tok, contexts, responses_a, responses_b, principles=(None,)):
    """A judgment under a task's principles: (p, by_position), each (N,). p = P(a better):
    judge_prob's for one principle; for several, the majority vote's side with the mean
    probability's confidence. by_position: the decision followed the position under some
    principle (follows_position), a by-product of judging both orders."""
    if len(contexts) == 0:
        return torch.zeros(0), torch.zeros(0, dtype=torch.bool)
    orders = [judge_orders(model, tok, contexts, responses_a, responses_b, q)
              for q in principles]
    probs = torch.stack([swap_average(ab, ba) for ab, ba in orders])      # (K, N)
    by_position = torch.stack([follows_position(ab, ba) for ab, ba in orders]).any(0)
    if len(principles) == 1:
        return probs[0], by_position
    wins, mean = majority(probs)
    return torch.where(wins, mean.clamp(min=0.5 + 1e-6), mean.clamp(max=0.5 - 1e-6)), by_position


# -----------------------------------------------------------------------------
# the judge on the held-out labelled pairs: no oracle needed, so every stage can ask

def rate(flags, among):
    """The share of `among` (bool (N,)) where flags holds; nan when among is empty."""
    return flags[among].float().mean().item() if among.any() else float("nan")


def heldout_judgment(model, tok, task):
    """The judge on the held-out labelled pairs, no oracle needed: how often it prefers
    the labelled chosen response (the labels are noisy: this tops out below 100%), and how
    often its decision follows the position instead of the responses, on the pairs it
    could read (a pair too long for its context is undecided, exactly 0.5: left out)."""
    rows = held_out_pairs(task)
    if not rows:
        return {}
    ab, ba = judge_orders(model, tok, [r["prompt"] for r in rows], [r["chosen"] for r in rows],
                          [r["rejected"] for r in rows], [r.get("principle") for r in rows])
    p = swap_average(ab, ba)
    read = p != 0.5
    return dict(label_agreement=rate(p > 0.5, read),
                label_by_position=rate(follows_position(ab, ba), read), label_pairs=int(read.sum()),
                label_unread=len(rows) - int(read.sum()))


def held_out_pairs(task):
    """The held-out tail of pairs.jsonl: jsft.py never trains on it."""
    return task.pairs[len(task.pairs) - n_held_out(len(task.pairs)):] if task.pairs else []


# what jsft.py's verdict and selfjudge.py's gate read there: agreement below CHANCE, or
# decisions that follow the position on more than CHANCE_BY_POSITION of the pairs, are
# little better than a coin (selfjudge.py refuses such a judge); TRUSTED and
# MOST_BY_POSITION are the targets
CHANCE, CHANCE_BY_POSITION, TRUSTED, MOST_BY_POSITION = 0.65, 0.35, 0.85, 0.10


def near_chance(agreement, by_position):
    """A judge little better than a coin: too often wrong, or led by the position."""
    return agreement < CHANCE or by_position > CHANCE_BY_POSITION


def describe_labels(h):
    """heldout_judgment's label metrics, in words: what selfjudge.py's gate looks at."""
    return (f"on the {h['label_pairs']} held-out labelled pairs it agrees with the labels on "
            f"{h['label_agreement']:.1%} and its decisions follow the position on "
            f"{h['label_by_position']:.1%}")


def gate_failure(h):
    """Why selfjudge.py refuses a judge."""
    return (f"{describe_labels(h)}, where self-training needs at least {CHANCE:.0%} and at "
            f"most {CHANCE_BY_POSITION:.0%}")


def check_judge(as_judge, tok, task, allow_weak=False):
    """selfjudge.py's gate, before any training: the judge (`with as_judge() as j`) on the
    held-out labelled pairs (heldout_judgment). A judge near chance there is refused,
    since training on its judgments does harm (one at 72% agreement, 39% of its decisions
    following the position, took the sort policy from 0.76 to 0.60 in 300 steps;
    RESULTS.md, the over-optimisation lesson)."""
    with as_judge() as j:
        h = heldout_judgment(j, tok, task)
    if not h or not h["label_pairs"]:
        return
    print(f"judge: {describe_labels(h)}")
    if near_chance(h["label_agreement"], h["label_by_position"]) and not allow_weak:
        raise ValueError(f"the judge is too weak to self-train on: {gate_failure(h)}; "
                         "training on its judgments would do harm. Train it further "
                         "(jsft.py's last lines say how it stands), or pass "
                         "--allow_weak_judge to see what happens")


GUARD_STEPS = 50  # the judge's position bias is averaged over this many steps


def judge_blind(recent, stats, limit):
    """selfjudge.py's guard against a judge the policy has outgrown: on-policy, each step
    measures on the policy's own pairs how often the judge's decisions follow the position
    (stats' judge_by_position, follows_position). A judge that reads the content does so rarely;
    once the policy's answers differ only where the judge cannot see, it does so often,
    and it is also wrong on more of the pairs it decides (the oracle's diagnostics show
    both at once on data/words, README "Why on-policy?"). Returns the mean over the last
    GUARD_STEPS steps once it passes limit, else None; recent: that window (a list)."""
    share = stats.get("judge_by_position")
    if limit and share is not None and not math.isnan(share):  # nan: no pair differed
        recent.append(share)
        del recent[:-GUARD_STEPS]
        if len(recent) == GUARD_STEPS and sum(recent) / GUARD_STEPS > limit:
            return sum(recent) / GUARD_STEPS
    return None


def describe_blind(bias, limit):
    """Why judge_blind stopped a run, in words."""
    return (f"the judge's decisions followed the position on {bias:.0%} of the policy's pairs "
            f"over the last {GUARD_STEPS} steps (--max_position_bias={limit}): the judge no "
            "longer tells the policy's answers apart, and training on would teach the policy "
            "its mistakes (--max_position_bias=0 trains on anyway)")


# -----------------------------------------------------------------------------
# self-rejection: a knockout tournament

def tournament(model, tok, contexts, candidates, generator=None, principles=None, judge_fn=None):
    """The index of the best candidate for each context, by a knockout of pairwise
    judgments: each round pairs the survivors at random, the odd one out gets a bye, and
    every match of every context is judged in one batch. A match the judge cannot decide
    (exactly 0.5) goes to the first of the two. judge_fn(contexts, a, b) -> P(a better)
    defaults to judge_by_principles with this model and `principles` (a list)."""
    if any(len(c) == 0 for c in candidates):
        raise ValueError("tournament: a context has no candidates")
    if judge_fn is None:
        ps = principles or (None,)
        judge_fn = lambda c, a, b: judge_by_principles(model, tok, c, a, b, ps)[0]  # noqa
    # --- exercise tournament (solution below) ---
    alive = [list(range(len(c))) for c in candidates]
    while any(len(a) > 1 for a in alive):
        matches = []  # (context index, i, j)
        for k, a in enumerate(alive):
            if len(a) > 1:
                # drawn on the generator's own device: randperm fills a CPU tensor by
                # default, and a CUDA generator cannot fill one (the sampling generator)
                device = generator.device if generator is not None else None
                order = torch.randperm(len(a), generator=generator, device=device).tolist()
                a[:] = [a[o] for o in order]
                matches += [(k, a[m], a[m + 1]) for m in range(0, len(a) - 1, 2)]
        p = judge_fn([contexts[k] for k, _, _ in matches],
                     [candidates[k][i] for k, i, _ in matches],
                     [candidates[k][j] for k, _, j in matches])
        winners = {}
        for (k, i, j), pa in zip(matches, p.tolist()):
            winners.setdefault(k, []).append(i if pa >= 0.5 else j)
        for k, w in winners.items():
            bye = [alive[k][-1]] if len(alive[k]) % 2 else []
            alive[k] = w + bye
    return [a[0] for a in alive]
    # --- end exercise ---


def main(argv=None):
    cfg = parse_flags(defaults, argv, __file__)
    device = get_device(cfg.device)
    model, tok, _ = load_checkpoint(cfg.ckpt, device)
    model.eval()
    principle = task_principles(load_task(cfg.data, cfg.skip_bad_lines))[0]
    ab, ba = judge_orders(model, tok, [cfg.context], [cfg.a], [cfg.b], principle)
    print(f"question: {principle_text(principle)}\ncontext: {cfg.context}\n"
          f"a shown as A: P(\"A\") {ab[0, 0]:.3f}, P(\"B\") {ab[0, 1]:.3f}\n"
          f"a shown as B: P(\"A\") {ba[0, 0]:.3f}, P(\"B\") {ba[0, 1]:.3f}\n"
          f"P(a better) = {swap_average(ab, ba)[0]:.3f}, both orders averaged"
          + ("; the decision followed the position" if follows_position(ab, ba)[0] else ""))


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
