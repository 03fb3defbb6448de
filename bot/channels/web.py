"""The web chat channel: the JSON API and WebSocket behind the widget.

The widget talks over a WebSocket and falls back to plain HTTP when a proxy blocks it. Both paths go
through :meth:`WebChannel.chat`, so they answer the same. Messages that are not answers (a human
agent's replies) are pushed to the conversation's open sockets and are always in its history.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.channels.base import Channel, Turn


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conversation_id: str = Field(..., min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")
    text: str = Field(..., min_length=1)
    user: str | None = Field(None, max_length=128)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    turn_id: int
    value: int = Field(..., ge=-1, le=1, description="1 thumbs up, -1 thumbs down")
    comment: str | None = Field(None, max_length=2000)


def bad_request(exc: ValidationError | ValueError) -> web.HTTPBadRequest:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "body"
        message = f"{field}: {'unknown field' if err['type'] == 'extra_forbidden' else err['msg']}"
    else:
        message = str(exc)
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


async def read_json(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid":
            raise bad_request(ValueError("body: malformed JSON")) from None
        raise bad_request(exc) from None


class WebChannel(Channel):
    name = "web"

    def __init__(self, bot: Any, settings: dict[str, Any]) -> None:
        super().__init__(bot, settings)
        self.sockets: dict[str, set[web.WebSocketResponse]] = defaultdict(set)
        self.max_chars: int = settings.get("max_message_chars", 4000)

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.post("/api/chat", self.http_chat),
            web.get("/api/ws", self.websocket),
            web.get("/api/conversations/{conversation_id}/history", self.history),
            web.post("/api/feedback", self.feedback),
        ]

    async def chat(self, request: ChatRequest) -> dict[str, Any]:
        if len(request.text) > self.max_chars:
            raise ValueError(f"text: longer than {self.max_chars} characters")
        turn = Turn(request.conversation_id, request.text, self.name, request.user)
        return (await self.bot.handle(turn)).to_json()

    async def http_chat(self, request: web.Request) -> web.Response:
        body = await read_json(request, ChatRequest)
        try:
            return web.json_response(await self.chat(body))
        except ValueError as exc:
            raise bad_request(exc) from None

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        """One socket per widget; it may carry several conversations over its life."""
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=self.settings.get("max_body_bytes", 65536))
        await ws.prepare(request)
        joined: set[str] = set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    body = ChatRequest.model_validate_json(msg.data)
                    if body.conversation_id not in joined:
                        joined.add(body.conversation_id)
                        self.sockets[body.conversation_id].add(ws)
                    reply = await self.chat(body)
                    await ws.send_json({"type": "reply", **reply})
                except ValidationError as exc:
                    await ws.send_json({"type": "error", "error": json.loads(bad_request(exc).text)["error"]})
                except ValueError as exc:
                    await ws.send_json({"type": "error", "error": str(exc)})
        finally:
            for cid in joined:
                self.sockets[cid].discard(ws)
                if not self.sockets[cid]:
                    del self.sockets[cid]
        return ws

    async def history(self, request: web.Request) -> web.Response:
        cid = request.match_info["conversation_id"]
        store = self.bot.store
        turns = await self.bot._store(store.history, cid) if store else []
        conversation = await self.bot._store(store.conversation, cid) if store else None
        status = conversation["status"] if conversation else "open"
        return web.json_response({"conversation_id": cid, "status": status, "turns": turns})

    async def feedback(self, request: web.Request) -> web.Response:
        body = await read_json(request, FeedbackRequest)
        try:
            await self.bot._store(self.bot.store.add_feedback, body.turn_id, body.value, body.comment)
        except KeyError:
            raise web.HTTPNotFound(text=json.dumps({"error": f"turn_id: no bot turn {body.turn_id}"}),
                                   content_type="application/json") from None
        return web.json_response({"ok": True})

    async def send(self, conversation_id: str, text: str, **kwargs: Any) -> None:
        message = {"type": kwargs.get("role", "agent"), "reply": text, "turn_id": kwargs.get("turn_id")}
        for ws in list(self.sockets.get(conversation_id, ())):
            if not ws.closed:
                await ws.send_json(message)

    async def close(self) -> None:
        for sockets in list(self.sockets.values()):
            for ws in list(sockets):
                await ws.close()
