"""Every subtitle format voxflow writes, read back by a reader that is not its writer, and TTML
against the IMSC 1.1 Text profile's required structure."""

from __future__ import annotations

import re
import xml.etree.ElementTree as et
from dataclasses import replace

import pysubs2
import pytest
from ttconv import model
from ttconv.vtt import reader as vtt_reader

from tasks.subtitles import make_cues, write_outputs
from tasks.subtitles.layout import Cue
from tasks.subtitles.rules import rule_set
from tasks.transcript import Segment, Transcript, Word

TT = "http://www.w3.org/ns/ttml"
TTP = "http://www.w3.org/ns/ttml#parameter"
TTS = "http://www.w3.org/ns/ttml#styling"
XML = "http://www.w3.org/XML/1998/namespace"
IMSC_11_TEXT = "http://www.w3.org/ns/ttml/profile/imsc1.1/text"
CLOCK = re.compile(r"^(\d{2,}):([0-5]\d):([0-5]\d(?:\.\d+)?)$")  # TTML clock-time, no frames


@pytest.fixture
def spoken() -> Transcript:
    """Two speakers, a two-line cue, and text that is markup in some formats."""
    one = "Good morning, everyone, and thank you all for coming to this talk on rivers"
    words = tuple(Word(0.5 + 0.4 * i, 0.8 + 0.4 * i, f" {w}") for i, w in enumerate(one.split()))
    reply = (Word(8.0, 8.6, " 1 < 2 & {x}", 0.9), Word(8.7, 9.5, " too.", 0.9))
    return Transcript(
        "en",
        12.0,
        (
            Segment(words[0].start, words[-1].end, one, words, "ANNA"),
            Segment(8.0, 9.5, " 1 < 2 & {x} too.", reply, "BEN"),
        ),
        {"name": "tiny.en", "backend": "test"},
    )


@pytest.fixture
def written(spoken: Transcript, tmp_path) -> tuple[list[Cue], dict]:
    rules = rule_set("netflix-en")
    cues = make_cues(spoken, rules)
    assert any(len(c.lines) == 2 for c in cues) and {c.speaker for c in cues} == {"ANNA", "BEN"}
    return cues, write_outputs(spoken, tmp_path, "talk", "srt,vtt,ttml,ass", rules, cues)


def shown(cue: Cue) -> list[str]:
    return [f"{cue.speaker}: {cue.lines[0]}", *cue.lines[1:]] if cue.speaker else list(cue.lines)


def test_srt_reads_back_through_pysubs2(written) -> None:
    cues, paths = written
    events = pysubs2.load(str(paths["srt"]), format_="srt").events
    assert [(e.start, e.end) for e in events] == [
        (round(c.start * 1000), round(c.end * 1000)) for c in cues
    ]
    assert [e.text.split(r"\N") for e in events] == [shown(c) for c in cues]


def test_vtt_reads_back_through_ttconv(written) -> None:
    cues, paths = written
    with open(paths["vtt"], encoding="utf-8") as f:
        doc = vtt_reader.to_model(f)
    paragraphs = [p for p in doc.get_body().dfs_iterator() if isinstance(p, model.P)]
    assert [(float(p.get_begin()), float(p.get_end())) for p in paragraphs] == [
        (round(c.start, 3), round(c.end, 3)) for c in cues
    ]
    assert [_text(p).split("\n") for p in paragraphs] == [list(c.lines) for c in cues]
    raw = paths["vtt"].read_text(encoding="utf-8")
    assert "<v ANNA>Good morning," in raw and "<v BEN>1 &lt; 2 &amp; {x}" in raw


def test_ass_reads_back_by_its_events_table(written) -> None:
    """Read with the ASS spec's own rule (the Format line names the Dialogue fields), not
    pysubs2: times to the centisecond, the speaker in Name and before the first line."""
    cues, paths = written
    text = paths["ass"].read_text(encoding="utf-8")
    events = text.split("[Events]")[1].strip().splitlines()
    fields = [f.strip() for f in events[0].removeprefix("Format:").split(",")]
    rows = [
        dict(
            zip(
                fields,
                line.removeprefix("Dialogue:").strip().split(",", len(fields) - 1),
                strict=True,
            )
        )
        for line in events[1:]
    ]
    assert [(r["Start"], r["End"]) for r in rows] == [(_ass(c.start), _ass(c.end)) for c in cues]
    assert [r["Name"] for r in rows] == [c.speaker for c in cues]
    assert [r["Text"].split(r"\N") for r in rows] == [
        [line.replace("{", "(").replace("}", ")") for line in shown(c)] for c in cues
    ]


def test_ttml_keeps_the_imsc_11_text_profile(written) -> None:
    cues, paths = written
    root = et.parse(paths["ttml"]).getroot()
    assert root.tag == f"{{{TT}}}tt" and root.get(f"{{{XML}}}lang") == "en"
    assert IMSC_11_TEXT in root.get(f"{{{TTP}}}contentProfiles").split()
    assert (
        root.get(f"{{{TTP}}}frameRate") == "24"
        and root.get(f"{{{TTP}}}frameRateMultiplier") is None
    )
    assert {el.tag.split("}")[0][1:] for el in root.iter()} == {TT}  # no foreign elements
    regions = {r.get(f"{{{XML}}}id"): r for r in root.iter(f"{{{TT}}}region")}
    assert regions and all(
        r.get(f"{{{TTS}}}origin") and r.get(f"{{{TTS}}}extent") for r in regions.values()
    )  # IMSC Text: a region is positioned by tts: styling in percent of the root container
    assert all(re.fullmatch(r"\d+% \d+%", r.get(f"{{{TTS}}}extent")) for r in regions.values())
    paragraphs = list(root.iter(f"{{{TT}}}p"))
    assert all(p.get("region") in regions for p in paragraphs)
    times = [(p.get("begin"), p.get("end")) for p in paragraphs]
    assert all(CLOCK.match(b) and CLOCK.match(e) for b, e in times)
    assert [(_clock(b), _clock(e)) for b, e in times] == [
        (round(c.start, 3), round(c.end, 3)) for c in cues
    ]
    lines = [[s.text for s in p.iter(f"{{{TT}}}span")] for p in paragraphs]
    assert lines == [shown(c) for c in cues]
    assert [len(p.findall(f"{{{TT}}}br")) for p in paragraphs] == [len(c.lines) - 1 for c in cues]
    assert all(p.text is None and all(c.tail is None for c in p) for p in paragraphs)


def test_ttml_of_a_translation_names_its_language_and_the_videos_frame_rate(
    spoken: Transcript, tmp_path
) -> None:
    french = replace(spoken, language="fr")
    rules = rule_set("netflix-en").with_options({"fps": 23.976})
    path = write_outputs(french, tmp_path, "talk.fr", "ttml", rules)["ttml"]
    root = et.parse(path).getroot()
    assert root.get(f"{{{XML}}}lang") == "fr"
    assert (root.get(f"{{{TTP}}}frameRate"), root.get(f"{{{TTP}}}frameRateMultiplier")) == (
        "24",
        "1000 1001",
    )


def _text(element: model.ContentElement) -> str:
    if isinstance(element, model.Text):
        return element.get_text()
    if isinstance(element, model.Br):
        return "\n"
    return "".join(_text(child) for child in element)


def _ass(seconds: float) -> str:
    cs = round(seconds * 100)
    return f"{cs // 360000}:{cs // 6000 % 60:02d}:{cs // 100 % 60:02d}.{cs % 100:02d}"


def _clock(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return round(int(h) * 3600 + int(m) * 60 + float(s), 3)
