"""extract: any container ffmpeg reads -> 16 kHz mono 16-bit WAV in the job directory.

Decoding streams frame by frame through PyAV's resampler, so memory stays bounded however long
the input is. The WAV is written under a temporary name and renamed when complete. Later stages
read it through :class:`Wav`, a window at a time, so a long recording is never held whole.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxflow.atomic import atomic_file
from voxflow.errors import BadInput, MediaNotFound, NoAudioStream, NotMedia

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


MAX_NAME_BYTES = 200
"""The longest media file name voxflow takes: its outputs (``<stem>.<lang>.vtt``) and job
folder (``<stem>-<sha8>``) must fit the 255 bytes a file system allows a name."""

_KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def check_media_path(media: str | os.PathLike[str]) -> Path:
    """Return the media path if it is an existing regular file voxflow can name its outputs
    after, else say exactly what it is.

    Raises:
        MediaNotFound: Nothing is there (a dangling link says where it points).
        BadInput: A folder, a FIFO, a socket or a device, a symbolic link loop, a name that
            is not valid UTF-8 or is longer than :data:`MAX_NAME_BYTES`.
        NotMedia: An empty file.
    """
    path = Path(media)
    _check_name(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise BadInput(
                f"{path} is a symbolic link to {os.readlink(path)}, which does not exist; "
                "expected an audio or video file"
            ) from None
        raise MediaNotFound(str(path)) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise BadInput(
                f"{path} is a symbolic link loop (it points back at itself); expected an audio "
                "or video file"
            ) from None
        raise BadInput(
            f"{path} cannot be read ({e.strerror}); expected an audio or video file"
        ) from e
    if stat.S_ISDIR(info.st_mode):
        raise BadInput(
            f"{path} is a folder; expected an audio or video file (pass its files, e.g. "
            f"`voxflow transcribe {path}/*.mp4`, or let the inbox flow watch it)"
        )
    if not stat.S_ISREG(info.st_mode):
        kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
        raise BadInput(
            f"{path} is {kind}, not a file; voxflow reads audio or video files it can seek in "
            "(save the stream to a file first, e.g. with ffmpeg)"
        )
    if info.st_size == 0:
        raise NotMedia(str(path), "the file is empty: 0 bytes")
    return path


def _check_name(path: Path) -> None:
    """Refuse a file name voxflow cannot write outputs for, before any work."""
    name = path.name
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        shown = os.fsencode(name).decode("utf-8", "backslashreplace")
        raise BadInput(
            f"the file name {shown} is not valid UTF-8, and voxflow names its outputs and "
            "records after it; rename the file and run again"
        ) from None
    if size > MAX_NAME_BYTES:
        raise BadInput(
            f"the file name {name[:40]}... is {size} bytes, and voxflow names its outputs "
            f"after it (<name>.<language>.vtt); at most {MAX_NAME_BYTES} bytes: rename the "
            "file and run again"
        )


def content_hash(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes (the job directory and stage caches key on it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _open_container(path: Path):
    import av

    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as e:
        raise NotMedia(str(path), f"ffmpeg says: {e.strerror or e}") from e


def extract_audio(
    media: str | os.PathLike[str], dest: str | os.PathLike[str], stream: int | None = None
) -> AudioInfo:
    """Decode one audio stream of a media file to a 16 kHz mono 16-bit PCM WAV.

    Args:
        media: Path to an audio or video file.
        dest: Where to write the WAV.
        stream: Which audio stream to use, counting audio streams from 0; the first by default.

    Returns:
        Facts about the written audio.

    Raises:
        MediaNotFound: The file does not exist.
        NotMedia: ffmpeg cannot read the file.
        NoAudioStream: The file has no audio stream, or not the one asked for.
    """
    import av

    src = check_media_path(media)
    dest = Path(dest)
    with _open_container(src) as container:
        audio_streams = list(container.streams.audio)
        if not audio_streams:
            kinds = sorted({s.type for s in container.streams}) or ["no streams at all"]
            raise NoAudioStream(str(src), "only " + ", ".join(kinds) + " streams")
        index = 0 if stream is None else stream
        if not 0 <= index < len(audio_streams):
            raise NoAudioStream(
                str(src),
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
                raise NotMedia(str(src), f"decoding audio stream {index} failed: {e}") from e
        codec = chosen.codec_context.name
    info = AudioInfo(
        path=str(dest), duration=samples / SAMPLE_RATE, stream_index=index, codec=codec
    )
    log.info("extracted %.1f s of %s audio from %s", info.duration, codec, src.name)
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
