"""The judge: prompt and decision tokens, swap symmetry, principle majority, tournament.

    python -m pytest tests/test_judge.py -q     (from the repository root; a few seconds)
"""
import gzip
import json
import math
import os

import pytest
import torch
from tokenizers import Tokenizer

import judge
from conftest import ROOT, SORT, make_tiny
from data.task import load_oracle
from judge import (decision_ids, decision_probs, judge_by_principles, judge_prob, judge_query,
                   majority, swap_average, tournament)
from data.chat import add_chat_tokens, chat_ids, load_tokenizer

GPT2_TOKENIZER = os.path.join(ROOT, "tests", "fixtures", "gpt2-tokenizer", "tokenizer.json.gz")
CONTEXTS = ["sort: 3 1 2", "sort: 9 8", "sort: 40 7 13 5"]
RESP_A = ["1 2 3", "8 9", "5 7 13 40"]
RESP_B = ["3 2 1", "8 9 9", "5 13 7 40 40"]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(SORT)


@pytest.fixture(scope="module")
def tiny_judge(tok):
    """A tiny random GPT over the sort task's vocabulary."""
    return make_tiny(vocab_size=tok.get_vocab_size(), block_size=64)


def prefix_space_json():
    """The sort tokenizer with add_prefix_space=True: each stretch of text between special
    tokens gets a leading space, so a decision after <|assistant|> is encoded as "ĠA",
    which this vocabulary does not merge: "A" becomes two tokens, Ġ and A."""
    j = json.loads(load_tokenizer(SORT).to_str())
    j["pre_tokenizer"]["add_prefix_space"] = True
    return json.dumps(j)


# -----------------------------------------------------------------------------
# the judge prompt and its decision tokens

def test_query_ends_with_assistant_token_and_decisions_follow_it(tok):
    user, assistant, _ = chat_ids(tok)
    q = judge_query(tok, CONTEXTS[0], RESP_A[0], RESP_B[0], "correctness")
    assert q[0] == user and q[-1] == assistant
    text = tok.decode(q, skip_special_tokens=False)
    assert "Which is correct?" in text and RESP_A[0] in text and RESP_B[0] in text
    a_id, b_id = decision_ids(tok)
    assert a_id != b_id
    assert (tok.id_to_token(a_id), tok.id_to_token(b_id)) == ("A", "B")
    # in a real judge prompt, not only the one decision_ids checked
    for d, i in (("A", a_id), ("B", b_id)):
        assert tok.encode(text + d, add_special_tokens=False).ids == q + [i]


def test_decision_ids_of_gpt2_tokenizer_are_single_tokens():
    """A foreign tokenizer (GPT-2's BPE plus the chat tokens) passes the check too."""
    with gzip.open(GPT2_TOKENIZER, "rt", encoding="utf-8") as f:
        tok = add_chat_tokens(Tokenizer.from_str(f.read()))
    q = judge_query(tok, "Say hi.", "Hi!", "Bye.")
    text = tok.decode(q, skip_special_tokens=False)
    a_id, b_id = decision_ids(tok)
    assert tok.encode(text + "A", add_special_tokens=False).ids == q + [a_id]
    assert tok.encode(text + "B", add_special_tokens=False).ids == q + [b_id]


def test_decision_that_is_not_one_token_raises(monkeypatch):
    # an empty cache: see the regression test below for why a stale entry could hide it
    monkeypatch.setattr(judge, "_decision_cache", {})
    bad = Tokenizer.from_str(prefix_space_json())
    assert len(bad.encode("A", add_special_tokens=False).ids) == 2
    with pytest.raises(ValueError, match="not one token"):
        decision_ids(bad)


