"""
Self-judgment: the model reads a context and two responses and answers with one token,
A or B. P(A is better) is read from the softmax at that token, averaged over both orders
so that a preference for a position cancels out.

    python judge.py                              # agreement on held-out pairs and own samples
    python judge.py --best_of 16                 # self-rejection: tournament best-of-N table
    python judge.py --ckpt out/selfjudge/ckpt.pt --data data/sort

The judge prompt is defined here, once; jsft.py imports it to build training examples.
"""
import sys

import torch

from data.task import load_task, principle_text
from model import autocast, encode_query, get_device, load_checkpoint, pad_right, parse_flags
from sample import sample_responses

# -----------------------------------------------------------------------------
# settings (override with --name=value)
defaults = dict(
    ckpt="out/jsft/ckpt.pt",  # checkpoint to judge with (and to sample from)
    data="data/sort",         # task folder
    n_prompts=200,            # held-out prompts used for on-policy agreement / best-of-N
    pairs_per_prompt=4,       # own-sample pairs judged per prompt for the agreement
    best_of=0,                # >0: self-rejection table for N = 1, 2, 4, ... up to this
    temperature=1.0,          # sampling temperature for the policy's own pairs
    max_new_tokens=48,        # response length limit when sampling
    seed=1337,                # seeds sampling and tournament pairing
    device="auto",            # auto: cuda, then mps, then cpu
)

N_HELD_OUT_PAIRS = 256  # at most this many of the last pairs are held out from jsft.py


def n_held_out(n_pairs):
    """How many of the last pairs of pairs.jsonl are held out (jsft.py never trains on
    them; judge.py scores them; selfjudge.py --offline leaves them out too)."""
    return min(N_HELD_OUT_PAIRS, n_pairs // 10)


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
                                 "prompt; the judge needs single-token decisions")
            ids.append(full[-1])
        _decision_cache[key] = (tok, tuple(ids))  # holding tok keeps its id from reuse
    return _decision_cache[key][1]


def response_budget(tok, contexts, block_size, margin=4):
    """The most tokens a sampled response may have so that a judge prompt holding two of
    them still fits the context. The margin covers re-tokenization inside the prompt
    (e.g. a leading space)."""
    longest = max(len(judge_query(tok, c, "", "")) for c in contexts)
    budget = (block_size - longest - margin) // 2
    if budget < 1:
        raise ValueError(f"a judge prompt for these contexts needs {longest} tokens, leaving "
                         f"no room for responses in the model's context of {block_size}")
    return budget


# -----------------------------------------------------------------------------
# P(A better)

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
    for start in range(0, len(fits), batch_size):
        rows = fits[start:start + batch_size]
        chunk = [queries[i] for i in rows]
        idx = pad_right(chunk, device=device)
        last = torch.tensor([len(q) - 1 for q in chunk], device=device)
        with autocast(device):
            h = model.hidden(idx)[torch.arange(len(chunk), device=device), last]  # (b, C)
        probs = torch.softmax(model.lm_head(h).float(), dim=-1)                    # (b, V)
        out[rows] = probs[:, [a_id, b_id]].cpu()
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
    p_a = (ab[:, 0] + ba[:, 1]) / 2
    p_b = (ab[:, 1] + ba[:, 0]) / 2
    return p_a / (p_a + p_b).clamp(min=1e-12)


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


def judge_vote(model, tok, contexts, responses_a, responses_b, principles):
    """Principle-aware judgment: one judge_prob per principle name, then majority()."""
    probs = torch.stack([judge_prob(model, tok, contexts, responses_a, responses_b, p)
                         for p in principles])
    return majority(probs)


def task_principles(task):
    """The principles a task's pairs were labelled under ([None]: the default question).
    Judge with these: a question the judge never saw in training is a different task."""
    return list(task.principles) or [None]


def judge_by_principles(model, tok, contexts, responses_a, responses_b, principles=(None,)):
    """P(a better) under a task's principles: judge_prob for one; for several, the
    majority vote's side with the mean probability's confidence."""
    if len(principles) == 1:
        return judge_prob(model, tok, contexts, responses_a, responses_b, principles[0])
    wins, mean = judge_vote(model, tok, contexts, responses_a, responses_b, principles)
    return torch.where(wins, mean.clamp(min=0.5 + 1e-6), mean.clamp(max=0.5 - 1e-6))


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
        judge_fn = lambda c, a, b: judge_by_principles(model, tok, c, a, b, ps)  # noqa: E731
    alive = [list(range(len(c))) for c in candidates]
    while any(len(a) > 1 for a in alive):
        matches = []  # (context index, i, j)
        for k, a in enumerate(alive):
            if len(a) > 1:
                order = torch.randperm(len(a), generator=generator).tolist()
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


