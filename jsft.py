"""
Stage 1: Judge-augmented SFT. One model learns to follow instructions (sft.jsonl) and to
judge pairs of responses (pairs.jsonl), the judgment being one more instruction whose
answer is a single token, A or B. Each pair is shown in both orders.

    python jsft.py                                   # default task, from scratch, ~3.5 min CPU
    python jsft.py --judge_ratio=0                   # plain SFT, for comparison
    python jsft.py --rationale=False                 # the judge answers with the decision only
    python jsft.py --init=path/to/gpt2 --data=my_task --max_steps=2000
    python jsft.py --bench                           # seconds per step, tokens per step

Writes out/jsft/ckpt.pt; at the end prints the judge's agreement with the oracle on the
policy's own pairs and the policy's oracle score: the two numbers stage 2 relies on.
"""
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from data.task import (DataError, check_lengths, fully_right_rate, load_task, mean_score,
                       train_tokenizer)
from judge import (DECISIONS, decision_ids, describe_agreement, judge_query, n_held_out,
                   onpolicy_agreement, task_principles)
from model import (GPT, GPTConfig, IGNORE_INDEX, add_chat_tokens, autocast, check_vocab,
                   encode_query, encode_response, get_device, load_checkpoint, load_tokenizer,
                   pad_right, parse_flags, save_checkpoint)
from sample import sample_responses

# -----------------------------------------------------------------------------
# settings (override with --name=value)
defaults = dict(
    data="data/sort",        # task folder (sft.jsonl, pairs.jsonl, ...)
    out_dir="out/jsft",      # where ckpt.pt goes
    init="scratch",          # scratch | a checkpoint | a GPT-2 folder (HF layout)
    judge_ratio=0.7,         # fraction of each batch that is judge examples (0 = plain SFT)
    sft_warmup=0.0,          # share of max_steps trained on sft.jsonl alone before the mix
    rationale=True,          # judge targets: decision + a short rationale (False: decision only)
    decision_weight=0.5,     # with a rationale: the decision's share of a judge example's loss
    pair_orders=True,        # both orders of a pair in the same batch (False: drawn apart)
    n_layer=4,               # model size, for --init=scratch
    n_head=4,
    n_embd=64,               # 0.22M parameters: a 2000-step judge in ~3 min on 2 CPU cores
    block_size=128,          # context length, for --init=scratch
    pos="rope",              # positions, for --init=scratch: rope (rotary) | learned (GPT-2)
    dropout=0.0,
    vocab_size=512,          # for a tokenizer trained here when the task brings none
    max_steps=2000,          # optimizer steps
    batch_size=64,           # examples per micro-batch
    grad_accum=1,            # micro-batches per optimizer step
    lr=2e-3,                 # peak learning rate (AdamW)
    min_lr=1e-4,             # cosine decays to this
    warmup_steps=100,        # linear warmup
    weight_decay=0.1,
    grad_clip=1.0,
    eval_interval=300,       # held-out loss every this many steps (0 = only at the end)
    eval_prompts=200,        # test prompts for the final oracle report
    seed=1337,
    device="auto",           # auto: cuda, then mps, then cpu
    resume=False,            # continue from out_dir/ckpt.pt
    skip_bad_lines=False,    # skip malformed data lines (counted) instead of stopping
    bench=False,             # time training steps on real batches, print figures, save nothing
)


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
    a_id, b_id = decision_ids(tok)
    c, p = pair["prompt"], pair.get("principle")
    out = []
    for first, second, decision, rc in ((pair["chosen"], pair["rejected"], a_id, True),
                                        (pair["rejected"], pair["chosen"], b_id, False)):
        q = judge_query(tok, c, first, second, p)
        target = [decision]
        if rationale and "rationale_chosen" in pair and "rationale_rejected" in pair:
            ra, rb = ((pair["rationale_chosen"], pair["rationale_rejected"]) if rc else
                      (pair["rationale_rejected"], pair["rationale_chosen"]))
            target += encode_response(tok, f" {DECISIONS[0]} {ra} {DECISIONS[1]} {rb}")
        out.append((q + target, [IGNORE_INDEX] * len(q) + target))
    return out


