"""Oracle for the default task: sort a short list of integers.

    prompt   "sort: 7 3 9 1 4"
    response "1 3 4 7 9"

score(prompt, response) -> float in [0, 1] plays the paper's external evaluator
(GPT-4) and is used for evaluation and by the generator (data/make_sort.py), which keeps
pairs it scores differently and whose simulated annotator perceives, noisily, the
mistakes its answer defines; never by the trainers. It is self-contained on purpose: a
task folder is portable.

Scoring:
- 1.0 only for the exact answer: the sorted numbers, single spaces, no other text.
- otherwise 1 - d / max(len(answer), len(response)), where d is the edit distance
  between the response's whitespace-separated tokens and the answer's, counting
  insertions, deletions, substitutions and swaps of two neighbours (restricted
  Damerau-Levenshtein). A dropped, repeated, changed or swapped number costs 1;
  a number moved further costs 2.
- a response that is not a clean list of integers (a word, "07", double spaces,
  a trailing space, a stray comma) keeps half of that credit; a token that is not
  an integer never matches, so text with no numbers scores 0.
"""
import re

PRINCIPLES = ("correctness",)  # the one principle this task's pairs are judged on
PREFIX = "sort: "
_INT = re.compile(r"0|[1-9][0-9]*")


def parse_prompt(prompt):
    """'sort: 7 3 9' -> [7, 3, 9]; ValueError for a prompt not from this task."""
    if not prompt.startswith(PREFIX):
        raise ValueError(f"not a sort prompt (should start with {PREFIX!r}): {prompt!r}")
    toks = prompt[len(PREFIX):].split(" ")
    if not toks or not all(_INT.fullmatch(t) for t in toks):
        raise ValueError(f"not a sort prompt (numbers separated by single spaces): {prompt!r}")
    return [int(t) for t in toks]


def answer(prompt):
    """The one response that scores 1.0."""
    return " ".join(str(x) for x in sorted(parse_prompt(prompt)))


def edit_distance(a, b):
    """Restricted Damerau-Levenshtein distance between two sequences."""
    n, m = len(a), len(b)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[n][m]


def score(prompt, response):
    right = answer(prompt)
    if response == right:
        return 1.0
    want, got = right.split(" "), response.split()
    sim = 1.0 - edit_distance(got, want) / max(len(got), len(want))
    clean = response == " ".join(got) and all(_INT.fullmatch(t) for t in got)
    return max(0.0, min(1.0, sim if clean else 0.5 * sim))
