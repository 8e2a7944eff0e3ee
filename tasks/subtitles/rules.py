"""Subtitle rule sets: what a cue may hold and how long it stays, as style guides write them.

``netflix-en`` follows Netflix's English timed-text style guide: 42 characters a line, 2 lines,
at most 17 characters a second, 5/6 s to 7 s on screen, at least 2 frames between cues and gaps
under 12 frames closed to 2 (chaining), cue edges kept out of the half second around a shot
change (Netflix's frame zones, as Subtitle Edit's checks count them), line breaks after
punctuation and before conjunctions and prepositions. ``netflix-en-kids`` reads at 13 characters
a second. The CJK sets follow the same guide's Simplified Chinese (16 characters a line, 9 a
second) and Japanese (13 a line, 4 a second) rules, with lines joined without spaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from voxflow.errors import BadInput

# Words a line should not end with: a break goes before them, not after (English).
ENGLISH_GLUE = frozenset(
    """a an the and or but nor so yet for if as than that because while when where which who
    whom whose to of in on at by with from into onto upon over under about above below across
    after before between through during without within along among around against toward
    towards behind beyond near off out up down my your his her its our their this these those
    is are was were be been am i we you he she they it not very""".split()
)


@dataclass(frozen=True)
class RuleSet:
    """The rules a subtitle file keeps.

    Attributes:
        name: The set's name (``netflix-en``, ...).
        max_line_chars: Longest line, in characters, speaker prefix included.
        max_lines: Most lines in one cue.
        max_cps: Highest reading speed: characters (spaces and punctuation included, line
            breaks not) per second on screen.
        min_duration: Shortest time a cue stays on screen, in seconds.
        max_duration: Longest time a cue stays on screen, in seconds.
        fps: Frame rate the gaps are counted in.
        min_gap_frames: Fewest frames between two cues.
        chain_frames: A gap shorter than this many frames is closed to ``min_gap_frames``.
        joiner: What goes between two words on a line (a space; nothing for CJK).
        glue: Words a line should not end with (conjunctions, prepositions, articles).
    """

    name: str
    max_line_chars: int = 42
    max_lines: int = 2
    max_cps: float = 17.0
    min_duration: float = 5 / 6
    max_duration: float = 7.0
    fps: float = 24.0
    min_gap_frames: int = 2
    chain_frames: int = 12
    joiner: str = " "
    glue: frozenset[str] = field(default=ENGLISH_GLUE, repr=False)

    def __post_init__(self) -> None:
        if self.max_line_chars < 1 or self.max_lines < 1:
            raise BadInput(
                f"max_line_chars and max_lines must be at least 1, got {self.max_line_chars} "
                f"and {self.max_lines}"
            )
        if self.max_duration <= 0 or self.min_duration < 0 or self.max_cps <= 0:
            raise BadInput(
                "max_duration and max_cps must be positive and min_duration not negative, got "
                f"{self.max_duration}, {self.max_cps} and {self.min_duration}"
            )
        if self.fps <= 0 or self.min_gap_frames < 0 or self.chain_frames < self.min_gap_frames:
            raise BadInput(
                f"fps must be positive and chain_frames at least min_gap_frames, got {self.fps}, "
                f"{self.chain_frames} and {self.min_gap_frames}"
            )

    @property
    def min_gap(self) -> float:
        """Least time between cues, in seconds."""
        return self.min_gap_frames / self.fps

    @property
    def chain_gap(self) -> float:
        """Gaps shorter than this (seconds) are closed to :attr:`min_gap`."""
        return self.chain_frames / self.fps

    @property
    def shot_zone_frames(self) -> int:
        """Half a second in frames (12 at 24 fps, 13 at 25): no cue may start within this many
        frames after a shot change, nor end within this many of one, except 2 frames before
        it. Rounded half up, as Subtitle Edit's Netflix check rounds it."""
        return int(self.fps / 2 + 0.5)

    @property
    def shot_snap_frames(self) -> int:
        """An in-time fewer than this many frames before a shot change (9 at 24 fps) moves onto
        it; one from here to :attr:`shot_zone_frames` before moves back to the zone's edge."""
        return int(self.shot_zone_frames * 0.75 + 0.5)

    def with_options(self, options: dict[str, Any]) -> RuleSet:
        """This set with some fields changed (from a profile or the command line).

        Raises:
            BadInput: A field the rule sets do not have, or a value of the wrong kind.
        """
        known = {"max_line_chars", "max_lines", "max_cps", "min_duration", "max_duration", "fps"}
        known |= {"min_gap_frames", "chain_frames"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise BadInput(
                f"unknown subtitle rule {', '.join(unknown)}; "
                f"the rules are {', '.join(sorted(known))}"
            )
        try:
            typed = {k: type(getattr(self, k))(v) for k, v in options.items()}
        except (TypeError, ValueError) as e:
            raise BadInput(f"a subtitle rule has a value of the wrong kind: {e}") from e
        return replace(self, **typed)


_CJK = dict(joiner="", glue=frozenset(), max_lines=2)

RULE_SETS: dict[str, RuleSet] = {
    rules.name: rules
    for rules in (
        RuleSet("netflix-en"),
        RuleSet("netflix-en-kids", max_cps=13.0),
        RuleSet("cjk-zh", max_line_chars=16, max_cps=9.0, **_CJK),
        RuleSet("cjk-ja", max_line_chars=13, max_cps=4.0, **_CJK),
    )
}
"""The named rule sets; ``netflix-en`` is the default."""

DEFAULT_RULES = "netflix-en"

_BY_LANGUAGE = {"zh": "cjk-zh", "yue": "cjk-zh", "ja": "cjk-ja"}


def rule_set(name: str | None = None) -> RuleSet:
    """The rule set called ``name`` (``netflix-en`` when None).

    Raises:
        BadInput: No set has that name.
    """
    key = (name or DEFAULT_RULES).strip().lower()
    if key not in RULE_SETS:
        raise BadInput(
            f"unknown subtitle rules {name!r}; choose from {', '.join(RULE_SETS)} "
            "(e.g. --rules netflix-en)"
        )
    return RULE_SETS[key]


def rules_for_language(rules: RuleSet, language: str | None) -> RuleSet:
    """The set for subtitles in ``language``: a CJK set for Chinese and Japanese, else ``rules``
    (its timing rules kept: frame rate, gaps)."""
    base = (language or "").split("-")[0].lower()
    if base not in _BY_LANGUAGE or rules.name.startswith("cjk-"):
        return rules
    cjk = RULE_SETS[_BY_LANGUAGE[base]]
    return replace(cjk, fps=rules.fps, min_gap_frames=rules.min_gap_frames)
