"""
Stage 1: Judge-augmented SFT. One model learns to follow instructions (sft.jsonl) and to
judge pairs of responses (pairs.jsonl), the judgment being one more instruction whose
answer is a single token, A or B. Each pair is shown in both orders.

    python jsft.py                                   # default task, from scratch, 2-5 min CPU
    python jsft.py --judge_ratio=0                   # plain SFT, for comparison
    python jsft.py --rationale=True                  # the decision, then the pair's rationale
    python jsft.py --init=path/to/gpt2 --data=my_task --max_steps=2000 --lr=5e-5
    torchrun --standalone --nproc_per_node=2 jsft.py # data parallel: each rank takes its
                                                     # share of every batch

Writes out/jsft/ckpt.pt; at the end prints the judge's agreement with the oracle on the
policy's own pairs and the policy's oracle score: the two numbers stage 2 relies on.
"""
import contextlib
import math
import os
import sys
import time
from typing import NamedTuple

import torch
import torch.nn.functional as F
from tqdm import tqdm

from common import (check_out_dir, ddp_done, ddp_init, ddp_rank_world,
                    ddp_wrap, load_checkpoint, out_dir_ready, parse_flags, progress,
                    resume_from, save_checkpoint, stop_if_diverged)
from data.chat import add_chat_tokens, encode_query, encode_response, load_tokenizer
from data.task import DataError, fitting, load_task, n_held_out, train_tokenizer
from evaluate import describe_agreement, policy_report
from judge import (DECISIONS, MOST_BY_POSITION, TRUSTED, decision_ids, describe_labels, fit_prompts,
                   gate_failure, heldout_judgment, judge_query, near_chance, task_principles)
from model import GPT, GPTConfig, IGNORE_INDEX, autocast, check_vocab
from sample import pad_right, rows_per_chunk

# -----------------------------------------------------------------------------
# settings (override with --name=value)
defaults = dict(
    data="data/sort",        # task folder (sft.jsonl, pairs.jsonl, ...)
    out_dir="out/jsft",      # where ckpt.pt goes
    init="scratch",          # scratch | a checkpoint | a GPT-2 folder (HF layout)
    judge_ratio=0.7,         # fraction of each batch that is judge examples (0 = plain SFT)
    sft_warmup=0.25,         # share of max_steps trained on sft.jsonl alone before the mix:
                             # a judge from scratch cannot learn a task it cannot yet read
    rationale=False,         # True: the judge's target is the decision, then the pair's short
                             # rationale (with honest labels it did not pay: RESULTS.md)
    decision_weight=0.5,     # with --rationale: the decision's share of a judge example's loss
    pair_orders=True,        # both orders of a pair in the same batch (False: drawn apart)
    n_layer=4,               # model size, for --init=scratch
    n_head=4,                # attention heads, for --init=scratch
    n_embd=64,               # 0.22M parameters: 3000 steps in 2-5 min on 2 CPU cores
    block_size=128,          # context length, for --init=scratch
    pos="rope",              # positions, for --init=scratch: rope (rotary) | learned (GPT-2)
    dropout=0.0,             # for --init=scratch
    vocab_size=512,          # for a tokenizer trained here when the task brings none
    max_steps=3000,          # optimizer steps (a judge without rationales needs them:
                             # on data/words 2000 steps gave 82% agreement, 3000 gave 86%)
    batch_size=64,           # examples per micro-batch (under torchrun: split over the ranks)
    grad_accum=1,            # micro-batches per optimizer step
    lr=2e-3,                 # peak learning rate (AdamW)
    min_lr=1e-4,             # cosine decays to this
    warmup_steps=100,        # linear warmup
    weight_decay=0.1,        # AdamW, on weight matrices only
    grad_clip=1.0,           # clip the gradient's norm to this
    eval_interval=300,       # held-out loss every this many steps (0 = only at the end)
    eval_prompts=200,        # test prompts for the final oracle report
    seed=1337,               # seeds the model's init and every batch: a run repeats exactly
    device="auto",           # auto: cuda, then mps, then cpu
    resume=False,            # continue from out_dir/ckpt.pt
    skip_bad_lines=False,    # skip malformed data lines (counted) instead of stopping
)
limits = dict(judge_ratio="[0, 1]", sft_warmup="[0, 1)", decision_weight="[0, 1]",
              n_layer="[1, inf)", n_head="[1, inf)", n_embd="[1, inf)", block_size="[8, inf)",
              pos=("rope", "learned"), dropout="[0, 1)", vocab_size="[259, inf)",
              max_steps="[1, inf)", batch_size="[1, inf)", grad_accum="[1, inf)",
              lr="(0, inf)", min_lr="[0, inf)", warmup_steps="[0, inf)",
              weight_decay="[0, inf)", grad_clip="(0, inf)", eval_interval="[0, inf)",
              eval_prompts="[0, inf)")
