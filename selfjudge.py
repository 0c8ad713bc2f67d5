"""
Stage 2: self-training. The JSFT checkpoint is loaded twice: the policy, which trains,
and the reference, frozen, which is also the judge. Each step of SELF-JUDGE:

    a) the policy samples two responses per prompt          sample_two
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
import math
import os
import sys
import time
from collections import Counter, deque
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from common import (get_device, load_checkpoint, metrics_log, out_dir_ready, parse_flags,
                    resume_from, save_checkpoint, stop_if_diverged)
from common import progress  # a bar on a terminal, a line a tenth in a log
from data.chat import encode_query
from data.task import load_task, training_pairs
from evaluate import (check_judge, idle_reason, policy_evaluator, step_diagnostics, step_stats,
                      tally_step)
from judge import fit_prompts, judge_by_principles, task_principles, tournament
from model import GPT, GPTConfig
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
    max_position_bias=0.25,    # stop when the judge's decisions follow the position, not
                               # the content, on more than this share of the policy's own
                               # differing pairs (mean of the last 50 steps): the policy has
                               # moved where its judge cannot tell answers apart; 0 = never
    raft_n=2,                  # raft: samples per prompt, best picked by raft_n - 1
                               # judgments (2: SELF-JUDGE's budget of samples and judgments)
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
    allow_weak_judge=False,    # train even if the judge is near chance on the held-out
                               # labelled pairs (refused by default: it does harm)
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
              max_position_bias="[0, 1]",
              eval_interval="[0, inf)", eval_prompts="[0, inf)", ckpt_interval="[1, inf)")


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

def sample_two(policy, tok, prompts, n_new, cfg, g):
    """a) Two responses per prompt from the current policy: two lists of sample dicts
    (text, ids with the stop token when produced, stopped)."""
    policy.eval()
    s = sample_responses(policy, tok, prompts, 2, n_new, cfg.temperature, cfg.top_p, g)
    policy.train()
    return [x[0] for x in s], [x[1] for x in s]


def make_pairs(prompts, samples_a, samples_b, p_a, min_confidence=0.0, cutoff="drop"):
    """c) Turn judgments into (prompt, chosen, rejected) training pairs: the winner is
    chosen. Skipped, and counted: identical samples (nothing to learn), judgments of
    exactly 0.5 or below min_confidence (undecided), and with cutoff="drop" any pair with
    a sample that hit the length limit. samples: dicts with "ids", "text", "stopped".
    Returns (pairs, skipped): pairs are dicts prompt, chosen, rejected (the samples) and
    confidence max(p, 1 - p); skipped = dict(identical=, undecided=, cut_off=), a pair
    counted once, under the first of these reasons that holds."""
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


def preference_loss(policy, reference, tok, pairs, cfg, device):
    """d) The DPO-style loss on (prompt, chosen, rejected) pairs: log-probabilities of the
    sampled ids under the policy and the frozen reference, one forward pass each."""
    queries = [encode_query(tok, x["prompt"]) for x in pairs] * 2
    responses = [x["chosen"]["ids"] for x in pairs] + [x["rejected"]["ids"] for x in pairs]
    pol_sum, pol_mean = response_logps(policy, queries, responses, device)
    with torch.no_grad(), reference() as r:
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


def update(opt, params, loss, lr, grad_clip):
    """e) One AdamW step at learning rate lr, gradients clipped to grad_clip."""
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()


# -----------------------------------------------------------------------------
# where a step's pairs come from: one source per mode, each a function (run, g) ->
# (examples, judged): the examples the step trains on (pairs; raft: winners as "chosen")
# and what the judge saw, for the step's statistics (None where nothing was judged).
# `run` holds the models and settings (see main)

def onpolicy_pairs(run, g):
    """SELF-JUDGE: fresh pairs from the current policy every step, judged by the judge."""
    batch = pick(run.prompts, run.cfg.batch_size, g)
    a, b = sample_two(run.policy, run.tok, batch, run.n_new, run.cfg, g)          # a)
    with run.judge() as j:                                                          # b)
        p, flipped = judge_by_principles(j, run.tok, batch, texts(a), texts(b), run.principles)
    pairs, skipped = make_pairs(batch, a, b, p.tolist(), run.cfg.min_confidence,  # c)
                                run.cfg.cutoff)
    return pairs, dict(prompts=batch, a=a, b=b, p=p, flipped=flipped, skipped=skipped)


def raft_winners(run, g):
    """Rejection-sampling fine-tuning (RAFT, ReST): raft_n samples per prompt from the
    current policy, the judge's tournament picks one, and the step is SFT on the winners
    (with --cutoff=drop, not those cut off at the length limit). run.judge_fn: for tests,
    a stand-in for the judge (see judge.tournament)."""
    batch = pick(run.prompts, run.cfg.batch_size, g)
    run.policy.eval()
    cands = sample_responses(run.policy, run.tok, batch, run.cfg.raft_n, run.n_new,
                             run.cfg.temperature, run.cfg.top_p, g)
    run.policy.train()
    with run.judge() as j:
        win = tournament(j, run.tok, batch, [texts(c) for c in cands], g, run.principles,
                         run.judge_fn)
    winners = [dict(prompt=q, chosen=c[w]) for q, c, w in zip(batch, cands, win)
               if run.cfg.cutoff == "keep" or c[w]["stopped"]]
    return winners, dict(prompts=batch, candidates=cands, winners=win)


def fixed_pairs(run, g):
    """Off-policy and offline DPO: a batch drawn from a fixed pool of pairs (run.pool)."""
    return pick(run.pool, run.cfg.batch_size, g), None


def offpolicy_pool(run, g0):
    """Off-policy's pool: pairs sampled and judged once, from the initial policy."""
    print(f"sampling and judging {len(run.prompts)} pairs once from the initial policy")
    with run.judge() as j:  # at step 0 the judge's weights are the initial policy's
        s = sample_responses(j, run.tok, run.prompts, 2, run.n_new, run.cfg.temperature,
                             run.cfg.top_p, g0)
        a, b = [x[0] for x in s], [x[1] for x in s]
        p, _ = judge_by_principles(j, run.tok, run.prompts, texts(a), texts(b), run.principles)
    pool, _ = make_pairs(run.prompts, a, b, p.tolist(), run.cfg.min_confidence, run.cfg.cutoff)
    if not pool:
        raise ValueError("--mode=offpolicy: no pair of the initial policy's samples passed "
                         f"the filters (--min_confidence={run.cfg.min_confidence}, --cutoff="
                         f"{run.cfg.cutoff}): the judge is undecided on all of them")
    return pool


