"""
Measurement, kept apart from the method: how far the judge agrees with the task's
oracle, what self-rejection buys as N grows, what the stages log while they train, and
the results table. The oracle (the stand-in for the paper's GPT-4 evaluator) is only
ever called here: nothing it says reaches training.

    python evaluate.py                         # the judge: held-out labels and own pairs
    python evaluate.py --best_of=16            # self-rejection: tournament best-of-N curve
    python evaluate.py --report=out/jsft,out/dpo,out/selfjudge   # the results table

A task without oracle.py (HH-RLHF) gets the table from a judge instead: by default the
first folder's model, JSFT, which the others were trained to please, so it is labelled
self-judged; --judge_ckpt names another judge.
"""
import json
import os
import sys

import torch
from tqdm import tqdm

from common import get_device, load_checkpoint, parse_flags
from data.task import fully_right_rate, load_task, mean_score, tokenized_pairs, win_rate
from judge import (fit_prompts, held_out_pairs, heldout_judgment, judge_by_principles,
                   judge_orders, follows_position, rate, swap_average, task_principles,
                   tournament)
from sample import batched_logps, sample_responses

# -----------------------------------------------------------------------------
# settings (override with --name=value)
defaults = dict(
    ckpt="out/jsft/ckpt.pt",  # the model to measure: it samples, and it judges
    data="data/sort",         # task folder (test.jsonl prompts, pairs.jsonl, oracle.py)
    n_prompts=200,            # held-out prompts (test.jsonl) for every measurement
    pairs_per_prompt=4,       # own-sample pairs judged per prompt for the agreement
    best_of=0,                # >0: self-rejection curve for N = 1, 2, 4, ... up to this
    report="",                # run folders, comma-separated: the results table (the first,
                              # JSFT, is what every row is compared with)
    report_samples=8,         # samples per prompt in the table; the last model also gets
                              # a best-of-this row by its own tournament
    judge_ckpt="",            # --report: a judge for the rows (without oracle.py, the
                              # default is the first folder's model: a self-judged table)
    temperature=1.0,          # sampling temperature for every measurement
    max_new_tokens=48,        # response length limit when sampling
    seed=1337,                # seeds sampling and tournament pairing
    device="auto",            # auto: cuda, then mps, then cpu
    skip_bad_lines=False,     # skip malformed or too long data lines (counted), not stop
)
limits = dict(n_prompts="[1, inf)", pairs_per_prompt="[1, inf)", best_of="[0, inf)",
              report_samples="[1, inf)", temperature="[0, inf)", max_new_tokens="[1, inf)")


# -----------------------------------------------------------------------------
# the judge against the oracle, on the policy's own samples

def own_pairs(model, tok, prompts, oracle, pairs_per_prompt, generator=None, temperature=1.0,
              max_new_tokens=48):
    """2k samples per prompt from the model, in k disjoint pairs, with oracle scores: a
    list of (prompt, a, b, score a, score b, best score among the prompt's 2k samples).
    prompts: each with room for two responses of max_new_tokens (judge.fit_prompts)."""
    k = pairs_per_prompt
    samples = sample_responses(model, tok, prompts, 2 * k, max_new_tokens, temperature,
                               generator=generator)
    rows = []
    for c, row in zip(prompts, samples):
        texts = [s["text"] for s in row]
        scores = [oracle(c, t) for t in texts]
        rows += [(c, texts[2 * i], texts[2 * i + 1], scores[2 * i], scores[2 * i + 1],
                  max(scores)) for i in range(k)]
    return rows