def example_loss(logits, targets, reduction="mean", decision_weight=None):
    """Cross-entropy averaged within each example, then over examples: every example
    counts once, whatever its length. (A plain mean over tokens would give a one-token
    judge decision a tenth of the weight of a ten-token response, and --judge_ratio would
    not mean what it says.) decision_weight: for judge examples, the share of an example's
    loss on its first target token, the decision, the rest averaged over the rationale
    after it (an example with no rationale is all decision); None: every target token
    weighs the same. logits (B, T, V), targets (B, T) -> scalar; with reduction="sum",
    (sum over examples, number of examples with a target)."""
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


def batch_loss(model, parts, device, decision_weights=None):
    """example_loss over all the examples of a batch, with one forward pass per part
    (judge examples, SFT examples). Each part is padded to its own longest example, so a
    ~16-token SFT example is not padded to a ~31-47-token judge example: the same loss
    for less work (right padding never changes the real positions' logits).
    decision_weights: example_loss's decision_weight for each part (None: for none)."""
    total, count = 0.0, 0
    for examples, w in zip(parts, decision_weights or [None] * len(parts)):
        if examples:
            idx, tgt = collate(examples, device)
            with autocast(device):
                logits, _ = model(idx)
            s, n = example_loss(logits, tgt, reduction="sum", decision_weight=w)
            total, count = total + s, count + n
    return total / max(count, 1)


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
    the last micro-batch's loss."""
    for group in opt.param_groups:
        group["lr"] = lr_at(step, cfg)
    for micro in range(cfg.grad_accum):
        loss = batch_loss(model, draw_batch(cfg, step, micro, judge_pairs, sft), device,
                          (cfg.decision_weight, None))  # draw_batch: (judge, sft)
        (loss / cfg.grad_accum).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