# the model's shape comes from the checkpoint on --resume; these flags cannot change it
SHAPE = ("init", "n_layer", "n_head", "n_embd", "block_size", "pos", "vocab_size")


# -----------------------------------------------------------------------------
# examples: (input ids, target ids) with IGNORE_INDEX wherever no loss is taken

def sft_example(tok, prompt, response):
    """Loss on the response and its stop token only."""
    q, r = encode_query(tok, prompt), encode_response(tok, response)
    return q + r, [IGNORE_INDEX] * len(q) + r


def judge_examples(tok, pair, rationale=False):
    """A pair yields two examples, (chosen, rejected) answered A and (rejected, chosen)
    answered B, so the judge cannot learn a favourite position. Loss on the decision token
    and, with rationale, on the rationale after it."""
    # --- exercise judge_examples (solution below) ---
    a_id, b_id = decision_ids(tok)
    c, p = pair["prompt"], pair.get("principle")
    out = []
    for first, second, decision, chosen_first in ((pair["chosen"], pair["rejected"], a_id, True),
                                                  (pair["rejected"], pair["chosen"], b_id, False)):
        q = judge_query(tok, c, first, second, p)
        target = [decision]
        if rationale and "rationale_chosen" in pair and "rationale_rejected" in pair:
            ra, rb = ((pair["rationale_chosen"], pair["rationale_rejected"]) if chosen_first else
                      (pair["rationale_rejected"], pair["rationale_chosen"]))
            target += encode_response(tok, f" {DECISIONS[0]} {ra} {DECISIONS[1]} {rb}")
        out.append((q + target, [IGNORE_INDEX] * len(q) + target))
    return out
    # --- end exercise ---


def example_loss(logits, targets, reduction="mean", decision_weight=None):
    """Cross-entropy averaged within each example, then over examples: every example
    counts once, whatever its length. (A plain mean over tokens would give a one-token
    judge decision a tenth of the weight of a ten-token response, and --judge_ratio would
    not mean what it says.) decision_weight: for judge examples, the share of an example's
    loss on its first target token, the decision, the rest averaged over the rationale
    after it (an example with no rationale is all decision); None: every target token
    weighs the same. logits (B, T, V), targets (B, T) -> scalar; with reduction="sum",
    (sum over examples, number of examples with a target)."""
    # --- exercise example_loss (solution below) ---
    B, T, V = logits.shape
    tok = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="none",
                          ignore_index=IGNORE_INDEX).view(B, T)  # 0 where ignored
    has_target = targets != IGNORE_INDEX
    n = has_target.sum(1)
    if decision_weight is None:
        per_example = tok.sum(1) / n.clamp(min=1)
    else:
        first = has_target & (has_target.cumsum(1) == 1)
        decision = (tok * first).sum(1)
        rationale = (tok.sum(1) - decision) / (n - 1).clamp(min=1)
        per_example = torch.where(n > 1, decision_weight * decision
                                  + (1 - decision_weight) * rationale, decision)
    has = n > 0  # an example with no target carries no loss (and no NaN)
    total = per_example[has].sum() if has.any() else logits.sum() * 0.0
    if reduction == "sum":
        return total, int(has.sum())
    return total / max(int(has.sum()), 1)
    # --- end exercise ---


