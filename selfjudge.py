"""
Stage 2: self-training. The JSFT checkpoint is loaded twice: the policy, which trains,
and the reference, frozen, which is also the judge. Each step of SELF-JUDGE:

    a) the policy samples two responses per prompt          sample
    b) the frozen reference judges them, in both orders     judge_by_principles (judge.py)
    c) the winner becomes `chosen`, the loser `rejected`    make_pairs
    d) log-probabilities under the policy and the reference, and the DPO loss
                                                            preference_loss, dpo_loss
    e) one optimizer step                                   update

The comparisons of the paper take the same step with other pairs (--mode):

    python selfjudge.py                                    # SELF-JUDGE: on-policy pairs
    python selfjudge.py --mode=offpolicy --out_dir=out/offpolicy  # pairs sampled once
    python selfjudge.py --mode=offline --out_dir=out/dpo   # DPO on pairs.jsonl (baseline)
    python selfjudge.py --mode=raft --out_dir=out/raft     # SFT on the judge's best sample

Writes out_dir/ckpt.pt (every ckpt_interval steps, so --resume continues after a kill)
and out_dir/metrics.jsonl (one line per step). evaluate.py --report compares the runs.
"""
import contextlib
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from tqdm import tqdm

from common import (get_device, load_checkpoint, metrics_log, out_dir_ready, parse_flags,
                    progress, resume_from, save_checkpoint, stop_if_diverged)
from data.chat import encode_query
from data.task import load_task, training_pairs
from evaluate import judged_diagnostics, kept_diagnostics, policy_evaluator, winner_diagnostics
from judge import (check_judge, describe_blind, fit_prompts, judge_blind,
                   judge_by_principles, rate, task_principles, tournament)
from model import GPT
from sample import response_logps, sample_responses

# -----------------------------------------------------------------------------
# settings (override with --name=value)
defaults = dict(
    data="data/sort",          # task folder (prompts.jsonl for on-policy prompts)
    init="out/jsft/ckpt.pt",   # the JSFT checkpoint: policy, reference and judge
    out_dir="out/selfjudge",   # ckpt.pt and metrics.jsonl go here
    mode="onpolicy",           # where pairs come from: onpolicy (SELF-JUDGE) | offpolicy
                               # (sampled and judged once, up front) | offline (DPO on
                               # pairs.jsonl) | raft (SFT on each prompt's best sample)
    judge="reference",         # reference (frozen JSFT) | current (the policy judges itself)
    loss="sigmoid",            # sigmoid (DPO) | hinge (SLiC) | ipo
    beta=1.0,                  # strength of the pull towards the reference
    sft_weight=0.0,            # + this x NLL of chosen responses (per token)
    min_confidence=0.5,        # train only on pairs the judge decides by |2p-1| >= this
                               # (under 1: no judgment is that sure, |2p-1| < 1 always)
    cutoff="drop",             # a sample cut off at max_new_tokens: drop the pair | keep
    max_position_bias=0.25,    # stop once the judge's decisions follow the position on more
                               # than this share of the policy's differing pairs (mean of 50
                               # steps): it no longer tells the answers apart; 0 = never
    raft_n=2,                  # raft: samples per prompt (2: SELF-JUDGE's budget of samples)
    max_steps=600,             # optimizer steps
    batch_size=32,             # prompts per step (two samples each)
    lr=6e-5,                   # AdamW learning rate (constant after warmup)
    warmup_steps=10,           # linear warmup of the learning rate over these steps
    grad_clip=1.0,             # clip the gradient's norm to this
    temperature=1.0,           # sampling temperature for the pairs
    top_p=1.0,                 # nucleus sampling for the pairs; 1.0 = off, as in the
                               # evaluation, so the judge sees the policy's rare mistakes
    max_new_tokens=40,         # response length limit
    lora_rank=0,               # >0: train LoRA adapters; the reference is adapters-off
    lora_alpha=16.0,           # LoRA scale: an adapter adds (alpha / rank) x B A x
    eval_interval=50,          # oracle + judge evaluation on test.jsonl every this many steps
    eval_prompts=200,          # test prompts per evaluation
    ckpt_interval=50,          # save ckpt.pt every this many steps (and at the end)
    seed=1337,                 # seeds every sample, pick and pairing: a run repeats exactly
    device="auto",             # auto: cuda, then mps, then cpu
    allow_weak_judge=False,    # train even on a judge near chance (refused: it does harm)
    resume=False,              # continue from out_dir/ckpt.pt
    skip_bad_lines=False,      # skip malformed or too long data lines (counted), not stop
)
limits = dict(mode=("onpolicy", "offpolicy", "offline", "raft"),
              judge=("reference", "current"), loss=("sigmoid", "hinge", "ipo"),
              beta="(0, inf)", sft_weight="[0, inf)", min_confidence="[0, 1)",
              cutoff=("drop", "keep"), raft_n="[2, inf)", max_steps="[1, inf)",
              batch_size="[1, inf)", lr="(0, inf)", warmup_steps="[0, inf)",
              grad_clip="(0, inf)", temperature="(0, inf)", top_p="(0, 1]",
              max_new_tokens="[1, inf)", lora_rank="[0, inf)", lora_alpha="(0, inf)",
              max_position_bias="[0, 1]", eval_interval="[0, inf)", eval_prompts="[0, inf)",
              ckpt_interval="[1, inf)")


