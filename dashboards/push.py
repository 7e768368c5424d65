"""Upload the dashboards to a Grafana with grafana-client: create or update by uid,
into the feltsafe folder. Grafana's errors (auth, version conflict, bad input) become a
`PushError` with one clear line; the token never appears in a message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaUnauthorizedError,
)
from niquests.exceptions import RequestException

from dashboards.catalogue import DASHBOARDS
from dashboards.export import FOLDER_TITLE, FOLDER_UID
from probes.base import FeltsafeError


class PushError(FeltsafeError):
    pass


@dataclass(frozen=True, slots=True)
class Pushed:
    uid: str
    version: int | None
    url: str | None


def _explain(exc: GrafanaException, what: str) -> PushError:
    status = getattr(exc, "status_code", None)
    if not status:  # grafana-client reports connection failures and timeouts as status 0
        return PushError(f"{what}: cannot reach Grafana: {type(exc).__name__}")
    if isinstance(exc, GrafanaUnauthorizedError) or status in (401, 403):
        return PushError(f"{what}: Grafana refused the token (HTTP {status})")
    if status == 412:
        return PushError(f"{what}: version conflict (HTTP 412): changed in Grafana meanwhile")
    message = getattr(exc, "message", "") or type(exc).__name__
    return PushError(f"{what}: Grafana answered HTTP {status}: {message}")


def _ensure_folder(api: GrafanaApi) -> None:
    try:
        api.folder.get_folder(FOLDER_UID)
    except GrafanaClientError as exc:
        if getattr(exc, "status_code", None) != 404:
            raise _explain(exc, "folder") from None
        try:
            api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        except GrafanaException as create_exc:
            raise _explain(create_exc, "folder") from None
    except GrafanaException as exc:
        raise _explain(exc, "folder") from None


def push(url: str, token: str, *, timeout: float = 10.0) -> list[Pushed]:
    try:
        return _push(GrafanaApi.from_url(url, credential=token, timeout=timeout))
    except RequestException as exc:  # refused, DNS, TLS: before any HTTP status
        raise PushError(f"cannot reach Grafana at {url}: {type(exc).__name__}") from None


def _push(api: GrafanaApi) -> list[Pushed]:
    _ensure_folder(api)
    results = []
    for dashboard in DASHBOARDS:
        body: dict[str, Any] = {
            "dashboard": {**dashboard.to_json(), "id": None, "version": None},
            "folderUid": FOLDER_UID,
            "overwrite": True,
            "message": "feltsafe dashboards push",
        }
        try:
            answer = api.dashboard.update_dashboard(body)
        except GrafanaException as exc:
            raise _explain(exc, f"dashboard {dashboard.uid}") from None
        results.append(Pushed(dashboard.uid, answer.get("version"), answer.get("url")))
    return results
