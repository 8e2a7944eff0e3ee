"""One error root for voxflow, each error also a stdlib type, each message saying what to run.

Every error carries an ``exit_code`` that the CLI maps to the process status:
0 success, 1 the work failed, 2 bad usage or bad input (fix something, then run again).
Each also carries a ``fix``, what to do about it in a few words, that a failed flow run's state
puts first (:mod:`flows.failures`), and the ``stage`` it happened in once a stage ran.
"""

from __future__ import annotations

import errno


class VoxflowError(Exception):
    """Root of every error voxflow raises on purpose."""

    exit_code = 1
    fix = "Fix the cause, then run this again"
    """What to do about it, as an imperative: the start of a failed run's message."""
    stage: str | None = None
    """The pipeline stage it happened in (set by :func:`tasks.job.run_stage`), if any."""


class BadInput(VoxflowError, ValueError):
    """The caller asked for something that cannot work as given."""

    exit_code = 2
    fix = "Correct the run's parameters, then run it again"


class MediaNotFound(BadInput, FileNotFoundError):
    """The media path does not exist or is not a file."""

    fix = "Start this run on a media file that exists"

    def __init__(self, path: str) -> None:
        self.path = str(path)
        super().__init__(
            f"media file not found: {self.path} (expected an existing audio or video file)"
        )

    def __str__(self) -> str:  # OSError's __str__ would print the errno tuple
        return self.args[0]


class NotMedia(BadInput):
    """The file exists but no demuxer can read it."""

    fix = "Start this run on an audio or video file"

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        super().__init__(
            f"{self.path} is not a media file ffmpeg can read ({reason}); "
            "expected audio or video such as .wav, .mp3, .m4a, .mp4, .mkv"
        )


class NoAudioStream(BadInput):
    """The container has no audio stream (or not the one asked for)."""

    fix = "Start this run on a file with an audio stream (or choose another audio_stream)"

    def __init__(self, path: str, found: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path} has no usable audio stream: found {found}")


class ProfileError(BadInput):
    """A profile or catalog is unknown or invalid.

    Attributes:
        file: The YAML file at fault, when there is one.
        key_path: Dotted path of the offending key, e.g. ``stages.asr.backend``.
        allowed: The values that would have been accepted.
    """

    fix = "Correct the profile, then run this again"

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key_path: str | None = None,
        allowed: list[str] | tuple[str, ...] | None = None,
    ) -> None:
        self.file = file
        self.key_path = key_path
        self.allowed = list(allowed) if allowed is not None else None
        where = ""
        if file:
            where = f"{file}: "
        if key_path:
            where += f"{key_path}: "
        text = where + message
        if self.allowed is not None:
            text += f" (allowed: {', '.join(self.allowed) if self.allowed else 'none'})"
        super().__init__(text)


class ModelNotWarmed(VoxflowError, FileNotFoundError):
    """A model the profile needs is not in the model volume, or does not match its manifest.

    Attributes:
        model: Catalog name of the model.
        path: Where the store looked for it.
        command: What warms it.
        lacks: What is missing, without the command.
    """

    exit_code = 2

    def __init__(self, model: str, path: str, detail: str, command: str, hint: str = "") -> None:
        self.model = model
        self.path = str(path)
        self.detail = detail
        self.command = command
        names = model.split(", ")  # preflight reports every cold model at once
        which = (
            f"model {model!r} is"
            if len(names) == 1
            else f"models {', '.join(repr(n) for n in names)} are"
        )
        self.lacks = f"{which} not warmed in {self.path}: {detail}"
        self.fix = f"Run `{command}`{f' ({hint})' if hint else ''}, then run this again"
        super().__init__(f"{self.lacks}; run `{command}`" + (f" {hint}" if hint else ""))

    def __str__(self) -> str:
        return self.args[0]


class StoreReadOnly(VoxflowError, PermissionError):
    """The model volume cannot be written (warm needs a writable volume; inference does not)."""

    fix = "Warm from a host that mounts the volume read-write"

    def __init__(self, root: str, detail: str) -> None:
        self.root = str(root)
        super().__init__(
            f"the model volume {self.root} is read-only ({detail}); warm it from a host that "
            "mounts it read-write, inference can use it read-only"
        )

    def __str__(self) -> str:
        return self.args[0]


class SourceError(VoxflowError):
    """A model source could not deliver the files the catalog lists."""

    fix = "Make the model's source reachable (or add a mirror), then warm again"


class BackendUnavailable(VoxflowError, ImportError):
    """A stage's backend needs a package (or hardware) that this machine lacks."""

    exit_code = 2
    fix = "Install the backend's package or choose another profile"

    def __init__(self, stage: str, backend: str, package: str, hint: str) -> None:
        self.stage = stage
        self.backend = backend
        self.package = package
        super().__init__(
            f"stage {stage!r} uses backend {backend!r}, which needs the {package!r} package: {hint}"
        )


