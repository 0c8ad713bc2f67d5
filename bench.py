"""
Speed, measured: benchmarks that print figures (speed is not asserted by tests; the
machine's speed varies, so compare figures taken side by side).

    python bench.py sample                      # KV-cached sampling against recomputing the
                                                # prefix, and a training step, at GPT-2-small's
                                                # shape (--layers, --batch, --device)
    python bench.py jsft                        # a JSFT step on the task's real batches; takes
    python bench.py jsft --data=data/words      # any jsft.py flag, and saves nothing
"""
import math
import sys
import time

import torch

import jsft
from common import autocast, get_device, parse_flags
from data.task import load_task
from model import GPT, GPTConfig
from sample import generate

defaults = dict(
    layers=12,                # sample: layers of the GPT-2-small-shaped model (random weights)
    batch=1,                  # sample: rows decoded together
    new_tokens=256,           # sample: tokens generated per row
    device="auto",            # auto: cuda, then mps, then cpu
)
limits = dict(layers="[1, inf)", batch="[1, inf)", new_tokens="[8, inf)")


def timer(device):
    """A clock that waits for the GPU's queued work first."""
    def now():
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.time()
    return now


def bench_sample(cfg):
    """Greedy decoding of new_tokens per row with and without the KV cache (the outputs
    must be identical), then forward + backward + AdamW steps on (4, 256) batches."""
    device = get_device(cfg.device)
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=50257, block_size=1024, n_layer=cfg.layers, n_head=12,
                       n_embd=768)
    model, now = GPT(config).to(device).eval(), timer(device)
    print(f"GPT-2-small shape, {cfg.layers} layers: {model.num_params() / 1e6:.1f}M "
          f"parameters, device {device}, {torch.get_num_threads()} threads")
    prompts = [list(range(100 + b, 116 + b)) for b in range(cfg.batch)]  # 16-token prompts
    seconds, outputs = {}, {}
    for cached in (True, False):
        generate(model, prompts, 8, temperature=0, use_cache=cached)  # warm-up
        t0 = now()
        outputs[cached], _, _ = generate(model, prompts, cfg.new_tokens, temperature=0,
                                         use_cache=cached)
        seconds[cached] = now() - t0
    n = sum(len(t) for t in outputs[True])
    print(f"sampling {cfg.new_tokens} new tokens x {cfg.batch} rows: cached "
          f"{n / seconds[True]:8.1f} tok/s, uncached {n / seconds[False]:8.1f} tok/s, "
          f"speed-up {seconds[False] / seconds[True]:.1f}x, greedy outputs identical: "
          f"{outputs[True] == outputs[False]}")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, config.vocab_size, (4, 257), device=device)
    for i in range(4):  # 1 warm-up step, then 3 timed
        if i == 1:
            t0 = now()
        with autocast(device):
            _, loss = model(x[:, :-1], x[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    print(f"training (B=4, T=256, fwd+bwd+AdamW): {3 * 4 * 256 / (now() - t0):.1f} tok/s")


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
    (judge_pairs, _), (sft, _) = ex["judge"], ex["sft"]
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
