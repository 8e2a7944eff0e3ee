"""Reading the YAML files of profiles and catalogs, refusing what is wrong with the file and key."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from voxflow.errors import ProfileError

PROFILES_DIR = Path(__file__).parent
CATALOG_FILE = "models.yaml"


def list_profiles(directory: str | Path | None = None) -> list[str]:
    """Names of the profiles in a directory.

    Args:
        directory: Where to look; defaults to :data:`PROFILES_DIR`.

    Returns:
        Stems of the ``*.yaml`` files other than the catalog, sorted.
    """
    folder = Path(directory) if directory is not None else PROFILES_DIR
    return sorted(p.stem for p in folder.glob("*.yaml") if p.name != CATALOG_FILE)


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ProfileError(f"cannot read: {e.strerror or e}", file=str(path)) from e
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ProfileError(f"not valid YAML: {e}", file=str(path)) from e


def check_keys(
    mapping: Mapping[Any, Any], allowed: tuple[str, ...], file: str, prefix: str, what: str
) -> None:
    for key in mapping:
        if key not in allowed:
            raise ProfileError(
                f"unknown {what} {key!r}", file=file, key_path=f"{prefix}{key}", allowed=allowed
            )


def flag(value: object, file: str, key_path: str) -> bool:
    """A YAML boolean, or ProfileError naming the file and key."""
    if not isinstance(value, bool):
        raise ProfileError(
            f"expected true or false, found {value!r}",
            file=file,
            key_path=key_path,
            allowed=("true", "false"),
        )
    return value