# -----------------------------------------------------------------------------
# the loss

def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
             ref_rejected_logps, beta=0.1, kind="sigmoid"):
    """DPO-style preference losses. All inputs (B,) log-probabilities of whole responses.

    h = (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))
      sigmoid (DPO, Rafailov et al. 2023, eq. 7):  -log sigmoid(beta * h)
      hinge   (SLiC-HF, Zhao et al. 2023):          max(0, 1 - beta * h)
      ipo     (Azar et al. 2023, eq. 17):           (h - 1 / (2 beta))^2
    The caller chooses the log-probabilities: selfjudge.py passes summed ones for sigmoid
    and hinge and per-token means for ipo (as IPO is usually run).
    Returns (loss scalar, chosen_rewards (B,), rejected_rewards (B,)); the rewards are the
    implicit beta * log-ratios, detached. Another kind raises ValueError("unknown loss ...").
    """
    # --- exercise dpo_loss (solution below) ---
    chosen_ratio = policy_chosen_logps - ref_chosen_logps
    rejected_ratio = policy_rejected_logps - ref_rejected_logps
    h = chosen_ratio - rejected_ratio
    if kind == "sigmoid":
        losses = -F.logsigmoid(beta * h)
    elif kind == "hinge":
        losses = torch.relu(1 - beta * h)
    elif kind == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown loss {kind!r}: use sigmoid, hinge or ipo")
    return losses.mean(), beta * chosen_ratio.detach(), beta * rejected_ratio.detach()
    # --- end exercise ---


# -----------------------------------------------------------------------------
# one self-training step, in the paper's order

def sample(policy, tok, prompts, n, n_new, cfg, g):
    """a) n responses per prompt from the current policy: a list per prompt of sample
    dicts (text, ids with the stop token when produced, stopped)."""
    policy.eval()
    s = sample_responses(policy, tok, prompts, n, n_new, cfg.temperature, cfg.top_p, g)
    policy.train()
    return s


def make_pairs(prompts, samples_a, samples_b, p_a, min_confidence=0.0, cutoff="drop"):
    """c) Judgments into training pairs: the winner is chosen. Skipped, and counted once
    under the first reason that holds: identical samples (nothing to learn), judgments of
    exactly 0.5 or below min_confidence (undecided), and with cutoff="drop" any pair with
    a sample that hit the length limit. samples: dicts with "ids", "text", "stopped".
    Returns (pairs, skipped): dicts prompt, chosen, rejected (the samples) and confidence
    max(p, 1 - p); skipped = dict(identical=, undecided=, cut_off=)."""
    # --- exercise make_pairs (solution below) ---
    pairs, skipped = [], dict(identical=0, undecided=0, cut_off=0)
    for c, a, b, p in zip(prompts, samples_a, samples_b, p_a):
        if a["ids"] == b["ids"]:
            skipped["identical"] += 1
        elif p == 0.5 or abs(2 * p - 1) < min_confidence:
            skipped["undecided"] += 1
        elif cutoff == "drop" and not (a["stopped"] and b["stopped"]):
            skipped["cut_off"] += 1
        else:
            win, lose = (a, b) if p > 0.5 else (b, a)
            pairs.append(dict(prompt=c, chosen=win, rejected=lose, confidence=max(p, 1 - p)))
    return pairs, skipped
    # --- end exercise ---


