"""The model: KV cache exactness, LoRA, checkpoints, log-probs, flags, GPT-2 loading.

    python -m pytest tests/test_model.py -q
"""
import json
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import make_tiny
from common import load_checkpoint, save_checkpoint
from model import GPT, IGNORE_INDEX, rotary, rotary_angles
from sample import KVCache, sequence_logprobs

FIX = os.path.join(os.path.dirname(__file__), "fixtures")


PROMPTS = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10]]  # a ragged batch
STEPS = [[11, 12, 13], [14, 15, 16], [17, 18, 19]]  # the tokens each row is fed next


def prefill(model, prompts, cache):
    """Right-padded prompts through the cache, each row's real length given."""
    idx = torch.zeros(len(prompts), max(len(p) for p in prompts), dtype=torch.long)
    for b, p in enumerate(prompts):
        idx[b, :len(p)] = torch.tensor(p)
    return model(idx, cache=cache, lengths=torch.tensor([len(p) for p in prompts]))[0]


def last_logits(model, seq):
    """The uncached reference: a full forward pass of one sequence, its last logits."""
    return model(torch.tensor([seq]))[0][0, -1]


@pytest.mark.exercise("cached_attention")
@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_kv_cache_prefill_of_a_ragged_batch(pos):
    """Each row's logits at its last real token equal a full forward pass of that row, and
    the cache counts each row's real tokens, not the padded length."""
    tiny = make_tiny(pos=pos)
    cache = KVCache(tiny.config, len(PROMPTS), 16, "cpu", torch.float32)
    logits = prefill(tiny, PROMPTS, cache)
    assert cache.lengths.tolist() == [len(p) for p in PROMPTS], (
        "the prefill counts each row's real tokens, not the padded length")
    for b, p in enumerate(PROMPTS):
        torch.testing.assert_close(logits[b, len(p) - 1], last_logits(tiny, p), atol=1e-5,
                                   rtol=0, msg=lambda m: (
                                       f"cached attention, prefill row {b}: each query sees "
                                       f"the keys at positions up to its own (a mask from "
                                       f"pos), as a forward pass of the row alone: {m}"))


@pytest.mark.exercise("cached_attention")
@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_kv_cache_decode_after_a_ragged_prefill(pos):
    """Decoding token by token after a ragged prefill: every step's logits equal a full
    forward pass of that row's sequence (with rotary positions too: each row's keys are
    rotated to its own positions). Fails if the prefill counts the padding as filled."""
    tiny = make_tiny(pos=pos)
    cache = KVCache(tiny.config, len(PROMPTS), 16, "cpu", torch.float32)
    prefill(tiny, PROMPTS, cache)
    seqs = [list(p) for p in PROMPTS]
    for t in range(3):
        logits, _ = tiny(torch.tensor([[row[t]] for row in STEPS]), cache=cache)
        for b, row in enumerate(STEPS):
            seqs[b].append(row[t])
            torch.testing.assert_close(logits[b, 0], last_logits(tiny, seqs[b]), atol=1e-5,
                                       rtol=0, msg=lambda m: (
                                           f"cached attention, decode step {t}, row {b}: a "
                                           f"one-token query attends to every key up to its "
                                           f"position, never the padding past a row's end "
                                           f"(is_causal would show it key 0 only): {m}"))


@pytest.mark.exercise("cached_attention")
def test_kv_cache_a_finished_row_stays_put_and_the_rest_stay_exact():
    """The sampler keeps finished rows in the batch (shapes never change) and feeds them
    with lengths 0: such a row writes in place and does not advance, and the other rows'
    logits still equal a full forward pass of their own sequences."""
    tiny = make_tiny(pos="rope")
    cache = KVCache(tiny.config, len(PROMPTS), 16, "cpu", torch.float32)
    prefill(tiny, PROMPTS, cache)
    seqs = [list(p) for p in PROMPTS]
    for t in (20, 21, 22):
        logits, _ = tiny(torch.tensor([[t]] * 3), cache=cache, lengths=torch.tensor([1, 0, 1]))
        for b in (0, 2):
            seqs[b].append(t)
            torch.testing.assert_close(logits[b, 0], last_logits(tiny, seqs[b]), atol=1e-5,
                                       rtol=0, msg=lambda m: (
                                           f"cached attention: row {b} stays exact while "
                                           f"row 1 is finished (lengths 0): {m}"))
    assert cache.lengths.tolist() == [8, 2, 6], (
        "a finished row (lengths 0) writes in place and never advances in the cache")


