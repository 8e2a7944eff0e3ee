"""What a flow asks of the model volume: are a profile's models there, each ready for its stage
(``preflight``); fill it (``warm``); and does every stage load from it offline, in a child
process with no network, by the very call inference makes (``loadcheck``)."""