def preference_loss(policy, as_reference, tok, pairs, cfg, device):
    """d) The DPO-style loss on (prompt, chosen, rejected) pairs: log-probabilities of the
    sampled ids under the policy and the frozen reference, one forward pass each."""
    queries = [encode_query(tok, x["prompt"]) for x in pairs] * 2
    responses = [x["chosen"]["ids"] for x in pairs] + [x["rejected"]["ids"] for x in pairs]
    pol_sum, pol_mean = response_logps(policy, queries, responses, device)
    with torch.no_grad(), as_reference() as r:
        ref_sum, ref_mean = response_logps(r, queries, responses, device)
    n = len(pairs)
    pol, rf = (pol_mean, ref_mean) if cfg.loss == "ipo" else (pol_sum, ref_sum)
    loss, rw_c, rw_r = dpo_loss(pol[:n], pol[n:], rf[:n], rf[n:], cfg.beta, cfg.loss)
    if cfg.sft_weight:
        loss = loss - cfg.sft_weight * pol_mean[:n].mean()
    return loss, dict(loss=loss.item(), margin=(rw_c - rw_r).mean().item(),
                      reward_acc=(rw_c > rw_r).float().mean().item(),
                      logp_chosen=pol_sum[:n].mean().item(),
                      logp_rejected=pol_sum[n:].mean().item())


def sft_loss(policy, tok, winners, device):
    """raft's loss: the SFT loss on the winners' response tokens (the stop token
    included), a per-token mean for each winner, then the mean over winners."""
    queries = [encode_query(tok, x["prompt"]) for x in winners]
    _, mean = response_logps(policy, queries, [x["chosen"]["ids"] for x in winners], device)
    return -mean.mean(), dict(loss=-mean.mean().item())


def update(opt, loss, lr, grad_clip):
    """e) One AdamW step at learning rate lr, gradients clipped to grad_clip."""
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for gr in opt.param_groups for p in gr["params"]],
                                   grad_clip)
    opt.step()


# -----------------------------------------------------------------------------
# where a step's pairs come from: one source per mode, each a function (setup, g) -> Step

@dataclass
class Setup:
    """What every step reads, decided once in main before the first step."""
    cfg: SimpleNamespace       # the settings above, resolved
    policy: GPT                # the model that trains
    as_reference: Callable     # `with as_reference() as r:` r is the frozen JSFT model
    as_judge: Callable         # `with as_judge() as j:` j is the judge (frozen_models)
    tok: Tokenizer
    prompts: list              # on-policy prompts, each leaving room to judge two responses
    n_new: int                 # the tokens a response may take
    principles: list           # the questions the judge answers (judge.task_principles)
    pool: list = None          # offpolicy and offline: the fixed pairs a batch is drawn from


class Step(NamedTuple):
    """What a source hands the training loop for one step."""
    examples: list             # trained on: pairs (prompt, chosen, rejected); raft: winners
    stats: dict                # oracle-free numbers for metrics.jsonl (docs/metrics.md)
    skipped: dict              # pairs judged and make_pairs' reasons for skipping some
    diagnose: Callable         # oracle -> its view of what the judge decided: evaluation only


def onpolicy_pairs(setup, g):
    """SELF-JUDGE: fresh pairs from the current policy every step, judged by the judge."""
    cfg, tok = setup.cfg, setup.tok
    batch = pick(setup.prompts, cfg.batch_size, g)
    a, b = zip(*sample(setup.policy, tok, batch, 2, setup.n_new, cfg, g))          # a)
    with setup.as_judge() as j:                                                      # b)
        p, by_position = judge_by_principles(j, tok, batch, texts(a), texts(b), setup.principles)
    pairs, skipped = make_pairs(batch, a, b, p.tolist(), cfg.min_confidence, cfg.cutoff)  # c)
    return Step(pairs, pair_stats(pairs, a, b, p, by_position, skipped["identical"]),
                dict(judged=len(batch), **skipped),
                lambda oracle: judged_diagnostics(oracle, batch, a, b, p))


def raft_winners(setup, g):
    """Rejection-sampling fine-tuning (RAFT, ReST): raft_n samples per prompt, the judge's
    tournament picks one, and the step is SFT on the winners (--cutoff=drop: not cut off)."""
    cfg = setup.cfg
    batch = pick(setup.prompts, cfg.batch_size, g)
    cands = sample(setup.policy, setup.tok, batch, cfg.raft_n, setup.n_new, cfg, g)
    with setup.as_judge() as j:
        win = tournament(j, setup.tok, batch, [texts(c) for c in cands], g, setup.principles)
    winners = [dict(prompt=q, chosen=c[w]) for q, c, w in zip(batch, cands, win)
               if cfg.cutoff == "keep" or c[w]["stopped"]]
    ids = [x["ids"] for c in cands for x in c]
    stats = dict(trained_on(winners), kept=len(winners) / len(batch),
                 resp_len=sum(len(x) for x in ids) / len(ids))
    return Step(winners, stats, {}, lambda oracle: winner_diagnostics(oracle, batch, cands, win))