def draw_batch(cfg, step, micro, judge_pairs, sft):
    """A batch: (judge examples, cfg.judge_ratio of it; SFT examples), as a function
    of (seed, step, micro) alone, so --resume continues the same run. judge_pairs: one
    list of two examples (both orders) per pair. With cfg.pair_orders both orders of each
    drawn pair sit in the batch: the gradient sees the same two responses answered "A"
    one way round and "B" the other, so what it rewards is telling the responses apart,
    not a position (README, "Ablations", measures the difference)."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 97 + micro)

    def pick(xs, n):  # randint refuses an empty range even for zero draws
        return [xs[i] for i in torch.randint(len(xs), (n,), generator=g)] if n else []
    ratio = 0.0 if step < cfg.sft_warmup * cfg.max_steps else cfg.judge_ratio  # --sft_warmup
    n_judge = round(cfg.batch_size * ratio) if sft else cfg.batch_size
    n_pairs = n_judge // 2 if judge_pairs else 0  # judge examples come two at a time
    if cfg.pair_orders:
        judge = [e for pair in pick(judge_pairs, n_pairs) for e in pair]
    else:
        judge = [pair[i % 2] for i, pair in enumerate(pick(judge_pairs, 2 * n_pairs))]
    return judge, pick(sft, cfg.batch_size - len(judge))


# -----------------------------------------------------------------------------
# model and tokenizer from --init

def init_model(cfg, task, device):
    """-> (model, tok, start_meta). scratch: a new GPT (and a tokenizer trained on the task
    if it brings none); a file: our checkpoint; a folder: GPT-2 weights."""
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
    return model.to(device), tok


def build_examples(cfg, task, tok, block_size):
    """Tokenized SFT and judge examples, each split into train and held-out parts."""
    sft = task.require("sft") if cfg.judge_ratio < 1 else []
    pairs = task.require("pairs") if cfg.judge_ratio > 0 else []
    # tokenize each record once; check_lengths then reads the ids (and names file:line)
    sft = [dict(r, _ex=[sft_example(tok, r["prompt"], r["response"])]) for r in sft]
    pairs = [dict(r, _ex=judge_examples(tok, r, cfg.rationale)) for r in pairs]
    longest = lambda r: max((x for x, _ in r["_ex"]), key=len)  # noqa: E731
    sft = check_lengths(sft, longest, block_size, "prompt + response", cfg.skip_bad_lines)
    pairs = check_lengths(pairs, longest, block_size, "judge prompt + decision",
                          cfg.skip_bad_lines)
    n_val_sft = min(256, len(sft) // 10)
    n_val_pairs = n_held_out(len(pairs))  # judge.py scores the same held-out pairs
    sft_ex = [r["_ex"][0] for r in sft]
    judge_ex = [r["_ex"] for r in pairs]
    split = lambda xs, n: (xs[:len(xs) - n], xs[len(xs) - n:])  # noqa: E731
    sft_train, sft_val = split(sft_ex, n_val_sft)
    j_train, j_val = split(judge_ex, n_val_pairs)
    flat = lambda xs: [e for pair in xs for e in pair]  # noqa: E731
    # judge training examples stay grouped by pair (both orders), so a batch can hold both
    return dict(sft=(sft_train, sft_val), judge=(j_train, flat(j_val)))


@torch.no_grad()
def eval_loss(model, examples, device, batch_size=128, decision_weight=None):
    """Mean per-example loss (as in training) over a list of examples."""
    if not examples:
        return float("nan")
    model.eval()
    chunks = [examples[i:i + batch_size] for i in range(0, len(examples), batch_size)]
    loss = batch_loss(model, chunks, device, [decision_weight] * len(chunks)).item()
    model.train()
    return loss


def bench(model, opt, cfg, judge_pairs, sft, device, n_steps=20):
    """Times n_steps training steps on real batches (after 3 untimed ones) and prints what
    a step costs: seconds, tokens fed (padding included) and real tokens, and the time
    max_steps would take. Trains the model it is given; saves nothing."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(3 + n_steps):
        if i == 3:
            sync()
            t0 = time.time()
        train_step(model, opt, cfg, i, judge_pairs, sft, device)
    sync()
    dt = (time.time() - t0) / n_steps
    fed = real = 0  # the same timed steps' batches, drawn again (a batch is a function of
    for i in range(3, 3 + n_steps):  # the step), counted outside the timing
        for micro in range(cfg.grad_accum):
            for part in draw_batch(cfg, i, micro, judge_pairs, sft):
                lens = [len(x) - 1 for x, _ in part]
                fed, real = fed + max(lens, default=0) * len(lens), real + sum(lens)
    out = dict(step_s=dt, tokens_per_step=fed / n_steps, real_tokens_per_step=real / n_steps)
    print(f"bench: {dt * 1e3:.0f} ms per step ({n_steps} steps of {cfg.batch_size} x "
          f"{cfg.grad_accum} examples, {torch.get_num_threads()} threads, device {device}); "
          f"{fed / n_steps:.0f} tokens fed per step, {real / n_steps:.0f} of them real "
          f"({1 - real / max(fed, 1):.0%} padding); {fed / n_steps / dt:.0f} tokens/s; "
          f"--max_steps={cfg.max_steps} would train for about {dt * cfg.max_steps:.0f}s")
    return out


def policy_report(model, tok, task, cfg, device):
    """The oracle's view of the trained model: its samples' mean score and fully-right
    rate at temperature 1, and the judge's agreement with the oracle on its own pairs."""
    oracle = task.get_oracle()
    tests = task.test or task.prompts
    if oracle is None or not tests:
        return {}
    prompts = [x["prompt"] for x in tests][:cfg.eval_prompts]
    model.eval()
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    samples = [s[0]["text"] for s in sample_responses(model, tok, prompts, 1, generator=g)]
    out = dict(oracle_score=mean_score(oracle, prompts, samples),
               fully_right=fully_right_rate(oracle, prompts, samples))
    if cfg.judge_ratio > 0:
        out.update(onpolicy_agreement(model, tok, prompts, oracle, g,
                                      principle=task_principles(task)[0]))
    return out


