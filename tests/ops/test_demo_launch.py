"""``leadflow run``: stop signals, what happens to the stack, and the config the capture examples need."""
from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import pytest
import yaml

from connectors.api.forms import redirect_problem
from connectors.providers import ProvidersConfig
from leadflow.errors import ConfigError
from ops.demo.launch import DEMO_ENV, report_command, stack_after_stop
from ops.demo.run import CONFIG_PATH
from ops.demo.stopping import StopRequested, StopSignals

REPO = Path(__file__).resolve().parents[2]
CAPTURE_MD = REPO / "docs" / "capture.md"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_outside_the_loop_is_a_keyboard_interrupt_naming_it(sig: signal.Signals) -> None:
    before = signal.getsignal(sig)
    with StopSignals() as stop, pytest.raises(KeyboardInterrupt) as raised:
        os.kill(os.getpid(), sig)
        signal.sigtimedwait([], 0)  # give the interpreter a bytecode boundary to run the handler on
    assert isinstance(raised.value, StopRequested) and raised.value.signame == sig.name
    assert stop.received == sig.name
    assert signal.getsignal(sig) is before  # restored on the way out


def test_a_stop_signal_inside_the_loop_cancels_the_main_task_and_its_finally_runs() -> None:
    cleaned: list[str] = []

    async def demo() -> None:
        try:
            asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0)  # a finally block that awaits, as run_demo's does
            cleaned.append("stopped")

    with StopSignals() as stop, pytest.raises(asyncio.CancelledError):
        asyncio.run(stop.run(demo()))
    assert cleaned == ["stopped"] and stop.received == "SIGTERM"


def test_while_stopping_further_signals_do_not_cut_the_cleanup_short() -> None:
    repeats: list[str] = []
    before = signal.getsignal(signal.SIGINT)  # Python's handler, or SIG_IGN in a background job
    with StopSignals(on_repeat=repeats.append) as stop:
        with stop.holding():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                os.kill(os.getpid(), sig)
                signal.sigtimedwait([], 0)
        assert signal.getsignal(signal.SIGINT) is before
    assert repeats == ["SIGINT", "SIGTERM", "SIGHUP"]


@pytest.mark.parametrize(("was_running", "keep_stack", "kept"), [
    (False, False, None),  # the demo started it: it stops it
    (False, True, "--keep-stack"),
    (True, False, "it was running before `leadflow run` started"),
    (True, True, "it was running before `leadflow run` started"),
])
def test_the_demo_stops_only_a_stack_it_started(was_running: bool, keep_stack: bool, kept: str | None) -> None:
    assert stack_after_stop(was_running=was_running, keep_stack=keep_stack) == kept


def test_the_report_command_names_the_runs_topic_and_a_moved_broker() -> None:
    assert report_command("demo20260302093000.", "kafka://127.0.0.1:9092") == \
        "leadflow report --topic demo20260302093000.lead.events -o report.html"
    assert report_command("demo1.", "kafka://127.0.0.1:44092") == \
        "leadflow report --broker kafka://127.0.0.1:44092 --topic demo1.lead.events -o report.html"


def _doc_exports() -> dict[str, str]:
    text = CAPTURE_MD.read_text(encoding="utf-8")
    return dict(re.findall(r"^export (LEADFLOW_[A-Z_]+)=(\S+)\s+# DEMO ONLY$", text, re.M))


def test_capture_md_publishes_the_demos_provider_secrets() -> None:
    secrets = {k: v for k, v in DEMO_ENV.items() if k != "LEADFLOW_ALLOWED_REDIRECT_HOSTS"}
    assert _doc_exports() == secrets
    assert all("not-a-secret" in value for value in secrets.values())


def test_the_demo_config_configures_both_providers_from_the_demo_env() -> None:
    document = yaml.safe_load(CONFIG_PATH.read_text(encoding="utf-8"))
    providers = ProvidersConfig.model_validate(document["providers"])
    resolved = providers.resolve(DEMO_ENV)
    assert resolved.facebook is not None and resolved.typeform is not None
    assert resolved.facebook.app_secret == DEMO_ENV["LEADFLOW_FACEBOOK_APP_SECRET"]
    assert resolved.typeform.secret == DEMO_ENV["LEADFLOW_TYPEFORM_SECRET"]
    # The Typeform example's form maps its company question.
    assert resolved.typeform.forms["lT4Z3j"] == {"company_ref": "company"}
    with pytest.raises(ConfigError, match="LEADFLOW_FACEBOOK_APP_SECRET"):
        providers.resolve({})  # the worker needs the launcher's environment


def test_the_html_form_examples_redirect_is_allowed_on_the_demo() -> None:
    text = CAPTURE_MD.read_text(encoding="utf-8")
    targets = set(re.findall(r"_redirect=(https://[^' ]+)'", text))
    assert targets == {"https://www.example.com/thanks"}
    hosts = DEMO_ENV["LEADFLOW_ALLOWED_REDIRECT_HOSTS"].split(",")
    for target in targets:
        assert redirect_problem(target, hosts) is None


@pytest.mark.parametrize(("sig", "name"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP"), (signal.SIGINT, "Ctrl-C")])
def test_a_stop_signal_while_a_process_starts_waits_until_its_pid_is_held(sig: signal.Signals, name: str) -> None:
    held: list[str] = []
    deferred: list[str] = []
    before = signal.getsignal(signal.SIGINT)  # Python's handler, or SIG_IGN in a background job
    with StopSignals(on_deferred=deferred.append) as stop, pytest.raises(StopRequested) as raised:
        with stop.deferred():
            os.kill(os.getpid(), sig)
            signal.sigtimedwait([], 0)
            held.append("pid")  # e.g. `worker = start_process(...)`: not cut short
    assert held == ["pid"] and deferred == [name] and raised.value.signame == name
    assert signal.getsignal(signal.SIGINT) is before