def fixed_pairs(setup, g):
    """Off-policy and offline DPO: a batch drawn from a fixed pool of pairs (setup.pool)."""
    pairs = pick(setup.pool, setup.cfg.batch_size, g)
    return Step(pairs, trained_on(pairs), {}, lambda oracle: {})


def offpolicy_pool(setup, g0):
    """Off-policy's pool: pairs sampled and judged once, from the initial policy."""
    cfg, tok, prompts = setup.cfg, setup.tok, setup.prompts
    print(f"sampling and judging {len(prompts)} pairs once from the initial policy")
    with setup.as_judge() as j:  # at step 0 the judge's weights are the initial policy's
        s = sample_responses(j, tok, prompts, 2, setup.n_new, cfg.temperature, cfg.top_p, g0)
        a, b = [x[0] for x in s], [x[1] for x in s]
        p, _ = judge_by_principles(j, tok, prompts, texts(a), texts(b), setup.principles)
    pool, _ = make_pairs(prompts, a, b, p.tolist(), cfg.min_confidence, cfg.cutoff)
    if not pool:
        raise ValueError(f"--mode=offpolicy: no pair passed the filters (--min_confidence="
                         f"{cfg.min_confidence}, --cutoff={cfg.cutoff}): the judge is undecided")
    return pool


SOURCES = dict(onpolicy=onpolicy_pairs, raft=raft_winners, offpolicy=fixed_pairs,
               offline=fixed_pairs)


# -----------------------------------------------------------------------------
# what a step saw, without the oracle (metrics.jsonl; docs/metrics.md)

def trained_on(examples):
    """pairs: the examples a step trains on (raft: winners); skipped: there are none."""
    return dict(pairs=len(examples), **({} if examples else dict(skipped=True)))


def pair_stats(pairs, a, b, p, by_position, identical):
    """An on-policy step's numbers: pairs trained on, the share of the batch kept, of
    identical pairs, the judge's mean confidence |2p-1|, how often its decisions followed
    the position on the pairs that differ (judge_by_position), responses' length in tokens."""
    n = len(a)
    differ = torch.tensor([x["ids"] != y["ids"] for x, y in zip(a, b)])
    return dict(trained_on(pairs), kept=len(pairs) / n, identical=identical / n,
                judge_conf=(2 * (p - 0.5).abs()).mean().item(),
                judge_by_position=rate(by_position, differ),
                resp_len=sum(len(x["ids"]) for x in a + b) / (2 * n))


IDLE_WARNING = 10  # steps in a row without a pair to train on before saying why


def tally_step(tally, drawn):
    """Count a step into the run's tally (a Counter): steps that updated the policy,
    examples, pairs judged, make_pairs' reasons for skipping, and `idle`, the steps in a
    row without an example; on the IDLE_WARNING-th in a row, say why."""
    tally.update(updated=int(bool(drawn.examples)), examples=len(drawn.examples),
                 **drawn.skipped)
    tally["idle"] = 0 if drawn.examples else tally["idle"] + 1
    if tally["idle"] == IDLE_WARNING:
        tqdm.write(f"warning: {IDLE_WARNING} steps in a row without a pair to train on: "
                   + idle_reason(tally))


def idle_reason(tally):
    """Why no pair was left to train on, from make_pairs' counts summed over the steps."""
    n = tally["judged"]
    if not n:
        return "every winner was cut off at --max_new_tokens (--cutoff=drop)"
    return (f"of {n} pairs judged, {tally['undecided'] / n:.0%} were undecided (p = 0.5 or "
            f"|2p-1| < --min_confidence), {tally['identical'] / n:.0%} identical and "
            f"{tally['cut_off'] / n:.0%} cut off at --max_new_tokens")


def what_it_uses(cfg):
    """The settings a mode's training reads: RAFT has no DPO loss, offline DPO no judge."""
    dpo, judge = f"loss {cfg.loss}, beta {cfg.beta}", f"judge {cfg.judge}"
    return dict(onpolicy=f"{dpo}, {judge}", offpolicy=f"{dpo}, {judge}", offline=f"{dpo}, no judge",
                raft=f"SFT on the judge's pick of {cfg.raft_n} samples, {judge}")[cfg.mode]