def agreement_metrics(ab, ba, sa, sb, best, same):
    """How judgments in both orders (ab, ba (N, 2), from judge_orders) agree with the
    oracle's scores sa, sb (N,). best (N,): the best score among the prompt's samples;
    same (N,) bool: the two responses are identical. On the pairs the oracle tells apart
    and the judge could read: agreement (both orders averaged, and one order only),
    decisions that follow the position, agreement on the confident judgments (|2p-1| >=
    0.5, what selfjudge.py trains on by default), and agreement split between pairs
    holding the prompt's best sample and pairs of two lesser ones. Also the tie rate and
    the unread rate."""
    p = swap_average(ab, ba)
    diff = sa - sb
    # exactly 0.5 on two different responses: too long for the context (identical
    # responses also give 0.5, by symmetry; they are oracle ties, not judge failures)
    unread = (p == 0.5) & ~same
    told = (diff != 0) & ~unread
    right = (p > 0.5) == (diff > 0)
    sure = told & ((2 * p - 1).abs() >= 0.5)
    top = torch.maximum(sa, sb) == best
    n = int(told.sum())
    return dict(agreement=rate(right, told),
                agreement_one_order=rate((ab[:, 0] > ab[:, 1]) == (diff > 0), told),
                decided=n, tie_rate=(diff == 0).float().mean().item(),
                undecided=unread.float().mean().item(),
                by_position=rate(follows_position(ab, ba), told),
                agreement_confident=rate(right, sure),
                confident_share=sure.sum().item() / n if n else float("nan"),
                agreement_top=rate(right, told & top), agreement_rest=rate(right, told & ~top),
                top_share=(told & top).sum().item() / n if n else float("nan"))


def onpolicy_agreement(model, tok, prompts, oracle, generator=None, temperature=1.0,
                       max_new_tokens=48, principle=None, pairs_per_prompt=4):
    """The judge on the policy's own pairs (agreement_metrics). Several pairs per prompt:
    one pair each leaves ~150 scored pairs and a standard error of ~4 points; four pairs
    each bring it to ~2."""
    if pairs_per_prompt < 1:
        raise ValueError(f"pairs_per_prompt={pairs_per_prompt}: judge at least one pair "
                         "per prompt")
    rows = own_pairs(model, tok, prompts, oracle, pairs_per_prompt, generator, temperature,
                     max_new_tokens)
    c, a, b, sa, sb, best = (list(x) for x in zip(*rows))
    ab, ba = judge_orders(model, tok, c, a, b, principle)
    return agreement_metrics(ab, ba, torch.tensor(sa), torch.tensor(sb), torch.tensor(best),
                             torch.tensor([x == y for x, y in zip(a, b)]))


def describe_agreement(r):
    """One line for onpolicy_agreement's result, as evaluate.py and jsft.py print it."""
    if r["decided"] == 0:
        return (f"judge on the policy's own pairs: no pair to score (oracle ties "
                f"{r['tie_rate']:.1%}, judge undecided {r['undecided']:.1%})")
    return (f"judge on the policy's own pairs: agrees with the oracle on {r['agreement']:.1%} "
            f"of the {r['decided']} pairs the oracle tells apart (one order only: "
            f"{r['agreement_one_order']:.1%}); oracle ties {r['tie_rate']:.1%}; "
            f"decisions that follow the position on those pairs {r['by_position']:.1%}"
            + (f"; on the {r['confident_share']:.0%} judged with confidence |2p-1| >= 0.5 "
               f"it agrees on {r['agreement_confident']:.1%}" if r.get("confident_share")
               else "")
            + (f"; {r['agreement_top']:.1%} on the {r['top_share']:.0%} of pairs holding the "
               f"best of the prompt's samples, {r['agreement_rest']:.1%} on pairs of two lesser "
               "ones" if 0 < r.get("top_share", 0) < 1 else "")
            + (f"; judge undecided {r['undecided']:.1%}" if r["undecided"] else ""))


# -----------------------------------------------------------------------------
# self-rejection: best-of-N by tournament, as N grows

