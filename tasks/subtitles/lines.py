"""Line breaks inside one cue, as style guides rank them.

A cue stays on one line when it fits. Otherwise its words are cut into the fewest lines that
fit, choosing the cut that scores best: after a sentence end, then after a comma or other
clause mark, then before a conjunction or preposition; never after one (``the``, ``of``,
``and``: the rule set's glue words), never leaving one word alone on a line of a longer cue,
with lines of similar length, and the bottom line the longer when they differ (a bottom-heavy
pyramid). The compiler and the subtitle check share this scoring, so the check calls a break
bad only when a better one exists for the same words.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import accumulate

from tasks.subtitles.rules import RuleSet

SENTENCE_END = ".?!…。？！"
CLAUSE_END = ",;:–—，、；："
CLOSERS = "\"')]}»”’」』"

# What a break costs, by what the line before it ends with.
AFTER_SENTENCE, AFTER_CLAUSE, BEFORE_GLUE, PLAIN, AFTER_GLUE = 0.0, 1.0, 2.0, 4.0, 12.0
ORPHAN = 10.0
TOP_HEAVY = 2.0


@lru_cache(maxsize=8192)
def bare(word: str) -> str:
    """A word without surrounding punctuation, lower-cased (for the glue-word test)."""
    return word.strip().strip(SENTENCE_END + CLAUSE_END + CLOSERS + "\"'(«“‘-").lower()


def ends_sentence(word: str) -> bool:
    """Whether ``word`` ends a sentence (its last mark, closing quotes aside)."""
    return word.rstrip(CLOSERS)[-1:] in SENTENCE_END


def ends_clause(word: str) -> bool:
    """Whether ``word`` ends a clause (a comma, colon, dash...)."""
    return word.rstrip(CLOSERS)[-1:] in CLAUSE_END


def break_cost(before: str, after: str | None, rules: RuleSet) -> float:
    """What a break between ``before`` and ``after`` costs (lower is better)."""
    if ends_sentence(before):
        return AFTER_SENTENCE
    if ends_clause(before):
        return AFTER_CLAUSE
    if bare(before) in rules.glue:
        return AFTER_GLUE
    if after is not None and bare(after) in rules.glue:
        return BEFORE_GLUE
    return PLAIN


def join(words: Sequence[str], rules: RuleSet) -> str:
    """One line of ``words``."""
    return rules.joiner.join(words)


def width(words: Sequence[str], rules: RuleSet) -> int:
    """Characters of ``words`` on one line."""
    return sum(len(w) for w in words) + len(rules.joiner) * max(0, len(words) - 1)


def layout_cost(lines: Sequence[Sequence[str]], rules: RuleSet) -> float:
    """The score of cutting a cue's words into these lines (lower is better)."""
    total = 0.0
    count = sum(len(line) for line in lines)
    for upper, lower in zip(lines, lines[1:], strict=False):
        total += break_cost(upper[-1], lower[0], rules)
    if len(lines) > 1:
        if count >= 3 and any(len(line) == 1 for line in lines):
            total += ORPHAN
        widths = [width(line, rules) for line in lines]
        total += 6.0 * (max(widths) - min(widths)) / rules.max_line_chars
        if len(lines) == 2 and widths[0] > widths[1]:
            total += TOP_HEAVY
    return total


def break_lines(words: Sequence[str], rules: RuleSet, prefix: int = 0) -> list[list[str]] | None:
    """The best lines for ``words``, or None when they do not fit in the rule set's lines.

    Args:
        words: The cue's words, in order.
        rules: Line length and count, and the joiner and glue words.
        prefix: Characters the first line carries before its words (a speaker label).

    A single word longer than a line stands alone on its line: words are never cut.
    """
    words = tuple(words)
    if not words:
        return []
    span = _spans(words, rules)
    if len(words) == 1 or span(0, len(words)) + prefix <= rules.max_line_chars:
        return [list(words)]

    # The fewest lines that fit, then the best cut among layouts of that many lines.
    for count in range(2, rules.max_lines + 1):
        layouts = _layouts(len(words), span, rules.max_line_chars, prefix, count)
        if layouts:
            best = min(layouts, key=lambda cuts: _cuts_cost(words, cuts, span, rules))
            return _cut(words, best)
    return None


def _cuts_cost(
    words: tuple[str, ...], cuts: tuple[int, ...], span: Callable[[int, int], int], rules: RuleSet
) -> float:
    """:func:`layout_cost` of the lines ``cuts`` makes of ``words``, without making them."""
    edges = (0, *cuts, len(words))
    total = sum(break_cost(words[c - 1], words[c], rules) for c in cuts)
    if cuts:
        if len(words) >= 3 and any(b - a == 1 for a, b in zip(edges, edges[1:], strict=False)):
            total += ORPHAN
        widths = [span(a, b) for a, b in zip(edges, edges[1:], strict=False)]
        total += 6.0 * (max(widths) - min(widths)) / rules.max_line_chars
        if len(widths) == 2 and widths[0] > widths[1]:
            total += TOP_HEAVY
    return total


def _spans(words: tuple[str, ...], rules: RuleSet) -> Callable[[int, int], int]:
    """``span(a, b)``: characters of ``words[a:b]`` on one line, from running sums."""
    ends = list(accumulate((len(w) for w in words), initial=0))
    joiner = len(rules.joiner)
    return lambda a, b: ends[b] - ends[a] + joiner * (b - a - 1)


def _layouts(
    n: int, span: Callable[[int, int], int], limit: int, prefix: int, count: int
) -> list[tuple[int, ...]]:
    """Every way to cut ``n`` words into exactly ``count`` lines that fit (cuts as indices)."""
    found: list[tuple[int, ...]] = []

    def walk(start: int, left: int, cuts: tuple[int, ...]) -> None:
        extra = prefix if start == 0 else 0
        if left == 1:
            if n - start == 1 or span(start, n) + extra <= limit:
                found.append(cuts)
            return
        for stop in range(start + 1, n - left + 2):
            if stop - start > 1 and span(start, stop) + extra > limit:
                break
            walk(stop, left - 1, (*cuts, stop))

    walk(0, count, ())
    return found


def _cut(words: tuple[str, ...], cuts: tuple[int, ...]) -> list[list[str]]:
    edges = (0, *cuts, len(words))
    return [list(words[a:b]) for a, b in zip(edges, edges[1:], strict=False)]
