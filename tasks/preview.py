"""The transcript preview: the Markdown artifact a transcribe run leaves in the Prefect UI.

It is made from the run record (``run.json``, :func:`tasks.job.write_run_record`) alone, so the
preview says what the record says: the languages heard, each model with its revision, each
stage's time, the subtitle check, links to the output files, and how the text begins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.markdown import cell, escape, file_link, lines

LIMIT = 1200
"""How many characters of the transcript the preview quotes."""


def transcript_preview(text: str, record: dict[str, Any], limit: int = LIMIT) -> str:
    """Markdown for the flow run's artifact.

    Args:
        text: The transcript's text.
        record: The run record (``run.json``).
        limit: The most characters of ``text`` quoted (cut at a word).
    """
    shown = text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"
    return (
        "\n\n".join(
            part
            for part in (
                f"# {escape(Path(record['media']).name)}",
                _figures(record),
                _languages(record.get("languages")),
                _models_table(record["models"]),
                _stages_table(record["stages"]),
                check_table(record.get("subtitles")),
                "Outputs:  \n" + lines(file_link(p) for p in record["outputs"].values()),
                f"> {escape(shown) if shown else '(no speech found)'}",
            )
            if part
        )
        + "\n"
    )


def _figures(record: dict[str, Any]) -> str:
    """Profile, audio length and real-time factor; a run of cached stages says so."""
    factor = f"real-time factor {record['real_time_factor']}"
    if record.get("cached"):
        factor += " (cached: every stage was reused; the factor is the run that did the work)"
    audio = f"{record['audio_seconds']:.1f} s of audio"
    return f"profile {escape(record['profile'])}, {audio}, {factor}"


def _languages(seconds: dict[str, float] | None) -> str:
    """The language(s) heard, with the seconds of speech in each, most first."""
    if not seconds:
        return "Language heard: none (no speech kept)"
    heard = ", ".join(f"{escape(code)} ({value:.1f} s)" for code, value in seconds.items())
    return f"Language{'s' if len(seconds) > 1 else ''} heard: {heard}"


def _models_table(models: dict[str, dict[str, Any]]) -> str:
    """Each stage's model, backend and pinned revision."""
    rows = "\n".join(
        _row(stage, m.get("model"), m.get("backend"), m.get("revision"))
        for stage, m in models.items()
    )
    return f"| stage | model | backend | revision |\n|---|---|---|---|\n{rows}"


def _stages_table(stages: dict[str, dict[str, Any]]) -> str:
    """Each stage's seconds and whether this run reused its recorded result."""
    rows = "\n".join(
        _row(stage, f"{s['seconds']:.2f}", "yes" if s["cached"] else "no")
        for stage, s in stages.items()
    )
    return f"| stage | seconds | cached |\n|---|---|---|\n{rows}"


def check_table(check: dict[str, Any] | None) -> str:
    """The subtitle check's figures as Markdown: the rule set, then each broken rule's cues."""
    if not check:
        return ""
    head = (
        f"Subtitle check ({escape(check['rules'])}): {check['violations']} violation(s) in "
        f"{check['cues']} cues, {check['per_100_cues']} per 100 cues"
    )
    if not check["by_rule"]:
        return head
    rows = "\n".join(
        _row(rule, len(cues), ", ".join(map(str, cues[:20])))
        for rule, cues in check["by_rule"].items()
    )
    return f"{head}\n\n| rule | violations | cues |\n|---|---|---|\n{rows}"


def _row(*values: Any) -> str:
    """One Markdown table row, each value a literal cell (:func:`tasks.markdown.cell`)."""
    return "| " + " | ".join(str(cell(v)) for v in values) + " |"
