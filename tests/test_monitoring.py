"""The shipped monitoring (deploy/): every metric the Grafana dashboard and the Prometheus alert
rules name is one the bridge exposes, and the files are what Prometheus and Grafana read."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.metrics_core import Metric

from bridge.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
NAMED = re.compile(r"\bbridge_[a-z_]+\b")
#: What Prometheus adds itself, per target.
BUILT_IN = {"up"}


def exposed() -> set[str]:
    """Every series name the bridge's registry can expose."""
    names: set[str] = set()
    families: list[Metric] = list(Metrics().registry.collect())
    for family in families:
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("_sum", "_count", "_created"),
        }.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return names


def alert_expressions() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "bridge.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_metric_the_alerts_and_the_dashboard_name_exists() -> None:
    known = exposed()
    expressions = alert_expressions() + dashboard_expressions()
    named = {name for expression in expressions for name in NAMED.findall(expression)}
    assert named, "the files name no bridge metric"
    assert named - known == set()


def test_the_check_sees_a_metric_that_does_not_exist() -> None:
    """Control: a misspelt name is caught."""
    assert "bridge_inputs_totals" not in exposed()
    assert "bridge_inputs_total" in exposed()


def test_the_alerts_cover_what_matters() -> None:
    expressions = " ".join(alert_expressions())
    for metric in (
        "bridge_consumer_lag",
        "bridge_outbox_oldest_seconds",
        "bridge_dead_letters_total",
        "bridge_processes",
        "bridge_timer_lag_seconds",
    ):
        assert metric in expressions, metric


def test_prometheus_scrapes_the_web_and_every_worker_on_their_ports() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["bridge-web"]["static_configs"][0]["targets"] == ["web:8080"]
    assert jobs["bridge-worker"]["dns_sd_configs"][0]["port"] == 8081
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_grafana_provisions_the_dashboard_from_its_folder() -> None:
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "bridge.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "bridge.json").read_text())
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
