"""The warm stage: what a flow asks of the model volume. Are a profile's models there, each
ready for its stage (``preflight``); fill it from the sources (``stage``: the warm task, over
:mod:`blocks.volume`'s copying); and does every stage load from it offline, in a child process
with no network, by the very call inference makes (``loadcheck``)."""