SOURCES = dict(onpolicy=onpolicy_pairs, raft=raft_winners, offpolicy=fixed_pairs,
               offline=fixed_pairs)


def what_it_uses(cfg):
    """The settings a mode's training reads, for its first line: RAFT has no DPO loss,
    offline DPO no judge."""
    dpo = f"loss {cfg.loss}, beta {cfg.beta}"
    return dict(onpolicy=f"{dpo}, judge {cfg.judge}", offpolicy=f"{dpo}, judge {cfg.judge}",
                offline=f"{dpo}, no judge",
                raft=f"SFT on the judge's pick of {cfg.raft_n} samples, judge {cfg.judge}",
                )[cfg.mode]


def pick(xs, n, g):
    return [xs[i] for i in torch.randint(len(xs), (n,), generator=g, device=g.device).tolist()]


def texts(samples):
    return [x["text"] for x in samples]


def frozen_models(policy, ref, judge):
    """The frozen reference and the judge, decided once. The reference is the JSFT model,
    or under LoRA (ref is None) the policy with its adapters off, so one model sits in
    memory. The judge is the reference (the paper), or with judge="current" the policy
    itself (an ablation). Returns two functions, each opening a `with` block that yields
    the model to use."""
    def reference():
        return policy.adapters_off() if ref is None else contextlib.nullcontext(ref)

    def judge_model():
        return contextlib.nullcontext(policy) if judge == "current" else reference()
    return reference, judge_model


# -----------------------------------------------------------------------------
# the run

def with_lora(model, rank, alpha):
    """The same weights in a model with fresh LoRA adapters (B = 0: no change yet)."""
    config = GPTConfig(**{**model.config.__dict__, "lora_rank": rank, "lora_alpha": alpha})
    out = GPT(config).to(next(model.parameters()).device)
    out.load_state_dict(model.state_dict(), strict=False)
    out.freeze_base()
    return out


def load_models(cfg, device):
    """-> (policy, ref, tok, step, optimizer state): the reference (None under LoRA) from
    --init, the policy from --init or, with --resume, from out_dir's last checkpoint."""
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
        policy = with_lora(policy, cfg.lora_rank, cfg.lora_alpha)
        ref = None  # one model in memory: adapters off is the reference
    return policy, ref, tok, step, opt_state


def learn(run, examples, step):
    """d) and e): the mode's loss on the step's examples, then one optimizer step (the
    learning rate warms up linearly, then stays constant)."""
    cfg = run.cfg
    if cfg.mode == "raft":
        loss, stats = sft_loss(run.policy, run.tok, examples, run.device)
    else:
        loss, stats = preference_loss(run.policy, run.reference, run.tok, examples, cfg,
                                      run.device)
    update(run.opt, run.params, loss,
           cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps)), cfg.grad_clip)
    stop_if_diverged(step + 1, cfg, stats, run.policy)  # before the next step samples from it
    return stats


GUARD_STEPS = 50  # the judge's position bias is averaged over this many steps