def best_of_n(model, tok, prompts, oracle, max_n=16, generator=None, temperature=1.0,
              max_new_tokens=48, principles=(None,)):
    """Self-rejection: max_n samples per prompt once; for N = 1, 2, 4, ... the tournament
    winner among the first N, scored by the oracle. Returns {N: (winners' scores, best
    scores, random scores)}, one score per prompt each: the best is the oracle's own pick
    of the N, the most any judge could reach with those samples; the random one is the
    mean of the N, what a pick by coin would score on average. A knockout of N makes N - 1
    judgments per prompt, each read in both orders. prompts: each with room for two
    responses of max_new_tokens (judge.fit_prompts)."""
    samples = sample_responses(model, tok, prompts, max_n, max_new_tokens, temperature,
                               generator=generator)
    texts = [[s["text"] for s in row] for row in samples]
    scores = [[oracle(c, t) for t in row] for c, row in zip(prompts, texts)]
    out, n = {}, 1
    while n <= max_n:
        win = tournament(model, tok, prompts, [t[:n] for t in texts], generator, principles)
        out[n] = ([sc[w] for sc, w in zip(scores, win)], [max(sc[:n]) for sc in scores],
                  [sum(sc[:n]) / n for sc in scores])
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
    """The --best_of table: for each N the winners' mean score, its change from the
    previous N (paired standard error), a random pick's mean score, the oracle's own pick
    of the N samples (the ceiling), and the judgments the tournament spent per prompt."""
    lines, prev = [f"  {'N':>4s}  {'winner':>6s}  {'change':15s}  {'random':>6s}  "
                   f"{'oracle':>6s}  judgments"], None
    for n, (won, best, rand) in table.items():
        change = ""
        if prev is not None:
            d, se = paired_change(prev, won)
            change = f"{d:+.3f} +- {se:.3f}"
        lines.append(f"  {n:4d}  {sum(won) / len(won):6.3f}  {change:15s}  "
                     f"{sum(rand) / len(rand):6.3f}  {sum(best) / len(best):6.3f}  {n - 1:9d}")
        prev = won
    return "\n".join(lines)


# -----------------------------------------------------------------------------
# what the stages report

def policy_report(model, tok, task, prompts, seed, max_new_tokens=48, judge=True):
    """What jsft.py's last lines rest on: the oracle's view of the trained model (its
    samples' mean score and fully-right rate at temperature 1) and, with judge, the judge's
    agreement with the oracle on the model's own pairs. prompts: each with room for two
    responses of max_new_tokens (judge.fit_prompts)."""
    oracle = task.get_oracle()
    if oracle is None or not prompts:
        return {}
    device = next(model.parameters()).device
    model.eval()
    g = torch.Generator(device=device).manual_seed(seed)
    samples = [s[0]["text"] for s in sample_responses(model, tok, prompts, 1, max_new_tokens,
                                                      generator=g)]
    out = dict(oracle_score=mean_score(oracle, prompts, samples),
               fully_right=fully_right_rate(oracle, prompts, samples))
    if judge:
        out.update(onpolicy_agreement(model, tok, prompts, oracle, g, 1.0, max_new_tokens,
                                      task_principles(task)[0]))
    return out


# -----------------------------------------------------------------------------
# selfjudge.py's evaluation every eval_interval steps

def heldout_logps(tok, task, ref, block_size, device):
    """The held-out pairs, tokenized, with the reference's log-probabilities:
    (queries, responses, ref_logps), chosen responses first; None for a task without
    pairs. What heldout_pref_acc compares the policy's log-ratios on."""
    pairs = tokenized_pairs(held_out_pairs(task), tok, block_size,
                            "held-out pair's prompt + longer response", skip=True)
    if not pairs:
        return None
    queries = [x["query"] for x in pairs] * 2
    responses = [x["chosen"]["ids"] for x in pairs] + [x["rejected"]["ids"] for x in pairs]
    return queries, responses, batched_logps(ref, queries, responses, device)


