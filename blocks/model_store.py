"""The ``ModelStore`` block: the model volume's settings as a deployment saves them.

The block keeps only its fields; :meth:`ModelStore.volume` hands out the plain
:class:`blocks.volume.Volume` that every flow and command reads and warms through.
"""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field

from blocks.volume import Volume


class ModelStore(Block):
    """The model volume every flow loads from; only the warm flow writes to it.

    Attributes:
        root: Root folder of the volume (a local path or a mounted NFS/EFS volume).
        mirrors: Folder URLs tried before a model's own source, as ``<mirror>/<repo_id>/<file>``;
            a mirror that fails is skipped with a warning.
        hub_endpoint: Hub URL for ``hf://`` sources; ``$HF_ENDPOINT`` or huggingface.co if empty.
        hf_token_secret: Name of a Prefect ``Secret`` block holding the hub token (for gated or
            private models); ``$HF_TOKEN`` when empty. The token itself is never stored here.
        max_workers: Files fetched at once.
    """

    _block_type_name = "Voxflow Model Store"

    root: str = Field(default="models", description="Root folder of the model volume.")
    mirrors: list[str] = Field(
        default_factory=list,
        description="Folder URLs tried before the model's source, as <mirror>/<repo_id>/<file>.",
    )
    hub_endpoint: str | None = Field(
        default=None, description="Hub URL for hf:// sources ($HF_ENDPOINT when empty)."
    )
    hf_token_secret: str | None = Field(
        default=None,
        description="Prefect Secret block holding the hub token ($HF_TOKEN when empty).",
    )
    max_workers: int = Field(default=4, ge=1, description="Files fetched at once.")

    def volume(self) -> Volume:
        """The volume these settings describe."""
        return Volume(
            root=self.root,
            mirrors=tuple(self.mirrors),
            hub_endpoint=self.hub_endpoint,
            hf_token_secret=self.hf_token_secret,
            max_workers=self.max_workers,
        )
