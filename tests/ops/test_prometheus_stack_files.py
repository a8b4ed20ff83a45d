"""The files that put Prometheus and Grafana in front of people: docker-compose.yml (checked
structurally: no Docker engine runs here), Grafana provisioning and the generated dashboards."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.grafana import build
from ops.prometheus import CONFIG_COMPOSE, RULES

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "ops" / "grafana"


def _compose() -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(doc, dict)
    return doc


def _bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    out = []
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith("."):
            out.append((REPO / source, target))
    return out


def test_compose_has_the_production_like_services() -> None:
    services = _compose()["services"]
    assert {"kafka", "redis", "worker-1", "worker-2", "prometheus", "grafana"} <= set(services)
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    for worker in ("worker-1", "worker-2"):
        assert services[worker]["build"] == "."
        assert services[worker]["environment"]["LEADFLOW_BROKER"] == "kafka://kafka:9092"
    assert (REPO / "Dockerfile").is_file()


def test_compose_mounts_only_files_that_exist() -> None:
    for name, service in _compose()["services"].items():
        for source, target in _bind_mounts(service):
            assert source.exists(), f"{name}: mounts {source} at {target}, which does not exist"


def test_prometheus_in_compose_scrapes_both_workers_with_the_rules() -> None:
    services = _compose()["services"]
    prometheus = services["prometheus"]
    mounts = dict((target, source) for source, target in _bind_mounts(prometheus))
    config_arg = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_in_container = Path(config_arg.split("=", 1)[1])
    host_dir = mounts[str(config_in_container.parent)]
    config = yaml.safe_load((host_dir / config_in_container.name).read_text())
    assert host_dir / config_in_container.name == CONFIG_COMPOSE
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    port = 6066
    assert targets == {f"{w}:{port}" for w in ("worker-1", "worker-2") if w in services}
    assert [CONFIG_COMPOSE.parent / f for f in config["rule_files"]] == list(RULES)


def test_grafana_in_compose_provisions_the_datasource_and_dashboards() -> None:
    grafana = _compose()["services"]["grafana"]
    mounts = {target: source for source, target in _bind_mounts(grafana)}
    env = grafana["environment"]
    assert mounts["/etc/grafana/provisioning/datasources"] == GRAFANA / "provisioning" / "datasources"
    assert mounts["/etc/grafana/provisioning/dashboards"] == GRAFANA / "provisioning" / "dashboards"
    assert mounts[env["LEADFLOW_DASHBOARDS_DIR"]] == GRAFANA / "dashboards"
    assert env["LEADFLOW_PROMETHEUS_URL"] == "http://prometheus:9090"
    home = Path(env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert (GRAFANA / "dashboards" / home.name).is_file()


def test_provisioning_files_point_at_the_dashboards_datasource() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "leadflow.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == build.DATASOURCE_UID
    assert source["url"] == "${LEADFLOW_PROMETHEUS_URL}"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "leadflow.yml").read_text())["providers"]
    assert providers[0]["type"] == "file" and providers[0]["options"]["path"] == "${LEADFLOW_DASHBOARDS_DIR}"


def test_the_committed_dashboards_are_what_build_generates(tmp_path: Path) -> None:
    build.write_all(tmp_path)
    for name in build.DASHBOARDS:
        committed = (GRAFANA / "dashboards" / name).read_text(encoding="utf-8")
        assert committed == (tmp_path / name).read_text(encoding="utf-8"), \
            f"{name} is stale: run `python -m ops.grafana.build` and commit the result"


@pytest.mark.parametrize("name", sorted(build.DASHBOARDS))
def test_dashboards_are_well_formed(name: str) -> None:
    board = json.loads((GRAFANA / "dashboards" / name).read_text(encoding="utf-8"))
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    queries = [p for p in board["panels"] if p["type"] != "row"]
    assert len(queries) >= 8
    for panel in queries:
        assert panel["datasource"]["uid"] == build.DATASOURCE_UID, panel["title"]
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
    uids = {json.loads((GRAFANA / "dashboards" / n).read_text())["uid"] for n in build.DASHBOARDS}
    assert len(uids) == len(build.DASHBOARDS)