@pytest.mark.exercise("cached_attention")
def test_kv_cache_attention_reads_the_whole_cache_every_step(monkeypatch):
    """Attention's key length is the cache's, the same at the prefill and at every decode
    step, so a GPU kernel that plans per shape plans once per generation (issue 27: a key
    length growing by one per token cost cuDNN a new plan every step)."""
    seen = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append((q.size(-2), k.size(-2)))
        return sdpa(q, k, v, **kw)
    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    tiny = make_tiny()
    cache = KVCache(tiny.config, len(PROMPTS), 16, "cpu", torch.float32)
    prefill(tiny, PROMPTS, cache)
    for t in (20, 21, 22):
        tiny(torch.tensor([[t]] * 3), cache=cache)
    keys = {k for _, k in seen}
    assert len(seen) == 4 * tiny.config.n_layer and any(q == 1 for q, _ in seen), (
        "cached attention calls scaled_dot_product_attention once per layer and chunk")
    assert keys == {16}, (
        f"cached attention: one key length per generation (the cache's), saw {sorted(keys)}")


def test_rotary_scores_depend_only_on_relative_position():
    """RoPE's defining property: shifting every position by the same amount leaves each
    query-key product unchanged, while the products at different distances differ."""
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8)
    pos = torch.tensor([[0, 1, 2, 3, 4], [2, 3, 4, 9, 10]])
    turn = lambda x, p: rotary(x, rotary_angles(p, 8))  # noqa: E731
    scores = lambda p: turn(q, p) @ turn(k, p).transpose(-1, -2)  # noqa: E731
    torch.testing.assert_close(scores(pos + 17), scores(pos), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(turn(q, torch.zeros_like(pos)), q)  # position 0: no turn
    assert not torch.allclose(scores(pos * 2), scores(pos), atol=1e-3)


def test_position_kinds_have_the_right_weights_and_gelu_kinds_compute_theirs():
    x = torch.randn(2, 3, 32)
    for gelu, approximate in (("tanh", "tanh"), ("exact", "none")):
        mlp = make_tiny(gelu=gelu).transformer.h[0].mlp
        want = mlp.c_proj(F.gelu(mlp.c_fc(x), approximate=approximate))
        torch.testing.assert_close(mlp(x), want)
    assert "transformer.wpe.weight" in make_tiny().state_dict()
    assert "transformer.wpe.weight" not in make_tiny(pos="rope").state_dict()
    with pytest.raises(ValueError, match="'tanh' .* or 'exact'"):
        make_tiny(gelu="erf")
    with pytest.raises(ValueError, match="'learned' .* or 'rope'"):
        make_tiny(pos="alibi")


def test_loss_ignores_ignore_index_and_forward_returns_all_positions(tiny):
    idx = torch.tensor([[1, 2, 3, 4]])
    logits, _ = tiny(idx)
    assert logits.shape == (1, 4, tiny.config.vocab_size) and logits.dtype == torch.float32
    targets = torch.tensor([[IGNORE_INDEX, 3, IGNORE_INDEX, 5]])
    _, loss = tiny(idx, targets)
    manual = -(torch.log_softmax(logits[0, 1], -1)[3] + torch.log_softmax(logits[0, 3], -1)[5]) / 2
    torch.testing.assert_close(loss, manual)


def test_too_long_input_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match="block_size"):
        tiny(torch.zeros(1, tiny.config.block_size + 1, dtype=torch.long))


