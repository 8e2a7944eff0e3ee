"""Speech in, words out: the default profile hears other languages with no flags, a recording
that changes language is transcribed in each, an English-only model is refused a language it
cannot hear, and a run that heard speech and kept nothing fails saying why."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jiwer
import numpy as np
import pytest

from conftest import normalise, read_wav, run_cli, speak, write_wav
from profiles import load_catalog, load_profile
from tasks.asr import (
    Detected,
    absorb_unsure,
    confident_switch,
    language_runs,
    main_language,
    smooth_languages,
)
from tasks.transcript import Segment

TEXTS = {
    "en": "The weather today is cold and clear. A small boat sails across the quiet lake, "
    "and three children watch it from the hill.",
    "es": "El tiempo hoy es frío y despejado. Un pequeño barco navega por el lago tranquilo, "
    "y tres niños lo miran desde la colina.",
    "it": "Il tempo oggi è freddo e sereno. Una piccola barca attraversa il lago tranquillo, "
    "e tre bambini la guardano dalla collina.",
    "de": "Das Wetter ist heute kalt und klar. Ein kleines Boot segelt über den ruhigen See, "
    "und drei Kinder sehen es vom Hügel aus.",
    "fr": "Le temps est froid et clair aujourd'hui. Un petit bateau traverse le lac tranquille, "
    "et trois enfants le regardent depuis la colline.",
}
VOICES = {"en": "en-us", "es": "es", "it": "it", "de": "de", "fr": "fr"}


def to_m4a(wav: Path) -> Path:
    """AAC in an .m4a, as a phone or a screen recorder leaves it."""
    media = wav.with_suffix(".m4a")
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), "-c:a", "aac", str(media)],
        check=True,
    )
    return media


def bare_words(media: Path, model: Path, scratch: Path) -> tuple[str, str]:
    """What bare faster-whisper (sequential, beam 5, language detected once per file) hears
    in ``media`` with the same model: its text and its language."""
    from faster_whisper import WhisperModel

    from tasks.extract import extract_audio, load_wav

    audio = load_wav(extract_audio(media, scratch / "bare.wav").path)
    whisper = WhisperModel(str(model), device="cpu", compute_type="int8")
    segments, info = whisper.transcribe(audio, beam_size=5)
    return " ".join(s.text for s in segments), info.language


@pytest.fixture(scope="module")
def default_model(warm_store) -> Path:
    """The folder of the default (cpu) profile's speech model in the session's volume."""
    return warm_store.locate(load_catalog()[load_profile("cpu").stages["asr"].model])


def user_env(env: dict[str, str], store: str) -> dict[str, str]:
    """A user's environment: the volume named once, no profile chosen (auto picks cpu here)."""
    out = {k: v for k, v in env.items() if k != "VOXFLOW_PROFILE"}
    return {**out, "VOXFLOW_STORE": store}


# -- the default profile hears other languages ----------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("language", ["es", "it", "de"])
def test_speech_in_another_language_is_heard_with_no_flags(
    language, warm_store, default_model, env, tmp_path
):
    media = to_m4a(speak(TEXTS[language], tmp_path / "talk.wav", voice=VOICES[language]))

    done = run_cli(["transcribe", str(media)], user_env(env, warm_store.root), cwd=tmp_path)

    assert done.returncode == 0, done.stderr[-2000:]
    [result] = (tmp_path / "output").glob("talk-*/talk.json")
    data = json.loads(result.read_text())
    bare_text, bare_language = bare_words(media, default_model, tmp_path)
    assert data["language"] == language == bare_language
    assert all(s["language"] == language for s in data["segments"])
    assert all(0 < s["language_probability"] <= 1 for s in data["segments"])
    wer = jiwer.wer(normalise(TEXTS[language]), normalise(data["text"]))
    bare = jiwer.wer(normalise(TEXTS[language]), normalise(bare_text))
    assert wer <= bare + 0.05, f"voxflow {wer:.2f} vs bare {bare:.2f}: {data['text']!r}"
    assert wer < 0.6, data["text"]
    assert "0 cues" not in done.stderr


# -- a recording that changes language ------------------------------------------------------


