"""The one table of backends: every (stage, name) a profile may pick, and where its class lives.

A backend class names the packages it needs (``requires``, looked up without importing them),
so ``voxflow profiles`` can say what to install; this table only says which names exist and
which module implements each. A name declared but left out on purpose says why instead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackendEntry:
    """One backend of one stage.

    Attributes:
        stage: The pipeline stage (``asr``, ...).
        name: What a profile's ``backend:`` says (``faster-whisper``, ...).
        implementation: ``module:Class`` of the backend, imported only when a profile uses it;
            None for a backend declared but not implemented.
        needs: For one not implemented: the package it would need.
        why: For one not implemented: why it is not, and what to use instead.
    """

    stage: str
    name: str
    implementation: str | None
    needs: str | None = None
    why: str | None = None


BACKENDS: tuple[BackendEntry, ...] = (
    BackendEntry("separate", "demucs", "tasks.separate.demucs:DemucsSeparator"),
    BackendEntry("vad", "silero", "tasks.vad.silero:SileroVad"),
    BackendEntry("vad", "pyannote", "tasks.vad.pyannote:PyannoteVad"),
    BackendEntry("asr", "faster-whisper", "tasks.asr.faster_whisper:FasterWhisperAsr"),
    BackendEntry("asr", "mlx-whisper", "tasks.asr.mlx_whisper:MlxWhisperAsr"),
    BackendEntry("asr", "openvino", "tasks.asr.openvino:OpenVinoWhisperAsr"),
    BackendEntry("asr", "transformers", "tasks.asr.transformers:TransformersWhisperAsr"),
    BackendEntry("diarize", "pyannote", "tasks.diarize.pyannote:PyannoteDiarize"),
    BackendEntry("translate", "transformers", "tasks.translate.transformers:TransformersTranslate"),
    BackendEntry("translate", "ctranslate2", "tasks.translate.ctranslate2:Ct2Translate"),
    BackendEntry(
        "translate",
        "openvino",
        None,
        needs="optimum-intel",
        why="optimum-intel pins transformers below 5.6 and voxflow's other stages need "
        "transformers 5, so this backend is not implemented; use backend ctranslate2 (int8, "
        "same CPUs) or transformers (device: cpu) for the translate stage",
    ),
)
"""Every backend, by stage in pipeline order."""


def known_backends(stage: str) -> tuple[str, ...]:
    """The backend names a profile may give ``stage`` (empty for an unknown stage)."""
    return tuple(e.name for e in BACKENDS if e.stage == stage)


def backend_entry(stage: str, name: str) -> BackendEntry | None:
    """The table's entry for a stage's backend, or None when there is none."""
    return next((e for e in BACKENDS if (e.stage, e.name) == (stage, name)), None)
