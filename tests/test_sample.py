"""The sampler: cached equals uncached, seeds reproduce, filters hold, stop tokens per row.

    python -m pytest tests/test_sample.py -q
"""
import pytest
import torch

import sample
from conftest import SORT, make_tiny
from data.chat import chat_ids, load_tokenizer
from sample import generate, sample_next

PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10], [11], [12, 13, 14, 15]]


@pytest.mark.exercise("decode_loop", needs=("sample_next", "cached_attention"))
def test_greedy_batched_equals_one_at_a_time(tiny):
    batched, _, _ = generate(tiny, PROMPTS, 12, temperature=0)
    single = [generate(tiny, [p], 12, temperature=0)[0][0] for p in PROMPTS]
    assert batched == single, ("generate: greedy decoding of a ragged batch gives each row "
                               "what it gives alone")
    assert len({tuple(t) for t in batched}) > 1, "generate: the rows are not all the same"


@pytest.mark.exercise("decode_loop", needs=("sample_next", "cached_attention"))
def test_cached_equals_uncached_greedy_and_sampled(tiny):
    for kw in (dict(temperature=0), dict(temperature=1.0, top_p=0.9)):
        a = generate(tiny, PROMPTS, 15, eos_id=7, use_cache=True,
                     generator=torch.Generator().manual_seed(3), **kw)
        b = generate(tiny, PROMPTS, 15, eos_id=7, use_cache=False,
                     generator=torch.Generator().manual_seed(3), **kw)
        assert a[0] == b[0] and a[2] == b[2], (
            f"generate ({kw}): the cached path gives the uncached reference's tokens and stops "
            "(the uncached path feeds each row's whole sequence, not only the last token)")
        for la, lb in zip(a[1], b[1]):
            torch.testing.assert_close(la, lb, atol=1e-5, rtol=0, msg=lambda m: (
                f"generate: cached and uncached log-probabilities agree: {m}"))


@pytest.mark.exercise("decode_loop", needs=("sample_next", "cached_attention"))
def test_same_seed_same_samples_and_rows_differ(tiny):
    run = lambda seed: generate(tiny, [[1, 2]] * 8, 10, temperature=1.0,
                                generator=torch.Generator().manual_seed(seed))[0]
    assert run(5) == run(5), "generate: the same generator seed gives the same samples"
    assert run(5) != run(6), "generate: another seed gives other samples"
    # every row draws its own first token: 8 samples of one prompt are not all alike
    assert len({tuple(t) for t in run(5)}) > 1 and len({t[0] for t in run(5)}) > 1, (
        "generate: every row draws its own tokens, the first included")


@pytest.mark.exercise("sample_next")
def test_temperature_zero_is_argmax():
    logits = torch.tensor([[0.1, 3.0, -1.0], [5.0, 0.0, 4.9]])
    assert sample_next(logits, temperature=0).tolist() == [1, 0], (
        "sample_next: temperature 0 is each row's argmax")


@pytest.mark.exercise("sample_next")
def test_top_k_and_top_p_stay_in_the_kept_set():
    g = torch.Generator().manual_seed(0)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    k2 = sample_next(logits, 1.0, top_k=2, generator=g)
    assert set(k2.tolist()) == {0, 1}, "sample_next(top_k=2) keeps the 2 most likely, k-th too"
    # top_p=0.7: 0.5 alone is short of 0.7, 0.5+0.3 reaches it -> {0, 1}
    p7 = sample_next(logits, 1.0, top_p=0.7, generator=g)
    p9 = sample_next(logits, 1.0, top_p=0.9, generator=g)
    assert set(p7.tolist()) == {0, 1} and set(p9.tolist()) == {0, 1, 2}, (
        "sample_next(top_p): keep the smallest set of the most likely tokens holding top_p of "
        "the mass, the token that crosses top_p included (probs 0.5, 0.3, 0.15, 0.05)")
    tiny_p = sample_next(logits, 1.0, top_p=0.01, generator=g)  # the top token always stays
    assert set(tiny_p.tolist()) == {0}, "sample_next(top_p): the most likely token always stays"