class StoreFull(VoxflowError, OSError):
    """The model volume ran out of space while warming (ENOSPC); no manifest was written.

    Attributes:
        root: The model volume.
        model: Catalog name of the model being warmed.
        needed: Bytes the model needs in all.
        free: Bytes free on the volume when the write failed.
    """

    fix = "Free some space on the model volume, then warm again"

    def __init__(self, root: str, model: str, needed: int, free: int) -> None:
        self.root = str(root)
        self.model = model
        self.needed = needed
        self.free = free
        super().__init__(
            f"the model volume {self.root} is full: needed {needed / 1e6:.0f} MB for {model}, "
            f"{free / 1e6:.0f} MB free; free some space or warm into a larger volume"
        )
        self.errno = errno.ENOSPC  # so `except OSError` callers can still test e.errno

    def __str__(self) -> str:
        return self.args[0]


class OutputFull(VoxflowError, OSError):
    """The disk of a job directory ran out of space (ENOSPC, or a quota) mid-run.

    Nothing finished is lost: a stage's record is written only after its outputs, so the same
    command run again skips the stages that completed.

    Attributes:
        directory: The job directory.
        doing: What was being written, e.g. ``the asr stage``.
        free: Bytes free on that disk when the write failed.
    """

    fix = "Free some space on the output disk, then run this again (finished stages are kept)"

    def __init__(self, directory: str, doing: str, free: int) -> None:
        self.directory = str(directory)
        self.doing = doing
        self.free = free
        super().__init__(
            f"no space left on the disk of {self.directory} while writing {doing} "
            f"({free / 1e6:.1f} MB free); free some space or choose another output folder "
            "(--output), then run the same command again: finished stages are kept"
        )
        self.errno = errno.ENOSPC

    def __str__(self) -> str:
        return self.args[0]


class WarmFailed(VoxflowError):
    """Some model could not be warmed, or a stage did not load offline."""

    fix = "Fix the cause below, then warm again"


class BadModel(VoxflowError, ValueError):
    """A warmed model folder does not hold what its backend loads (a file, format or checksum).

    Attributes:
        path: The model folder.
    """

    fix = "Warm the model again (voxflow warm --force)"

    def __init__(self, path: str, detail: str) -> None:
        self.path = str(path)
        super().__init__(f"the model in {self.path} cannot be loaded: {detail}")


class ModelDamaged(ModelNotWarmed):
    """A warmed model whose last recorded verify failed: inference refuses it until a warm
    fetches the bad files again (a warm repairs it and clears the record).

    It is a :class:`ModelNotWarmed`, so whatever warms a cold volume (``on_cold_cache=warm``,
    the warm deployment) repairs it the same way.

    Attributes:
        model: Catalog name of the model.
        path: Its snapshot folder.
        bad_files: The files the verify found bad (empty when it named none).
        verified_at: When that verify ran (UTC, ISO 8601), as recorded.
        command: The command that fetches them again.
    """

    exit_code = 2

    def __init__(
        self,
        model: str,
        path: str,
        bad_files: list[str] | tuple[str, ...],
        verified_at: str,
        command: str,
        deep: bool = True,
    ) -> None:
        self.model = model
        self.path = str(path)
        self.bad_files = tuple(bad_files)
        self.verified_at = verified_at
        self.command = command
        files = ", ".join(self.bad_files) or "some of its files"
        found = f"the {'deep ' if deep else ''}verify of {verified_at}"
        self.detail = f"{found} found {files} damaged"
        self.lacks = (
            f"model {model!r} is damaged: {found} found {files} not matching its manifest "
            f"(in {self.path}); inference refuses it until a warm fetches "
            f"{'them' if len(self.bad_files) > 1 else 'it'} again"
        )
        self.fix = f"Run `{command}`, then run this again"
        VoxflowError.__init__(self, f"{self.lacks}: run `{command}`")


class ModelLoadFailed(BadModel):
    """A warmed model does not load, or loads and decodes garbage in its self-check.

    A :class:`BadModel` (the folder does not hold what the backend loads) that also names the
    model and what to run: a deep verify finds damaged files, a warm fetches them again. The
    backend's own exception is chained as the cause.

    Attributes:
        model: Catalog name of the model (or the folder's name when there is none).
        path: The model folder.
        problem: What went wrong, e.g. ``failed to load (RuntimeError: ...)``.
    """

    def __init__(self, model: str, path: str, problem: str, store: str | None = None) -> None:
        self.model = model
        self.problem = problem
        where = f" --store {store}" if store else ""
        self.path = str(path)
        self.lacks = f"model {model!r} in {self.path} {problem}; its files may be damaged"
        self.fix = f"Run `voxflow verify --deep{where}`, then `voxflow warm{where}`"
        VoxflowError.__init__(
            self,
            f"{self.lacks}: run "
            f"`voxflow verify --deep{where}` to find them, then `voxflow warm{where}` to fetch "
            "them again",
        )


class NothingHeard(VoxflowError):
    """A run whose VAD found speech kept no words: never an empty success.

    Attributes:
        media: The media file.
        speech_seconds: Seconds of speech the VAD found.
        why: Why nothing was kept, in a few words, and what to run.
    """

    fix = "Check the media's speech and the run's language"

    def __init__(self, media: str, speech_seconds: float, why: str) -> None:
        self.media = str(media)
        self.speech_seconds = speech_seconds
        self.why = why
        super().__init__(
            f"{self.media}: voice activity detection found {speech_seconds:.1f} s of speech, "
            f"but the transcript kept no words: {why}"
        )
