"""The ``voxflow transcribe`` and ``voxflow subtitle`` flags, made from the request models
(:mod:`flows.request`): each field is a flag, spelled as its :class:`~flows.request.Flag` says,
with the field's description as its help, its default, and its choices. No run option is
written here; a field added to a request is a flag, a form field and a flow parameter at once.
"""

from __future__ import annotations

import argparse
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from flows.parameters import SWITCH, Flag, ordered_fields


def flag_of(field: FieldInfo) -> Flag:
    """The field's :class:`Flag` (its defaults when it names none)."""
    return next((m for m in field.metadata if isinstance(m, Flag)), Flag())


def choices_of(field: FieldInfo) -> list[Any] | None:
    """The values a field takes, when they are fixed: a ``Literal`` or the form's choices."""
    if get_origin(field.annotation) is not None and str(get_origin(field.annotation)).endswith(
        "Literal"
    ):
        return list(get_args(field.annotation))
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if "enum" in extra:
        return list(extra["enum"])
    items = extra.get("items")
    return list(items["enum"]) if isinstance(items, dict) and "enum" in items else None


def add_flags(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """One flag per field of ``model`` (the positional field takes one or more values)."""
    for name, field in ordered_fields(model).items():
        flag = flag_of(field)
        help_text = (field.description or "").rstrip(".")
        if flag.positional:
            parser.add_argument(name, nargs="+", help=help_text)
            continue
        spelled = flag.name or "--" + name.replace("_", "-")
        default = None if field.is_required() else field.get_default()
        choices = choices_of(field)
        if choices == list(SWITCH):  # --diarize / --no-diarize, else the profile's
            group = parser.add_mutually_exclusive_group()
            group.add_argument(
                spelled, dest=name, action="store_const", const="on", default=default,
                help=f"{help_text} (default: as the profile says)".replace(
                    ": on, off, or as the profile says", ""
                ),
            )  # fmt: skip
            group.add_argument(
                "--no-" + spelled[2:], dest=name, action="store_const", const="off",
                help=f"the opposite of {spelled}",
            )  # fmt: skip
            continue
        if field.annotation is bool:
            parser.add_argument(spelled, dest=name, action="store_true", help=help_text)
            continue
        kind = field.annotation if field.annotation in (int, float) else str
        shown = ",".join(default) if isinstance(default, list) else default
        parser.add_argument(
            spelled,
            dest=name,
            type=_comma_list(choices) if flag.comma else kind,
            choices=None if flag.comma or flag.open else choices,
            default=default,
            required=field.is_required(),
            metavar=flag.metavar,
            help=f"{help_text} (default: {shown})" if shown not in (None, "") else help_text,
        )


def _comma_list(choices: list[Any] | None):
    """An argparse type: ``"a,b"`` as ``["a", "b"]``, each one of ``choices`` when fixed."""

    def parse(value: str) -> list[str]:
        items = [item.strip() for item in value.split(",") if item.strip()]
        wrong = [item for item in items if choices is not None and item not in choices]
        if wrong:
            raise argparse.ArgumentTypeError(
                f"{', '.join(wrong)} is not one of {', '.join(choices or [])}"
            )
        return items

    parse.__name__ = "comma-separated list"
    return parse


def requests(args: argparse.Namespace, model: type[BaseModel]) -> list[Any]:
    """One request per media file the command was given, from its flags."""
    fields = model.model_fields
    positional = next(n for n, f in fields.items() if flag_of(f).positional)
    given = {name: getattr(args, name) for name in fields if name != positional}
    return [model(**{positional: media}, **given) for media in getattr(args, positional)]
