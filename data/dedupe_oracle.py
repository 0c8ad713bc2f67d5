"""Oracle for the deduplication task (data/make_dedupe.py copies it into the task folder
as oracle.py): keep the first occurrence of each word, in order.

    prompt   "dedupe: red fox red owl sun fox"
    response "red fox owl sun"

score(prompt, response) -> float in [0, 1] plays the paper's external evaluator and is
used for evaluation and by the generator (to label pairs); never by the trainers. It is
self-contained on purpose: a task folder is portable.

Scoring:
- 1.0 only for the exact answer: the prompt's words, each once, in order of first
  appearance, single spaces, no other text.
- otherwise 1 - d / max(len(answer), len(response)), where d is the edit distance between
  the response's whitespace-separated words and the answer's, counting insertions,
  deletions, substitutions and swaps of two neighbours (restricted Damerau-Levenshtein):
  a repeat kept, a word dropped, two words swapped each cost 1; a word kept at its last
  occurrence instead of its first costs 2 when it moves further.
- a response that is not clean (double spaces, a trailing space, a word not in the
  prompt) keeps half of that credit; text sharing no word with the answer scores 0.
"""
import re

PREFIX = "dedupe: "
_WORD = re.compile(r"[a-z]+")


def parse_prompt(prompt):
    """'dedupe: red fox red' -> ['red', 'fox', 'red']; ValueError for another prompt."""
    words = prompt[len(PREFIX):].split(" ")
    if not prompt.startswith(PREFIX) or not all(_WORD.fullmatch(w) for w in words):
        raise ValueError(f"not a dedupe prompt ({PREFIX!r} and lower-case words separated "
                         f"by single spaces): {prompt!r}")
    return words


def answer(prompt):
    """The one response that scores 1.0."""
    return " ".join(dict.fromkeys(parse_prompt(prompt)))


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
    clean = response == " ".join(got) and set(got) <= set(want)
    return max(0.0, min(1.0, sim if clean else 0.5 * sim))