@torch.no_grad()
def eval_policy(policy, tok, prompts, oracle, ref_texts, seed, as_judge, max_new_tokens,
                principles=(None,), held_out=None):
    """selfjudge.py's evaluation: the oracle score of the policy's samples on held-out
    prompts, and two signals that need no oracle: how much the judge prefers them over the
    reference's, and, given held_out (from heldout_logps), how often the policy's implicit
    reward ranks the labelled chosen response of a held-out pair above the rejected one
    (ties count half; 0.5 at step 0, where the policy is the reference). The policy
    samples as it is (adapters on); `with as_judge() as j` yields the judge."""
    policy.eval()
    g = torch.Generator(device=next(policy.parameters()).device).manual_seed(seed)
    texts = [s[0]["text"] for s in sample_responses(policy, tok, prompts, 1, max_new_tokens,
                                                    generator=g)]
    with as_judge() as judge_model:
        pref = judge_by_principles(judge_model, tok, prompts, texts, ref_texts,
                                   principles)[0].mean().item()
    out = dict(judge_pref=pref, mean_len=sum(len(t.split()) for t in texts) / len(texts))
    if held_out is not None:
        queries, responses, ref_logps = held_out
        ratio = batched_logps(policy, queries, responses, next(policy.parameters()).device)
        ratio = ratio - ref_logps
        h = ratio[:len(ratio) // 2] - ratio[len(ratio) // 2:]  # chosen's minus rejected's
        out["heldout_pref_acc"] = ((h > 0).float() + 0.5 * (h == 0).float()).mean().item()
    if oracle is not None:
        out.update(oracle_score=mean_score(oracle, prompts, texts),
                   fully_right=fully_right_rate(oracle, prompts, texts),
                   win_rate_vs_ref=win_rate(oracle, prompts, texts, ref_texts)["win_rate"])
    policy.train()
    return out


def policy_evaluator(policy, tok, task, prompts, as_reference, as_judge, max_new_tokens,
                     principles, seed, generator):
    """eval_policy made ready once: the reference's answer to each held-out prompt (drawn
    with generator) and its log-probabilities of the held-out pairs. Returns a function
    step -> eval_policy's numbers for the policy as it is then, printed, and named as
    metrics.jsonl's eval_ fields."""
    with as_reference() as r:
        held_out = heldout_logps(tok, task, r, policy.config.block_size,
                                 next(policy.parameters()).device)
        ref_texts = [s[0]["text"] for s in sample_responses(r, tok, prompts, 1, max_new_tokens,
                                                            generator=generator)]

    def measure(step):
        e = eval_policy(policy, tok, prompts, task.oracle, ref_texts, seed + 1, as_judge,
                        max_new_tokens, principles, held_out)
        tqdm.write(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in e.items()))
        return {"eval_" + k: v for k, v in e.items()}
    return measure


# -----------------------------------------------------------------------------
# the oracle's view of each self-training step, for evaluation only: selfjudge.py's pair
# sources hand these what the judge saw, and the oracle's answers go to metrics.jsonl

def score_samples(oracle, prompts, samples):
    """(N,) the oracle's score of each sample dict's text for its prompt."""
    return torch.tensor([oracle(c, x["text"]) for c, x in zip(prompts, samples)])


def kept_diagnostics(oracle, examples):
    """The examples a step trains on: how often the chosen response is perfect
    (oracle_chosen_perfect) and, for pairs, how often the oracle scores it above the
    rejected one, on the pairs it tells apart (oracle_agree_kept)."""
    if not examples:
        return {}
    prompts = [x["prompt"] for x in examples]
    sc = score_samples(oracle, prompts, [x["chosen"] for x in examples])
    out = dict(oracle_chosen_perfect=(sc >= 1.0).float().mean().item())
    if "rejected" in examples[0]:
        sr = score_samples(oracle, prompts, [x["rejected"] for x in examples])
        out["oracle_agree_kept"] = rate(sc > sr, sc != sr)
    return out


