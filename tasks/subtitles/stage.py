"""The subtitles stage's task: ``<stem>.<fmt>`` for each format at the job's top, and the
subtitle check's figures for ``run.json``."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from tasks.job import Job, StageResult, room_for
from tasks.naming import stage_run_name
from tasks.subtitles import write_outputs
from tasks.subtitles.check import lint, summary
from tasks.subtitles.layout import compile_cues
from tasks.subtitles.rules import RuleSet, rules_for_language
from tasks.transcript import Segment, Transcript

log = logging.getLogger(__name__)


@task(cache_policy=NONE, task_run_name=stage_run_name("subtitles"))
def write_subtitles(
    job: Job,
    transcript: StageResult,
    formats: tuple[str, ...],
    rules: RuleSet,
    cuts: tuple[float, ...] = (),
) -> dict[str, Any]:
    """subtitles: ``<stem>.<fmt>`` for each requested format, cues under ``rules``, timed to
    the video's shot changes ``cuts`` (seconds) where it has any.

    Returns:
        ``outputs`` (format -> path) and ``check`` (the subtitle check of the cues written).
    """
    return write_files(job, transcript, job.stem, formats, rules, cuts)


def write_files(
    job: Job,
    transcript: StageResult,
    stem: str,
    formats: tuple[str, ...],
    rules: RuleSet,
    cuts: tuple[float, ...] = (),
) -> dict[str, Any]:
    """Write one transcript's files as ``<stem>.<fmt>``, each run of segments in one language
    under the rule set of that language (a transcript that changes language changes sets),
    timed to the shot changes ``cuts``."""
    text = Transcript.load(Path(transcript.result["path"]))
    main = rules_for_language(rules, text.language)
    cues: list = []
    faults: list = []
    for run_rules, segments in _rule_runs(text, rules):
        run = compile_cues(replace(text, segments=segments), run_rules, cuts)
        faults += [replace(v, cue=v.cue + len(cues)) for v in lint(run, run_rules)]
        cues += run  # once, for every format and the check
    with room_for(job, f"the {text.language} subtitles"):
        paths = write_outputs(text, job.path, stem, formats, main, cues)
    rules = main
    check = summary(cues, faults, rules)
    log.info("subtitles %s: %d cue(s) under %s, as %s", stem, len(cues), rules.name,
             ", ".join(paths))  # fmt: skip
    if check["violations"]:
        log.info(
            "subtitles %s: %d of %d cues break a %s rule that no layout could keep (%s)",
            stem,
            len({d["cue"] for d in check["details"]}),
            check["cues"],
            rules.name,
            ", ".join(f"{rule} {len(cues)}" for rule, cues in check["by_rule"].items()),
        )
    return {"outputs": {fmt: str(p) for fmt, p in paths.items()}, "check": check}


def _rule_runs(text: Transcript, rules: RuleSet) -> list[tuple[RuleSet, tuple[Segment, ...]]]:
    """Consecutive segments whose languages share a rule set, with that set."""
    runs: list[tuple[RuleSet, tuple[Segment, ...]]] = []
    for segment in text.segments:
        own = rules_for_language(rules, segment.language or text.language)
        if runs and runs[-1][0] == own:
            runs[-1] = (own, (*runs[-1][1], segment))
        else:
            runs.append((own, (segment,)))
    return runs or [(rules_for_language(rules, text.language), ())]