# -----------------------------------------------------------------------------
# evaluation against the task's oracle

def onpolicy_agreement(model, tok, prompts, oracle, generator=None, temperature=1.0,
                       max_new_tokens=48, principle=None, pairs_per_prompt=4):
    """Sample 2 x pairs_per_prompt responses per prompt from the model's own policy and
    judge them in disjoint pairs; on the pairs the oracle can tell apart, how often does
    the judge prefer the oracle's choice? Also the tie rate (oracle cannot tell) and the
    position-flip rate (single-order decisions that depend on which response is shown
    first), and the agreement split between pairs that hold the best of the prompt's
    samples and pairs of two lesser ones. Several pairs per prompt: one pair each leaves
    ~150 scored pairs and a standard error of ~4 points; four pairs each bring it to ~2."""
    if pairs_per_prompt < 1:
        raise ValueError(f"pairs_per_prompt={pairs_per_prompt}: judge at least one pair "
                         "per prompt")
    n_new = min(max_new_tokens, response_budget(tok, prompts, model.config.block_size))
    k = pairs_per_prompt
    samples = sample_responses(model, tok, prompts, 2 * k, n_new, temperature,
                               generator=generator)
    texts = [[s["text"] for s in row] for row in samples]
    scores = [[oracle(c, t) for t in row] for c, row in zip(prompts, texts)]
    prompts = [c for c in prompts for _ in range(k)]
    a = [s[2 * i]["text"] for s in samples for i in range(k)]
    b = [s[2 * i + 1]["text"] for s in samples for i in range(k)]
    ab, ba = judge_orders(model, tok, prompts, a, b, principle)
    p = swap_average(ab, ba)
    a_first = ab[:, 0] > ab[:, 1]                          # one order only: a shown first
    sa = torch.tensor([sc[2 * i] for sc in scores for i in range(k)])
    sb = torch.tensor([sc[2 * i + 1] for sc in scores for i in range(k)])
    diff = sa - sb
    # pairs holding the best of the prompt's 2k samples (on a task with a right answer,
    # mostly right against wrong) against pairs of two lesser samples (wrong against wrong)
    top = torch.maximum(sa, sb) == torch.tensor([max(sc) for sc in scores for _ in range(k)])
    # exactly 0.5 on two different responses: too long for the context (identical
    # responses also give 0.5, by symmetry; they are oracle ties, not judge failures)
    unread = (p == 0.5) & torch.tensor([x != y for x, y in zip(a, b)])
    told = (diff != 0) & ~unread  # pairs the oracle tells apart and the judge could read
    # a flip: the same letter in both orders, so the decision followed the position; counted
    # on the scored pairs (identical responses always "flip": that says nothing)
    flipped = a_first == (ba[:, 0] > ba[:, 1])
    # the confident judgments (|2p - 1| >= 0.5): what selfjudge.py --min_confidence keeps
    sure = told & ((2 * p - 1).abs() >= 0.5)

    def rate(flags, among):  # share of `among` where flags holds; nan for none
        return flags[among].float().mean().item() if among.any() else float("nan")
    n = int(told.sum())
    right = (p > 0.5) == (diff > 0)
    return dict(agreement=rate(right, told),
                agreement_one_order=rate(a_first == (diff > 0), told), decided=n,
                tie_rate=(diff == 0).float().mean().item(),
                undecided=unread.float().mean().item(), position_flip=rate(flipped, told),
                agreement_confident=rate(right, sure),
                confident_share=sure.sum().item() / n if n else float("nan"),
                agreement_top=rate(right, told & top), agreement_rest=rate(right, told & ~top),
                top_share=(told & top).sum().item() / n if n else float("nan"))


def describe_agreement(r):
    """One line for onpolicy_agreement's result, as judge.py and jsft.py print it."""
    if r["decided"] == 0:
        return (f"judge on the policy's own pairs: no pair to score (oracle ties "
                f"{r['tie_rate']:.1%}, judge undecided {r['undecided']:.1%})")
    return (f"judge on the policy's own pairs: agrees with the oracle on {r['agreement']:.1%} "
            f"of {r['decided']} pairs it can tell apart (one order only: "
            f"{r['agreement_one_order']:.1%}); oracle ties {r['tie_rate']:.1%}; "
            f"position flips on those pairs {r['position_flip']:.1%}"
            + (f"; on the {r['confident_share']:.0%} judged with confidence |2p-1| >= 0.5 "
               f"it agrees on {r['agreement_confident']:.1%}" if r.get("confident_share")
               else "")
            + (f"; {r['agreement_top']:.1%} on the {r['top_share']:.0%} of pairs holding the "
               f"best of the prompt's samples, {r['agreement_rest']:.1%} on pairs of two lesser "
               "ones" if 0 < r.get("top_share", 0) < 1 else "")
            + (f"; judge undecided {r['undecided']:.1%}" if r["undecided"] else ""))


