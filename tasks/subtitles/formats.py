"""Subtitle files from laid-out cues: SRT, WebVTT, ASS and TTML (IMSC 1.1 Text).

TTML goes through ttconv, the converter of the IMSC specification's editors (Sandflow): its
IMSC writer emits the namespaces, ``ttp:contentProfiles``, region styling and time expressions
the profile requires, so voxflow builds ttconv's document model and never writes XML itself.
ASS goes through pysubs2, which keeps the script header, styles and event lines as editors
(Aegisub, Subtitle Edit) expect them; ASS counts in centiseconds, so its times round to 10 ms.

SRT and WebVTT stay voxflow's own twenty lines: their output is pinned byte for byte, and the
libraries' writers differ where it matters (pysubs2 numbers WebVTT cues, drops ``<v>`` voices,
leaves ``<`` and ``&`` unescaped and reads ``{...}`` in SRT text as ASS override tags).
"""

from __future__ import annotations

import xml.etree.ElementTree as et
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING

from tasks.subtitles.layout import Cue, speaker_prefix

if TYPE_CHECKING:
    from ttconv import model

TTML_PROFILE = "http://www.w3.org/ns/ttml/profile/imsc1.1/text"
"""The IMSC 1.1 Text profile's designator, signalled in ``ttp:contentProfiles``."""


def format_timestamp(seconds: float, sep: str = ",") -> str:
    """Format seconds as ``HH:MM:SS,mmm`` (nearest millisecond; hours grow past two digits).

    Args:
        seconds: Time from the start of the media; negative values count as zero.
        sep: Separator before the milliseconds: ``","`` for SRT, ``"."`` for WebVTT.
    """
    total_ms = max(0, round(seconds * 1000))
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{millis:03d}"


def srt(cues: Sequence[Cue]) -> str:
    """SubRip: numbered cues, speaker as a ``"SPEAKER: "`` prefix on the first line."""
    blocks = []
    for number, cue in enumerate(cues, 1):
        times = f"{format_timestamp(cue.start)} --> {format_timestamp(cue.end)}"
        blocks.append(f"{number}\n{times}\n" + "\n".join(_shown(cue)) + "\n")
    return "\n".join(blocks)


def vtt(cues: Sequence[Cue]) -> str:
    """WebVTT: a ``WEBVTT`` header, speaker as a ``<v SPEAKER>`` voice tag."""
    blocks = ["WEBVTT\n"]
    for cue in cues:
        lines = [_vtt_escape(line) for line in cue.lines]
        if cue.speaker:
            lines[0] = f"<v {_vtt_escape(cue.speaker)}>{lines[0]}"
        times = f"{format_timestamp(cue.start, '.')} --> {format_timestamp(cue.end, '.')}"
        blocks.append(f"{times}\n" + "\n".join(lines) + "\n")
    return "\n".join(blocks)


def ass(cues: Sequence[Cue]) -> str:
    """Advanced SubStation Alpha through pysubs2: one Dialogue line per cue, the speaker in
    the Name field and (as in SRT) before the first line."""
    import pysubs2

    script = pysubs2.SSAFile()
    for cue in cues:
        # braces open override tags in ASS: shown text keeps them as brackets
        text = r"\N".join(_shown(cue)).replace("{", "(").replace("}", ")")
        script.append(
            pysubs2.SSAEvent(
                start=round(cue.start * 1000),
                end=round(cue.end * 1000),
                text=text,
                name=cue.speaker or "",
            )
        )
    return script.to_string("ass")


def ttml(cues: Sequence[Cue], language: str, fps: float) -> str:
    """TTML in the IMSC 1.1 Text profile, through ttconv's IMSC writer.

    Each cue is a ``<p>`` in one bottom region (styled with ``tts:origin``, ``tts:extent``,
    ``tts:displayAlign`` and ``tts:textAlign``), its lines ``<span>`` elements parted by
    ``<br/>``, the speaker before the first line as in SRT. Times are clock times to the
    millisecond, the same as the SRT's; ``ttp:frameRate`` is the frame rate the cues were timed
    in (``fps``, NTSC rates with their 1000/1001 multiplier).

    Args:
        cues: The cues, in time order.
        language: The subtitles' language, as ``xml:lang``.
        fps: Frame rate the rule set counted gaps in (the video's, where it has one).
    """
    from ttconv import model
    from ttconv.imsc import config, writer

    doc = model.ContentDocument()
    doc.set_lang(language or "")
    doc.set_content_profiles({TTML_PROFILE})
    region = _bottom_region(doc)
    body = model.Body(doc)
    doc.set_body(body)
    div = model.Div(doc)
    body.push_child(div)
    for cue in cues:
        div.push_child(_paragraph(doc, cue, region))
    options = config.IMSCWriterConfiguration(
        time_format=config.TimeExpressionSyntaxEnum.clock_time,
        fps=_frame_rate(fps),
        profile_signaling=config.ContentProfilesSignaling.CONTENT_PROFILES,
    )
    root = writer.from_model(doc, options).getroot()
    et.indent(root)
    for paragraph in root.iter(f"{{{_TTML}}}p"):  # whitespace inside a <p> is shown text
        paragraph.text = None
        for child in paragraph:
            child.tail = None
    return et.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


_TTML = "http://www.w3.org/ns/ttml"


def _bottom_region(doc: model.ContentDocument) -> model.Region:
    """The one region every cue shows in: the frame's central 80%, text at its bottom, centred."""
    from ttconv import model
    from ttconv import style_properties as sp

    pct = sp.LengthType.Units.pct
    region = model.Region("bottom", doc)
    region.set_style(
        sp.StyleProperties.Origin, sp.CoordinateType(sp.LengthType(10, pct), sp.LengthType(10, pct))
    )
    region.set_style(
        sp.StyleProperties.Extent,
        sp.ExtentType(height=sp.LengthType(80, pct), width=sp.LengthType(80, pct)),
    )
    region.set_style(sp.StyleProperties.DisplayAlign, sp.DisplayAlignType.after)
    region.set_style(sp.StyleProperties.TextAlign, sp.TextAlignType.center)
    doc.put_region(region)
    return region


def _paragraph(doc: model.ContentDocument, cue: Cue, region: model.Region) -> model.P:
    from ttconv import model

    paragraph = model.P(doc)
    paragraph.set_begin(Fraction(round(cue.start * 1000), 1000))
    paragraph.set_end(Fraction(round(cue.end * 1000), 1000))
    paragraph.set_region(region)
    for index, line in enumerate(_shown(cue)):
        if index:
            paragraph.push_child(model.Br(doc))
        span = model.Span(doc)
        span.push_child(model.Text(doc, line))
        paragraph.push_child(span)
    return paragraph


def _frame_rate(fps: float) -> Fraction:
    """``fps`` as a fraction: 23.976 and 29.97 as 24000/1001 and 30000/1001."""
    ntsc = round(fps * 1.001)
    if abs(fps - ntsc / 1.001) < 0.005 and abs(fps - ntsc) > 0.005:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(fps).limit_denominator(1000)


def _shown(cue: Cue) -> list[str]:
    """The cue's lines as shown: the speaker prefix on the first."""
    lines = list(cue.lines)
    if lines:
        lines[0] = speaker_prefix(cue.speaker) + lines[0]
    return lines


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
