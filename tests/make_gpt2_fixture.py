"""One-off generator for the tiny GPT-2 reference fixtures in tests/fixtures/.

Needs `pip install transformers safetensors` by hand (plus `tokenizers`, which
transformers uses); nothing at run time or in CI needs it. The committed
fixture files are what the tests read; this script only documents and
reproduces how they were made.

It builds a small random ``transformers.GPT2LMHeadModel`` (vocab 300, context
64, width 32, 2 layers, 4 heads), re-initialised with a wide normal (std 0.2;
LayerNorm gains 1 + N(0, 0.2)) so that its logits are far from uniform, and
writes:

* ``tiny-gpt2/``: ``config.json``, ``generation_config.json`` and
  ``model.safetensors`` exactly as ``save_pretrained`` writes them (tied
  ``lm_head.weight`` left out), a tiny byte-level BPE ``tokenizer.json``
  (trained here with the ``tokenizers`` library, 300 ids, ``<|endoftext|>`` =
  299 as in GPT-2 where it is the last id), and ``expected.json`` with the
  reference outputs.
* ``tiny-gpt2-bin/``: the same weights as a ``pytorch_model.bin`` (a
  ``torch.save`` of the full state dict, ``lm_head.weight`` included, which is
  how older transformers wrote ``.bin`` files; transformers 5 can only write
  safetensors) plus the same config.json and tokenizer.json.
* ``tiny-gpt2-hub-layout/``: the same weights in the layout of the hub's
  original GPT-2 checkpoints: keys without the ``transformer.`` prefix, no
  ``lm_head.weight``, and the non-parameter buffers ``h.N.attn.bias`` (causal
  mask, float32 [1, 1, n_positions, n_positions]) and ``h.N.attn.masked_bias``
  (scalar -1e4) that a loader must skip.

Every folder is loaded back with ``GPT2LMHeadModel.from_pretrained`` and must
reproduce the logits bit for bit.

Usage: python tests/make_gpt2_fixture.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

SEED = 1249
INIT_STD = 0.2
VOCAB = 300
EOT = "<|endoftext|>"
EOT_ID = VOCAB - 1
N_NEW = 10
PROMPT_TEXT = "hello the world"

# Training text for the tiny tokenizer (written for this fixture).
CORPUS = [
    "the cat sat on the mat and the dog sat on the log",
    "a tiny model reads a tiny text and writes a tiny answer",
    "hello world, hello there, hello again: the world says hello back",
    "judges judge the judging of judgments; a self judge judges itself",
    "numbers like 12, 345 and 6789 appear in the text from time to time",
    "when the sun sets the sky turns red, then purple, then dark blue",
    "She said: \"don't stop\", and they'll keep going until it's done.",
    "tokens, tokens everywhere; not a merge to spare",
]


def train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - 1,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    if tok.get_vocab_size() != VOCAB - 1:
        raise SystemExit(f"tokenizer trained to {tok.get_vocab_size()} ids, wanted {VOCAB - 1}")
    tok.add_special_tokens([EOT])
    assert tok.token_to_id(EOT) == EOT_ID and tok.get_vocab_size() == VOCAB
    return tok


def token_bytes(tok, ids: list[int]) -> bytes:
    """Raw bytes of byte-level BPE tokens (inverse of GPT-2's byte->unicode table)."""
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    to_char = {b: chr(b) for b in keep}
    for n, b in enumerate(b for b in range(256) if b not in to_char):
        to_char[b] = chr(256 + n)
    to_byte = {c: b for b, c in to_char.items()}
    return bytes(to_byte[c] for i in ids for c in tok.id_to_token(i))


def build_model():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(SEED)
    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        bos_token_id=EOT_ID,
        eos_token_id=EOT_ID,
    )
    model = GPT2LMHeadModel(config)
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen) * INIT_STD
            if ".ln_" in name and name.endswith(".weight"):
                p.copy_(1.0 + noise)
            else:
                p.copy_(noise)
    model.tie_weights()
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    model.config._attn_implementation = "eager"
    return model.eval()


