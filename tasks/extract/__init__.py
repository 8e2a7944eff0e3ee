"""extract: any container ffmpeg reads -> 16 kHz mono 16-bit WAV in the job directory.

Decoding streams frame by frame through PyAV's resampler, so memory stays bounded however long
the input is. A job's media is decoded through the file its run opened once
(:mod:`tasks.media`), never by its name again. The WAV is written under a temporary name and
renamed when complete. Later stages read it through :class:`Wav`, a window at a time, so a long
recording is never held whole.
"""

from __future__ import annotations

import logging
import os
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.media import OpenMedia, open_media
from voxflow.atomic import atomic_file
from voxflow.errors import NoAudioStream, NotMedia

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class AudioInfo:
    """The extracted audio and where it came from.

    Attributes:
        path: The 16 kHz mono WAV in the job directory.
        duration: Seconds of audio.
        stream_index: Which audio stream of the container was used (0 = first audio stream).
        codec: The source stream's codec name.
    """

    path: str
    duration: float
    stream_index: int
    codec: str


def _open_container(media: OpenMedia):
    """PyAV's container on the open media file (never its name: :mod:`tasks.media`)."""
    import av

    try:
        return av.open(media.rewound(), mode="r")
    except av.FFmpegError as e:
        raise NotMedia(str(media.path), f"ffmpeg says: {e.strerror or e}") from e


def extract_audio(
    media: str | os.PathLike[str] | OpenMedia,
    dest: str | os.PathLike[str],
    stream: int | None = None,
) -> AudioInfo:
    """Decode one audio stream of a media file to a 16 kHz mono 16-bit PCM WAV.

    Args:
        media: An audio or video file: opened already (a job's :attr:`~tasks.job.Job.source`,
            decoded through that open file, whatever its name points at by now), or its path,
            opened once here.
        dest: Where to write the WAV.
        stream: Which audio stream to use, counting audio streams from 0; the first by default.

    Returns:
        Facts about the written audio.

    Raises:
        MediaNotFound, BadInput: The path is not an existing regular file
            (:func:`tasks.media.check_media_path`).
        NotMedia: ffmpeg cannot read the file.
        NoAudioStream: The file has no audio stream, or not the one asked for.
    """
    if isinstance(media, OpenMedia):
        return _decode(media, Path(dest), stream)
    with open_media(media) as opened:
        return _decode(opened, Path(dest), stream)


def _decode(src: OpenMedia, dest: Path, stream: int | None) -> AudioInfo:
    """:func:`extract_audio` of an open media file."""
    import av

    with _open_container(src) as container:
        audio_streams = list(container.streams.audio)
        if not audio_streams:
            kinds = sorted({s.type for s in container.streams}) or ["no streams at all"]
            raise NoAudioStream(str(src.path), "only " + ", ".join(kinds) + " streams")
        index = 0 if stream is None else stream
        if not 0 <= index < len(audio_streams):
            raise NoAudioStream(
                str(src.path),
                f"{len(audio_streams)} audio stream(s); stream {index} was asked for "
                f"(choose 0..{len(audio_streams) - 1})",
            )
        chosen = audio_streams[index]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        samples = 0
        with atomic_file(dest) as f, wave.open(f, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            try:
                for frame in container.decode(chosen):
                    for piece in resampler.resample(frame):
                        data = piece.to_ndarray().tobytes()
                        samples += len(data) // 2
                        out.writeframes(data)
                for piece in resampler.resample(None):
                    data = piece.to_ndarray().tobytes()
                    samples += len(data) // 2
                    out.writeframes(data)
            except av.FFmpegError as e:
                raise NotMedia(str(src.path), f"decoding audio stream {index} failed: {e}") from e
        codec = chosen.codec_context.name
    info = AudioInfo(
        path=str(dest), duration=samples / SAMPLE_RATE, stream_index=index, codec=codec
    )
    log.info("extracted %.1f s of %s audio from %s", info.duration, codec, src.path.name)
    return info


class Wav:
    """A 16 kHz mono 16-bit WAV (as :func:`extract_audio` writes it), read only where sliced.

    ``len(wav)`` is its length in samples; ``wav[a:b]`` reads those samples as float32 in
    [-1, 1]; ``np.asarray(wav)`` reads it all (for the backends that need the whole signal).

    Raises:
        ValueError: The file is not 16 kHz mono 16-bit PCM.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        with wave.open(self.path, "rb") as f:
            if f.getframerate() != SAMPLE_RATE or f.getnchannels() != 1 or f.getsampwidth() != 2:
                raise ValueError(
                    f"{path}: expected 16 kHz mono 16-bit PCM, found {f.getframerate()} Hz, "
                    f"{f.getnchannels()} channel(s), {8 * f.getsampwidth()}-bit"
                )
            self.frames = f.getnframes()

    def __len__(self) -> int:
        return self.frames

    def __getitem__(self, where: slice) -> np.ndarray:
        if not isinstance(where, slice):
            raise TypeError(f"a Wav is read by slices, not by {type(where).__name__}")
        start, stop, step = where.indices(self.frames)
        if step != 1:
            raise ValueError("a Wav is read by contiguous slices")
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        with wave.open(self.path, "rb") as f:
            f.setpos(start)
            raw = f.readframes(stop - start)
        samples = np.frombuffer(raw, dtype=np.int16).astype(np.float32)
        samples *= 1 / 32768  # in place, and exact: a power of two
        return samples

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype, copy=False)


def load_wav(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a 16 kHz mono 16-bit WAV (as written by :func:`extract_audio`) as float32 in [-1, 1],
    all of it (:class:`Wav` reads a window at a time)."""
    return Wav(path)[:]