@pytest.fixture(scope="module")
def newsreader(tmp_path_factory) -> tuple[Path, list[tuple[str, float, float]]]:
    """English, Spanish, Italian, then English again, 0.8 s apart, in one .m4a; with the
    language and the time of each part."""
    folder = tmp_path_factory.mktemp("newsreader")
    parts, truth, at = [], [], 0.0
    rate = 22050
    for i, language in enumerate(["en", "es", "it", "en"]):
        audio, rate = read_wav(speak(TEXTS[language], folder / f"{i}.wav", VOICES[language]))
        truth.append((language, at, at + len(audio) / rate))
        parts += [audio, np.zeros(int(0.8 * rate), np.float32)]
        at += len(audio) / rate + 0.8
    return to_m4a(write_wav(folder / "news.wav", np.concatenate(parts), rate)), truth


@pytest.mark.e2e
def test_a_recording_that_changes_language_is_transcribed_in_each(
    newsreader, warm_store, env, tmp_path
):
    media, truth = newsreader

    done = run_cli(["transcribe", str(media)], user_env(env, warm_store.root), cwd=tmp_path)

    assert done.returncode == 0, done.stderr[-2000:]
    [job] = (tmp_path / "output").glob("news-*")
    data = json.loads((job / "news.json").read_text())
    segments = [s for s in data["segments"] if "flag" not in s]
    right = 0.0
    for s in segments:
        mid = (s["start"] + s["end"]) / 2
        spoken = next(lang for lang, a, b in truth if a - 0.5 <= mid <= b + 0.5)
        right += (s["end"] - s["start"]) * (s["language"] == spoken)
    share = right / sum(s["end"] - s["start"] for s in segments)
    # one language for the file (bare faster-whisper's way) gets at most the English half
    english = sum(b - a for lang, a, b in truth if lang == "en") / (truth[-1][2] - truth[0][1])
    assert share >= max(0.7, english + 0.15), [(s["start"], s["language"]) for s in segments]
    assert set(data["languages"]) >= {"en", "es"}  # espeak's Italian is often heard as Spanish
    # the last English sentence is not lost
    last = " ".join(s["text"] for s in segments if s["start"] >= truth[-1][1] - 0.5)
    assert jiwer.wer(normalise(TEXTS["en"]), normalise(last)) < 0.35, last
    record = json.loads((job / "records" / "run.json").read_text())
    assert set(record["languages"]) >= {"en", "es"}
    assert all(seconds > 3 for seconds in record["languages"].values())


def detected(*pairs: tuple[str, float]) -> list[Detected]:
    return [Detected(lang, p, ((lang, p),)) for lang, p in pairs]


def test_one_unsure_span_does_not_flip_the_language_of_its_run():
    found = detected(("es", 0.9), ("es", 0.8), ("pt", 0.35), ("es", 0.85))
    found[2] = Detected("pt", 0.35, (("pt", 0.35), ("es", 0.3), ("gl", 0.2)))

    assert [d.language for d in smooth_languages(found)] == ["es", "es", "es", "es"]


def test_spans_the_model_is_sure_of_start_a_new_run():
    found = detected(("en", 0.9), ("en", 0.95), ("es", 0.85), ("es", 0.8), ("en", 0.9))

    chosen = smooth_languages(found)
    runs = language_runs(chosen)

    assert [r[0].language for r in runs] == ["en", "es", "en"]
    assert [r[1] for r in runs] == [[0, 1], [2, 3], [4]]


def test_a_run_too_unsure_to_stand_alone_joins_the_run_before_it():
    found = detected(("en", 0.9), ("es", 0.8), ("es", 0.7), ("he", 0.19), ("th", 0.2))

    chosen = absorb_unsure(found)

    assert [d.language for d in chosen] == ["en", "es", "es", "es", "es"]
    assert chosen[3].probability is None, "no probability of its own"
    assert confident_switch(chosen, Detected("en", 0.7))
    same = detected(("es", 0.9), ("es", 0.8))
    assert not confident_switch(same, Detected("es", 0.7)), "no change from the window's"


def test_unsure_spans_in_a_language_nobody_spoke_do_not_cut_the_window():
    found = detected(("th", 0.4), ("ja", 0.3), ("th", 0.45))

    assert not confident_switch(absorb_unsure(smooth_languages(found)), Detected("fr", 0.55))


def test_the_main_language_is_the_one_spoken_longest():
    segments = [
        Segment(0, 2, "hola", language="es"),
        Segment(2, 9, "hello there", language="en"),
        Segment(9, 12, "ciao", language="it"),
    ]
    assert main_language(segments, "xx") == "en"
    assert main_language([], "xx") == "xx"