def batch_loss(model, parts, device, count=None):
    """example_loss over all the examples of a batch, with one forward pass per part:
    parts is a list of (examples, decision_weight), e.g. [(judge examples, 0.5), (SFT
    examples, None)]. Each part is padded to its own longest example, so a ~16-token SFT
    example is not padded to a ~31-47-token judge example: the same loss for less work
    (right padding never changes the real positions' logits). count: the examples the
    mean is taken over, by default those in parts (a rank's share: the global batch's)."""
    total, n_here = 0.0, 0
    for examples, w in parts:
        if examples:
            idx, tgt = collate(examples, device)
            with autocast(device):
                logits, _ = model(idx)
            s, n = example_loss(logits, tgt, reduction="sum", decision_weight=w)
            total, n_here = total + s, n_here + n
    return total / max(n_here if count is None else count, 1)


def collate(examples, device):
    """Right-pad to the longest; shift by one so position t predicts token t+1."""
    return (pad_right([x[:-1] for x, _ in examples], 0, device),
            pad_right([y[1:] for _, y in examples], IGNORE_INDEX, device))


def lr_at(step, cfg):
    """Linear warmup, then cosine decay to min_lr."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * min(t, 1.0))) * (cfg.lr - cfg.min_lr)


def train_step(model, opt, cfg, step, judge_pairs, sft, device):
    """One optimizer step (cfg.grad_accum micro-batches) at step's learning rate; returns
    the last micro-batch's loss. Under torchrun every rank draws the same batch and trains
    on its share, its loss the sum over its share divided by the whole batch's count and
    multiplied by the ranks: the gradient DistributedDataParallel averages is then the one
    process's, uneven shares included."""
    rank, world = ddp_rank_world()
    for group in opt.param_groups:
        group["lr"] = lr_at(step, cfg)
    for micro in range(cfg.grad_accum):
        parts = draw_batch(cfg, step, micro, judge_pairs, sft)
        last = micro == cfg.grad_accum - 1  # ranks average gradients once, after the last
        with contextlib.nullcontext() if last or world == 1 else model.no_sync():
            loss = batch_loss(model, ddp_share(parts, rank, world), device,
                              count_examples(parts)) * world
            (loss / cfg.grad_accum).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    if world > 1:  # the whole batch's loss, as one process reports it
        loss = loss.detach().clone()
        torch.distributed.all_reduce(loss)
        loss = loss / world
    return loss


def draw_batch(cfg, step, micro, judge_pairs, sft):
    """A batch in two parts, each with the decision weight its loss takes: [(judge
    examples, cfg.judge_ratio of the batch, none in the first cfg.sft_warmup of the steps;
    cfg.decision_weight), (SFT examples; None)], a function of (seed, step, micro) alone,
    so --resume continues the same run. judge_pairs: one
    list of two examples (both orders) per pair. With cfg.pair_orders both orders of each
    drawn pair sit in the batch: the gradient sees the same two responses answered "A"
    one way round and "B" the other, so what it rewards is telling the responses apart,
    not a position."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 97 + micro)

    def pick(xs, n):  # randint refuses an empty range even for zero draws
        return [xs[i] for i in torch.randint(len(xs), (n,), generator=g)] if n else []
    ratio = 0.0 if step < cfg.sft_warmup * cfg.max_steps else cfg.judge_ratio
    n_judge = round(cfg.batch_size * ratio) if sft else cfg.batch_size
    n_pairs = n_judge // 2 if judge_pairs else 0  # judge examples come two at a time
    if cfg.pair_orders:
        judge = [e for pair in pick(judge_pairs, n_pairs) for e in pair]
    else:
        judge = [pair[i % 2] for i, pair in enumerate(pick(judge_pairs, 2 * n_pairs))]
    return [(judge, cfg.decision_weight), (pick(sft, cfg.batch_size - len(judge)), None)]


def count_examples(parts):
    """The examples of a batch's parts that carry a loss (as example_loss counts them)."""
    return sum(any(t != IGNORE_INDEX for t in y[1:]) for examples, _ in parts
               for _, y in examples)


def ddp_share(parts, rank, world):
    """A rank's share of a batch: every world-th example, counted across the parts, so
    shares differ by one example at most and each part keeps its decision weight."""
    out, i = [], 0
    for examples, w in parts:
        out.append(([x for j, x in enumerate(examples, i) if j % world == rank], w))
        i += len(examples)
    return out


# -----------------------------------------------------------------------------
# model, tokenizer and examples

