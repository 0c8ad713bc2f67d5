"""Measurement (evaluate.py): the judge's agreement with the oracle on the policy's own
pairs, self-rejection's best-of-N curve, and what the stages log while they train.

    python -m pytest tests/test_evaluate.py -q     (from the repository root; seconds)
"""
import pytest
import torch

import evaluate
import judge
from conftest import SORT, make_tiny
from data.chat import load_tokenizer
from data.task import load_oracle
from evaluate import onpolicy_agreement

CONTEXTS = ["sort: 3 1 2", "sort: 9 8", "sort: 40 7 13 5"]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(SORT)


@pytest.fixture(scope="module")
def tiny_judge(tok):
    """A tiny random GPT over the sort task's vocabulary."""
    return make_tiny(vocab_size=tok.get_vocab_size(), block_size=64)


# -----------------------------------------------------------------------------
# self-rejection: best-of-N

@pytest.mark.exercise("tournament", needs=("swap_average", "decision_probs"))
def test_best_of_n_scores_the_winner_among_the_first_n_samples(tok, tiny_judge, monkeypatch):
    """N = 1 is the first sample; each N's winner is one of the first N samples (so its
    score is at most the oracle's own pick of them), and that pick never falls as N
    grows, the samples being nested."""
    texts = [["2 1 3", "1 2 3", "3 2 1", "1 2"], ["9", "8 9", "9 8", "8 9"],
             ["5 7", "7 5 13", "5 7 13 40", "40"]]
    fake = lambda model, tok, prompts, n, *a, **k: [[dict(text=t) for t in row[:n]]  # noqa: E731
                                                    for row in texts]
    monkeypatch.setattr(evaluate, "sample_responses", fake)
    oracle = load_oracle(SORT)  # 1.0 only for the sorted list
    table = evaluate.best_of_n(tiny_judge, tok, CONTEXTS, oracle, max_n=4, max_new_tokens=8,
                               generator=torch.Generator().manual_seed(0))
    assert list(table) == [1, 2, 4], f"best_of_n measures N = 1, 2, 4 up to max_n: {list(table)}"
    won1, best1, rand1 = table[1]
    assert won1 == best1 == rand1 == [oracle(c, row[0]) for c, row in zip(CONTEXTS, texts)], (
        "best_of_n at N = 1: the tournament of one candidate crowns the first sample")
    for n, (won, best, rand) in table.items():
        scores = [[oracle(c, t) for t in row[:n]] for c, row in zip(CONTEXTS, texts)]
        assert best == [max(sc) for sc in scores], f"best_of_n, N = {n}: the oracle's own pick"
        assert rand == pytest.approx([sum(sc) / n for sc in scores]), (  # a coin's pick
            f"best_of_n, N = {n}: a random pick's expected score is the mean of the N")
        assert all(w in sc for w, sc in zip(won, scores)), (
            f"tournament: at N = {n} the winner is one of the first N samples (an index into "
            "the candidates given)")
    assert table[4][1] == [1.0, 1.0, 1.0], "best_of_n: a sorted answer is among the 4 samples"


def test_paired_change_mean_and_standard_error():
    """Differences 1, 1, 1, 1: no spread, so no error; differences 0, 2: mean 1, sample
    standard deviation sqrt(2), standard error sqrt(2) / sqrt(2) = 1."""
    assert evaluate.paired_change([0, 1, 2, 3], [1, 2, 3, 4]) == (1.0, 0.0)
    mean, se = evaluate.paired_change([1, 1], [1, 3])
    assert mean == 1.0 and se == pytest.approx(1.0)


def test_best_of_below_zero_is_refused(capsys):
    with pytest.raises(SystemExit, match=r"--best_of=-1: must be in \[0, inf\)"):
        evaluate.main(["--best_of=-1", "--ckpt=does/not/matter.pt"])


def test_describe_best_of_prints_every_n_with_its_change_random_pick_ceiling_and_cost():
    table = {1: ([0.5, 0.5], [0.5, 0.5], [0.5, 0.5]), 2: ([1.0, 0.5], [1.0, 1.0], [0.75, 0.5])}
    lines = evaluate.describe_best_of(table).splitlines()
    assert lines[0].split() == ["N", "winner", "change", "random", "oracle", "judgments"]
    assert lines[1].split() == ["1", "0.500", "0.500", "0.500", "0"]
    assert lines[2].split() == ["2", "0.750", "+0.250", "+-", "0.250", "0.625", "1.000", "1"]