def judged_diagnostics(oracle, prompts, a, b, p):
    """An on-policy step's judgments p = P(a better) (N,) of every pair of samples a, b:
    the judge's agreement with the oracle on the pairs both decide (oracle_agree_all),
    and the oracle's ties among the pairs that differ (oracle_ties)."""
    sa, sb = score_samples(oracle, prompts, a), score_samples(oracle, prompts, b)
    differ = torch.tensor([x["ids"] != y["ids"] for x, y in zip(a, b)])
    return dict(oracle_agree_all=rate((p > 0.5) == (sa > sb), (sa != sb) & (p != 0.5)),
                oracle_ties=rate(sa == sb, differ))


def winner_diagnostics(oracle, prompts, candidates, winners):
    """A raft step's tournaments: how often the winner is the oracle's own pick of the
    prompt's samples (oracle_winner_best; a tie with the best counts)."""
    scores = [[oracle(c, x["text"]) for x in cands] for c, cands in zip(prompts, candidates)]
    return dict(oracle_winner_best=sum(sc[w] == max(sc) for sc, w in zip(scores, winners))
                / len(scores))


# -----------------------------------------------------------------------------
# the results table

@torch.no_grad()
def report(cfg, device):
    """Each run folder's model samples report_samples responses per held-out prompt
    (temperature 1); each row compares them with the first folder's (JSFT), sample i
    against sample i: oracle win rate (ties excluded) and tie rate, mean score, fully
    right. The last model also gets self-rejection: its tournament winner per prompt,
    compared with each of the first model's samples. Without an oracle (or with
    --judge_ckpt) the rows are judged instead (judged_table)."""
    task = load_task(cfg.data, cfg.skip_bad_lines)
    oracle, principles = task.get_oracle(), task_principles(task)
    dirs = [d for d in cfg.report.split(",") if d]
    missing = [d for d in dirs if not os.path.isfile(os.path.join(d, "ckpt.pt"))]
    if missing or not dirs:  # before the first model samples for minutes
        raise FileNotFoundError(f"--report={cfg.report}: " + (
            f"no ckpt.pt in {', '.join(missing)} (a run folder is a stage's --out_dir)"
            if missing else "name the run folders, comma-separated"))
    prompts, n = task.require("test")[:cfg.n_prompts], cfg.report_samples
    rows, base, n_new = [], None, None
    for d in dirs:
        model, tok, _ = load_checkpoint(os.path.join(d, "ckpt.pt"), device)
        model.eval()
        if n_new is None:  # the prompts every model answers: those the first can judge
            prompts, n_new = fit_prompts(tok, prompts, model.config.block_size,
                                         cfg.max_new_tokens, principles, "held-out prompts",
                                         cfg.skip_bad_lines)
        g = torch.Generator(device=device).manual_seed(cfg.seed)
        cands = [[x["text"] for x in s] for s in sample_responses(model, tok, prompts, n,
                                                                  n_new, generator=g)]
        texts = [t for c in cands for t in c]
        base = texts if base is None else base
        rows.append((os.path.basename(d), texts))
        if d == dirs[-1] and n > 1:
            win = tournament(model, tok, prompts, cands, g, principles)
            rows.append((f"{os.path.basename(d)} + best-of-{n}",
                         [c[w] for c, w in zip(cands, win) for _ in range(n)]))
    flat_prompts = [p for p in prompts for _ in range(n)]
    print(f"\n{len(prompts)} held-out prompts ({cfg.data}/test.jsonl) x {n} samples at "
          f"temperature 1; win rate against {rows[0][0]}, ties excluded")
    if oracle is not None:
        print(f"{'model':24s} {'win rate':>9s} {'ties':>6s} {'score':>6s} {'fully right':>12s}")
        for name, texts in rows:
            w = win_rate(oracle, flat_prompts, texts, base)
            print(f"{name:24s} {w['win_rate']:9.1%} {w['tie_rate']:6.1%} "
                  f"{mean_score(oracle, flat_prompts, texts):6.3f} "
                  f"{fully_right_rate(oracle, flat_prompts, texts):12.1%}")
    if oracle is None or cfg.judge_ckpt:
        judged_table(cfg.judge_ckpt or os.path.join(dirs[0], "ckpt.pt"), not cfg.judge_ckpt,
                     flat_prompts, rows, principles, device)