@pytest.mark.exercise("sample_next")
@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_sample_next_divides_the_logits_by_the_temperature(temperature):
    """Samples follow softmax(logits / T): T = 2 flattens the distribution, T = 0.5
    sharpens it. Multiplying by T does the opposite, and T = 1 (every other test here)
    cannot tell the two apart."""
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    n = 20000
    drawn = sample_next(p.log().repeat(n, 1), temperature,
                        generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(drawn, minlength=4).float() / n
    want = torch.softmax(p.log() / temperature, -1)
    assert (freq - want).abs().max() < 0.02, (  # 0.02 is over 5 standard errors
        f"sample_next(temperature={temperature}): token frequencies "
        f"{[round(x, 3) for x in freq.tolist()]} should follow softmax(logits / temperature)"
        f" = {[round(x, 3) for x in want.tolist()]}")


def test_sample_responses_ids_end_with_the_stop_token_once_when_the_row_stopped(monkeypatch):
    """generate returns the new tokens without the stop token; sample_responses appends it
    to `ids` exactly once, and only for a row that stopped (DPO scores and trains it), and
    never to a row cut off at the length limit. The text never shows it."""
    tok = load_tokenizer(SORT)
    end = chat_ids(tok)[2]
    one, two = (tok.encode(t, add_special_tokens=False).ids for t in ("1 2", "3"))
    fake = lambda model, queries, *a, **k: (  # noqa: E731
        [one, two, one][:len(queries)], None, [True, False, True][:len(queries)])
    monkeypatch.setattr(sample, "generate", fake)
    rows = sample.sample_responses(None, tok, ["sort: 2 1", "sort: 3"], n=1, batch_size=1)
    ids = [r[0]["ids"] for r in rows]
    assert ids == [one + [end], one + [end]], (
        f"sample_responses: a stopped row's ids must be its tokens + [stop token {end}] "
        f"once, got {ids}")
    rows = sample.sample_responses(None, tok, ["sort: 2 1"], n=3)[0]
    assert [r["ids"] for r in rows] == [one + [end], two, one + [end]], (
        f"sample_responses: the stop token goes on stopped rows only, once; got "
        f"{[r['ids'] for r in rows]}")
    assert [r["stopped"] for r in rows] == [True, False, True]
    assert [r["text"] for r in rows] == ["1 2", "3", "1 2"]


@pytest.mark.exercise("decode_loop", needs=("sample_next", "cached_attention"))
def test_eos_per_row_and_logprobs_align(tiny):
    # find what row 0 emits greedily, then call a token of it (at its first occurrence)
    # the stop token
    greedy, _, _ = generate(tiny, PROMPTS, 8, temperature=0)
    i = next(i for i in range(1, 8) if greedy[0][i] not in greedy[0][:i])
    eos = greedy[0][i]
    toks, logps, stopped = generate(tiny, PROMPTS, 8, temperature=0, eos_id=eos)
    assert stopped[0] and toks[0] == greedy[0][:i], (   # stopped, eos not returned
        f"generate: row 0 must stop at token {eos} and return the tokens before it")
    for t, lp, s in zip(toks, logps, stopped):
        assert eos not in t, "generate: tokens[b] never holds the stop token"
        assert len(lp) == len(t) + int(s), "generate: the stop token's log-prob comes last"
        if not s:
            assert len(t) == 8, "generate: a row that never stops is cut at max_new_tokens"


@pytest.mark.exercise("decode_loop", needs=("sample_next", "cached_attention"))
def test_logprobs_are_the_raw_model_distribution(tiny):
    """Log-probs come from raw logits, not from the temperature/top-p-warped scores."""
    g = torch.Generator().manual_seed(0)
    toks, logps, _ = generate(tiny, [PROMPTS[1]], 6, temperature=2.0, top_k=5, generator=g)
    seq = torch.tensor([PROMPTS[1] + toks[0]])
    logits, _ = tiny(seq)
    lp = torch.log_softmax(logits[0, len(PROMPTS[1]) - 1:-1], -1)
    expected = lp.gather(1, torch.tensor(toks[0])[:, None]).squeeze(1)
    torch.testing.assert_close(logps[0], expected, atol=1e-5, rtol=0, msg=lambda m: (
        "generate records each token's log-probability under the raw distribution (no "
        f"temperature, no top-k): {m}"))


@pytest.mark.exercise("decode_loop", needs=("sample_next", "cached_attention"))
def test_context_limit_cuts_off_without_stop_and_long_prompt_errors():
    model = make_tiny(block_size=16)
    toks, _, stopped = generate(model, [[1] * 10], 50, temperature=0)
    assert len(toks[0]) == 6 and stopped == [False], (
        "generate: a row stops taking tokens at the context's end (16 - 10 = 6), cut off: no "
        "stop token")
    try:
        generate(model, [[1] * 16], 5)
    except ValueError as e:
        assert "context" in str(e), f"generate's error names the context: {e}"
    else:
        raise AssertionError("a prompt filling the whole context must be an error")


@pytest.mark.exercise("decode_loop", needs=("sample_next", "cached_attention"))
def test_cached_equals_uncached_when_rows_stop_at_different_steps(tiny):
    """A ragged batch whose rows stop at different steps (and one that never stops): with
    the cache, every row keeps decoding in the batch after another row is done, so the
    stopped rows must stay stopped (nothing after their stop token, whatever they draw
    later) and the rest must match the uncached reference exactly in fp32."""
    greedy, _, _ = generate(tiny, PROMPTS, 12, temperature=0)
    first = lambda row, t: row.index(t) if t in row else None  # noqa: E731
    # a stop token that two rows reach at different steps
    eos = next(t for t in range(tiny.config.vocab_size)
               if len({first(r, t) for r in greedy} - {None}) >= 2)
    cached = generate(tiny, PROMPTS, 12, temperature=0, eos_id=eos)
    uncached = generate(tiny, PROMPTS, 12, temperature=0, eos_id=eos, use_cache=False)
    assert cached[0] == uncached[0] and cached[2] == uncached[2], (
        "generate: rows stopping at different steps give the same tokens cached and uncached "
        "(a finished row stays in the batch, keeps nothing and never advances)")
    for la, lb in zip(cached[1], uncached[1]):
        torch.testing.assert_close(la, lb, atol=1e-5, rtol=0, msg=lambda m: (
            f"generate: cached and uncached log-probabilities agree: {m}"))
    for row, toks, s in zip(greedy, cached[0], cached[2]):
        at = first(row, eos)
        assert s == (at is not None), "generate: a row stops when it draws the stop token"
        assert toks == (row[:at] if s else row), (
            "generate: a stopped row stays stopped: nothing after its stop token")


@pytest.mark.exercise("decode_loop", needs=("sample_next", "cached_attention"))
def test_generate_builds_no_autograd_graph(tiny, monkeypatch):
    """generate runs without autograd. Its no_grad decorator once slid onto a helper
    (check_prompts) when that was split out, and every stage-2 step then sampled while
    recording a graph: slower everywhere, and with the log-probabilities kept on the device
    the graph of every step stayed alive until a GPU ran out of memory (bench.py at 32
    rows x 128 tokens: 135 GiB)."""
    seen = []
    hidden = tiny.hidden
    monkeypatch.setattr(tiny, "hidden", lambda *a, **k: seen.append(
        torch.is_grad_enabled()) or hidden(*a, **k))
    for use_cache in (True, False):
        _, logps, _ = generate(tiny, PROMPTS, 4, use_cache=use_cache)
        assert not any(lp.requires_grad for lp in logps), (
            "generate's log-probabilities carry no autograd graph")
    assert seen and not any(seen), "generate must run under torch.no_grad()"