def test_sequence_logprobs_sums_masked_positions_and_survives_empty_mask():
    logits = torch.randn(2, 3, 5)
    targets = torch.tensor([[1, 2, IGNORE_INDEX], [0, IGNORE_INDEX, IGNORE_INDEX]])
    mask = (targets != IGNORE_INDEX).float()
    lp = torch.log_softmax(logits, -1)
    expected = torch.stack([lp[0, 0, 1] + lp[0, 1, 2], lp[1, 0, 0]])
    torch.testing.assert_close(sequence_logprobs(logits, targets, mask), expected)
    zero = sequence_logprobs(logits, targets, torch.zeros_like(mask))
    assert torch.all(zero == 0) and not torch.isnan(zero).any()


def test_lora_starts_as_identity_and_switches_off():
    base = make_tiny(seed=1)
    lora = make_tiny(seed=1, lora_rank=4)
    lora.load_state_dict(base.state_dict(), strict=False)
    idx = torch.tensor([[1, 2, 3, 4, 5]])
    torch.testing.assert_close(lora(idx)[0], base(idx)[0])  # B = 0: no change yet
    with torch.no_grad():
        for n, p in lora.named_parameters():
            if n.endswith("lora_B"):
                p.normal_(0, 0.5)
    assert not torch.allclose(lora(idx)[0], base(idx)[0], atol=1e-3)
    with lora.adapters_off():
        torch.testing.assert_close(lora(idx)[0], base(idx)[0])
    assert not torch.allclose(lora(idx)[0], base(idx)[0], atol=1e-3)  # back on after
    lora.freeze_base()
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def _tok():
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["sort: 3 1 2", "1 2 3"], trainers.BpeTrainer(
        vocab_size=40, special_tokens=["<|user|>", "<|assistant|>", "<|end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


@pytest.mark.parametrize("pos, gelu", [("learned", "tanh"), ("rope", "exact")])
def test_checkpoint_roundtrip_and_bad_files(tmp_path, pos, gelu):
    tok = _tok()
    model = make_tiny(vocab_size=tok.get_vocab_size(), pos=pos, gelu=gelu)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.tensor([[1, 2, 3]]), torch.tensor([[2, 3, 4]]))[1].backward()
    opt.step()
    path = str(tmp_path / "ckpt.pt")
    save_checkpoint(path, model, tok, {"step": 7, "flags": {"lr": 1e-3}}, opt)
    assert not os.path.exists(path + ".tmp")
    m2, tok2, meta = load_checkpoint(path)
    idx = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(m2(idx)[0], model.eval()(idx)[0])
    assert tok2.to_str() == tok.to_str()
    assert meta["step"] == 7 and meta["flags"] == {"lr": 1e-3}
    assert meta["optimizer"]["state"]  # AdamW moments travel for --resume

    # a checkpoint written before GPTConfig had `pos` and `gelu` loads as GPT-2: learned
    # positions, tanh GELU
    old = torch.load(path, weights_only=False)
    if old["config"].pop("pos") == "learned" and old["config"].pop("gelu") == "tanh":
        torch.save(old, tmp_path / "old.pt")
        torch.testing.assert_close(load_checkpoint(str(tmp_path / "old.pt"))[0](idx)[0],
                                   model(idx)[0])

    old["config"]["gelu"] = "erf"
    torch.save(old, tmp_path / "badcfg.pt")
    with pytest.raises(ValueError, match="badcfg.pt: bad model config: gelu='erf'"):
        load_checkpoint(str(tmp_path / "badcfg.pt"))

    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(str(tmp_path / "missing.pt"))
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(open(path, "rb").read()[:1000])
    with pytest.raises(ValueError, match="trunc.pt"):
        load_checkpoint(str(trunc))
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="not a nano-self-judge checkpoint"):
        load_checkpoint(str(foreign))


