"""Declare a leadflow table: raw ``str`` keys and ``leadflow``-codec values, in store and changelog."""
from __future__ import annotations

from typing import Any

import faust

from streams.app import app
from streams.codec import CODEC, SCHEMA

__all__ = ["CodecTable", "entity_table"]


class CodecTable(faust.Table):  # type: ignore[misc]
    """A ``faust.Table`` whose key and value serializers are ours.

    Faust derives a table's serializers from ``key_type``/``value_type`` alone (``json`` unless
    the type is a faust Record) and ignores the schema, both for its writes and for the
    changelog topic it creates at declaration. Keys must be raw UTF-8 like the command topics'
    keys (or the router would look for a key on the wrong worker), and values use our codec.
    """

    def _serializer_from_type(self, typ: Any) -> str:
        return "raw" if typ is str else CODEC


def entity_table(name: str, help: str) -> Any:
    table = CodecTable(app, name=name, key_type=str, schema=SCHEMA, help=help, beacon=app.tables.beacon)
    return app.tables.add(table)
