"""The chart's help-desk write-back sink: off by default; on, it runs `escalator sink helpdesk`
with the desk's settings and its credential mounted from a Secret where the *_FILE variable
points, which the sink's own configuration loader accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.sinks.helpdesk_writeback import HelpdeskConfig
from streams.runtime.settings import load_settings
from tests.deploy.chart import containers, process_env, workloads

ZENDESK = {"enabled": True, "url": "https://acme.zendesk.com", "zendeskEmail": "bot@acme.com"}


def helpdesk_sink(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    (work,) = [w for w in workloads(docs) if w["metadata"]["name"] == "escalator-sink-helpdesk"]
    (container,) = containers(work)
    return work, container


def test_off_by_default(render: Any) -> None:
    names = {w["metadata"]["name"] for w in workloads(render())}
    assert "escalator-sink-helpdesk" not in names


@pytest.mark.parametrize(
    ("values", "secret_env", "secret_name"),
    [
        (ZENDESK, "ESCALATOR_ZENDESK_API_TOKEN_FILE", "escalator-zendesk-api-token"),
        ({"enabled": True, "kind": "freshdesk", "url": "https://acme.freshdesk.com"},
         "ESCALATOR_FRESHDESK_API_KEY_FILE", "escalator-freshdesk-api-key"),
    ],
)  # fmt: skip
def test_the_sink_gets_its_desk_and_its_secret(
    render: Any, tmp_path: Path, values: dict[str, Any], secret_env: str, secret_name: str
) -> None:
    docs = render({"sinks": {"helpdesk": values}})
    work, container = helpdesk_sink(docs)
    assert container["args"] == ["sink", "helpdesk"]
    env = process_env(docs, work, container, tmp_path)
    assert env["ESCALATOR_HELPDESK_URL"] == values["url"]
    assert Path(env[secret_env]).is_file()
    secrets = [v["secret"]["secretName"] for v in work["spec"]["template"]["spec"]["volumes"]
               if "secret" in v]  # fmt: skip
    assert secret_name in secrets
    load_settings(env)
    config = HelpdeskConfig.from_env(env)
    assert config.desk == values.get("kind", "zendesk") and config.base_url == values["url"]
    assert config.authorization.startswith("Basic ")


def test_needs_a_url_and_a_zendesk_email(render_error: Any) -> None:
    err = render_error({"sinks": {"helpdesk": {"enabled": True}}})
    assert "sinks.helpdesk.enabled needs sinks.helpdesk.url" in err
    err = render_error({"sinks": {"helpdesk": {**ZENDESK, "zendeskEmail": ""}}})
    assert "needs sinks.helpdesk.zendeskEmail" in err
