"""Silero VAD v6 on ONNX Runtime or the OpenVINO runtime, loaded from the model volume.

faster-whisper's own helper always loads the copy inside its package and only runs it on ONNX
Runtime; here the ONNX file comes from the warmed volume, either runtime executes it, and the
frame loop and the speech-span logic (hysteresis on the frame probabilities) are ours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.extract import Wav
from tasks.transcript import SpeechSpan
from tasks.vad import VadBackend
from voxflow.errors import BackendUnavailable, ProfileError

WINDOW = 512  # samples per Silero frame at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous frame the v6 model sees before each frame
MODEL_FILE = "silero_vad_v6.onnx"
RUNTIMES = ("onnxruntime", "openvino")
_RUNTIME_PACKAGES = {  # runtime -> (import name, pip requirement)
    "onnxruntime": ("onnxruntime", "onnxruntime"),
    "openvino": ("openvino", "openvino"),
}
_FRAMES_PER_CALL = 10_000  # frames per model call; the LSTM state carries across calls

# (frames with context [n, CONTEXT + WINDOW], h, c) -> (probabilities [n], h, c)
_RunFrames = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, ...]]


@dataclass(frozen=True)
class SileroOptions:
    """Silero VAD options.

    Attributes:
        threshold: Frame probability at or above which speech starts.
        min_speech_ms: Spans shorter than this are dropped.
        min_silence_ms: Silence this long ends a span (160 ms, as faster-whisper's batched
            default: short spans pack into fewer 30 s windows, and windows cost the time).
        speech_pad_ms: Padding added on each side of a span.
        max_speech_s: Longer spans are cut at their least speech-like frame.
        runtime: What executes the ONNX file: ``onnxruntime`` or ``openvino``.
        device: OpenVINO device (``CPU``, ``GPU``, ``NPU``, ``AUTO``); ONNX Runtime runs on
            the CPU and only accepts ``CPU``.
    """

    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 160
    speech_pad_ms: int = 200
    max_speech_s: float = 30.0
    runtime: str = "onnxruntime"
    device: str = "CPU"

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ProfileError(
                f"unknown runtime {self.runtime!r}",
                key_path="stages.vad.options.runtime",
                allowed=RUNTIMES,
            )
        if self.runtime == "onnxruntime" and self.device.upper() != "CPU":
            raise ProfileError(
                f"the onnxruntime runtime runs on the CPU only, found device {self.device!r}; "
                "use runtime: openvino for other devices",
                key_path="stages.vad.options.device",
                allowed=("CPU",),
            )
        if not 0.0 < self.threshold < 1.0:
            raise ProfileError(
                f"expected a probability in (0, 1), found {self.threshold}",
                key_path="stages.vad.options.threshold",
            )
        if self.max_speech_s * 1000 <= 2 * self.speech_pad_ms + self.min_speech_ms:
            raise ProfileError(
                f"max_speech_s ({self.max_speech_s} s) must exceed twice speech_pad_ms "
                f"({self.speech_pad_ms} ms) plus min_speech_ms ({self.min_speech_ms} ms)",
                key_path="stages.vad.options.max_speech_s",
            )


class SileroVad(VadBackend):
    """Silero VAD through ONNX Runtime or OpenVINO (the ``runtime`` option)."""

    name = "silero"
    Options = SileroOptions
    requires = (_RUNTIME_PACKAGES["onnxruntime"],)

    @classmethod
    def required_packages(cls, options: SileroOptions) -> tuple[tuple[str, str], ...]:
        """The package of the chosen runtime."""
        return (_RUNTIME_PACKAGES[options.runtime],)

    def __init__(self, model_path: Path, options: SileroOptions) -> None:
        super().__init__(model_path, options)
        path = Path(str(model_path)) / MODEL_FILE
        if options.runtime == "openvino":
            self._run = _openvino_runner(path, options.device)
        else:
            self._run = _onnxruntime_runner(path)

    def probabilities(self, audio: np.ndarray | Wav) -> np.ndarray:
        """Speech probability of each 32 ms frame, reading the audio a block at a time.

        Each frame is given the last CONTEXT samples of the frame before it (zeros before the
        first), and the LSTM state runs on from one call to the next, as Silero v6 expects.
        The end is padded with zeros to a whole frame (a whole frame of zeros when it ends on
        one).
        """
        frames = len(audio) // WINDOW + 1
        block = WINDOW * _FRAMES_PER_CALL
        h = np.zeros((1, 1, 128), dtype=np.float32)
        c = np.zeros((1, 1, 128), dtype=np.float32)
        before = np.zeros(CONTEXT, dtype=np.float32)
        out = []
        for start in range(0, frames * WINDOW, block):
            want = min(block, frames * WINDOW - start)
            chunk = np.asarray(audio[start : start + want], dtype=np.float32)
            chunk = np.pad(chunk, (0, want - len(chunk))).reshape(-1, WINDOW)
            context = np.empty((len(chunk), CONTEXT), dtype=np.float32)
            context[0] = before
            context[1:] = chunk[:-1, -CONTEXT:]
            before = chunk[-1, -CONTEXT:].copy()
            probs, h, c = self._run(np.concatenate([context, chunk], axis=1), h, c)
            out.append(np.asarray(probs).reshape(-1))
        return np.concatenate(out)

    def speech_spans(self, audio: np.ndarray | Wav, sample_rate: int) -> list[SpeechSpan]:
        """Speech spans of 16 kHz audio, in seconds (a :class:`Wav` is read a block at a
        time)."""
        if sample_rate != 16_000:
            raise ValueError(f"Silero VAD expects 16 kHz audio, found {sample_rate} Hz")
        if len(audio) == 0:
            return []
        frames = spans_from_probabilities(self.probabilities(audio), self.options)
        duration = len(audio) / sample_rate
        frame_s = WINDOW / sample_rate
        return [
            SpeechSpan(round(start * frame_s, 3), round(min(end * frame_s, duration), 3))
            for start, end in frames
        ]


def _onnxruntime_runner(path: Path) -> _RunFrames:
    try:
        import onnxruntime
    except ImportError as e:
        raise BackendUnavailable(
            "vad", "silero", "onnxruntime", "install it with `pip install onnxruntime`"
        ) from e
    opts = onnxruntime.SessionOptions()
    # One thread each: the model is tiny and the frame loop sequential; more threads only
    # contend with the ASR stage's.
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    opts.enable_cpu_mem_arena = False
    opts.log_severity_level = 4
    session = onnxruntime.InferenceSession(
        str(path), providers=["CPUExecutionProvider"], sess_options=opts
    )

    def run(batch: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(session.run(None, {"input": batch, "h": h, "c": c}))

    return run


def _openvino_runner(path: Path, device: str) -> _RunFrames:
    try:
        import openvino
    except ImportError as e:
        raise BackendUnavailable(
            "vad", "silero", "openvino", "install it with `pip install openvino`"
        ) from e
    config: dict[str, object] = {}
    if device.upper() == "CPU":
        # OpenVINO runs CPUs with bf16 support in bf16 by default, which moves Silero's frame
        # probabilities by up to 0.1 near the threshold; the model is tiny, so keep f32.
        config = {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"}
    compiled = openvino.Core().compile_model(str(path), device, config)
    request = compiled.create_infer_request()
    outputs = [compiled.output(name) for name in ("speech_probs", "hn", "cn")]

    def run(batch: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, ...]:
        result = request.infer({"input": batch, "h": h, "c": c})
        return tuple(np.array(result[o]) for o in outputs)

    return run


def spans_from_probabilities(probs: np.ndarray, options: SileroOptions) -> list[tuple[int, int]]:
    """Hysteresis over frame probabilities: frame-index spans [start, end), padded and merged.

    A span opens at the first frame >= threshold and closes once probabilities stay below
    threshold - 0.15 for min_silence_ms; spans longer than max_speech_s are cut at their least
    speech-like frame, short ones dropped, then each is padded and overlapping ones merged.
    """
    frame_ms = 1000 * WINDOW / 16_000
    off = max(options.threshold - 0.15, 0.01)
    min_silence = max(1, round(options.min_silence_ms / frame_ms))
    spans: list[tuple[int, int]] = []
    start: int | None = None
    silent_since: int | None = None
    for i, p in enumerate(probs):
        if start is None:
            if p >= options.threshold:
                start, silent_since = i, None
            continue
        if p >= options.threshold:
            silent_since = None
        elif p < off:
            silent_since = i if silent_since is None else silent_since
            if i - silent_since >= min_silence:
                spans.append((start, silent_since))
                start, silent_since = None, None
    if start is not None:
        spans.append((start, silent_since if silent_since is not None else len(probs)))

    pad = round(options.speech_pad_ms / frame_ms)
    max_len = max(1, int(options.max_speech_s * 1000 / frame_ms) - 2 * pad)
    cut: list[tuple[int, int]] = []
    for s, e in spans:
        while e - s > max_len:
            lo = s + max_len // 2
            split = max(s + 1, lo + int(np.argmin(probs[lo : s + max_len])))
            cut.append((s, split))
            s = split
        cut.append((s, e))
    min_len = options.min_speech_ms / frame_ms
    kept = [(s, e) for s, e in cut if e - s >= min_len]

    merged: list[tuple[int, int]] = []
    for s, e in kept:
        s, e = max(0, s - pad), min(len(probs), e + pad)
        if merged and s <= merged[-1][1]:
            # Split pieces of one long span must stay under max_speech_s, so meet halfway.
            mid = (merged[-1][1] - pad + s + pad) // 2
            merged[-1] = (merged[-1][0], mid)
            s = mid
        merged.append((s, e))
    return merged
