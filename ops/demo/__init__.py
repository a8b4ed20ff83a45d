"""The ``make run`` demo: a lead feed, an SDR webhook receiver, reps who work their leads, a live view.

Each piece is an async component with ``start``/``stop`` (the feed has ``run``);
``ops.demo.run.run_demo`` composes them for ``leadflow run``.
"""
from __future__ import annotations

from ops.demo.disposer import DemoDisposer, Disposition
from ops.demo.feed import DemoFeed, FeedLead, FeedResult, generate_leads
from ops.demo.receiver import Delivery, DemoReceiver, verify_signature
from ops.demo.run import CONFIG_PATH, DemoSettings, load_demo_settings, run_demo
from ops.demo.stats import DemoStats, percentile
from ops.demo.view import LiveView, render, summary_line

__all__ = [
    "CONFIG_PATH",
    "Delivery",
    "DemoDisposer",
    "DemoFeed",
    "DemoReceiver",
    "DemoSettings",
    "DemoStats",
    "Disposition",
    "FeedLead",
    "FeedResult",
    "LiveView",
    "generate_leads",
    "load_demo_settings",
    "percentile",
    "render",
    "run_demo",
    "summary_line",
    "verify_signature",
]