def pick(xs, n, g):
    return [xs[i] for i in torch.randint(len(xs), (n,), generator=g, device=g.device).tolist()]


def texts(samples):
    return [x["text"] for x in samples]


def frozen_models(policy, ref, judge):
    """(as_reference, as_judge), each opening a `with` block that yields the model to use.
    The reference is the JSFT model, or under LoRA (ref is None) the policy with its
    adapters off. The judge is the reference (the paper), or with judge="current" the
    policy itself (an ablation)."""
    def as_reference():
        return policy.adapters_off() if ref is None else contextlib.nullcontext(ref)

    def as_judge():
        return contextlib.nullcontext(policy) if judge == "current" else as_reference()
    return as_reference, as_judge


# -----------------------------------------------------------------------------
# the run

def load_models(cfg, device):
    """-> (policy, ref (None under LoRA), tok, step, optimizer state): from --init, or the
    policy from out_dir's last checkpoint with --resume."""
    if not os.path.exists(cfg.init):  # (a folder: load_checkpoint says what it is)
        raise FileNotFoundError(f"--init={cfg.init}: no checkpoint there; train the JSFT "
                                "model first (python jsft.py) or point --init at one")
    ref, tok, meta = load_checkpoint(cfg.init, device, data=cfg.data)  # of this task
    ref.eval().requires_grad_(False)
    if cfg.mode != "offline" and meta.get("flags", {}).get("judge_ratio", 1) == 0:
        raise ValueError(f"--init={cfg.init} was trained with --judge_ratio=0: it never "
                         f"learned to judge, and --mode={cfg.mode} needs a judge (train it "
                         "with jsft.py's default mix, or use --mode=offline)")
    step, opt_state = 0, None
    if cfg.resume:
        policy, _, meta = resume_from(cfg, "selfjudge", (), device)
        step, opt_state = meta["step"], meta.get("optimizer")
        if meta.get("stopped") and cfg.max_position_bias:
            raise ValueError(f"{cfg.out_dir}/ckpt.pt: this run stopped at step {step}, its "
                             "judge blind on the policy's pairs; --resume would stop again "
                             "(add --max_position_bias=0 to train on anyway)")
    else:
        policy, _, _ = load_checkpoint(cfg.init, device)
    if cfg.lora_rank:
        policy = policy.with_lora(cfg.lora_rank, cfg.lora_alpha)
        ref = None  # one model in memory: adapters off is the reference
    return policy, ref, tok, step, opt_state


def learn(setup, opt, examples, step):
    """d) and e): the mode's loss on the step's examples, then one optimizer step (the
    learning rate warms up linearly, then stays constant)."""
    cfg, policy = setup.cfg, setup.policy
    device = next(policy.parameters()).device
    if cfg.mode == "raft":
        loss, stats = sft_loss(policy, setup.tok, examples, device)
    else:
        loss, stats = preference_loss(policy, setup.as_reference, setup.tok, examples, cfg,
                                      device)
    update(opt, loss, cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps)), cfg.grad_clip)
    stop_if_diverged(step + 1, cfg, stats, policy)  # before the next step samples from it
    return stats


def train(setup, opt, oracle, measure, log, start):
    """The steps start .. max_steps, each logged, measured every eval_interval and saved
    every ckpt_interval; on-policy, the run stops when the judge goes blind on the policy's
    pairs (judge.judge_blind). Returns the tally (tally_step), and `stopped`, the step and
    the bias where the guard stopped the run."""
    cfg, source = setup.cfg, SOURCES[setup.cfg.mode]
    device = next(setup.policy.parameters()).device
    tally, recent = Counter(), []  # recent: the guard's window
    bar = progress(range(start, cfg.max_steps), cfg.max_steps, cfg.mode, start)
    for step in bar:
        g = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + step)
        drawn = source(setup, g)  # the step's examples, and what the judge saw
        stats = dict(step=step + 1, **drawn.stats)
        if drawn.examples:
            stats.update(learn(setup, opt, drawn.examples, step))
            bar.set_postfix(loss=f"{stats['loss']:.3f}", pairs=len(drawn.examples))
        tally_step(tally, drawn)  # says why after IDLE_WARNING idle steps
        if oracle is not None:  # evaluation only: the oracle never reaches training
            stats.update(**kept_diagnostics(oracle, drawn.examples), **drawn.diagnose(oracle))
        if measure and cfg.eval_interval and (step + 1) % cfg.eval_interval == 0:
            stats.update(measure(step + 1))
        log(stats)
        bias = judge_blind(recent, stats, cfg.max_position_bias)
        stop = bias is not None
        if stop:
            tally["stopped"] = (step + 1, bias)
        if (step + 1) % cfg.ckpt_interval == 0 or step + 1 == cfg.max_steps or stop:
            save_checkpoint(os.path.join(cfg.out_dir, "ckpt.pt"), setup.policy, setup.tok,
                            dict(step=step + 1, flags=dict(cfg), stage="selfjudge",
                                 stopped=stop), opt)
        if stop:
            break
    return tally