def reference_outputs(model, tok) -> dict:
    gen = torch.Generator().manual_seed(SEED + 1)
    input_ids = torch.randint(0, VOCAB, (2, 12), generator=gen)
    with torch.no_grad():
        out = model(input_ids, labels=input_ids)
    logits = out.logits.float()

    prompt = tok.encode(PROMPT_TEXT, add_special_tokens=False).ids
    if len(prompt) != 5:
        raise SystemExit(f"prompt {PROMPT_TEXT!r} -> {prompt}; want 5 tokens")
    prompt_t = torch.tensor([prompt])
    with torch.no_grad():
        full = model.generate(
            prompt_t,
            do_sample=False,
            max_new_tokens=N_NEW,
            pad_token_id=EOT_ID,
            attention_mask=torch.ones_like(prompt_t),
        )[0].tolist()
    new = full[len(prompt):]
    if len(new) != N_NEW or EOT_ID in new:
        raise SystemExit(f"greedy run stopped early or produced EOT: {new}")
    # Same continuation by a plain argmax loop over full forwards (no KV cache);
    # record the smallest top-1/top-2 gap so tests know argmax is not a near tie.
    if token_bytes(tok, prompt).decode("utf-8") != PROMPT_TEXT:
        raise SystemExit("byte table does not round-trip the prompt")
    if token_bytes(tok, new).decode("utf-8", errors="replace") != tok.decode(new):
        raise SystemExit("tokenizers' decode differs from the byte table")
    seq = list(prompt)
    gaps = []
    with torch.no_grad():
        for _ in range(N_NEW):
            last = model(torch.tensor([seq])).logits[0, -1]
            top2 = torch.topk(last, 2).values
            gaps.append(float(top2[0] - top2[1]))
            seq.append(int(last.argmax()))
    if seq != full:
        raise SystemExit(f"generate {full} != argmax loop {seq}")

    return {
        "about": (
            "Reference outputs of transformers.GPT2LMHeadModel (eager attention, eval mode, float32, CPU) "
            "for the weights in tiny-gpt2/, tiny-gpt2-bin/ and tiny-gpt2-hub-layout/."
        ),
        "input_ids": input_ids.tolist(),
        "logits_shape": list(logits.shape),
        "logits": [[[round(float(v), 6) for v in row] for row in seq_] for seq_ in logits],
        "logits_abs_max": round(float(logits.abs().max()), 6),
        "logits_std": round(float(logits.std()), 6),
        "loss": round(float(out.loss), 6),
        "loss_note": "mean cross-entropy of logits[:, :-1] against input_ids[:, 1:] (labels=input_ids)",
        "suggested_atol": 1e-4,
        "greedy": {
            "prompt_text": PROMPT_TEXT,
            "prompt_ids": prompt,
            "max_new_tokens": N_NEW,
            "output_ids": full,
            "new_ids": new,
            "new_bytes_hex": token_bytes(tok, new).hex(),
            "new_text": tok.decode(new),
            "new_text_note": "lossy UTF-8 decode of new_bytes_hex (invalid bytes -> U+FFFD)",
            "min_top1_top2_gap": round(min(gaps), 6),
            "how": "model.generate(do_sample=False, max_new_tokens=10, pad_token_id=299); equals an argmax loop",
        },
        "tokenizer": {
            "text": PROMPT_TEXT,
            "ids": prompt,
            "eot_id": EOT_ID,
            "vocab_size": VOCAB,
        },
    }


def main() -> None:
    import transformers
    from safetensors.torch import save_file
    from transformers import GPT2LMHeadModel

    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=here / "fixtures")
    args = ap.parse_args()

    tok = train_tokenizer()
    model = build_model()
    expected = reference_outputs(model, tok)
    expected["made_with"] = {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0]}

    st_dir = args.out / "tiny-gpt2"
    bin_dir = args.out / "tiny-gpt2-bin"
    hub_dir = args.out / "tiny-gpt2-hub-layout"
    for d in (st_dir, bin_dir, hub_dir):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)

    # 1) safetensors, exactly as save_pretrained writes it.
    model.save_pretrained(st_dir)
    tok.save(str(st_dir / "tokenizer.json"))
    (st_dir / "expected.json").write_text(json.dumps(expected, ensure_ascii=False) + "\n", encoding="utf-8")

    # 2) pytorch_model.bin: full state dict incl. the tied lm_head.weight.
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(sd, bin_dir / "pytorch_model.bin")
    for name in ("config.json", "generation_config.json", "tokenizer.json"):
        shutil.copy(st_dir / name, bin_dir / name)

    # 3) hub layout: GPT2Model keys (no prefix), no lm_head, plus the old mask buffers.
    cfg = model.config
    hub = {k[len("transformer."):]: v for k, v in sd.items() if k.startswith("transformer.")}
    mask = torch.tril(torch.ones(cfg.n_positions, cfg.n_positions)).view(1, 1, cfg.n_positions, cfg.n_positions)
    for i in range(cfg.n_layer):
        hub[f"h.{i}.attn.bias"] = mask.clone()
        hub[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(hub, str(hub_dir / "model.safetensors"), metadata={"format": "pt"})
    for name in ("config.json", "generation_config.json", "tokenizer.json"):
        shutil.copy(st_dir / name, hub_dir / name)

    # Load every folder back with transformers and require identical logits.
    ids = torch.tensor(expected["input_ids"])
    with torch.no_grad():
        want = model(ids).logits
    for d in (st_dir, bin_dir, hub_dir):
        m = GPT2LMHeadModel.from_pretrained(d, attn_implementation="eager").eval()
        with torch.no_grad():
            got = m(ids).logits
        diff = float((got - want).abs().max())
        if diff != 0.0:
            raise SystemExit(f"{d.name}: reloaded logits differ by {diff}")
        print(f"{d.name}: reload ok")

    from safetensors import safe_open

    with safe_open(str(st_dir / "model.safetensors"), "pt") as f:
        print("model.safetensors keys:", list(f.keys()), f.metadata())
    print("config.json:", json.loads((st_dir / "config.json").read_text()))
    print("greedy:", expected["greedy"])
    print("loss", expected["loss"], "logits std", expected["logits_std"], "absmax", expected["logits_abs_max"])
    total = 0
    for d in (st_dir, bin_dir, hub_dir):
        for p in sorted(d.iterdir()):
            total += p.stat().st_size
            print(f"{p.relative_to(args.out)}: {p.stat().st_size} bytes")
    print("total", total)


if __name__ == "__main__":
    main()
