"""A small notes REST API (pure ASGI, in memory): the upstream ``restguard quickstart`` protects.

It shows what it received from the gateway: the subject and auth method in every answer.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from restguard.demo.app import PATH as APP_PATH
from restguard.demo.app import DemoApp
from restguard.demo.idp import PATH as IDP_PATH
from restguard.demo.idp import DemoIdentityProvider
from restguard.edge.asgi_send import acknowledge_lifespan, send_json

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
MAX_NOTE_BYTES = 64 * 1024


class NotesApp:
    """GET /health, GET|POST /notes, GET|PUT|DELETE /notes/{id}; with an ``idp``, also its
    JWK Set at ``GET /idp/jwks.json`` (the quickstart's stand-in identity provider); with an
    ``app``, the stand-in OAuth 2.0 application's redirect URI ``GET /app/callback``."""

    def __init__(self, idp: DemoIdentityProvider | None = None, app: DemoApp | None = None) -> None:
        self.notes: dict[int, dict[str, Any]] = {1: {"id": 1, "text": "Welcome to restguard."}}
        self.next_id = 2
        self.idp, self.app = idp, app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await acknowledge_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if self.idp is not None and scope["path"] == IDP_PATH + "/jwks.json":
            head = scope["method"] == "HEAD"
            await send_json(send, 200, self.idp.jwks, cache=b"max-age=300", head=head)
            return
        if self.app is not None and scope["path"] == APP_PATH and scope["method"] == "GET":
            status, answer = self.app.callback(scope.get("query_string", b""))
            await send_json(send, status, answer)
            return
        headers = dict(scope["headers"])
        who = {
            "subject": headers.get(b"x-restguard-subject", b"").decode("latin-1") or None,
            "auth_method": headers.get(b"x-restguard-auth-method", b"").decode("latin-1") or None,
        }
        status, body = await self._route(scope["method"], scope["path"], receive)
        if isinstance(body, dict):
            body = {**body, "seen_by_upstream": who}
        await send_json(send, status, body, head=scope["method"] == "HEAD")

    async def _route(self, method: str, path: str, receive: Receive) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts == ["health"] and method == "GET":
            return 200, {"status": "ok"}
        if parts == ["notes"]:
            if method == "GET":
                return 200, {"notes": list(self.notes.values())}
            if method == "POST":
                note = await self._read_note(receive)
                if note is None:
                    return 400, {"error": 'send JSON like {"text": "..."}'}
                note["id"] = self.next_id
                self.notes[self.next_id] = note
                self.next_id += 1
                return 201, note
        if len(parts) == 2 and parts[0] == "notes" and parts[1].isdigit():
            note_id = int(parts[1])
            if note_id not in self.notes:
                return 404, {"error": "no such note"}
            if method == "GET":
                return 200, self.notes[note_id]
            if method == "DELETE":
                return 200, self.notes.pop(note_id)
            if method == "PUT":
                note = await self._read_note(receive)
                if note is None:
                    return 400, {"error": 'send JSON like {"text": "..."}'}
                self.notes[note_id] = {**note, "id": note_id}
                return 200, self.notes[note_id]
        return 404, {"error": "not found"}

    @staticmethod
    async def _read_note(receive: Receive) -> dict[str, Any] | None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_NOTE_BYTES:
                return None
            if not message.get("more_body"):
                break
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            return None
        return {"text": data["text"]}
