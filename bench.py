"""
Speed, measured: benchmarks that print figures (speed is not asserted by tests; the
machine's speed varies, so compare figures taken side by side).

    python bench.py sample                      # KV-cached sampling against recomputing the
                                                # prefix, and a training step, at GPT-2-small's
                                                # shape (--layers, --batch, --device)
    python bench.py sample --nanogpt=../nanoGPT # ... beside the tools a user would otherwise
                                                # pick, where installed: Hugging Face's
                                                # GPT-2 (pip install transformers) and
                                                # nanoGPT's GPT (a checkout's model.py)
    python bench.py jsft                        # a JSFT step on the task's real batches; takes
    python bench.py jsft --data=data/words      # any jsft.py flag, and saves nothing
"""
import importlib.util
import math
import os
import sys
import time

import torch

import jsft
from common import get_device, parse_flags
from data.task import load_task
from model import GPT, GPTConfig, autocast
from sample import generate

defaults = dict(
    layers=12,                # sample: layers of the GPT-2-small-shaped model (random weights)
    batch=1,                  # sample: rows decoded together
    new_tokens=256,           # sample: tokens generated per row
    device="auto",            # auto: cuda, then mps, then cpu
    nanogpt="",               # sample: a nanoGPT checkout, to time its GPT beside ours
)
limits = dict(layers="[1, inf)", batch="[1, inf)", new_tokens="[8, inf)")


def timer(device):
    """A clock that waits for the GPU's queued work first."""
    def now():
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.time()
    return now


