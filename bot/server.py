"""The aiohttp application: one process serving every channel.

Start-up loads and checks the serving model before the port opens, so a corrupt model folder stops
``bot serve`` with a clear message. ``/admin/reload`` swaps in the registry's current version
without dropping requests: the old model keeps answering until the new one is loaded and checked.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.channels import build_channels
from bot.engine import Bot
from bot.nlu import NLU
from bot.project import Project, load_project
from dialogues.store import Store
from finetune.classifier import ModelLoadError
from finetune.registry import Registry

log = logging.getLogger("deskbot")
BOT = web.AppKey("bot", Bot)
STATIC = Path(str(resources.files("bot") / "static"))


def load_serving_model(project: Project, device: str | None = None) -> NLU:
    path = Registry(project.models_dir).current_path()
    return NLU.load(path, device=device, k=project.config.retrieval.k)


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error leaves as JSON with a reason; nothing leaks a stack trace."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        exc.text = json.dumps({"error": exc.reason})
        exc.content_type = "application/json"
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response({"error": "internal error"}, status=500)


def admin_token(project: Project) -> str | None:
    return os.environ.get("DESKBOT_ADMIN_TOKEN") or project.config.server.admin_token


def require_admin(request: web.Request) -> None:
    """Admin endpoints are off without a configured token, and compare it in constant time."""
    token = request.app["admin_token"]
    if not token:
        raise web.HTTPNotFound()
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
    if not hmac.compare_digest(given, token.encode()):
        raise web.HTTPUnauthorized(headers={"WWW-Authenticate": "Bearer"})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def widget(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "widget.js", headers={"Content-Type": "application/javascript"})


async def healthz(request: web.Request) -> web.Response:
    bot = request.app[BOT]
    return web.json_response({"status": "ok", "model_version": bot.nlu.version})


async def reload_model(request: web.Request) -> web.Response:
    require_admin(request)
    bot = request.app[BOT]
    try:
        nlu = await asyncio.to_thread(load_serving_model, bot.project)
    except (ModelLoadError, Exception) as exc:  # the old model keeps serving
        return web.json_response({"error": f"reload refused: {exc}", "model_version": bot.nlu.version}, status=409)
    bot.swap(nlu)
    return web.json_response({"model_version": nlu.version})


async def agent_message(request: web.Request) -> web.Response:
    require_admin(request)
    body = await request.json()
    text = str(body.get("text", "")).strip()
    if not text:
        raise web.HTTPBadRequest(text=json.dumps({"error": "text: required"}), content_type="application/json")
    try:
        turn_id = await request.app[BOT].agent_message(request.match_info["conversation_id"], text)
    except KeyError:
        raise web.HTTPNotFound() from None
    return web.json_response({"turn_id": turn_id})


async def set_handoff(request: web.Request) -> web.Response:
    require_admin(request)
    handed_off = request.match_info["action"] == "handoff"
    bot = request.app[BOT]
    status = "handed_off" if handed_off else "open"
    await bot.set_handoff(request.match_info["conversation_id"], handed_off, "agent")
    for channel in bot.channels.values():  # the widget shows the change at once
        await channel.status_changed(request.match_info["conversation_id"], status)
    return web.json_response({"status": status})


def create_app(root: Path | str, device: str | None = None, nlu: NLU | None = None) -> web.Application:
    project = load_project(root)
    nlu = nlu or load_serving_model(project, device)  # refuse to start on a bad model
    server = project.config.server
    app = web.Application(middlewares=[json_errors], client_max_size=server.max_body_bytes)
    bot = Bot(project, nlu, Store(project.db_path))
    app[BOT] = bot
    app["admin_token"] = admin_token(project)
    settings = {"max_message_chars": server.max_message_chars, "max_body_bytes": server.max_body_bytes,
                "language": project.config.language}
    for channel in build_channels(bot, project.config.channels, settings):
        bot.channels[channel.name] = channel
        app.add_routes(channel.routes())
    app.add_routes([
        web.get("/", index),
        web.get("/widget.js", widget),
        web.get("/healthz", healthz),
        web.post("/admin/reload", reload_model),
        web.post("/admin/conversations/{conversation_id}/messages", agent_message),
        web.post(r"/admin/conversations/{conversation_id}/{action:handoff|handback}", set_handoff),
    ])

    async def shutdown(app: web.Application) -> None:
        for channel in bot.channels.values():
            await channel.close()
        await bot.close()

    app.on_shutdown.append(shutdown)
    return app
