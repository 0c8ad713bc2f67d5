"""Oracle for the number-words task: write a number from 0 to 9999 in English words.

    prompt   "words: 4521"
    response "four thousand five hundred twenty one"

score(prompt, response) -> float in [0, 1] plays the paper's external evaluator
(GPT-4) and is used for evaluation and by the generator (data/make_words.py), which
keeps pairs it scores differently and labels them by it with Bradley-Terry noise; never
by the trainers. It is self-contained on purpose: a task folder is portable.

The answer: lower case words separated by single spaces, no "and", no hyphens, no
commas; a zero hundreds or tens place says nothing ("one thousand five", "three hundred
twelve", "seven thousand", "zero" for 0).

Scoring:
- 1.0 only for the exact answer.
- otherwise 1 - d / max(len(answer), len(response)), where d is the edit distance
  between the response's whitespace-separated words and the answer's, counting
  insertions, deletions, substitutions and swaps of two neighbours (restricted
  Damerau-Levenshtein). A wrong digit word, "fourteen" for "forty", a dropped
  "hundred", a repeated word or two words swapped each cost 1.
- a response that is not clean (a word outside the number words, upper case, a hyphen,
  double spaces, a trailing space) keeps half of that credit; text with no number word
  right in place scores 0.
"""
import re

PREFIX = "words: "
ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
VOCAB = set(ONES) | set(TENS[2:]) | {"hundred", "thousand"}
_NUMBER = re.compile(r"0|[1-9][0-9]{0,3}")


def parse_prompt(prompt):
    """'words: 4521' -> 4521; ValueError for a prompt not from this task."""
    if not prompt.startswith(PREFIX) or not _NUMBER.fullmatch(prompt[len(PREFIX):]):
        raise ValueError(f"not a words prompt ({PREFIX!r} and a number from 0 to 9999, "
                         f"no leading zeros): {prompt!r}")
    return int(prompt[len(PREFIX):])


def number_words(n):
    """4521 -> ['four', 'thousand', 'five', 'hundred', 'twenty', 'one']."""
    if n == 0:
        return ["zero"]
    out = []
    if n >= 1000:
        out += [ONES[n // 1000], "thousand"]
    if n % 1000 >= 100:
        out += [ONES[n % 1000 // 100], "hundred"]
    rest = n % 100
    if rest >= 20:
        out += [TENS[rest // 10]] + ([ONES[rest % 10]] if rest % 10 else [])
    elif rest:
        out.append(ONES[rest])
    return out


def answer(prompt):
    """The one response that scores 1.0."""
    return " ".join(number_words(parse_prompt(prompt)))


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
    clean = response == " ".join(got) and all(w in VOCAB for w in got)
    return max(0.0, min(1.0, sim if clean else 0.5 * sim))
