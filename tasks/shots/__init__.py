"""shots: the video's shot changes and frame rate, so subtitles can be timed to the picture.

Detection is ffmpeg's scene score through PyAV's filter graph (``select='gt(scene,T)'``, the
filter Subtitle Edit and ``ffmpeg -vf`` users run): every decoded frame goes in, the frames
whose difference from the one before exceeds the threshold come out, and their times are the
cuts. Frames are scaled down first, which keeps a long video cheap and barely moves the score of
a hard cut. Only a real picture counts as video: cover art (an attached picture) does not.

A stream that cannot be decoded is no reason to lose the transcript: :func:`detect_shots`
raises :class:`ShotsUnreadable`, and the stage turns it into a warning and a run without shot
timing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from tasks.media import OpenMedia
from voxflow.errors import VoxflowError

log = logging.getLogger(__name__)

SCALED_WIDTH = 320
"""Width (pixels) frames are scaled to before scoring; the height keeps the aspect ratio."""


@dataclass(frozen=True)
class ShotOptions:
    """The profile's ``shots:`` settings.

    Attributes:
        threshold: Scene score (0 to 1, ffmpeg's ``scene``) above which a frame starts a new
            shot; 0.3 finds hard cuts and leaves camera moves alone.
    """

    threshold: float = 0.3

    def __post_init__(self) -> None:
        value = self.threshold
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise ValueError(f"expected a threshold between 0 and 1 (e.g. 0.3), found {value!r}")


@dataclass(frozen=True)
class Shots:
    """What detection found in one video stream.

    Attributes:
        cuts: Times (seconds from the media's start) where a new shot begins, ascending.
        fps: The stream's frame rate.
        stream_index: Which video stream of the container (0 = first video stream).
        codec: The stream's codec name.
    """

    cuts: tuple[float, ...]
    fps: float
    stream_index: int
    codec: str


class ShotsUnreadable(VoxflowError, ValueError):
    """The video stream could not be decoded for shot detection."""

    def __init__(self, media: str, problem: str) -> None:
        super().__init__(f"{media}: {problem}")
        self.media = media
        self.problem = problem


def video_stream(container: Any) -> Any | None:
    """The first video stream that is a picture over time (not cover art), or None."""
    import av

    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def has_video(media: OpenMedia) -> bool:
    """Whether the media has a video stream to time subtitles to (cover art is none)."""
    import av

    try:
        with av.open(media.rewound(), mode="r") as container:
            return video_stream(container) is not None
    except av.FFmpegError:
        return False  # extract already said what is wrong with the file


def detect_shots(media: OpenMedia, options: ShotOptions) -> Shots:
    """The shot changes of the media's first video stream and its frame rate.

    Raises:
        ShotsUnreadable: The media has no such stream, or its frames do not decode.
    """
    import av

    name = str(media.path)
    try:
        with av.open(media.rewound(), mode="r") as container:
            stream = video_stream(container)
            if stream is None:
                raise ShotsUnreadable(name, "no video stream to find shot changes in")
            fps = frame_rate(stream, name)
            cuts = _scene_cuts(container, stream, options.threshold, name)
            index = list(container.streams.video).index(stream)
            codec = stream.codec_context.name
    except av.FFmpegError as e:
        raise ShotsUnreadable(name, f"its video does not decode (ffmpeg says: {e})") from e
    return Shots(tuple(cuts), fps, index, codec)


def frame_rate(stream: Any, name: str) -> float:
    """The stream's frame rate: its average rate, else the rate ffmpeg guesses.

    Raises:
        ShotsUnreadable: Neither is known (a stream with no timing to count frames in).
    """
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and Fraction(rate) > 0:
            return float(Fraction(rate))
    raise ShotsUnreadable(name, "its video has no frame rate")


def _scene_cuts(container: Any, stream: Any, threshold: float, name: str) -> list[float]:
    """Times of the frames ffmpeg's scene score puts above ``threshold`` (``name``: the media,
    for errors)."""
    start = container.start_time / 1_000_000 if container.start_time else 0.0
    cuts: list[float] = []
    graph = None
    for frame in container.decode(stream):
        if graph is None:  # the first decoded frame says what the filters get
            graph = _scene_graph(frame, stream, threshold)
        graph.push(frame)
        cuts += _pulled(graph, start)
    if graph is None:
        raise ShotsUnreadable(name, "its video stream has no frame that decodes")
    graph.push(None)
    return cuts + _pulled(graph, start)


def _scene_graph(frame: Any, stream: Any, threshold: float) -> Any:
    """buffer -> scale -> select(scene > threshold) -> sink, for frames like ``frame``."""
    import av

    graph = av.filter.Graph()
    source = graph.add_buffer(
        width=frame.width, height=frame.height, format=frame.format, time_base=stream.time_base
    )
    scale = graph.add("scale", f"{SCALED_WIDTH}:-2")
    select = graph.add("select", f"gt(scene\\,{threshold})")
    sink = graph.add("buffersink")
    source.link_to(scale)
    scale.link_to(select)
    select.link_to(sink)
    graph.configure()
    return graph


def _pulled(graph: Any, start: float) -> list[float]:
    """The times of the frames the graph lets through now, from the stream's start."""
    import av

    times = []
    while True:
        try:
            frame = graph.pull()
        except (BlockingIOError, av.EOFError):
            return times
        if frame.pts is not None:
            times.append(round(float(frame.pts * frame.time_base) - start, 4))
