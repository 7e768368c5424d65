"""The OpenAPI document: valid OpenAPI 3.1, complete, and true to what the API sends.

Validity is checked by openapi-spec-validator against the OpenAPI 3.1 specification's
own schema; completeness against the app's routes (both ways); truth by validating real
answers of the running app against the document's schemas (jsonschema 2020-12, the
dialect OpenAPI 3.1 uses, with date-time formats checked).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.routing import Route

from monitor.api_schema import openapi_document
from monitor.app import create_app
from monitor.config import Settings
from monitor.media_host import media_host
from monitor.store import Store
from monitor.tokens import TokenRole
from tests.monitor import review_data
from tests.monitor.review_data import SECRET, SESSION_A, bearer, token

UNDOCUMENTED = {"/api/openapi.json", "/api/docs", "/api/beacon/counters"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_document()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as opened:
        yield opened


@pytest.fixture
async def app(store: Store) -> AsyncIterator[Starlette]:
    with media_host("127.0.0.2"):
        application = create_app(Settings(secret=SECRET), store=store)
    yield application
    await application.state.registry.aclose()


def conforms(document: dict[str, Any], schema_name: str, body: object) -> None:
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    validator = OAS31Validator(schema, format_checker=OAS31Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(body), key=str)
    assert not errors, "\n".join(e.message for e in errors[:5])


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema


def test_the_document_asks_for_a_bearer_token_everywhere(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    assert document["security"] == [{"bearer": []}]
    for item in document["paths"].values():
        for operation in item.values():
            assert {"200", "401", "403", "503"} <= set(operation["responses"])
            assert operation["description"].startswith("Roles: ")


async def test_every_api_route_is_documented_and_every_documented_route_exists(
    app: Starlette, document: dict[str, Any]
) -> None:
    served: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, Route) and route.path.startswith("/api/"):
            if route.path in UNDOCUMENTED:
                continue
            for method in route.methods or ():
                if method != "HEAD":
                    served.add((route.path, method.lower()))
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert served == documented


async def test_the_app_serves_the_document_and_a_docs_page(
    app: Starlette, document: dict[str, Any]
) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://m") as http:
        served = await http.get("/api/openapi.json")
        page = await http.get("/api/docs")
        script = await http.get("/review/api-docs.js")
    assert served.json() == document
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/review/api-docs.js">' in page.text
    assert script.status_code == 200
    assert 'fetch("/api/openapi.json")' in script.text


async def test_real_answers_conform_to_the_documented_schemas(
    app: Starlette, store: Store, document: dict[str, Any]
) -> None:
    filled = review_data.fill(store)
    live = app.state.registry.open(SESSION_A)
    await asyncio.sleep(0.3)  # a tick, so the snapshot has signals
    assert not live.closed
    transport = httpx.ASGITransport(app=app)
    headers = bearer(token(TokenRole.SUPERVISOR))
    ops = bearer(token(TokenRole.OPS))
    a = f"/api/sessions/{SESSION_A}"
    async with httpx.AsyncClient(transport=transport, base_url="http://m", headers=headers) as http:
        answers = {
            "SessionPageOut": await http.get("/api/sessions"),
            "SessionOut": await http.get(a),
            "FlagListOut": await http.get(f"{a}/flags"),
            "TimelineOut": await http.get(f"{a}/timeline"),
            "FlagsExportOut": await http.get(f"{a}/export.json"),
            "SnapshotOut": await http.get(f"{a}/snapshot"),
            "FlagOut": await http.post(f"/api/flags/{filled.freeze_alert}/ack", json={"note": "x"}),
            "AggregatesOut": await http.get("/api/aggregates", headers=ops),
        }
        errors = [
            await http.get("/api/sessions", headers={"Authorization": "Bearer nope"}),
            await http.get("/api/sessions?mode=video"),
            await http.get("/api/sessions/sess-nobody"),
            await http.get("/api/aggregates", headers=bearer(token(TokenRole.THERAPIST))),
        ]
    for schema_name, response in answers.items():
        assert response.status_code == 200, (schema_name, response.text)
        conforms(document, schema_name, response.json())
    assert [e.status_code for e in errors] == [401, 400, 404, 403]
    for error in errors:
        conforms(document, "ErrorOut", error.json())


def test_a_wrong_answer_would_not_conform(document: dict[str, Any]) -> None:
    """The check above can fail: a session without its flag counts does not conform."""
    with pytest.raises(AssertionError):
        conforms(document, "SessionOut", {"id": "s", "started_at": "yesterday"})
    with pytest.raises(AssertionError):
        conforms(document, "ErrorOut", {"error": "x", "detail": "extra field"})
