"""A stand-in for Grafana's HTTP API (Grafana cannot be installed here).

It answers the calls `feltsafe dashboards push` makes the way Grafana 10/11 does, and
records every request (method, path, parsed JSON body, Authorization header) so a test
can check exactly what was called.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Call:
    method: str
    path: str
    body: Any
    authorization: str | None


@dataclass
class FakeGrafana:
    token: str = "glsa_test"
    conflict_uids: set[str] = field(default_factory=set)
    calls: list[Call] = field(default_factory=list)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                auth = self.headers.get("Authorization")
                fake.calls.append(Call(self.command, self.path, body, auth))
                if auth != f"Bearer {fake.token}":
                    self._answer(401, {"message": "Unauthorized"})
                    return
                status, answer = fake.route(self.command, self.path, body)
                self._answer(status, answer)

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815 (http.server's names)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path.startswith("/api/folders/"):
            uid = path.rsplit("/", 1)[1]
            folder = self.folders.get(uid)
            return (200, folder) if folder else (404, {"message": "folder not found"})
        if method == "POST" and path == "/api/folders":
            folder = {"uid": body["uid"], "title": body["title"], "id": len(self.folders) + 1}
            self.folders[body["uid"]] = folder
            return 200, folder
        if method == "POST" and path == "/api/dashboards/db":
            dashboard = body["dashboard"]
            uid = dashboard["uid"]
            if uid in self.conflict_uids:
                return 412, {
                    "message": "The dashboard has been changed by someone else",
                    "status": "version-mismatch",
                }
            if body.get("folderUid") not in self.folders:
                return 400, {"message": "folder not found"}
            version = self.dashboards.get(uid, {}).get("version", 0) + 1
            self.dashboards[uid] = {**dashboard, "version": version}
            return 200, {
                "id": 1,
                "uid": uid,
                "url": f"/d/{uid}",
                "status": "success",
                "version": version,
            }
        return 404, {"message": "Not found"}

    def __enter__(self) -> FakeGrafana:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