def init_model(cfg, task, device):
    """-> (model, tok). scratch: a new GPT (and a tokenizer trained on the task if it
    brings none); a file: our checkpoint; a folder: GPT-2 weights."""
    if cfg.init == "scratch":
        if task.tokenizer_file:
            tok = load_tokenizer(task.tokenizer_file)
        else:
            print(f"{task.path} has no tokenizer.json: training a byte-level BPE "
                  f"({cfg.vocab_size} tokens) on its text; it is saved in the checkpoint")
            tok = add_chat_tokens(train_tokenizer(task.texts(), cfg.vocab_size))
        config = GPTConfig(vocab_size=tok.get_vocab_size(), block_size=cfg.block_size,
                           n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                           pos=cfg.pos, dropout=cfg.dropout,
                           gelu="exact")  # GPT-2's tanh form is 2-3x slower on a CPU
        model = GPT(config)
    elif os.path.isdir(cfg.init):
        model, tok = GPT.from_pretrained(cfg.init), load_tokenizer(cfg.init)
        model.resize_vocab(tok.get_vocab_size())  # room for the added chat tokens
    else:
        model, tok, _ = load_checkpoint(cfg.init)
    check_vocab(tok, model, f"--init={cfg.init}: ")
    if cfg.judge_ratio > 0:  # the judge answers in one token: name a tokenizer that splits it
        try:
            decision_ids(tok)
        except ValueError as e:
            source = task.tokenizer_file if cfg.init == "scratch" else cfg.init
            raise ValueError(f"{source}: {e}") from None
    return model.to(device), tok


class Examples(NamedTuple):
    """(input ids, target ids) examples, each kind split into training and held out."""
    sft: list                  # SFT examples to train on
    judge_pairs: list          # judge examples to train on, grouped by pair (both orders)
    sft_held_out: list         # the held-out tails, flat
    judge_held_out: list