def test_decision_ids_cache_is_not_fooled_by_a_reused_id():
    """decision_ids keys its cache on id(tok). Once a checked tokenizer is freed, CPython
    readily gives the next tokenizer the same address, and so the same id: the new one
    then gets the old one's decision ids without ever being checked. Here a tokenizer
    whose "A" is two tokens slips through the check it must fail."""
    good_json, bad_json = load_tokenizer(SORT).to_str(), prefix_space_json()
    for _ in range(20):
        good = Tokenizer.from_str(good_json)
        decision_ids(good)
        del good
        bad = Tokenizer.from_str(bad_json)
        with pytest.raises(ValueError, match="not one token"):
            decision_ids(bad)
        del bad


# -----------------------------------------------------------------------------
# P(A better): swap symmetry

def constant_judge(tok, a_logit, b_logit=0.0):
    """A real GPT whose every position outputs the same logits: ln_f's weight is zero, so
    the final hidden state is its bias e_0 for any input, and lm_head's column 0 gives
    A and B the logits asked for (0 for every other token)."""
    model = make_tiny(vocab_size=tok.get_vocab_size(), block_size=64)
    a_id, b_id = decision_ids(tok)
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 1.0
        model.lm_head.weight[:, 0] = 0.0  # tied to wte: harmless, ln_f ignores the input
        model.lm_head.weight[a_id, 0] = a_logit
        model.lm_head.weight[b_id, 0] = b_logit
    return model


@pytest.mark.exercise("swap_average")
def test_swap_average_known_answers():
    ab = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.1]])
    ba = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.1]])
    # row 0: always "A" -> 0.5; row 1: prefers a in both orders -> 0.8;
    # row 2: mass off {A, B} is renormalised away: p_a = 0.2, p_b = 0.2 -> 0.5
    got = swap_average(ab, ba)
    rules = ["a judge that always answers A must give exactly 0.5 (read P(A) first shown "
             "from ab[:, 0] and P(B) from ba[:, 1], the same response's two chances)",
             "p_a = (P(A | a,b) + P(B | b,a)) / 2 and p_b likewise: 0.8 for a judge that "
             "prefers a in both orders",
             "return p_a / (p_a + p_b): the mass off A and B is renormalised away "
             "(p_a = p_b = 0.2 gives 0.5, not 0.2)"]
    for i, rule in enumerate(rules):
        torch.testing.assert_close(got[i], torch.tensor([0.5, 0.8, 0.5])[i], msg=lambda m: (
            f"swap_average, row {i} (ab {ab[i].tolist()}, ba {ba[i].tolist()}): {rule}; "
            f"got {got[i].item():.4f}"))


@pytest.mark.exercise("decision_probs", needs=("swap_average",))
@pytest.mark.parametrize("a_logit", [1000.0, 1.5])
def test_judge_that_always_answers_a_gives_exactly_one_half(tok, a_logit):
    model = constant_judge(tok, a_logit)
    q = [judge_query(tok, c, a, b) for c, a, b in zip(CONTEXTS, RESP_A, RESP_B)]
    probs = decision_probs(model, tok, q)
    assert probs.shape == (3, 2) and (probs[:, 0] > probs[:, 1]).all(), (
        f"decision_probs returns (N, 2): P(A), P(B) per query; a judge that favours A gives "
        f"P(A) > P(B), got {probs.tolist()}")
    if a_logit == 1000.0:
        assert probs.tolist() == [[1.0, 0.0]] * 3, (  # all its mass on "A"
            f"decision_probs: a judge with all its mass on A gives (1, 0) (softmax in float32, "
            f"no NaN at logit 1000), got {probs.tolist()}")
    p = judge_prob(model, tok, CONTEXTS, RESP_A, RESP_B)
    assert p.tolist() == [0.5] * 3, (  # exactly: the position preference cancels
        f"a judge that always answers A gives exactly 0.5 after swap_average, got {p.tolist()}")