def judged_table(judge_ckpt, self_judged, prompts, rows, principles, device):
    """The results table with a judge in the oracle's place: each row's samples against
    the first row's, sample i against sample i, both orders averaged. A win is P(row's
    better) > 0.5; a tie is exactly 0.5 (identical responses, or too long to judge).
    self_judged: the judge is the first row's own model (JSFT), which the other rows were
    trained to please, so the table is labelled as no independent evaluation."""
    judge, tok, _ = load_checkpoint(judge_ckpt, device)
    judge.eval()
    who = (f"SELF-JUDGED by {rows[0][0]}, the model the others were trained from and to "
           "please: not an independent evaluation" if self_judged else "a user-supplied judge")
    lines = []
    for name, texts in rows:
        p, _ = judge_by_principles(judge, tok, prompts, texts, rows[0][1], principles)
        win, loss = int((p > 0.5).sum()), int((p < 0.5).sum())
        length = sum(len(tok.encode(t).ids) for t in texts) / len(texts)
        lines.append(f"{name:24s} {win / (win + loss) if win + loss else 0.5:16.1%} "
                     f"{1 - (win + loss) / len(texts):6.1%} {length:12.1f}")
    print(f"judge {judge_ckpt} ({who})")
    print(f"{'model':24s} {'judged win rate':>16s} {'ties':>6s} {'mean tokens':>12s}")
    print("\n".join(lines))


def main(argv=None):
    cfg = parse_flags(defaults, argv, __file__, limits)
    device = get_device(cfg.device)
    if cfg.report:
        return report(cfg, device)
    model, tok, _ = load_checkpoint(cfg.ckpt, device)
    model.eval()
    task = load_task(cfg.data, cfg.skip_bad_lines)
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    prompts, n_new = fit_prompts(tok, task.require("test")[:cfg.n_prompts],
                                 model.config.block_size, cfg.max_new_tokens,
                                 task_principles(task), "held-out prompts", cfg.skip_bad_lines)
    if task.oracle is None:
        print(f"no oracle.py in {cfg.data}: oracle metrics skipped")
    if cfg.best_of:
        if task.oracle is None:
            sys.exit("error: --best_of needs the task's oracle.py to score the winners")
        table = best_of_n(model, tok, prompts, task.oracle, cfg.best_of, g, cfg.temperature,
                          n_new, task_principles(task))
        print(f"self-rejection on {len(table[1][0])} held-out prompts, N samples each: the "
              "oracle's mean score of the tournament winner, its change from the previous N "
              "(+- a paired standard error), of a random pick among the N, and of the "
              "oracle's own pick (the ceiling); the judgments the knockout spent per prompt "
              "(each read in both orders):")
        print(describe_best_of(table))
        path = os.path.join(os.path.dirname(cfg.ckpt), "best_of.json")
        with open(path, "w") as f:  # for plot.py
            json.dump({n: dict(winner=sum(w) / len(w), oracle=sum(b) / len(b),
                               random=sum(r) / len(r)) for n, (w, b, r) in table.items()}, f)
        print(f"wrote {path}")
        return
    h = heldout_judgment(model, tok, task)
    if h:
        print(f"agreement with the task's labels on {h['label_pairs']} held-out pairs: "
              f"{h['label_agreement']:.1%}; decisions by position {h['label_by_position']:.1%}"
              + (f" ({h['label_unread']} more too long to judge)" if h["label_unread"] else ""))
    if task.oracle is not None:
        r = onpolicy_agreement(model, tok, prompts, task.oracle, g, cfg.temperature, n_new,
                               task_principles(task)[0], cfg.pairs_per_prompt)
        print(f"{len(prompts)} held-out prompts, {cfg.pairs_per_prompt} pairs of samples each; "
              + describe_agreement(r))


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
