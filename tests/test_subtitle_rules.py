"""The subtitle compiler and check: cues that keep a broadcaster's rules where a layout can."""

from __future__ import annotations

import pytest

from conftest import run_cli
from tasks.subtitles import make_cues, to_srt
from tasks.subtitles.check import lint, read_subtitles
from tasks.subtitles.layout import reading_chars
from tasks.subtitles.rules import RuleSet, rule_set, rules_for_language
from tasks.transcript import Segment, Transcript, Word
from voxflow.errors import BadInput

NETFLIX = rule_set("netflix-en")


def spoken(text: str, start: float = 0.0, rate: float = 0.3, speaker: str | None = None):
    """A segment of ``text`` spoken at one word every ``rate`` seconds."""
    words = tuple(
        Word(start + i * rate, start + i * rate + rate * 0.9, f" {w}", 0.9, speaker)
        for i, w in enumerate(text.split())
    )
    return Segment(words[0].start, words[-1].end, " " + text, words, speaker)


def transcript(*segments: Segment) -> Transcript:
    return Transcript("en", 600.0, tuple(segments), {"name": "test"})


def test_a_fast_speaker_is_given_the_silence_after_to_read():
    fast = spoken("this was said far too quickly to be read in time", rate=0.1)  # 1 s
    (cue,) = make_cues(transcript(fast, spoken("later.", start=10.0)))[:1]
    assert cue.end - cue.start >= reading_chars(cue) / NETFLIX.max_cps - 1e-9
    assert not lint(make_cues(transcript(fast, spoken("later.", start=10.0))), NETFLIX)


def test_short_gaps_are_chained_to_two_frames_and_long_ones_kept():
    first = spoken("The first sentence ends here.", rate=0.4)
    close = spoken("A second one follows closely.", start=first.end + 0.25, rate=0.4)
    far = spoken("A third comes much later.", start=close.end + 3.0, rate=0.4)
    cues = make_cues(transcript(first, close, far))
    assert len(cues) == 3
    assert cues[1].start - cues[0].end == pytest.approx(NETFLIX.min_gap)
    assert cues[2].start - cues[1].end >= NETFLIX.chain_gap
    assert not lint(cues, NETFLIX)


def test_lines_break_after_punctuation_and_never_after_a_preposition():
    (cue,) = make_cues(
        transcript(spoken("When the rain stopped, we walked out of the house together"))
    )
    assert cue.lines == ("When the rain stopped,", "we walked out of the house together")
    (cue,) = make_cues(
        transcript(spoken("She put the old brown books back on the top of the shelf"))
    )
    assert not any(line.split()[-1] in NETFLIX.glue for line in cue.lines[:-1])


def test_a_new_speaker_starts_a_new_cue():
    cues = make_cues(
        transcript(spoken("Are you coming?", speaker="A"), spoken("Yes.", 1.0, speaker="B"))
    )
    assert [c.speaker for c in cues] == ["A", "B"]
    assert "A: Are you coming?" in to_srt(transcript(spoken("Are you coming?", speaker="A")))


def test_slow_clear_speech_keeps_every_rule():
    text = (
        "Good evening. Tonight we look at the weather across the north, where snow is "
        "expected, and at the roads, which may close. Stay with us for the details. "
    ) * 6
    segments, clock = [], 0.0
    for sentence in filter(None, (s.strip() for s in text.split(". "))):
        segment = spoken(sentence + ".", start=clock, rate=0.35)
        segments.append(segment)
        clock = segment.end + 0.8
    cues = make_cues(transcript(*segments))
    assert len(cues) > 10
    assert lint(cues, NETFLIX) == []


def test_cjk_lines_join_without_spaces_and_keep_their_length():
    words = tuple(
        Word(i * 0.25, i * 0.25 + 0.2, c)
        for i, c in enumerate("今天的天气很好我们一起去公园散步吧然后回家吃晚饭")
    )
    segment = Segment(0.0, words[-1].end, "".join(w.text for w in words), words)
    zh = rules_for_language(NETFLIX, "zh")
    cues = make_cues(Transcript("zh", 60.0, (segment,), {}), zh)
    assert zh.name == "cjk-zh"
    assert all(" " not in line and len(line) <= 16 for c in cues for line in c.lines)
    assert "".join(line for c in cues for line in c.lines) == segment.text


