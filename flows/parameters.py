"""How a request model (:mod:`flows.request`) becomes a flow's parameters, its deployment form
and the command line's flags: each field says, once, its type, default, description, title in
words and fixed choices (:func:`form`, :func:`choices`), and how the CLI spells it
(:class:`Flag`); :func:`takes` makes the model's fields a flow's signature.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, Field

SWITCH = ("profile", "on", "off")
"""A stage switch's values: as the profile says, or forced on or off."""


def _switch_value(value: Any) -> Any:
    """An older caller's bool is a switch's on or off."""
    return ("on" if value else "off") if isinstance(value, bool) else value


Switch = Annotated[str, BeforeValidator(_switch_value)]
"""A stage switch: one of :data:`SWITCH` (a bool is taken as on or off)."""


@dataclass(frozen=True)
class Flag:
    """How a request field is spelled on the ``voxflow`` command line (:func:`add_flags`).

    Attributes:
        name: The flag, when not ``--`` and the field's name in kebab case.
        metavar: What the help shows for its value.
        comma: A list given as one comma-separated value (``--format srt,vtt``).
        open: The form's choices are a guide only: the CLI takes other values too (a
            profile's ``.yaml`` path).
        positional: The command's positional argument (one or more media files).
    """

    name: str | None = None
    metavar: str | None = None
    comma: bool = False
    open: bool = False
    positional: bool = False


FIRST = (
    "media",
    "inbox_dir",
    "claim",
    "profile",
    "language",
    "source_language",
    "target_languages",
    "formats",
)
"""The fields the form and the help show first (the rest follow in the model's order)."""


def ordered_fields(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s fields, those a run most often sets first (:data:`FIRST`)."""
    fields = model.model_fields
    first = [name for name in FIRST if name in fields]
    return {name: fields[name] for name in [*first, *(n for n in fields if n not in first)]}


def form(title: str, **schema: Any) -> dict[str, Any]:
    """What the deployment form shows beyond the type: a title in words, fixed choices."""
    return {"title": title, **schema}


def choices(values: Any) -> dict[str, Any]:
    return {"enum": list(values)}


Fn = TypeVar("Fn", bound=Callable[..., Any])


def _none_is(default: Any, value: Any) -> Any:
    """``None`` from an older caller, as a flow parameter: the field's default."""
    return default if value is None else value


def takes(model: type[BaseModel]) -> Callable[[Fn], Fn]:
    """Make ``model``'s fields a flow's parameters: the model is the one place they are written.

    The flow is written as ``def transcribe(media: str, **options)``: the parameters it names
    must be fields of the model, and ``**options`` takes the rest. Its signature becomes the
    model's fields, with their types, defaults, constraints, titles and choices, so Prefect
    validates a run's parameters by them and renders them as the deployment's form; its
    docstring gets an ``Args:`` section from the fields' descriptions, which the form shows.
    The parameters stay flat, so a deployment's defaults (``profile: cpu``) merge with what a
    run passes.

    Raises:
        TypeError: The flow names a parameter the model lacks, or takes no ``**options``.
    """

    def attach(fn: Fn) -> Fn:
        fields = ordered_fields(model)
        params = list(inspect.signature(fn).parameters.values())
        named = [p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
        drifted = [
            p.name
            for p in named
            if p.name in fields
            and p.default is not inspect.Parameter.empty
            and p.default != fields[p.name].get_default()
        ]
        if drifted:
            raise TypeError(
                f"{fn.__name__} gives {', '.join(drifted)} a default of its own; "
                f"{model.__name__} is the one place a default is written"
            )
        if len(named) == len(params) or any(p.name not in fields for p in named):
            raise TypeError(
                f"{fn.__name__} must name only fields of {model.__name__} "
                f"({', '.join(fields)}) and take the rest as **options; it takes "
                f"({', '.join(str(p) for p in params)})"
            )

        def parameter(name: str, kind: inspect._ParameterKind) -> inspect.Parameter:
            field = fields[name]
            return inspect.Parameter(
                name,
                kind,
                default=inspect.Parameter.empty if field.is_required() else field.get_default(),
                annotation=Annotated[
                    field.annotation,
                    *field.metadata,
                    *(
                        []
                        if field.is_required()
                        else [BeforeValidator(partial(_none_is, field.get_default()))]
                    ),
                    Field(json_schema_extra=field.json_schema_extra),
                ],
            )

        given = {p.name for p in named}
        named = [parameter(p.name, p.kind) for p in named]
        rest = [parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in fields if n not in given]
        fn.__signature__ = inspect.Signature(
            [*named, *rest], return_annotation=inspect.signature(fn).return_annotation
        )
        lines = [f"{p.name}: {fields[p.name].description}" for p in [*named, *rest]]
        summary, _, after = (inspect.getdoc(fn) or "").partition("\n\n")
        args = "Args:\n" + "\n".join(f"    {line}" for line in lines)
        fn.__doc__ = "\n\n".join(part for part in (summary, args, after) if part)
        return fn

    return attach