def main(argv=None):
    cfg = parse_flags(defaults, argv, __doc__)
    if not 0 <= cfg.decision_weight <= 1:
        raise ValueError(f"--decision_weight={cfg.decision_weight}: it is a share of a judge "
                         "example's loss, from 0 to 1")
    device = get_device(cfg.device)
    torch.manual_seed(cfg.seed)
    task = load_task(cfg.data, cfg.skip_bad_lines)
    ckpt_path = os.path.join(cfg.out_dir, "ckpt.pt")

    # 1) model, tokenizer, optimizer (fresh or resumed)
    step, meta = 0, {}
    if cfg.resume:
        model, tok, meta = load_checkpoint(ckpt_path, device)
        step = meta["step"]
        print(f"resuming from {ckpt_path} at step {step}")
    else:
        model, tok = init_model(cfg, task, device)
    print(f"model: {model.num_params() / 1e6:.2f}M parameters, context "
          f"{model.config.block_size}, vocab {model.config.vocab_size}, device {device}")
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=cfg.weight_decay),
                             dict(params=no_decay, weight_decay=0.0)], lr=cfg.lr,
                            betas=(0.9, 0.95))
    if cfg.resume and meta.get("optimizer"):
        opt.load_state_dict(meta["optimizer"])

    # 2) data: SFT examples (loss on responses) and judge examples (loss on decisions)
    ex = build_examples(cfg, task, tok, model.config.block_size)
    (sft_train, sft_val), (j_train, j_val) = ex["sft"], ex["judge"]
    print(f"examples: sft {len(sft_train)} train / {len(sft_val)} held out; judge "
          f"{2 * len(j_train)} train / {len(j_val)} held out (each pair in both orders); "
          f"judge_ratio {cfg.judge_ratio}")
    if not sft_train and not j_train:
        raise DataError(f"{cfg.data}: nothing to train on")
    if cfg.bench:
        return bench(model, opt, cfg, j_train, sft_train, device)

    # 3) train
    def evaluate():  # a part with no examples (e.g. --judge_ratio=0) reads "n/a"
        return {k: f"{v:.4f}" if v == v else "n/a" for k, v in (
            ("sft_loss", eval_loss(model, sft_val, device)),
            ("judge_loss", eval_loss(model, j_val, device,
                                     decision_weight=cfg.decision_weight)))}

    def save(step):
        save_checkpoint(ckpt_path, model, tok, dict(step=step, flags=dict(cfg), stage="jsft"),
                        opt)

    model.train()
    t0 = time.time()
    bar = tqdm(range(step, cfg.max_steps), initial=step, total=cfg.max_steps, desc="jsft",
               dynamic_ncols=True, disable=None)
    for step in bar:
        loss = train_step(model, opt, cfg, step, j_train, sft_train, device)
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr_at(step, cfg):.1e}")
        if cfg.eval_interval and (step + 1) % cfg.eval_interval == 0 and step + 1 < cfg.max_steps:
            e = evaluate()
            tqdm.write(f"step {step + 1}: held-out sft loss {e['sft_loss']}, "
                       f"judge loss {e['judge_loss']}")
            save(step + 1)
    step = cfg.max_steps
    save(step)
    e = evaluate()
    print(f"done in {time.time() - t0:.0f}s: held-out sft loss {e['sft_loss']}, judge "
          f"loss {e['judge_loss']}; saved {ckpt_path}")

    # 4) what stage 2 relies on: a policy below the ceiling and a judge that agrees
    r = policy_report(model, tok, task, cfg, device)
    if r:
        print(f"policy on {min(cfg.eval_prompts, len(task.test or task.prompts))} held-out "
              f"prompts (temperature 1): oracle score {r['oracle_score']:.3f}, fully right "
              f"{r['fully_right']:.1%}")
    if "agreement" in r:
        print(describe_agreement(r))
    return r


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
