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
def test_position_flips_are_counted_on_the_scored_pairs_not_on_identical_ones(monkeypatch):
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
    assert perfect["position_flip"] == 0.0, "a perfect judge's decisions never follow position"
    assert biased["agreement"] == 1.0 and biased["agreement_one_order"] == 0.5, rule
    assert biased["position_flip"] == 1.0, (
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


# -----------------------------------------------------------------------------
# a self-training step's statistics and the oracle's view of them

def sample(text, stopped=True):
    return dict(text=text, ids=[ord(c) for c in text], stopped=stopped)


def test_step_statistics_known_answers():
    """Five prompts judged: a right pair the judge kept, a pair it got wrong and kept, an
    oracle tie it found undecided, identical samples, and a pair it could not read (0.5:
    too long for its context). The oracle scores the sorted answer 1, a one-mistake
    answer 0.5, anything else 0."""
    oracle = lambda p, r: {"1 2": 1.0, "2 1": 0.5, "1 1": 0.5}.get(r, 0.0)  # noqa: E731
    a = [sample("1 2"), sample("1 1"), sample("2 1"), sample("1 2"), sample("1 2")]
    b = [sample("2 1"), sample("1 2"), sample("1 1"), sample("1 2"), sample("x")]
    p = torch.tensor([0.9, 0.8, 0.5, 0.5, 0.5])            # the second is wrong
    flipped = torch.tensor([False, True, True, True, True])
    kept = [dict(prompt="q", chosen=a[0], rejected=b[0]),
            dict(prompt="q", chosen=a[1], rejected=b[1])]
    judged = dict(prompts=["q"] * 5, a=a, b=b, p=p, flipped=flipped,
                  skipped=dict(identical=1, undecided=2, cut_off=0))
    st = evaluate.step_stats(kept, judged)
    assert st["pairs"] == 2 and st["kept"] == 0.4 and st["identical"] == 0.2
    assert st["judge_conf"] == pytest.approx((0.8 + 0.6) / 5)
    assert st["judge_flips"] == pytest.approx(3 / 4)        # on the 4 pairs that differ
    d = evaluate.step_diagnostics(oracle, kept, judged)
    assert d["oracle_agree_kept"] == 0.5                   # kept: one right, one wrong
    assert d["oracle_chosen_perfect"] == 0.5
    assert d["oracle_agree_all"] == 0.5                    # ties and unread pairs don't count
    assert d["oracle_ties"] == pytest.approx(1 / 4)        # "2 1" vs "1 1", of 4 that differ


def test_step_statistics_of_offline_and_raft_steps():
    oracle = lambda p, r: {"1 2": 1.0, "2 1": 0.5}.get(r, 0.0)  # noqa: E731
    labelled = [dict(prompt="q", chosen=sample("2 1"), rejected=sample("1 2")),  # label wrong
                dict(prompt="q", chosen=sample("1 2"), rejected=sample("x"))]
    assert evaluate.step_stats(labelled, None) == dict(pairs=2)
    d = evaluate.step_diagnostics(oracle, labelled, None)
    assert d == dict(oracle_agree_kept=0.5, oracle_chosen_perfect=0.5)
    cands = [[sample("x"), sample("2 1"), sample("1 2")], [sample("2 1"), sample("x")]]
    judged = dict(prompts=["q", "q"], candidates=cands, winners=[1, 0])
    winners = [dict(prompt="q", chosen=c[w]) for c, w in zip(cands, [1, 0])]
    st = evaluate.step_stats(winners, judged)
    assert st["kept"] == 1.0 and st["resp_len"] == pytest.approx(11 / 5)  # 1 + 3 + 3 + 3 + 1 chars
    d = evaluate.step_diagnostics(oracle, winners, judged)
    assert d == dict(oracle_chosen_perfect=0.0, oracle_winner_best=0.5)
    assert evaluate.step_stats([], judged)["skipped"] is True


# -----------------------------------------------------------------------------
# jsft.py's verdict on its judge and policy

def test_verdict_says_plainly_when_the_judge_is_near_chance_weak_or_ready():
    """A judge at chance used to end JSFT with numbers only, and stage 2 then trained on
    nothing. The verdict names the state and what to try."""
    own = lambda agree, flips: dict(decided=300, agreement=agree, position_flip=flips)  # noqa
    assert "NEAR CHANCE (58.7% agreement on the policy's own pairs, decisions by position 58.7%)" \
        in evaluate.verdict(own(0.587, 0.587))[0]
    assert "NEAR CHANCE" in evaluate.verdict(own(0.9, 0.44))[0]   # follows the position
    assert "WEAK (73.0% agreement" in evaluate.verdict(own(0.73, 0.08))[0]
    assert "WEAK" in evaluate.verdict(own(0.9, 0.2))[0]
    assert "ready for self-training" in evaluate.verdict(own(0.92, 0.07))[0]
    # without an oracle (or no pair it tells apart): the held-out labels
    labels = dict(decided=0, label_agreement=0.55, label_flips=0.1, label_pairs=256)
    assert "NEAR CHANCE (55.0% agreement on the held-out labelled pairs" \
        in evaluate.verdict(labels)[0]
    assert evaluate.verdict({}) == []


def test_verdict_says_when_selfjudge_will_refuse_the_judge():
    """The short class run once ended JSFT with "WEAK ... expect a small gain" and then
    selfjudge.py refused the judge on the held-out labels (78.1%, flips 35.9%): the verdict
    now says so first, with the same numbers and thresholds as the refusal."""
    r = dict(decided=300, agreement=0.732, position_flip=0.301, label_agreement=0.781,
             label_flips=0.359, label_pairs=256)
    weak, refused = evaluate.verdict(r)
    assert "WEAK (73.2% agreement" in weak
    assert refused == (
        "verdict: selfjudge.py will refuse this judge: on the 256 held-out labelled pairs it "
        "agrees with the labels on 78.1% and its decisions follow the position on 35.9%, "
        "where self-training needs at least 65% and at most 35%. Train it further "
        "(--max_steps), or pass --allow_weak_judge to selfjudge.py to see what happens.")
    assert len(evaluate.verdict(dict(r, label_flips=0.34))) == 1   # passes the gate
    assert len(evaluate.verdict(dict(r, label_flips=0.1, label_agreement=0.6))) == 2


def test_verdict_says_when_the_policy_learned_little():
    lines = evaluate.verdict(dict(oracle_score=0.075, fully_right=0.0))
    assert lines == ["verdict: the policy has learned little of the task (oracle score 0.075, "
                     "fully right 0.0%); self-training refines a policy, it does not teach "
                     "one: train longer."]
    assert evaluate.verdict(dict(oracle_score=0.8, fully_right=0.45)) == []


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
    monkeypatch.setattr(evaluate, "judge_orders", orders)
    h = evaluate.heldout_judgment(None, None, task)
    assert h == dict(label_agreement=0.75, label_flips=0.25, label_pairs=4, label_unread=1), (
        "swap_average of both orders: right on 3 of the 4 readable pairs (the fourth by the "
        f"averaged probability, though it answers A twice), the fifth (0.5) unread: {h}")
