"""``accounts``: each company's ``Account`` by registrable domain, co-partitioned with ``account.commands``."""
from __future__ import annotations

from streams.tables._table import entity_table

__all__ = ["accounts"]

accounts = entity_table("accounts", help="Account by registrable domain (written only by the account agent).")