def test_the_check_reads_any_srt_and_names_each_broken_rule(tmp_path):
    bad = tmp_path / "bad.srt"
    bad.write_text(
        "1\n00:00:01,000 --> 00:00:01,500\nThis cue is far too fast to read in half a second\n\n"
        "2\n00:00:01,600 --> 00:00:09,000\nThis one stays up for longer than seven\n"
        "seconds and its top line is long, with a break after the\nthird line\n\n"
        "3\n00:00:08,900 --> 00:00:10,000\nOverlap.\n\n"
        "4\n00:00:10,040 --> 00:00:11,500\nToo close.\n"
    )
    found = {(v.cue, v.rule) for v in lint(read_subtitles(bad), NETFLIX)}
    assert {
        (1, "reading-speed"),
        (1, "min-duration"),
        (1, "chaining"),
        (2, "max-duration"),
    } <= found
    assert {(2, "lines"), (2, "line-length"), (2, "overlap"), (3, "min-gap")} <= found
    assert (4, "min-gap") not in found


@pytest.mark.parametrize(
    ("content", "error"),
    [("", "no cues"), ("hello\nworld\n", "not an SRT or WebVTT"), (b"\xff\xfe\x00", "UTF-8")],
)
def test_the_check_refuses_what_is_not_a_subtitle_file(tmp_path, content, error):
    path = tmp_path / "odd.srt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(BadInput, match=error):
        read_subtitles(path)


def test_webvtt_voices_are_read_as_speakers(tmp_path):
    path = tmp_path / "v.vtt"
    path.write_text(
        "WEBVTT\n\nNOTE made by hand\n\n00:01.000 --> 00:03.000 align:start\n<v Ann>Hi there.\n"
    )
    (cue,) = read_subtitles(path)
    assert (cue.start, cue.end, cue.lines, cue.speaker) == (1.0, 3.0, ("Hi there.",), "Ann")


def test_rule_sets_are_named_and_options_checked():
    assert rule_set("NETFLIX-EN-KIDS").max_cps == 13
    with pytest.raises(BadInput, match="netflix-en"):
        rule_set("bbc")
    with pytest.raises(BadInput, match="unknown subtitle rule"):
        NETFLIX.with_options({"max_cpm": 3})
    assert NETFLIX.with_options({"max_cps": "15"}).max_cps == 15.0
    with pytest.raises(BadInput):
        RuleSet("bad", chain_frames=1)


def test_voxflow_check_prints_each_broken_rule_with_its_cues_and_exits_1(env, tmp_path):
    bad = tmp_path / "from-another-tool.srt"
    bad.write_text(
        "1\n00:00:01,000 --> 00:00:01,400\nSpoken far too fast for anyone to read it\n\n"
        "2\n00:00:01,600 --> 00:00:04,000\nA second cue, close behind.\n"
    )
    good = tmp_path / "fine.vtt"
    good.write_text("WEBVTT\n\n00:00:01.000 --> 00:00:03.500\nTake your time.\n")
    out = run_cli(["check", str(bad), str(good)], env, timeout=120)
    assert out.returncode == 1, out.stderr
    assert "from-another-tool.srt: 2 cues, rules netflix-en: 3 violations" in out.stdout
    assert "reading-speed (1): cues 1" in out.stdout and "chaining (1): cues 1" in out.stdout
    assert "fine.vtt: 1 cues, rules netflix-en: no violations" in out.stdout
    kids = run_cli(["check", str(good), "--rules", "netflix-en-kids"], env, timeout=120)
    assert kids.returncode == 0 and "rules netflix-en-kids: no violations" in kids.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["check", "missing.srt"], "missing.srt does not exist"),
        (["check", "{media}", "--rules", "bbc"], "unknown subtitle rules 'bbc'"),
        (["check", "{media}"], "not an SRT or WebVTT file"),
    ],
)
def test_voxflow_check_refuses_bad_input_in_one_line(env, tmp_path, args, says):
    media = tmp_path / "clip.srt"
    media.write_bytes(b"not subtitles at all\n")
    out = run_cli([a.format(media=media) for a in args], env, cwd=tmp_path, timeout=120)
    assert out.returncode == 2
    assert says in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