# -----------------------------------------------------------------------------
# fixed bugs: each test is named after the bug it pins

@pytest.mark.exercise("decision_probs",
                       needs=("swap_average", "sample_next", "decode_loop", "cached_attention"))
def test_onpolicy_agreement_survives_samples_too_long_to_judge(tok):
    """Two 48-token samples plus the prompt and the judge template are longer than a
    128-token context: decision_probs rightly refuses them, but onpolicy_agreement (and so
    evaluate.policy_report, after jsft.py saves its checkpoint) then crashes instead of skipping
    or counting the pairs it cannot judge. A barely-trained policy that never stops hits
    this at the default context length."""
    model = make_tiny(vocab_size=tok.get_vocab_size(), block_size=128, n_layer=1)
    oracle = lambda p, r: float(len(r))  # noqa: E731
    r = onpolicy_agreement(model, tok, CONTEXTS, oracle, torch.Generator().manual_seed(0),
                           max_new_tokens=48)
    assert "agreement" in r, "onpolicy_agreement returns its agreement despite unreadable pairs"
    # pairs the judge could not read are counted apart from oracle ties, and the report
    # line never prints "nan%"
    assert 0.0 <= r["undecided"] <= 1.0 and 0.0 <= r["tie_rate"] <= 1.0, (
        f"onpolicy_agreement counts unreadable pairs as undecided, a share: {r}")
    assert "nan" not in evaluate.describe_agreement(r), "the agreement line never prints nan"
    unread = dict(r, decided=0, agreement=float("nan"), undecided=1.0)
    assert "nan" not in evaluate.describe_agreement(unread), (
        "the agreement line never prints nan, even with no pair read")


@pytest.mark.exercise("tournament",
                       needs=("swap_average", "decision_probs", "sample_next",
                              "decode_loop", "cached_attention"))
def test_evaluation_judges_with_the_task_principle_not_the_default(monkeypatch):
    """The judge is trained on "Which is correct?" (the sort task's principle), but the
    on-policy agreement, the tournament and selfjudge's evaluation used to ask the default
    "Which is better?", a question it never saw: on one checkpoint that alone cost 11
    points of agreement. Every evaluation now judges under the task's principles."""
    from data.task import load_task
    from judge import task_principles
    task = load_task(SORT)
    assert task_principles(task) == ["correctness"], "the sort task judges by correctness"
    seen = []
    real = judge.judge_orders

    def spy(model, tok, contexts, a, b, principles=None):
        seen.append(principles)
        return real(model, tok, contexts, a, b, principles)

    monkeypatch.setattr(judge, "judge_orders", spy)
    monkeypatch.setattr(evaluate, "judge_orders", spy)
    tok = load_tokenizer(SORT)
    model = make_tiny(vocab_size=tok.get_vocab_size(), block_size=128, n_layer=1)
    evaluate.policy_report(model, tok, task, [x["prompt"] for x in task.test[:3]], seed=0)
    judge.tournament(model, tok, ["sort: 2 1"], [["1 2", "2 1", "1 1"]],
                     torch.Generator().manual_seed(0), task_principles(task))
    assert seen and all(p == "correctness" for p in seen), (
        "tournament and policy_report judge under the task's principle (correctness), "
        f"passed on to judge_orders; saw {seen}")