def build_examples(cfg, task, tok, block_size):
    """Tokenized SFT examples and judge examples (two per pair, both orders) that fit the
    context, each split into a training part and a held-out tail (Examples)."""
    sft = task.require("sft") if cfg.judge_ratio < 1 else []
    pairs = task.require("pairs") if cfg.judge_ratio > 0 else []
    sft_ex = fitting(sft, [[sft_example(tok, r["prompt"], r["response"])] for r in sft],
                     block_size, "prompt + response", cfg.skip_bad_lines)
    judge_ex = fitting(pairs, [judge_examples(tok, r, cfg.rationale) for r in pairs],
                       block_size, "judge prompt + decision", cfg.skip_bad_lines)
    n_sft = len(sft_ex) - min(256, len(sft_ex) // 10)
    n_judge = len(judge_ex) - n_held_out(len(judge_ex))  # evaluate.py scores the same tail
    # judge training examples stay grouped by pair (both orders), so a batch can hold both
    flat = lambda groups: [e for g in groups for e in g]  # noqa: E731
    return Examples(flat(sft_ex[:n_sft]), judge_ex[:n_judge], flat(sft_ex[n_sft:]),
                    flat(judge_ex[n_judge:]))


# -----------------------------------------------------------------------------
# training

def make_optimizer(model, cfg):
    """AdamW with weight decay on matrices only (nanoGPT's split)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([dict(params=decay, weight_decay=cfg.weight_decay),
                              dict(params=no_decay, weight_decay=0.0)], lr=cfg.lr,
                             betas=(0.9, 0.95))


@torch.no_grad()
def eval_loss(model, examples, device, batch_size=128, decision_weight=None):
    """Mean per-example loss (as in training) over a list of examples; None for none.
    Chunks of at most batch_size examples, and within sample.LOGITS_BUDGET."""
    if not examples:
        return None
    batch_size = rows_per_chunk(max(len(x) for x, _ in examples), model.config.vocab_size,
                                batch_size)
    model.eval()
    chunks = [examples[i:i + batch_size] for i in range(0, len(examples), batch_size)]
    loss = batch_loss(model, [(c, decision_weight) for c in chunks], device).item()
    model.train()
    return loss


def held_out_losses(model, ex, cfg, device, step=None):
    """The held-out SFT and judge losses, as text ("n/a" for a part with no examples). At
    a step of the SFT warm-up the judge has not been trained yet, and the text says so
    (its loss there is large and means nothing)."""
    sft = eval_loss(model, ex.sft_held_out, device)
    judge = eval_loss(model, ex.judge_held_out, device, decision_weight=cfg.decision_weight)
    untrained = step is not None and step <= cfg.sft_warmup * cfg.max_steps
    fmt = lambda x: "n/a" if x is None else f"{x:.4f}"  # noqa: E731 (a NaN prints as nan)
    return (f"held-out sft loss {fmt(sft)}, judge loss {fmt(judge)}"
            + (" (the judge is not trained yet: --sft_warmup's steps are demonstrations "
               "alone)" if untrained else ""))


def train(model, opt, tok, cfg, ex, start, device):
    """Steps start .. max_steps, a held-out evaluation and a checkpoint every
    eval_interval steps and at the end (under torchrun: by rank 0 alone)."""
    ckpt_path = os.path.join(cfg.out_dir, "ckpt.pt")
    master = ddp_rank_world()[0] == 0
    net = ddp_wrap(model, device)  # the model itself in a single process

    def save(step):
        if master:
            save_checkpoint(ckpt_path, model, tok, dict(step=step, flags=dict(cfg),
                                                        stage="jsft"), opt)
    model.train()
    bar = progress(range(start, cfg.max_steps), cfg.max_steps, "jsft", start, not master)
    for step in bar:
        loss = train_step(net, opt, cfg, step, ex.judge_pairs, ex.sft, device).item()
        stop_if_diverged(step + 1, cfg, dict(loss=loss))  # and save_checkpoint checks weights
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr_at(step, cfg):.1e}")
        if cfg.eval_interval and (step + 1) % cfg.eval_interval == 0 and step + 1 < cfg.max_steps:
            if master:
                tqdm.write(f"step {step + 1}: "
                           f"{held_out_losses(model, ex, cfg, device, step + 1)}")
            save(step + 1)
    save(cfg.max_steps)
    return ckpt_path


# -----------------------------------------------------------------------------
# the last lines: what stage 2 relies on, in plain words

REPORT_NEW_TOKENS = 48  # response length of the report's samples (evaluate.py's default)


def verdict(r):
    """The last lines, from policy_report and heldout_judgment: can stage 2 trust this
    judge, and did the policy learn the task? Plain words and what to try."""
    lines = []
    if r.get("decided"):
        agree, by_position, on = r["agreement"], r["by_position"], "the policy's own pairs"
    elif "label_agreement" in r:
        agree, by_position = r["label_agreement"], r["label_by_position"]
        on = "the held-out labelled pairs"
    else:
        agree = None
    if agree is not None:
        seen = f"{agree:.1%} agreement on {on}, decisions by position {by_position:.1%}"
        if near_chance(agree, by_position):
            lines.append(f"verdict: the judge is NEAR CHANCE ({seen}). Self-training on its "
                         "judgments would learn from coin flips, and its confidence filter "
                         "may keep no pair at all. Try more steps (--max_steps), a larger "
                         "model, or check that pairs.jsonl's labels say what you mean.")
        elif agree < TRUSTED or by_position > MOST_BY_POSITION:
            lines.append(f"verdict: the judge is WEAK ({seen}; targets {TRUSTED:.0%} and "
                         f"{MOST_BY_POSITION:.0%}). Self-training keeps only its confident "
                         "judgments; expect a small gain, and watch the oracle score and "
                         "heldout_pref_acc for over-optimisation. More steps help most.")
        else:
            lines.append(f"verdict: the judge is ready for self-training ({seen}).")
    if "label_agreement" in r and near_chance(r["label_agreement"], r["label_by_position"]):
        lines.append(f"verdict: selfjudge.py will refuse this judge: {gate_failure(r)}. "
                     "Train it further (--max_steps), or pass --allow_weak_judge to "
                     "selfjudge.py to see what happens.")
    if r.get("oracle_score") is not None and r["oracle_score"] < 0.25:
        lines.append(f"verdict: the policy has learned little of the task (oracle score "
                     f"{r['oracle_score']:.3f}, fully right {r['fully_right']:.1%}); "
                     "self-training refines a policy, it does not teach one: train longer.")
    return lines


def readiness_prompts(tok, task, block_size, n, skip=False):
    """The first n held-out prompts (test.jsonl, else prompts.jsonl) readiness samples and
    judges, with room for two responses of REPORT_NEW_TOKENS; none without an oracle."""
    if task.oracle is None:
        return []
    return fit_prompts(tok, (task.test or task.prompts or [])[:n], block_size,
                       REPORT_NEW_TOKENS, task_principles(task), "held-out prompts", skip)[0]


def readiness(model, tok, task, prompts, seed, judge=True):
    """The last lines, printed and returned: what stage 2 relies on, a policy below
    the ceiling (policy_report) and a judge that agrees, on its own pairs and on the
    held-out labelled pairs (heldout_judgment); then the verdict."""
    r = policy_report(model, tok, task, prompts, seed, REPORT_NEW_TOKENS, judge)
    if r:
        print(f"policy on {len(prompts)} held-out prompts (temperature 1): oracle score "
              f"{r['oracle_score']:.3f}, fully right {r['fully_right']:.1%}")
    if "agreement" in r:
        print(describe_agreement(r))
    if judge:
        r.update(heldout_judgment(model, tok, task))
        if "label_agreement" in r:
            print(f"judge: {describe_labels(r)}")
    for line in verdict(r):
        print(line)
    return r


# -----------------------------------------------------------------------------
# the run

def load_or_init(cfg, task, device):
    """-> (model, tok, optimizer, step): fresh from --init, or from out_dir on --resume."""
    step, meta = 0, {}
    if cfg.resume:
        model, tok, meta = resume_from(cfg, "jsft", SHAPE, device)
        step = meta["step"]
    else:
        model, tok = init_model(cfg, task, device)
    opt = make_optimizer(model, cfg)
    if cfg.resume and meta.get("optimizer"):
        opt.load_state_dict(meta["optimizer"])
    return model, tok, opt, step


def main(argv=None):
    cfg = parse_flags(defaults, argv, __file__, limits)
    check_out_dir(cfg.out_dir, defaults["out_dir"], data=cfg.data,  # never write over input
                  init=None if cfg.init == "scratch" else cfg.init)
    rank, world, device = ddp_init(cfg.device, cfg.batch_size)  # plain python: rank 0 of 1
    torch.manual_seed(cfg.seed)
    task = load_task(cfg.data, cfg.skip_bad_lines)

    # 1) model, tokenizer, optimizer (fresh or resumed)
    model, tok, opt, step = load_or_init(cfg, task, device)
    print(f"model: {model.num_params() / 1e6:.2f}M parameters, context "
          f"{model.config.block_size}, vocab {model.config.vocab_size}, device {device}")

    # 2) data: SFT examples (loss on responses) and judge examples (loss on decisions)
    ex = build_examples(cfg, task, tok, model.config.block_size)
    print(f"examples: sft {len(ex.sft)} train / {len(ex.sft_held_out)} held out; judge "
          f"{2 * len(ex.judge_pairs)} train / {len(ex.judge_held_out)} held out (each pair in "
          f"both orders); judge_ratio {cfg.judge_ratio}; docs/metrics.md, \"What jsft.py "
          "prints\", says what each number means")
    if not ex.sft and not ex.judge_pairs:
        raise DataError(f"{cfg.data}: nothing to train on")
    # the final report's prompts, checked now: one too long to judge must not cost the run
    prompts = readiness_prompts(tok, task, model.config.block_size, cfg.eval_prompts,
                                cfg.skip_bad_lines)
    # 3) train
    if rank == 0:
        out_dir_ready(cfg.out_dir)
    t0 = time.time()
    ckpt_path = train(model, opt, tok, cfg, ex, step, device)
    ddp_done()  # rank 0 goes on alone
    if rank:
        return {}
    print(f"done in {time.time() - t0:.0f}s: {held_out_losses(model, ex, cfg, device)}; "
          f"saved {ckpt_path}")

    # 4) what stage 2 relies on: a policy below the ceiling and a judge that agrees
    return readiness(model, tok, task, prompts, cfg.seed, judge=cfg.judge_ratio > 0)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
