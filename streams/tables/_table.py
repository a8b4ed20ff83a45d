"""Declare a leadflow table: raw ``str`` keys and ``leadflow``-codec values, in store and changelog."""
from __future__ import annotations

from typing import Any

from streams.app import app
from streams.codec import CODEC, SCHEMA

__all__ = ["entity_table"]


def entity_table(name: str, help: str) -> Any:
    table = app.Table(name, schema=SCHEMA, help=help)
    # Faust derives a table's serializers from key_type/value_type alone (json unless the type
    # is a faust Record), ignoring the schema. Set them before the store and the changelog topic
    # are created (both lazily): keys must hash like the command topics' raw keys, or the
    # router would send a request for a key to the wrong worker.
    table.key_serializer = "raw"
    table.value_serializer = CODEC
    return table