def test_chat_format_round_trip():
    from data.chat import chat_ids, decode_response, encode_query, encode_response
    tok = _tok()
    user, assistant, end = chat_ids(tok)
    q = encode_query(tok, "sort: 3 1 2")
    assert q[0] == user and q[-2:] == [end, assistant]
    r = encode_response(tok, "1 2 3")
    assert r[-1] == end and decode_response(tok, r) == "1 2 3"
    assert decode_response(tok, r + [5, 6]) == "1 2 3"  # cut at the first stop token


def test_tokenizer_bigger_than_model_is_refused(tmp_path):
    from model import check_vocab
    tok = _tok()
    with pytest.raises(ValueError, match="does not belong"):
        check_vocab(tok, make_tiny(vocab_size=8))


# --- GPT-2 in the Hugging Face layout ------------------------------------------------
# Fixtures made once by tests/make_gpt2_fixture.py with transformers' GPT2LMHeadModel (the
# reference implementation) and tests/make_gpt2_tokenizer.py; nothing here imports it.

@pytest.mark.exercise("decode_loop", needs=("sample_next", "cached_attention"))
@pytest.mark.parametrize("folder", ["tiny-gpt2", "tiny-gpt2-bin", "tiny-gpt2-hub-layout"])
def test_gpt2_folder_gives_the_reference_logits_and_greedy_tokens(folder):
    """safetensors (read by hand), pytorch_model.bin, and the old un-prefixed layout with
    its attn.bias mask buffers all load to the reference's logits and greedy tokens."""
    from sample import generate
    model = GPT.from_pretrained(os.path.join(FIX, folder)).eval()
    with open(os.path.join(FIX, "tiny-gpt2", "expected.json")) as f:
        exp = json.load(f)
    logits, _ = model(torch.tensor(exp["input_ids"]))
    torch.testing.assert_close(logits, torch.tensor(exp["logits"]), atol=1e-4, rtol=0,
                               msg=lambda m: f"GPT-2's logits as the reference computed: {m}")
    prompt = exp["greedy"]["prompt_ids"]
    new, _, _ = generate(model, [prompt], len(exp["greedy"]["new_ids"]), temperature=0)
    assert new[0] == exp["greedy"]["new_ids"], (
        "generate at temperature 0 (argmax, with the cache) gives GPT-2's greedy tokens")


def test_non_gpt2_folder_is_refused_with_a_clear_message(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "n_layer": 2}))
    with pytest.raises(ValueError, match="not a GPT-2 config"):
        GPT.from_pretrained(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="config.json"):
        GPT.from_pretrained(str(tmp_path / "nowhere"))


def test_truncated_safetensors_is_refused(tmp_path):
    src = os.path.join(FIX, "tiny-gpt2")
    for name in ("config.json", "model.safetensors"):
        data = open(os.path.join(src, name), "rb").read()
        (tmp_path / name).write_bytes(data if name == "config.json" else data[:5000])
    with pytest.raises(ValueError, match="truncated"):
        GPT.from_pretrained(str(tmp_path))


def test_gpt2_tokenizer_known_answers(tmp_path):
    """GPT-2's byte-level BPE, checked against ids from an independent encoder."""
    import gzip
    from data.chat import load_tokenizer
    raw = gzip.decompress(open(os.path.join(FIX, "gpt2-tokenizer", "tokenizer.json.gz"),
                               "rb").read())
    (tmp_path / "tokenizer.json").write_bytes(raw)
    tok = load_tokenizer(str(tmp_path), chat=False)
    assert tok.encode("Hello world").ids == [15496, 995]
    with open(os.path.join(FIX, "gpt2-tokenizer", "known.json")) as f:
        known = json.load(f)
    assert len(known["cases"]) >= 6
    for item in known["cases"]:
        text, ids = item["text"], item["ids"]
        assert tok.encode(text).ids == ids, text
        assert tok.decode(ids, skip_special_tokens=False) == text
    # with the chat tokens added, GPT-2's own ids do not move
    chat = load_tokenizer(str(tmp_path))
    assert chat.encode("Hello world").ids == [15496, 995]
    assert chat.token_to_id("<|user|>") >= 50257