def main(argv=None):
    cfg = parse_flags(defaults, argv, __file__, limits)
    device = get_device(cfg.device)
    torch.manual_seed(cfg.seed)
    task = load_task(cfg.data, cfg.skip_bad_lines)
    out_dir_ready(cfg.out_dir, defaults["out_dir"], init=cfg.init, data=cfg.data)

    # 1) the policy, and the frozen reference, which is also the judge
    policy, ref, tok, start, opt_state = load_models(cfg, device)
    as_reference, as_judge = frozen_models(policy, ref, cfg.judge)
    policy.train()
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    if opt_state:
        opt.load_state_dict(opt_state)
    print(f"{cfg.mode} training from {cfg.init}: {sum(p.numel() for p in params) / 1e6:.2f}M "
          f"trainable parameters, {what_it_uses(cfg)}")

    # 2) prompts (responses must leave room for two of them in a judge prompt), the judge
    # checked before any step, the held-out evaluation, the fixed-pair modes' pool
    principles, block, skip = task_principles(task), policy.config.block_size, cfg.skip_bad_lines
    prompts, n_new = fit_prompts(tok, task.require("prompts") if cfg.mode != "offline" else [],
                                 block, cfg.max_new_tokens, principles, "prompts", skip)
    tests, n_new = fit_prompts(tok, (task.test or [])[:cfg.eval_prompts], block, n_new,
                               principles, "test prompts", skip)
    setup = Setup(cfg, policy, as_reference, as_judge, tok, prompts, n_new, principles)
    if cfg.mode != "offline":  # offline DPO needs no judge
        check_judge(as_judge, tok, task, cfg.allow_weak_judge)
    g0 = torch.Generator(device=device).manual_seed(cfg.seed)  # reference answers, then pool
    measure = (policy_evaluator(policy, tok, task, tests, as_reference, as_judge, n_new,
                                principles, cfg.seed, g0) if tests else None)
    if cfg.mode in ("offpolicy", "offline"):
        setup.pool = (offpolicy_pool(setup, g0) if cfg.mode == "offpolicy"
                      else training_pairs(task, tok, block, skip))

    # 3) train, each step a line of metrics.jsonl
    log = metrics_log(os.path.join(cfg.out_dir, "metrics.jsonl"), start)
    print(f"one line per step in {cfg.out_dir}/metrics.jsonl; docs/metrics.md says what "
          "each number printed or logged means")
    if start == 0 and measure:
        log(dict(step=0, **measure(0)))
    t0, tally = time.time(), train(setup, opt, task.get_oracle(), measure, log, start)
    say_how_it_went(cfg, tally, time.time() - t0, start)


def say_how_it_went(cfg, tally, seconds, start):
    """The last lines: where the guard stopped the run, if it did, and how many steps
    found something to train on; none at all is an error, with the reason."""
    if tally["stopped"]:
        print(f"stopped at step {tally['stopped'][0]} of {cfg.max_steps}: "
              + describe_blind(tally["stopped"][1], cfg.max_position_bias))
    ran = (tally["stopped"][0] if tally["stopped"] else cfg.max_steps) - start
    print(f"done in {seconds:.0f}s; {tally['updated']} of {ran} steps updated the policy, on "
          f"{tally['examples']} {'winners' if cfg.mode == 'raft' else 'pairs'} in all; saved "
          f"{cfg.out_dir}/ckpt.pt")
    if tally["updated"] == 0:
        raise ValueError(f"no step updated the policy: {idle_reason(tally)}; "
                         f"{cfg.out_dir}/ckpt.pt is {cfg.init} unchanged. A judge undecided "
                         "on every pair is near chance: see jsft.py's last lines")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