@pytest.mark.exercise("decision_probs")
def test_decision_probs_read_the_softmax_over_the_whole_vocabulary(tok, tiny_judge):
    """P("A") and P("B") are two entries of the next-token distribution over every token,
    so they need not sum to 1 (swap_average renormalises later). With A's logit 1.5 and
    every other token's 0: P("A") = e^1.5 / (e^1.5 + V - 1), where a softmax over {A, B}
    alone would give sigmoid(1.5) = 0.82. And each query is read at its own last token,
    as a forward pass of that query alone reads it."""
    V = tok.get_vocab_size()
    q = [judge_query(tok, c, a, b) for c, a, b in zip(CONTEXTS, RESP_A, RESP_B)]
    z = math.exp(1.5) + V - 1
    torch.testing.assert_close(
        decision_probs(constant_judge(tok, 1.5), tok, q),
        torch.tensor([[math.exp(1.5) / z, 1 / z]] * 3),
        msg=lambda m: "decision_probs: P(A), P(B) must come from the softmax over the whole "
                      f"vocabulary ({V} tokens), not over A and B alone\n{m}")
    a_id, b_id = decision_ids(tok)
    alone = torch.stack([torch.softmax(tiny_judge(torch.tensor([x]))[0][0, -1], -1)[[a_id, b_id]]
                         for x in q])
    torch.testing.assert_close(
        decision_probs(tiny_judge, tok, q), alone, atol=1e-5, rtol=0,
        msg=lambda m: "decision_probs: each query's decision is read at its own last token "
                      f"(queries of {[len(x) for x in q]} tokens, right-padded)\n{m}")


@pytest.mark.exercise("decision_probs", needs=("swap_average",))
def test_judge_prob_is_antisymmetric_under_swapping_the_responses(tok, tiny_judge):
    p_ab = judge_prob(tiny_judge, tok, CONTEXTS, RESP_A, RESP_B)
    p_ba = judge_prob(tiny_judge, tok, CONTEXTS, RESP_B, RESP_A)
    assert p_ab.shape == (3,) and ((p_ab > 0) & (p_ab < 1)).all(), (
        f"judge_prob gives one P(a better) in (0, 1) per pair, got {p_ab}")
    assert (p_ab - 0.5).abs().max() > 1e-3, (  # a random judge is not trivially 0.5
        "decision_probs: a random judge's decisions depend on the responses (not all 0.5)")
    torch.testing.assert_close(p_ab, 1 - p_ba, atol=1e-5, rtol=0, msg=lambda m: (
        "decision_probs, swap_average: swapping the responses turns P(a better) into "
        f"1 - P(a better): {m}"))


