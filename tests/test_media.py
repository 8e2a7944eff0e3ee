"""extract: real containers in, a 16 kHz mono 16-bit WAV out; bad input refused clearly."""

from __future__ import annotations

import hashlib
import os
import re
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import SAMPLE
from tasks.extract import SAMPLE_RATE, Wav, extract_audio, load_wav
from tasks.media import MAX_NAME_BYTES, check_media_path, content_hash
from voxflow.errors import BadInput, MediaNotFound, NoAudioStream, NotMedia

SECONDS = 2.0


def sine(freq: float, rate: int, seconds: float = SECONDS) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as f:
        assert f.getnchannels() == 1
        return np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16), f.getframerate()


def write_media(
    path: Path,
    tracks: list[np.ndarray],
    rate: int,
    codec: str = "aac",
    video: str | None = None,
    seconds: float = SECONDS,
) -> Path:
    """Encode mono int16 tracks (one audio stream each) and optionally a small video track."""
    with av.open(str(path), "w") as container:
        vstream = None
        if video:
            vstream = container.add_stream(video, rate=10)
            vstream.width, vstream.height, vstream.pix_fmt = 64, 48, "yuv420p"
        streams = [container.add_stream(codec, rate=rate, layout="mono") for _ in tracks]
        longest = max((len(t) for t in tracks), default=0)
        for i in range(0, longest, 1024):  # interleave the streams as a real muxer would
            for stream, track in zip(streams, tracks, strict=True):
                chunk = track[i : i + 1024]
                if len(chunk):
                    frame = av.AudioFrame.from_ndarray(
                        chunk.reshape(1, -1), format="s16", layout="mono"
                    )
                    frame.sample_rate, frame.pts = rate, i
                    container.mux(stream.encode(frame))
        for stream in streams:
            container.mux(stream.encode(None))
        if vstream is not None:
            for k in range(int(seconds * 10)):
                pixels = np.full((48, 64, 3), (k * 25) % 256, dtype=np.uint8)
                image = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                image.pts = k
                container.mux(vstream.encode(image))
            container.mux(vstream.encode(None))
    return path


def write_empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


@pytest.fixture(scope="module")
def speech(speech_wav: Path) -> tuple[np.ndarray, int]:
    """The espeak speech as int16 samples and its rate (22.05 kHz)."""
    return read_wav(speech_wav)