# -- a language the profile cannot hear, and a model that hears only English ----------------


@pytest.mark.e2e
def test_a_language_the_english_only_profile_cannot_hear_is_refused_before_any_work(env, tmp_path):
    media = to_m4a(speak(TEXTS["fr"], tmp_path / "talk.wav", voice="fr"))

    done = run_cli(
        ["transcribe", str(media), "--profile", "cpu-en", "--language", "fr"], env, cwd=tmp_path
    )

    assert done.returncode == 2
    assert "hears only en" in done.stderr and "--profile cpu" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "output").exists(), "refused before any work"


def heard(tmp_path: Path, segments: list[Segment], multilingual: bool, **guard) -> str:
    """What :func:`check_heard` says of a run whose VAD found 8 s of speech and whose
    guarded transcript holds ``segments``."""
    from tasks.guard.stage import check_heard
    from tasks.job import StageResult, prepare_job
    from tasks.transcript import SpeechSpan, Transcript
    from voxflow.atomic import write_json
    from voxflow.errors import NothingHeard

    media = write_wav(tmp_path / "talk.wav", np.zeros(16000 * 9, np.float32), 16000)
    job = prepare_job(str(media), str(tmp_path / "out"))
    spans = write_json(job.records / "speech.json", [{"start": 0.5, "end": 8.5}])
    model = {"name": "faster-whisper-x", "multilingual": multilingual, "guard": guard}
    text = Transcript("en", 9.0, tuple(segments), model).save(job.records / "t.json")
    with pytest.raises(NothingHeard) as e:
        check_heard(
            job,
            StageResult("vad", "k", {"path": str(spans)}, 0.0, False),
            StageResult("guard", "k", {"path": str(text)}, 0.0, False),
            "cpu",
            "/models",
        )
    assert e.value.exit_code == 1 and "\n" not in str(e.value)
    assert "8.0 s of speech" in str(e.value) and "kept no words" in str(e.value)
    assert SpeechSpan.load(spans)  # what it read
    return str(e.value)


def test_a_run_whose_every_segment_was_flagged_fails_naming_the_reasons(tmp_path):
    flagged = [
        Segment(0.5, 4, "Thank you for watching.", flag="unsure words (mean 0.2)"),
        Segment(4, 8, "Thank you.", flag="low log-probability (-1.8, below -1.5)"),
    ]
    message = heard(tmp_path, flagged, multilingual=True)
    assert "unsure words 1" in message and "low log-probability 1" in message
    assert "--keep-flagged" in message


def test_an_english_only_model_that_kept_nothing_points_to_a_multilingual_profile(tmp_path):
    message = heard(tmp_path, [], multilingual=False)
    assert "wrote no text" in message and "English only" in message
    assert "--profile cpu" in message


def test_garbage_from_the_model_points_to_verify_and_warm(tmp_path):
    loops = [Segment(0.5, 8, ")))))))))))))))))))))", flag="compression ratio (9.1, above 2.4)")]
    message = heard(tmp_path, loops, multilingual=True, collapsed_loops=1)
    assert "garbage" in message
    assert "voxflow verify --deep --profile cpu --store /models" in message
    assert "voxflow warm --profile cpu --store /models" in message


def test_a_run_with_words_or_without_speech_passes(tmp_path):
    from tasks.guard.stage import check_heard
    from tasks.job import StageResult, prepare_job
    from tasks.transcript import Transcript
    from voxflow.atomic import write_json

    media = write_wav(tmp_path / "talk.wav", np.zeros(16000 * 9, np.float32), 16000)
    job = prepare_job(str(media), str(tmp_path / "out"))
    some = write_json(job.records / "speech.json", [{"start": 0.5, "end": 8.5}])
    little = write_json(job.records / "little.json", [{"start": 0.5, "end": 2.5}])
    words = Transcript("en", 9.0, (Segment(0.5, 8, "Hello there."),)).save(job.records / "a.json")
    empty = Transcript("en", 9.0, ()).save(job.records / "b.json")

    def vad(path):
        return StageResult("vad", "k", {"path": str(path)}, 0.0, False)

    def text(path):
        return StageResult("guard", "k", {"path": str(path)}, 0.0, False)

    check_heard(job, vad(some), text(words), "cpu", "/models")
    check_heard(job, vad(little), text(empty), "cpu", "/models")  # 2 s: under the 3 s floor