def train_speed(model, loss_of, vocab, device, now, steps=3):
    """Tokens per second of forward + backward + AdamW on (4, 256) batches, after one
    untimed step. loss_of(model, x, y) -> the mean next-token loss."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    xy = torch.randint(0, vocab, (4, 257), device=device)
    x, y = xy[:, :-1].contiguous(), xy[:, 1:].contiguous()
    for i in range(steps + 1):
        if i == 1:
            t0 = now()
        with autocast(device):
            loss = loss_of(model, x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return steps * 4 * 256 / (now() - t0)


def decode_speed(decode, prompts, new_tokens, now):
    """(tokens per second, output) of decode(prompts, n) -> one token list per row, timed
    after an 8-token warm-up."""
    decode(prompts, 8)
    t0 = now()
    out = decode(prompts, new_tokens)
    return sum(len(t) for t in out) / (now() - t0), out


def peers(cfg, device):
    """[(name, model, loss_of, decode)] for the tools a user would otherwise pick, at the
    same shape and random weights, where installed (never a dependency of the project):
    Hugging Face transformers' GPT-2 (cached greedy generate) and nanoGPT's GPT from the
    checkout --nanogpt names (its generate recomputes the prefix; top_k=1 is greedy)."""
    out, shape = [], dict(n_layer=cfg.layers, n_head=12, n_embd=768)
    if importlib.util.find_spec("transformers") is None:
        print("Hugging Face transformers: not installed, not compared (pip install transformers)")
    else:
        from transformers import GPT2Config, GPT2LMHeadModel
        hf = GPT2LMHeadModel(GPT2Config(**shape)).to(device).eval()
        ce = torch.nn.functional.cross_entropy
        out.append((f"transformers {sys.modules['transformers'].__version__} GPT-2", hf,
                    lambda m, x, y: ce(m(input_ids=x).logits.flatten(0, 1), y.flatten()),
                    lambda p, n: hf.generate(torch.tensor(p, device=device), do_sample=False,
                                             max_new_tokens=n, min_new_tokens=n,
                                             pad_token_id=0)[:, len(p[0]):].tolist()))
    if cfg.nanogpt:
        path = os.path.join(cfg.nanogpt, "model.py")
        if not os.path.isfile(path):
            raise OSError(f"--nanogpt={cfg.nanogpt}: no model.py there; give a nanoGPT "
                          "checkout (git clone https://github.com/karpathy/nanoGPT)")
        spec = importlib.util.spec_from_file_location("nanogpt_model", path)
        ng = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(ng)
        nano = ng.GPT(ng.GPTConfig(block_size=1024, vocab_size=50257, dropout=0.0, bias=True,
                                   **shape)).to(device).eval()
        out.append(("nanoGPT GPT", nano, lambda m, x, y: m(x, y)[1],
                    lambda p, n: nano.generate(torch.tensor(p, device=device), n,
                                               top_k=1)[:, len(p[0]):].tolist()))
    return out


def bench_sample(cfg):
    """Greedy decoding of new_tokens per row with and without the KV cache (the outputs
    must be identical), then forward + backward + AdamW steps on (4, 256) batches; the same
    for the peers that are installed, in the same process, so the figures compare."""
    device = get_device(cfg.device)
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=50257, block_size=1024, n_layer=cfg.layers, n_head=12,
                       n_embd=768)
    model, now = GPT(config).to(device).eval(), timer(device)
    print(f"GPT-2-small shape, {cfg.layers} layers: {model.num_params() / 1e6:.1f}M "
          f"parameters, device {device}, {torch.get_num_threads()} threads")
    prompts = [list(range(100 + b, 116 + b)) for b in range(cfg.batch)]  # 16-token prompts
    rows = f"{cfg.new_tokens} new tokens x {cfg.batch} rows"
    speed = {}
    for cached in (True, False):
        decode = lambda p, n: generate(model, p, n, temperature=0, use_cache=cached)[0]  # noqa
        speed[cached] = decode_speed(decode, prompts, cfg.new_tokens, now)
    print(f"ours, sampling {rows}: cached {speed[True][0]:8.1f} tok/s, uncached "
          f"{speed[False][0]:8.1f} tok/s, speed-up {speed[True][0] / speed[False][0]:.1f}x, "
          f"greedy outputs identical: {speed[True][1] == speed[False][1]}")
    tps = train_speed(model, lambda m, x, y: m(x, y)[1], config.vocab_size, device, now)
    print(f"ours, training (B=4, T=256, fwd+bwd+AdamW): {tps:.1f} tok/s")
    for name, peer, loss_of, decode in peers(cfg, device):
        sampled, _ = decode_speed(decode, prompts, cfg.new_tokens, now)
        peer_tps = train_speed(peer, loss_of, config.vocab_size, device, now)
        print(f"{name}, sampling {rows}: {sampled:8.1f} tok/s; training: {peer_tps:.1f} tok/s")
        print(f"  ours / {name}: sampling {speed[True][0] / sampled:.2f}x, training "
              f"{tps / peer_tps:.2f}x (above 1: ours is faster)")


def bench_jsft(argv, n_steps=20):
    """Times n_steps JSFT training steps on the task's real batches (after 3 untimed ones),
    with jsft.py's flags, and prints what a step costs: seconds, tokens fed (padding
    included) and real tokens, and the time max_steps would take. The steps are the mix's,
    after the SFT warm-up, which is cheaper (demonstrations only). Saves nothing."""
    cfg = parse_flags(jsft.defaults, argv, jsft.__file__, jsft.limits)
    device = get_device(cfg.device)
    torch.manual_seed(cfg.seed)
    task = load_task(cfg.data, cfg.skip_bad_lines)
    model, tok = jsft.init_model(cfg, task, device)
    ex = jsft.build_examples(cfg, task, tok, model.config.block_size)
    opt, now = jsft.make_optimizer(model, cfg), timer(device)
    judge_pairs, sft = ex.judge_pairs, ex.sft
    first = math.ceil(cfg.sft_warmup * cfg.max_steps)
    for i in range(first, first + 3 + n_steps):  # 3 untimed steps, then n_steps timed
        if i == first + 3:
            t0 = now()
        jsft.train_step(model, opt, cfg, i, judge_pairs, sft, device)
    dt = (now() - t0) / n_steps
    fed = real = 0  # the same timed steps' batches, drawn again (a batch is a function of
    for i in range(first + 3, first + 3 + n_steps):  # the step), counted outside the timing
        for micro in range(cfg.grad_accum):
            for part, _ in jsft.draw_batch(cfg, i, micro, judge_pairs, sft):
                lens = [len(x) - 1 for x, _ in part]
                fed, real = fed + max(lens, default=0) * len(lens), real + sum(lens)
    print(f"jsft: {dt * 1e3:.0f} ms per step ({n_steps} steps of {cfg.batch_size} x "
          f"{cfg.grad_accum} examples, {torch.get_num_threads()} threads, device {device}); "
          f"{fed / n_steps:.0f} tokens fed per step, {real / n_steps:.0f} of them real "
          f"({1 - real / max(fed, 1):.0%} padding); {fed / n_steps / dt:.0f} tokens/s; "
          f"--max_steps={cfg.max_steps} would train for about {dt * cfg.max_steps:.0f}s "
          f"(less: the first {first} steps are the cheaper SFT warm-up)")
    return dict(step_s=dt, tokens_per_step=fed / n_steps, real_tokens_per_step=real / n_steps)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    what = argv.pop(0) if argv and not argv[0].startswith("-") else ""
    if what == "jsft":
        return bench_jsft(argv)
    if what == "sample":
        return bench_sample(parse_flags(defaults, argv, __file__, limits))
    sys.exit("usage: python bench.py sample [--layers=12 --batch=1 --new_tokens=256] | "
             "python bench.py jsft [jsft.py's flags]")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