def pair_agreement(model, tok, pairs):
    """Agreement with the task's labels: P(chosen better) > 0.5, chosen shown as A or B."""
    p = judge_prob(model, tok, [x["prompt"] for x in pairs], [x["chosen"] for x in pairs],
                   [x["rejected"] for x in pairs], [x.get("principle") for x in pairs])
    return (p > 0.5).float().mean().item()


def best_of_n(model, tok, prompts, oracle, max_n=16, generator=None, temperature=1.0,
              max_new_tokens=48, principles=(None,)):
    """Self-rejection: max_n samples per prompt once; for N = 1, 2, 4, ... the tournament
    winner among the first N, scored by the oracle. Returns {N: (winners' scores, best
    scores)}, one score per prompt each: the best is the oracle's own pick of the N, the
    most any judge could reach with those samples."""
    n_new = min(max_new_tokens, response_budget(tok, prompts, model.config.block_size))
    samples = sample_responses(model, tok, prompts, max_n, n_new, temperature,
                               generator=generator)
    texts = [[s["text"] for s in row] for row in samples]
    scores = [[oracle(c, t) for t in row] for c, row in zip(prompts, texts)]
    out, n = {}, 1
    while n <= max_n:
        win = tournament(model, tok, prompts, [t[:n] for t in texts], generator, principles)
        out[n] = ([sc[w] for sc, w in zip(scores, win)], [max(sc[:n]) for sc in scores])
        n *= 2
    return out


def paired_change(before, after):
    """Mean of after - before over prompts, and its standard error: the same prompts and
    the same samples on both sides, so the noise of which prompts were drawn cancels."""
    d = [b - a for a, b in zip(before, after)]
    mean = sum(d) / len(d)
    var = sum((x - mean) ** 2 for x in d) / max(len(d) - 1, 1)
    return mean, (var / len(d)) ** 0.5


def describe_best_of(table):
    """judge.py --best_of's table: for each N the winners' mean score, its change from the
    previous N (paired standard error), and the oracle's own pick of the N samples."""
    lines, prev = [], None
    for n, (won, best) in table.items():
        change = ""
        if prev is not None:
            d, se = paired_change(prev, won)
            change = f"{d:+.3f} +- {se:.3f}"
        lines.append(f"  N = {n:2d}  {sum(won) / len(won):.3f}  {change:15s}  "
                     f"{sum(best) / len(best):.3f}")
        prev = won
    return "\n".join(lines)


def main(argv=None):
    cfg = parse_flags(defaults, argv, __doc__)
    if cfg.best_of < 0:
        sys.exit(f"error: --best_of={cfg.best_of}: the largest N of the self-rejection table, "
                 "1 or more (0: the judge's agreement instead)")
    device = get_device(cfg.device)
    model, tok, _ = load_checkpoint(cfg.ckpt, device)
    model.eval()
    task = load_task(cfg.data)
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    prompts = [x["prompt"] for x in task.require("test")][:cfg.n_prompts]
    if task.oracle is None:
        print(f"no oracle.py in {cfg.data}: oracle metrics skipped")
    if cfg.best_of:
        if task.oracle is None:
            sys.exit("error: --best_of needs the task's oracle.py to score the winners")
        table = best_of_n(model, tok, prompts, task.oracle, cfg.best_of, g, cfg.temperature,
                          cfg.max_new_tokens, task_principles(task))
        print(f"self-rejection on {len(prompts)} held-out prompts: the oracle's mean score "
              "of the tournament winner, its change from the previous N (+- a paired "
              "standard error), and the oracle's own pick of the same N samples (the "
              "ceiling):")
        print(describe_best_of(table))
        return
    held = task.pairs[len(task.pairs) - n_held_out(len(task.pairs)):] if task.pairs else []
    if held:
        print(f"agreement with the task's labels on {len(held)} held-out pairs: "
              f"{pair_agreement(model, tok, held):.1%}")
    if task.oracle is not None:
        r = onpolicy_agreement(model, tok, prompts, task.oracle, g, cfg.temperature,
                               cfg.max_new_tokens, task_principles(task)[0],
                               cfg.pairs_per_prompt)
        print(f"{len(prompts)} held-out prompts, {cfg.pairs_per_prompt} pairs of samples each; "
              + describe_agreement(r))


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
