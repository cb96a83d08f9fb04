"""Backpack's wire format, shared by the REST and WebSocket adapters.

``errors``: ``ApiError`` and HTTP statuses; ``auth``: Ed25519 request signing and
per-key rate limits; ``wire``: engine integers -> Backpack JSON shapes;
``api``: the route table (one ``Route`` per method and path, each with its
signing instruction and allowed fields) and the handlers both adapters call.
"""