@pytest.mark.exercise("swap_average")
def test_decisions_by_position_are_counted_on_the_scored_pairs_not_on_identical_ones(monkeypatch):
    """Identical samples give the same prompt in both orders, so the judge necessarily
    answers the same letter twice: counting them as position flips made a perfect judge
    look position-biased. Flips are now counted on the pairs the agreement scores."""
    pairs = [("1 2", "1 2"), ("1 2", "2 1"), ("3", "3"), ("2 1", "1 2")]
    fake = [[dict(text=a), dict(text=b)] for a, b in pairs]
    monkeypatch.setattr(evaluate, "sample_responses", lambda *a, **k: fake)
    monkeypatch.setattr(evaluate, "fit_prompts", lambda tok, prompts, *a, **k: (prompts, 8))
    oracle = lambda p, r: float(r == "1 2")  # noqa: E731

    def judged(biased):
        def orders(model, tok, contexts, a, b, principle=None):
            def probs(xs, ys):  # perfect: the sorted one wins; biased: always "A", more
                # sure when A is the sorted one, so the average still picks it
                right = [[1.0, 0.0] if x == "1 2" else [0.0, 1.0] for x in xs]
                sure = [[0.9, 0.1] if x == "1 2" else [0.6, 0.4] for x in xs]
                return torch.tensor(sure if biased else right)
            return probs(a, b), probs(b, a)
        monkeypatch.setattr(evaluate, "judge_orders", orders)
        model = type("M", (), dict(config=type("C", (), dict(block_size=64))))()
        return onpolicy_agreement(model, None, ["sort: 2 1"] * 4, oracle, pairs_per_prompt=1)

    perfect, biased = judged(False), judged(True)
    rule = ("swap_average: a judge that always answers A, more sure when A is the sorted one, "
            "still picks the sorted one after averaging both orders")
    assert perfect["decided"] == 2 and perfect["agreement"] == 1.0, (
        f"a perfect judge agrees on both pairs the oracle tells apart: {perfect}")
    assert perfect["by_position"] == 0.0, "a perfect judge's decisions never follow position"
    assert biased["agreement"] == 1.0 and biased["agreement_one_order"] == 0.5, rule
    assert biased["by_position"] == 1.0, (
        "a judge answering A in both orders follows the position on every scored pair")
    # confidence: the perfect judge is sure of every pair, the biased one (p = 0.65) of none
    assert perfect["confident_share"] == 1.0 and perfect["agreement_confident"] == 1.0, (
        "swap_average: a perfect judge gives p = 0 or 1, confident on every pair")
    assert biased["confident_share"] == 0.0, (
        f"swap_average: the biased judge's p = 0.65 is not confident (|2p - 1| < 0.5): {biased}")
    assert "0.5 it agrees on 100.0%" in evaluate.describe_agreement(perfect), (
        "the agreement line reports agreement on the confident pairs")
    assert "nan" not in evaluate.describe_agreement(biased), "the agreement line never says nan"


def test_onpolicy_agreement_needs_at_least_one_pair_per_prompt(tok, tiny_judge):
    with pytest.raises(ValueError, match="at least one pair"):
        onpolicy_agreement(tiny_judge, tok, CONTEXTS, lambda p, r: 0.0, pairs_per_prompt=0)


@pytest.mark.exercise("swap_average")
def test_agreement_is_split_between_pairs_holding_the_best_sample_and_the_rest(monkeypatch):
    """A judge can be right whenever the best answer is in the pair and no better than a
    coin between two wrong ones; the split shows it. Here the judge prefers the sorted
    answer, else the longer one: right on the best-holding pair, wrong on the other."""
    fake = [[dict(text=t) for t in ("1 2 3", "2 1 3", "3 2 1", "1")]]  # 2 pairs, 1 prompt
    monkeypatch.setattr(evaluate, "sample_responses", lambda *a, **k: fake * 2)
    monkeypatch.setattr(evaluate, "fit_prompts", lambda tok, prompts, *a, **k: (prompts, 8))
    oracle = {"1 2 3": 1.0, "2 1 3": 0.67, "3 2 1": 0.33, "1": 0.5}

    def orders(model, tok, contexts, a, b, principle=None):
        def probs(xs, ys):
            key = lambda t: (t == "1 2 3", len(t))  # noqa: E731
            return torch.tensor([[1.0, 0.0] if key(x) > key(y) else [0.0, 1.0]
                                 for x, y in zip(xs, ys)])
        return probs(a, b), probs(b, a)
    monkeypatch.setattr(evaluate, "judge_orders", orders)
    model = type("M", (), dict(config=type("C", (), dict(block_size=64))))()
    r = onpolicy_agreement(model, None, ["sort: 3 1 2"] * 2, lambda p, x: oracle[x],
                           pairs_per_prompt=2)
    rule = ("swap_average: a judge sure in both orders (P(A) 1 or 0) decides each pair; it is "
            "right on the pairs holding the best sample and wrong on the others")
    assert r["decided"] == 4 and r["agreement"] == 0.5, f"{rule}: {r}"
    assert r["top_share"] == 0.5 and r["agreement_top"] == 1.0 and r["agreement_rest"] == 0.0, (
        f"{rule}: {r}")
    assert "100.0% on the 50% of pairs holding the best" in evaluate.describe_agreement(r), (
        "the agreement line reports the pairs holding the best sample apart")
    assert "0.0% on pairs of two lesser ones" in evaluate.describe_agreement(r), (
        "the agreement line reports the pairs of two lesser samples apart")

