"""
Stage 2: on-policy self-training. The JSFT checkpoint is loaded twice: the policy, which
trains, and the reference, frozen, which is also the judge. Each step the policy samples
two responses per prompt, the reference judges them (both orders), and the policy takes
a DPO-style step towards the winner, relative to the reference.

    python selfjudge.py                          # SELF-JUDGE on the default task
    python selfjudge.py --offline --out_dir=out/dpo        # DPO on pairs.jsonl (baseline)
    python selfjudge.py --offpolicy --out_dir=out/offpolicy  # pairs sampled once, up front
    python selfjudge.py --report                 # the results table over out/*/ckpt.pt

Writes out/selfjudge/ckpt.pt and out/selfjudge/metrics.jsonl (one line per step).
"""
import contextlib
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from data.task import DataError, fully_right_rate, load_task, mean_score, win_rate
from judge import (judge_by_principles, n_held_out, response_budget, task_principles,
                   tournament)
from model import (GPT, GPTConfig, autocast, encode_query, encode_response, get_device,
                   load_checkpoint, pad_right, parse_flags, save_checkpoint, sequence_logprobs)
from sample import sample_responses

# -----------------------------------------------------------------------------
# settings (override with --name=value)
defaults = dict(
    data="data/sort",          # task folder (prompts.jsonl for on-policy prompts)
    init="out/jsft/ckpt.pt",   # the JSFT checkpoint: policy, reference and judge
    out_dir="out/selfjudge",   # ckpt.pt and metrics.jsonl go here
    offline=False,             # DPO on pairs.jsonl instead of on-policy samples (baseline)
    offpolicy=False,           # sample and judge pairs once from the initial policy
    judge="reference",         # reference (frozen JSFT) | current (the policy judges itself)
    loss="sigmoid",            # sigmoid (DPO) | hinge (SLiC) | ipo
    beta=1.0,                  # strength of the pull towards the reference
    sft_weight=0.0,            # + this x NLL of chosen responses (per token)
    min_confidence=0.5,        # train only on pairs the judge decides by |2p-1| >= this
    cutoff="drop",             # a sample cut off at max_new_tokens: drop the pair | keep
    max_steps=150,             # optimizer steps
    batch_size=32,             # prompts per step (two samples each)
    lr=6e-5,                   # AdamW learning rate (constant after warmup)
    warmup_steps=10,
    grad_clip=1.0,
    temperature=1.0,           # sampling temperature for the pairs
    top_p=1.0,                 # nucleus sampling for the pairs; 1.0 = off, as in the
                               # evaluation, so the judge sees the policy's rare mistakes
    max_new_tokens=40,         # response length limit
    lora_rank=0,               # >0: train LoRA adapters; the reference is adapters-off
    lora_alpha=16.0,
    eval_interval=25,          # oracle + judge evaluation on test.jsonl every this many steps
    eval_prompts=200,          # test prompts per evaluation
    seed=1337,
    device="auto",             # auto: cuda, then mps, then cpu
    resume=False,              # continue from out_dir/ckpt.pt
    report=False,              # print the results table over the checkpoints and exit
    report_dirs="out/jsft,out/dpo,out/selfjudge",  # checkpoints the table compares
    best_of=8,                 # N for the SELF-JUDGE + self-rejection row of the table
)


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
    implicit beta * log-ratios, detached.
    """
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


def response_logps(model, queries, responses, device):
    """Log-probability of each response given its query, from one batched forward pass:
    (summed (N,), per-token mean (N,)). responses are the sampled ids themselves, the stop
    token included when it was produced, so it is scored and trained."""
    seqs = [q + r for q, r in zip(queries, responses)]
    idx = pad_right([s[:-1] for s in seqs], device=device)
    tgt = pad_right([s[1:] for s in seqs], device=device)
    # 1.0 on the targets that are response tokens (the query's tokens and padding: 0.0)
    mask = pad_right([[0] * (len(q) - 1) + [1] * len(r) for q, r in zip(queries, responses)],
                     device=device).float()
    with autocast(device):
        logits, _ = model(idx)
    summed = sequence_logprobs(logits, tgt, mask)
    return summed, summed / mask.sum(-1).clamp(min=1)


# -----------------------------------------------------------------------------
# pairs from judgments

def make_pairs(prompts, samples_a, samples_b, p_a, min_confidence=0.0, cutoff="drop"):
    """Turn judgments into (prompt, chosen, rejected) training pairs. The winner is chosen.
    Skipped, and counted: identical samples (nothing to learn), judgments of exactly 0.5
    or below min_confidence (undecided), and with cutoff="drop" any pair with a sample
    that hit the length limit. samples: dicts with "ids", "text", "stopped"."""
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


# -----------------------------------------------------------------------------
# evaluation

def held_out_pairs(tok, task, ref, block_size, device):
    """The held-out tail of pairs.jsonl (jsft.py never trained on it), tokenized, with the
    reference's log-probabilities: (queries, responses, ref_logps), chosen responses
    first; None for a task without pairs."""
    rows = task.pairs[len(task.pairs) - n_held_out(len(task.pairs)):] if task.pairs else []
    q = [encode_query(tok, r["prompt"]) for r in rows]
    c = [encode_response(tok, r["chosen"]) for r in rows]
    w = [encode_response(tok, r["rejected"]) for r in rows]
    keep = [i for i in range(len(rows)) if len(q[i]) + max(len(c[i]), len(w[i])) <= block_size]
    if not keep:
        return None
    queries = [q[i] for i in keep] * 2
    responses = [c[i] for i in keep] + [w[i] for i in keep]
    return queries, responses, batched_logps(ref, queries, responses, device)


@torch.no_grad()
def batched_logps(model, queries, responses, device, batch_size=128):
    """Summed response log-probabilities, a chunk at a time (no gradient)."""
    return torch.cat([response_logps(model, queries[i:i + batch_size],
                                     responses[i:i + batch_size], device)[0].float()
                      for i in range(0, len(queries), batch_size)])


@torch.no_grad()
def evaluate(policy, tok, prompts, oracle, ref_texts, seed, judge_ctx, max_new_tokens,
             principles=(None,), held_out=None):
    """Oracle score of the policy's samples on held-out prompts, and two signals that
    need no oracle: how much the judge prefers them over the reference's, and, given
    held_out (from held_out_pairs), how often the policy's implicit reward ranks the
    labelled chosen response of a held-out pair above the rejected one (ties count half;
    0.5 at step 0, where the policy is the reference). The policy samples as it is
    (adapters on); judge_ctx() yields the judge."""
    policy.eval()
    g = torch.Generator(device=next(policy.parameters()).device).manual_seed(seed)
    texts = [s[0]["text"] for s in sample_responses(policy, tok, prompts, 1, max_new_tokens,
                                                    generator=g)]
    with judge_ctx() as judge_model:
        pref = judge_by_principles(judge_model, tok, prompts, texts, ref_texts,
                                   principles).mean().item()
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


def with_lora(model, rank, alpha):
    """The same weights in a model with fresh LoRA adapters (B = 0: no change yet)."""
    config = GPTConfig(**{**model.config.__dict__, "lora_rank": rank, "lora_alpha": alpha})
    out = GPT(config).to(next(model.parameters()).device)
    out.load_state_dict(model.state_dict(), strict=False)
    out.freeze_base()
    return out


def main(argv=None):
    cfg = parse_flags(defaults, argv, __doc__)
    if cfg.report:
        return report(cfg)
    if cfg.offline and cfg.offpolicy:
        sys.exit("error: choose one of --offline and --offpolicy")
    device = get_device(cfg.device)
    torch.manual_seed(cfg.seed)
    task = load_task(cfg.data)
    os.makedirs(cfg.out_dir, exist_ok=True)
    ckpt_path = os.path.join(cfg.out_dir, "ckpt.pt")
    metrics_path = os.path.join(cfg.out_dir, "metrics.jsonl")

    # 1) policy and reference (the reference is also the judge)
    ref, tok, ref_meta = load_checkpoint(cfg.init, device)
    ref.eval().requires_grad_(False)
    step = 0
    if cfg.resume:
        policy, _, meta = load_checkpoint(ckpt_path, device)
        step = meta["step"]
        print(f"resuming from {ckpt_path} at step {step}")
    else:
        policy, _, meta = load_checkpoint(cfg.init, device)
    if cfg.lora_rank:
        policy = with_lora(policy, cfg.lora_rank, cfg.lora_alpha)
        ref = None  # one model in memory: adapters off is the reference

    def ref_ctx():
        """The frozen reference: a second model, or the policy with its adapters off."""
        return policy.adapters_off() if ref is None else contextlib.nullcontext(ref)

    def judge_ctx():
        return contextlib.nullcontext(policy) if cfg.judge == "current" else ref_ctx()
    if cfg.judge not in ("reference", "current"):
        raise ValueError(f"--judge={cfg.judge!r}: use reference or current")
    policy.train()
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    if cfg.resume and meta.get("optimizer"):
        opt.load_state_dict(meta["optimizer"])
    principles = task_principles(task)
    mode = "offline" if cfg.offline else "offpolicy" if cfg.offpolicy else "on-policy"
    print(f"{mode} training from {cfg.init}: {sum(p.numel() for p in params) / 1e6:.2f}M "
          f"trainable parameters, loss {cfg.loss}, beta {cfg.beta}, judge {cfg.judge}")

    # 2) where pairs come from
    prompts = [x["prompt"] for x in task.require("prompts")]
    tests = [x["prompt"] for x in (task.test or [])][:cfg.eval_prompts]
    # responses must leave room for two of them in a judge prompt
    n_new = min(cfg.max_new_tokens, response_budget(tok, prompts + tests,
                                                    policy.config.block_size))
    oracle = task.get_oracle()
    offline_pairs, fixed_pairs = None, None
    if cfg.offline:
        rows = task.require("pairs")
        rows = rows[:len(rows) - n_held_out(len(rows))]  # the held-out tail stays out
        if not rows:
            raise DataError(f"{cfg.data}/pairs.jsonl: no pairs left to train on")
        offline_pairs = [dict(prompt=r["prompt"],
                              chosen=dict(ids=encode_response(tok, r["chosen"])),
                              rejected=dict(ids=encode_response(tok, r["rejected"])))
                         for r in rows]
    g0 = torch.Generator(device=device).manual_seed(cfg.seed)
    with ref_ctx() as r0:
        held_out = held_out_pairs(tok, task, r0, policy.config.block_size, device)
        ref_texts = [s[0]["text"] for s in sample_responses(r0, tok, tests, 1, n_new,
                                                            generator=g0)]
        if cfg.offpolicy:
            print(f"sampling and judging {len(prompts)} pairs once from the initial policy")
            s = sample_responses(r0, tok, prompts, 2, n_new, cfg.temperature, cfg.top_p, g0)
            p = judge_by_principles(r0, tok, prompts, [x[0]["text"] for x in s],
                                    [x[1]["text"] for x in s], principles)
            fixed_pairs, _ = make_pairs(prompts, [x[0] for x in s], [x[1] for x in s],
                                        p.tolist(), cfg.min_confidence, cfg.cutoff)

    def log(row):
        with open(metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")

    if not cfg.resume and os.path.exists(metrics_path):
        os.remove(metrics_path)
    if step == 0 and tests:
        e = evaluate(policy, tok, tests, oracle, ref_texts, cfg.seed + 1, judge_ctx, n_new,
                     principles, held_out)
        log(dict(step=0, **{"eval_" + k: v for k, v in e.items()}))
        tqdm.write("step 0: " + ", ".join(f"{k} {v:.3f}" for k, v in e.items()))

    # 3) train
    t0 = time.time()
    bar = tqdm(range(step, cfg.max_steps), initial=step, total=cfg.max_steps, desc=mode,
               dynamic_ncols=True, disable=None)
    for step in bar:
        g = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + step)
        stats = {}
        if offline_pairs is not None or fixed_pairs is not None:
            pool = offline_pairs if offline_pairs is not None else fixed_pairs
            pick = torch.randint(len(pool), (cfg.batch_size,), generator=g, device=device)
            pairs = [pool[i] for i in pick.tolist()]
        else:
            # a) two samples per prompt from the current policy
            pick = torch.randint(len(prompts), (cfg.batch_size,), generator=g, device=device)
            batch = [prompts[i] for i in pick.tolist()]
            policy.eval()
            s = sample_responses(policy, tok, batch, 2, n_new, cfg.temperature, cfg.top_p, g)
            a, b = [x[0] for x in s], [x[1] for x in s]
            # b) the judge: the frozen reference, or the policy itself (ablation)
            with judge_ctx() as judge_model:
                p = judge_by_principles(judge_model, tok, batch, [x["text"] for x in a],
                                        [x["text"] for x in b], principles)
            policy.train()
            pairs, skipped = make_pairs(batch, a, b, p.tolist(), cfg.min_confidence, cfg.cutoff)
            stats.update(identical=skipped["identical"] / len(batch),
                         judge_conf=(2 * (p - 0.5).abs()).mean().item(),
                         resp_len=sum(len(x["ids"]) for x in a + b) / (2 * len(a)))
        if not pairs:  # nothing to learn from this batch; the evaluation still runs
            stats.update(step=step + 1, skipped=True)
        else:
            # c) log-probabilities of chosen and rejected: one forward pass per model
            queries = [encode_query(tok, x["prompt"]) for x in pairs] * 2
            responses = [x["chosen"]["ids"] for x in pairs] + [x["rejected"]["ids"] for x in pairs]
            pol_sum, pol_mean = response_logps(policy, queries, responses, device)
            with torch.no_grad(), ref_ctx() as r:
                ref_sum, ref_mean = response_logps(r, queries, responses, device)
            n = len(pairs)
            pol, rf = (pol_mean, ref_mean) if cfg.loss == "ipo" else (pol_sum, ref_sum)
            loss, rw_c, rw_r = dpo_loss(pol[:n], pol[n:], rf[:n], rf[n:], cfg.beta, cfg.loss)
            if cfg.sft_weight:
                loss = loss - cfg.sft_weight * pol_mean[:n].mean()

            # d) step
            lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            stats.update(step=step + 1, loss=loss.item(), pairs=n,
                         margin=(rw_c - rw_r).mean().item(),
                         reward_acc=(rw_c > rw_r).float().mean().item(),
                         logp_chosen=pol_sum[:n].mean().item(),
                         logp_rejected=pol_sum[n:].mean().item())
            bar.set_postfix(loss=f"{stats['loss']:.3f}", margin=f"{stats['margin']:.2f}")
        if cfg.eval_interval and (step + 1) % cfg.eval_interval == 0 and tests:
            e = evaluate(policy, tok, tests, oracle, ref_texts, cfg.seed + 1, judge_ctx, n_new,
                         principles, held_out)
            stats.update({"eval_" + k: v for k, v in e.items()})
            tqdm.write(f"step {step + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in e.items()))
        log(stats)

    # 4) save: a full model (adapters merged away are not needed: LoRA weights are kept)
    save_checkpoint(ckpt_path, policy, tok, dict(step=cfg.max_steps, flags=dict(cfg),
                                                 stage="selfjudge", mode=mode), opt)
    print(f"done in {time.time() - t0:.0f}s; saved {ckpt_path} and {metrics_path}")


# -----------------------------------------------------------------------------
# the results table

@torch.no_grad()
def report(cfg):
    """The results table. Each checkpoint samples best_of responses per held-out prompt
    (temperature 1); each row compares them with the first checkpoint's (JSFT), sample i
    against sample i: oracle win rate (ties excluded) and tie rate, mean score, fully
    right. The last checkpoint also gets self-rejection: its tournament winner per prompt,
    compared with each of the first checkpoint's samples."""
    device = get_device(cfg.device)
    task = load_task(cfg.data)
    oracle = task.get_oracle()
    if oracle is None:
        sys.exit(f"error: --report needs {cfg.data}/oracle.py to score responses")
    prompts = [x["prompt"] for x in task.require("test")][:cfg.eval_prompts]
    n = max(1, cfg.best_of)
    flat_prompts = [p for p in prompts for _ in range(n)]
    rows, base = [], None
    dirs = [d for d in cfg.report_dirs.split(",") if d]
    for d in dirs:
        model, tok, _ = load_checkpoint(os.path.join(d, "ckpt.pt"), device)
        model.eval()
        g = torch.Generator(device=device).manual_seed(cfg.seed)
        cands = [[x["text"] for x in s] for s in sample_responses(model, tok, prompts, n,
                                                                  generator=g)]
        texts = [t for c in cands for t in c]
        base = texts if base is None else base
        rows.append((os.path.basename(d), texts))
        if d == dirs[-1] and n > 1:
            win = tournament(model, tok, prompts, cands, g, task_principles(task))
            rows.append((f"{os.path.basename(d)} + best-of-{n}",
                         [c[w] for c, w in zip(cands, win) for _ in range(n)]))
    print(f"\n{len(prompts)} held-out prompts ({cfg.data}/test.jsonl) x {n} samples at "
          f"temperature 1; win rate against {rows[0][0]}, ties excluded")
    print(f"{'model':24s} {'win rate':>9s} {'ties':>6s} {'score':>6s} {'fully right':>12s}")
    for name, texts in rows:
        w = win_rate(oracle, flat_prompts, texts, base)
        print(f"{name:24s} {w['win_rate']:9.1%} {w['tie_rate']:6.1%} "
              f"{mean_score(oracle, flat_prompts, texts):6.3f} "
              f"{fully_right_rate(oracle, flat_prompts, texts):12.1%}")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