@pytest.mark.exercise("decision_probs", needs=("swap_average",))
def test_judge_prob_batched_equals_one_at_a_time(tok, tiny_judge):
    """Right-padding the shorter judge prompts does not change their decision."""
    batched = judge_prob(tiny_judge, tok, CONTEXTS, RESP_A, RESP_B)
    single = torch.cat([judge_prob(tiny_judge, tok, [c], [a], [b])
                        for c, a, b in zip(CONTEXTS, RESP_A, RESP_B)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0, msg=lambda m: (
        "decision_probs: a judge prompt right-padded in a batch is read at its own last "
        f"token, as alone: {m}"))


def test_judge_prob_of_empty_batch_is_empty(tok, tiny_judge):
    p = judge_prob(tiny_judge, tok, [], [], [])
    assert isinstance(p, torch.Tensor) and p.shape == (0,)


def test_judge_prob_rejects_mismatched_lengths(tok, tiny_judge):
    with pytest.raises(ValueError, match="differ in length"):
        judge_prob(tiny_judge, tok, CONTEXTS, RESP_A, RESP_B[:2])


@pytest.mark.exercise("decision_probs")
def test_decision_probs_refuses_query_longer_than_context(tok):
    model = make_tiny(vocab_size=tok.get_vocab_size(), block_size=16)
    q = judge_query(tok, CONTEXTS[2], RESP_A[2], RESP_B[2])
    assert len(q) > 16, "the judge prompt is longer than the 16-token context"
    for too_long in ([q[-16:], q], [q[-17:]]):  # one token over is already too long
        with pytest.raises(ValueError, match=r"longer than the model's context \(16\)"):
            decision_probs(model, tok, too_long)
    assert decision_probs(model, tok, [q[-16:]]).shape == (1, 2), (  # exactly full: fine
        "decision_probs reads a query that fills the context exactly (16 of 16 tokens)")


# -----------------------------------------------------------------------------
# several principles: majority vote

def test_majority_known_answers():
    probs = torch.tensor([
        # A 2-1  B 2-1  1-1 tie (mean .6)  1-1 tie (mean .35)  mean exactly .5  all .5
        [0.9,   0.1,   0.9,               0.6,                0.75,            0.5],
        [0.6,   0.4,   0.3,               0.1,                0.25,            0.5],
        [0.2,   0.8,   0.5,               0.5,                0.5,             0.5],
    ])
    a_wins, mean = majority(probs)
    assert a_wins.tolist() == [True, False, True, False, True, True]
    torch.testing.assert_close(mean, probs.mean(0))
    # the vote counts, not the mean: 2 of 3 for A wins even when B's one vote is strong
    a_wins, mean = majority(torch.tensor([[0.55], [0.55], [0.0]]))
    assert a_wins.tolist() == [True] and mean.item() < 0.5


# -----------------------------------------------------------------------------
# self-rejection: the knockout tournament

class LongerWins:
    """A judge that knows a total order (the longer string is better) and counts its
    calls; equal lengths are a tie (0.5)."""

    def __init__(self):
        self.calls = []

    def __call__(self, contexts, a, b):
        assert len(contexts) == len(a) == len(b) > 0
        self.calls.append(len(a))
        return torch.tensor([0.5 if len(x) == len(y) else float(len(x) > len(y))
                             for x, y in zip(a, b)])


class Recording:
    """A judge that cannot decide anything and remembers what it was shown."""

    def __init__(self):
        self.shown = []

    def __call__(self, contexts, a, b):
        self.shown += list(zip(a, b))
        return torch.full((len(a),), 0.5)


@pytest.mark.exercise("tournament")
def test_tournament_best_candidate_always_wins():
    for n in range(1, 10):
        for seed in range(4):
            g = torch.Generator().manual_seed(seed)
            order = torch.randperm(n, generator=g).tolist()  # where the best one sits
            cands = ["x" * (k + 1) for k in order]
            judge_fn = LongerWins()
            win = tournament(None, None, ["c"], [cands], generator=g, judge_fn=judge_fn)
            assert win == [order.index(n - 1)], (
                f"tournament: with a judge that knows the order the best of {n} candidates "
                f"(index {order.index(n - 1)}) always wins, the winner of each match advancing; "
                f"got {win} (seed {seed})")
            assert len(judge_fn.calls) == math.ceil(math.log2(n)), (  # one call per round
                f"tournament: one judge call per round, ceil(log2 {n}) rounds; got "
                f"{len(judge_fn.calls)} calls")
            assert sum(judge_fn.calls) == n - 1, (  # n - 1 matches in all
                f"tournament: {n} candidates need {n - 1} matches (a bye is no match), got "
                f"{sum(judge_fn.calls)}")


@pytest.mark.exercise("tournament")
def test_tournament_batches_contexts_one_call_per_round():
    g = torch.Generator().manual_seed(1)
    cands = [["x" * (k + 1) for k in torch.randperm(n, generator=g).tolist()]
             for n in range(1, 10)]
    judge_fn = LongerWins()
    win = tournament(None, None, [f"c{n}" for n in range(1, 10)], cands,
                     generator=torch.Generator().manual_seed(0), judge_fn=judge_fn)
    assert [len(c[w]) for c, w in zip(cands, win)] == list(range(1, 10)), (
        "tournament: every context's best candidate wins (1 to 9 candidates, byes included)")
    assert len(judge_fn.calls) == math.ceil(math.log2(9)), (  # 4 rounds for the largest, 9
        f"tournament: every match of every context is judged in one call per round, 4 for "
        f"9 candidates; got {len(judge_fn.calls)} calls")
    assert sum(judge_fn.calls) == sum(n - 1 for n in range(1, 10)), (
        "tournament: N - 1 matches for each context of N candidates")


@pytest.mark.exercise("tournament")
def test_tournament_ties_are_deterministic_for_a_seed():
    cands = [["same"] * 7, ["same"] * 4]
    run = lambda seed: tournament(None, None, ["c", "d"], cands,  # noqa: E731
                                  generator=torch.Generator().manual_seed(seed),
                                  judge_fn=LongerWins())
    assert run(3) == run(3), "tournament: the same generator seed gives the same winners"
    assert all(0 <= w < len(c) for w, c in zip(run(3), cands)), (
        "tournament returns an index into each context's own candidates")
    # the pairing is drawn from the generator: other seeds crown other candidates
    assert len({tuple(run(s)) for s in range(20)}) > 1, (
        "tournament: each round shuffles the survivors with the generator (torch.randperm), "
        "so among tied candidates other seeds crown other ones")


@pytest.mark.exercise("tournament")
def test_tournament_tie_goes_to_the_first_of_the_two():
    for seed in range(6):
        judge_fn = Recording()
        win = tournament(None, None, ["c"], [["p", "q"]],
                         generator=torch.Generator().manual_seed(seed), judge_fn=judge_fn)
        assert ["p", "q"][win[0]] == judge_fn.shown[0][0], (
            "tournament: a match the judge cannot decide (exactly 0.5) goes to the first of "
            "the two, the one passed as a")


@pytest.mark.exercise("tournament")
def test_tournament_single_candidate_needs_no_judge():
    judge_fn = LongerWins()
    assert tournament(None, None, ["c", "d"], [["only"], ["one"]], judge_fn=judge_fn) == [0, 0], (
        "tournament: a lone candidate wins")
    assert judge_fn.calls == [], "tournament: no match, no judge call, for lone candidates"


def test_tournament_empty_candidate_list_raises():  # the check before the exercise
    with pytest.raises(ValueError, match="no candidates"):
        tournament(None, None, ["c", "d"], [["a", "b"], []], judge_fn=LongerWins())


@pytest.mark.exercise("tournament", needs=("swap_average", "decision_probs"))
def test_tournament_with_the_model_as_judge(tok, tiny_judge):
    """The default judge_fn (judge_prob with the model) runs and returns valid indices."""
    win = tournament(tiny_judge, tok, CONTEXTS, [RESP_A + RESP_B] * 3,
                     generator=torch.Generator().manual_seed(0))
    assert len(win) == 3 and all(0 <= w < 6 for w in win), (
        f"tournament with the model as judge returns one index in 0..5 per context: {win}")


@pytest.mark.exercise("swap_average")
def test_heldout_judgment_reads_the_labels_in_both_orders(monkeypatch):
    """A judge right on the first two held-out pairs, wrong on the third, right on the
    fourth though it answers "A" in both orders (a position flip), and unable to read the
    fifth (too long: exactly 0.5 in both orders, left out rather than counted wrong)."""
    from data.task import Task
    rows = [dict(prompt="q", chosen=f"c{i}", rejected=f"r{i}") for i in range(50)]
    task = Task(path="t", pairs=rows)  # 50 pairs: the last 5 are held out

    def orders(model, tok, contexts, a, b, principles=None):
        shown_ab = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.7, 0.3], [0.5, 0.5]])
        shown_ba = torch.tensor([[0.1, 0.9], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4], [0.5, 0.5]])
        return shown_ab, shown_ba
    monkeypatch.setattr(judge, "judge_orders", orders)
    h = judge.heldout_judgment(None, None, task)
    assert h == dict(label_agreement=0.75, label_by_position=0.25, label_pairs=4,
                     label_unread=1), (
        "swap_average of both orders: right on 3 of the 4 readable pairs (the fourth by the "
        f"averaged probability, though it answers A twice), the fifth (0.5) unread: {h}")