@pytest.fixture(scope="module")
def two_track_mkv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Matroska with two AAC audio streams: 0 is a 440 Hz tone, 1 is a 1000 Hz tone."""
    path = tmp_path_factory.mktemp("mkv") / "two-tracks.mkv"
    return write_media(path, [sine(440, 48_000), sine(1000, 48_000)], 48_000)


def assert_16k_mono_s16(path: Path) -> float:
    with wave.open(str(path), "rb") as f:
        assert (f.getframerate(), f.getnchannels(), f.getsampwidth()) == (SAMPLE_RATE, 1, 2)
        return f.getnframes() / f.getframerate()


# -- what comes out ----------------------------------------------------------------------------


def test_speech_in_an_mp4_with_video_becomes_16k_mono_wav_of_the_same_length(tmp_path, speech):
    samples, rate = speech
    media = write_media(tmp_path / "talk.mp4", [samples], rate, "aac", video="mpeg4")

    info = extract_audio(media, tmp_path / "audio.wav")

    source_seconds = len(samples) / rate
    assert assert_16k_mono_s16(tmp_path / "audio.wav") == pytest.approx(info.duration)
    assert info.duration == pytest.approx(source_seconds, abs=0.05)
    assert (info.path, info.stream_index, info.codec) == (str(tmp_path / "audio.wav"), 0, "aac")
    # The speech itself survived: loud where espeak spoke, not a flat line.
    assert np.sqrt(np.mean(load_wav(info.path) ** 2)) > 0.01


@pytest.mark.parametrize(
    ("name", "codec", "rate"),
    [("tone.wav", "pcm_s16le", 22_050), ("tone.mp3", "libmp3lame", 44_100)],
)
def test_audio_only_files_keep_their_duration_and_pitch(tmp_path, name, codec, rate):
    if codec not in av.codecs_available:
        pytest.skip(f"this ffmpeg build has no {codec} encoder")
    media = write_media(tmp_path / name, [sine(440, rate)], rate, codec)

    info = extract_audio(media, tmp_path / "audio.wav")

    assert assert_16k_mono_s16(tmp_path / "audio.wav") == pytest.approx(SECONDS, abs=0.05)
    assert dominant_hz(load_wav(info.path), SAMPLE_RATE) == pytest.approx(440, abs=5)


def test_the_first_audio_stream_is_used_by_default(tmp_path, two_track_mkv):
    info = extract_audio(two_track_mkv, tmp_path / "audio.wav")

    assert info.stream_index == 0
    assert info.duration == pytest.approx(SECONDS, abs=0.05)
    assert dominant_hz(load_wav(info.path), SAMPLE_RATE) == pytest.approx(440, abs=5)


def test_stream_1_picks_the_second_audio_stream(tmp_path, two_track_mkv):
    info = extract_audio(two_track_mkv, tmp_path / "audio.wav", stream=1)

    assert info.stream_index == 1
    assert info.duration == pytest.approx(SECONDS, abs=0.05)
    assert dominant_hz(load_wav(info.path), SAMPLE_RATE) == pytest.approx(1000, abs=5)


def test_load_wav_round_trips_the_samples_exactly(tmp_path):
    rng = np.random.default_rng(7)
    samples = rng.integers(-32768, 32767, size=SAMPLE_RATE, dtype=np.int16)
    media = write_media(tmp_path / "noise.wav", [samples], SAMPLE_RATE, "pcm_s16le")

    info = extract_audio(media, tmp_path / "audio.wav")
    audio = load_wav(info.path)

    assert audio.dtype == np.float32
    np.testing.assert_array_equal(audio, samples.astype(np.float32) / 32768.0)
    assert audio.min() >= -1.0 and audio.max() < 1.0


def test_load_wav_refuses_a_wav_that_is_not_16k_mono(tmp_path):
    media = write_media(tmp_path / "cd.wav", [sine(440, 22_050)], 22_050, "pcm_s16le")

    with pytest.raises(ValueError, match="expected 16 kHz mono 16-bit PCM, found 22050 Hz"):
        load_wav(media)


def test_the_wav_is_written_atomically_with_no_temporary_file_left(tmp_path, two_track_mkv):
    out = tmp_path / "job"
    out.mkdir()

    extract_audio(two_track_mkv, out / "audio.wav")
    with pytest.raises(NotMedia):
        extract_audio(write_empty(tmp_path / "empty.mp4"), out / "other.wav")

    assert sorted(p.name for p in out.iterdir()) == ["audio.wav"]


def test_content_hash_is_the_sha256_of_the_bytes(two_track_mkv):
    assert content_hash(two_track_mkv) == hashlib.sha256(two_track_mkv.read_bytes()).hexdigest()
    # Reading in chunks smaller than the file gives the same digest.
    assert content_hash(two_track_mkv, chunk=1000) == content_hash(two_track_mkv)


# -- what is refused ---------------------------------------------------------------------------


def test_asking_for_a_stream_that_does_not_exist_says_how_many_there_are(tmp_path, two_track_mkv):
    with pytest.raises(NoAudioStream, match=r"2 audio stream\(s\); stream 5 was asked for") as e:
        extract_audio(two_track_mkv, tmp_path / "audio.wav", stream=5)

    assert "0..1" in str(e.value)
    assert e.value.exit_code == 2
    assert not (tmp_path / "audio.wav").exists()


def test_a_video_without_audio_is_refused_saying_it_only_has_video(tmp_path):
    media = write_media(tmp_path / "silent-film.mkv", [], 48_000, video="mpeg4")

    with pytest.raises(NoAudioStream, match="only video streams") as e:
        extract_audio(media, tmp_path / "audio.wav")

    assert e.value.exit_code == 2
    assert str(media) in str(e.value)


@pytest.mark.parametrize(
    "content", [b"these are my notes, not a movie\n" * 20, b""], ids=["text", "empty"]
)
def test_a_file_ffmpeg_cannot_read_is_refused_as_not_media(tmp_path, content):
    fake = tmp_path / "movie.mp4"
    fake.write_bytes(content)

    with pytest.raises(NotMedia, match="is not a media file ffmpeg can read") as e:
        extract_audio(fake, tmp_path / "audio.wav")

    assert e.value.exit_code == 2
    assert not (tmp_path / "audio.wav").exists()


def test_a_missing_file_is_media_not_found_and_a_file_not_found_error(tmp_path):
    missing = tmp_path / "nowhere.mp4"

    with pytest.raises(MediaNotFound, match="media file not found") as e:
        extract_audio(missing, tmp_path / "audio.wav")

    assert isinstance(e.value, FileNotFoundError)
    assert e.value.exit_code == 2
    assert str(missing) in str(e.value)


def test_a_directory_is_not_a_media_file(tmp_path):
    with pytest.raises(BadInput, match=r"is a folder; expected an audio or video file"):
        extract_audio(tmp_path, tmp_path / "audio.wav")


def test_an_empty_file_is_not_media_and_says_so(tmp_path):
    empty = tmp_path / "talk.mp4"
    empty.touch()
    with pytest.raises(
        NotMedia, match=r"talk.mp4 is not a media file .*\(the file is empty: 0 bytes\)"
    ):
        extract_audio(empty, tmp_path / "audio.wav")


def test_a_wav_is_read_only_where_it_is_sliced(tmp_path):
    path = extract_audio(SAMPLE, tmp_path / "sample.wav").path
    whole = load_wav(path)
    wav = Wav(path)

    assert len(wav) == len(whole)
    np.testing.assert_array_equal(wav[16_000:48_000], whole[16_000:48_000])
    np.testing.assert_array_equal(wav[-100:], whole[-100:])
    assert wav[len(whole) + 5 : len(whole) + 9].size == 0
    np.testing.assert_array_equal(np.asarray(wav, dtype=np.float32), whole)
    with pytest.raises(ValueError, match="contiguous"):
        wav[::2]


# -- what is not a media file says what it is, before any work --------------------------------


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda p: os.mkfifo(p), "is a named pipe (FIFO), not a file"),
        (lambda p: os.symlink(p.name, p), "is a symbolic link loop"),
        (lambda p: os.symlink("nowhere.mp4", p), "is a symbolic link to nowhere.mp4, which does"),
        (lambda p: p.mkdir(), "is a folder"),
    ],
    ids=["fifo", "link-loop", "dangling-link", "folder"],
)
def test_a_path_that_is_no_file_gets_its_own_line(tmp_path, make, said):
    path = tmp_path / "talk.mp4"
    make(path)
    with pytest.raises(BadInput, match=re.escape(said)) as e:
        check_media_path(path)
    assert e.value.exit_code == 2


def test_names_voxflow_cannot_write_outputs_for_are_refused_before_any_work(tmp_path):
    odd = tmp_path / os.fsdecode(b"caf\xe9.mp4")
    odd.write_bytes(SAMPLE.read_bytes())
    with pytest.raises(BadInput, match=r"caf\\xe9\.mp4 is not valid UTF-8") as e:
        check_media_path(odd)
    str(e.value).encode("utf-8")  # the message itself can be printed
    long = tmp_path / ("x" * (MAX_NAME_BYTES + 1 - 4) + ".mp4")
    long.write_bytes(SAMPLE.read_bytes())
    with pytest.raises(BadInput, match=f"is {MAX_NAME_BYTES + 1} bytes"):
        check_media_path(long)
    fits = tmp_path / ("y" * (MAX_NAME_BYTES - 4) + ".mp4")
    fits.write_bytes(SAMPLE.read_bytes())
    assert check_media_path(fits) == fits


# -- opened once -------------------------------------------------------------------------------


def test_a_job_decodes_the_file_it_opened_though_its_name_now_links_elsewhere(tmp_path):
    """The name checked and opened is swapped for a link to another recording before the
    extract stage runs: the stage decodes the open file (the sample's 27 s), not the 2 s tone
    the name now leads to, and the job's hash is the sample's."""
    from tasks.extract.stage import extract
    from tasks.job import open_job

    media = tmp_path / "talk.mp4"
    media.write_bytes(SAMPLE.read_bytes())
    other = write_media(tmp_path / "other.mka", [sine(440, 48_000)], 48_000)
    with open_job(media, tmp_path / "out") as job:
        swap = tmp_path / "swap"
        swap.symlink_to(other)
        swap.replace(media)  # one rename: the name is a link to the other file now
        assert media.is_symlink()
        by_name = extract_audio(media, tmp_path / "by-name.wav")  # what the name reads now
        assert by_name.duration == pytest.approx(SECONDS, abs=0.1)

        audio = extract.fn(job)

    assert audio.result["duration"] == pytest.approx(27.0, abs=0.1)
    assert assert_16k_mono_s16(job.records / "audio.wav") == pytest.approx(27.0, abs=0.1)
    assert job.sha256 == hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