def judge_blind(recent, stats, limit):
    """The guard against a judge the policy has outgrown: on-policy, each step measures on
    the policy's own pairs how often the judge's two single-order decisions name the same
    letter, i.e. follow the position (judge_flips). A judge that reads the content does so
    rarely; once the policy's answers differ only where the judge cannot see, it does so
    often, and it is also wrong on more of the pairs it decides (the oracle's diagnostics
    show both at once on data/words, README "Why on-policy?"). Returns the mean over the
    last GUARD_STEPS steps once it passes limit, else None; recent: that window."""
    flips = stats.get("judge_flips")
    if limit and flips is not None and not math.isnan(flips):  # nan: no pair differed
        recent.append(flips)
        if len(recent) == GUARD_STEPS and sum(recent) / GUARD_STEPS > limit:
            return sum(recent) / GUARD_STEPS
    return None


def train(run, oracle, evaluate, log, start):
    """The steps start .. max_steps, each logged, with an evaluation every eval_interval
    steps and a checkpoint every ckpt_interval; on-policy, the run stops early when the
    judge goes blind on the policy's pairs (judge_blind). Returns a tally: steps that
    updated the policy, examples trained on, pairs judged, make_pairs' reasons for
    skipping, and `stopped`, the step and the bias where the guard stopped the run."""
    cfg, source = run.cfg, SOURCES[run.cfg.mode]
    tally, recent = Counter(), deque(maxlen=GUARD_STEPS)
    bar = progress(range(start, cfg.max_steps), cfg.max_steps, cfg.mode, start)
    for step in bar:
        g = torch.Generator(device=run.device).manual_seed(cfg.seed * 1_000_003 + step)
        examples, judged = source(run, g)
        stats = dict(step=step + 1, **step_stats(examples, judged))
        if examples:
            stats.update(learn(run, examples, step))
            bar.set_postfix(loss=f"{stats['loss']:.3f}", pairs=len(examples))
        tally_step(tally, examples, judged)  # says why after IDLE_WARNING idle steps
        if oracle is not None:  # evaluation only: the oracle never reaches training
            stats.update(step_diagnostics(oracle, examples, judged))
        if evaluate and cfg.eval_interval and (step + 1) % cfg.eval_interval == 0:
            stats.update(evaluate(step + 1))
        log(stats)
        bias = judge_blind(recent, stats, cfg.max_position_bias)
        stop = bias is not None
        if stop:
            tally["stopped"] = (step + 1, bias)
        if (step + 1) % cfg.ckpt_interval == 0 or step + 1 == cfg.max_steps or stop:
            save_checkpoint(os.path.join(cfg.out_dir, "ckpt.pt"), run.policy, run.tok,
                            dict(step=step + 1, flags=dict(cfg), stage="selfjudge",
                                 stopped=stop), run.opt)
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
    reference, judge = frozen_models(policy, ref, cfg.judge)
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
    run = SimpleNamespace(cfg=cfg, policy=policy, reference=reference, judge=judge, tok=tok,
                          opt=opt, params=params, prompts=prompts, n_new=n_new, device=device,
                          principles=principles, judge_fn=None, pool=None)
    if cfg.mode != "offline":  # offline DPO needs no judge
        check_judge(judge, tok, task, cfg.allow_weak_judge)
    oracle = task.get_oracle()
    g0 = torch.Generator(device=device).manual_seed(cfg.seed)  # reference answers, then pool
    evaluate = (policy_evaluator(policy, tok, task, tests, reference, judge, n_new, principles,
                                 cfg.seed, g0) if tests else None)
    if cfg.mode in ("offpolicy", "offline"):
        run.pool = (offpolicy_pool(run, g0) if cfg.mode == "offpolicy"
                    else training_pairs(task, tok, block, skip))

    # 3) train, each step a line of metrics.jsonl
    log = metrics_log(os.path.join(cfg.out_dir, "metrics.jsonl"), start)
    print(f"one line per step in {cfg.out_dir}/metrics.jsonl; docs/metrics.md says what "
          "each number printed or logged means")
    if start == 0 and evaluate:
        log(dict(step=0, **evaluate(0)))
    t0, tally = time.time(), train(run, oracle, evaluate, log, start)
    if tally["stopped"]:
        step, bias = tally["stopped"]
        print(f"stopped at step {step} of {cfg.max_steps}: the judge's decisions followed the "
              f"position on {bias:.0%} of the policy's pairs over the last {GUARD_STEPS} steps "
              f"(--max_position_bias={cfg.max_position_bias}): the judge no longer tells the "
              "policy's answers apart, and training on would teach the policy its mistakes "
              "(--max_position_bias=0 trains on anyway)")
    ran = (tally["stopped"][0] if tally["stopped"] else cfg.max_steps) - start
    print(f"done in {time.time() - t0:.0f}s; {tally['updated']} of {ran} "
          f"steps updated the policy, on {tally['examples']} "
          f"{'winners' if cfg.mode == 'raft' else 'pairs'} in all; saved {cfg.out_dir}/ckpt.pt")
    if tally["updated"] == 0:
        raise ValueError(f"no step updated the policy: {idle_reason(tally)}; "
                         f"{cfg.out_dir}/ckpt.pt is {cfg.init} unchanged. A judge undecided "
                         "on every pair is near chance: see jsft.py's last lines")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
