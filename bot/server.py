"""The aiohttp application: one process serving every channel.

Start-up loads and checks the serving model before the port opens: a corrupt model folder is named
in the log and the newest version that served before and loads serves instead, or, when none does,
``bot serve`` stops with a clear message. ``/admin/reload`` swaps in the registry's current version
without dropping requests: the old model keeps answering until the new one is loaded and checked.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import io
import ipaddress
import logging
import math
import os
import shlex
import re
import signal
import socket
import sqlite3
import time
from importlib import resources
from pathlib import Path
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web, web_response
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_runner import GracefulExit

from bot.actions import ActionError, ActionRunner, code_stamp, with_map_mistakes
from bot.aiohttp_log import CLIENT_ERRORS, unasked_subprotocols
from bot.channels import build_channels, off_callbacks, unmarked
from bot.channels.base import (REFUSAL_SAID_S, STORE_DAMAGED, STORE_RETRY_S, DeliveryError, MaybeDelivered,
                               PlatformChannel, dumps, http_error, json_response, kept_turn, long_json_response,
                               same_secret, store_failed)
from bot.channels.web import SEARCH_HEADER, Refused, WebChannel, percent_decoded, read_json, valid_conversation_id
from bot.engine import Bot
from bot.limits import LIMITS, Limits
from bot.nlu import NLU, current_names
from bot.openapi import (MAX_AGENT_CHARS, MAX_LIMIT, MAX_SEARCH_CHARS, NOTICE_REFERENCE, AgentMessageRequest,
                         NewNoteRequest, NoteRequest, ReviewLabelRequest, publish_openapi)
from bot.project import (AGENT_GRANTS, BOT_FILES, AgentGrant, BotConfig, Project, ProjectError, ServerConfig,
                         agent_name, host_name, load_project, lost_intents, other_intents)
from bot.retrain import exported, kept_elsewhere
from bot.review import CachedModel, review_threshold
from bot.training import history_fingerprint
from dialogues.export import learned_from, write_jsonl
from dialogues.review import Queue, check_label
from dialogues.review import review_queue as queue_of
from dialogues.stats import (CHANNELS, KeptFigures, compared_with_previous, conversation_stats, figures_as_csv,
                             language_kept)
from dialogues.store import (MIGRATIONS, KeyReused, LabelledMeanwhile, NotTheAuthor, Overtaken, Store, StoreError,
                             agent_key, cannot_write, read_moment, refuse_newer, still_before, told_until, unix_time)
from finetune.classifier import ModelLoadError
from finetune.registry import Registry, RegistryError

log = logging.getLogger("deskbot")
BOT = web.AppKey("bot", Bot)
REGISTRY = web.AppKey("registry", Registry)  # the bot's models: /healthz and the model watcher ask it for CURRENT
RELOAD_LOCK = web.AppKey("reload_lock", asyncio.Lock)
ADMIN_TOKEN = web.AppKey("admin_token", str)  # "" when none is configured: the admin API is off, unless AGENT_TOKENS
AGENT_TOKENS = web.AppKey("agent_tokens", dict)  # an agent's name -> their own admin token (server.agents)
METRICS_TOKEN = web.AppKey("metrics_token", str)  # "" when none is configured: /metrics answers anyone
# {"model": CachedModel of the serving version, "queue": the last review queue built, with what it was built for}
REVIEW_MODEL = web.AppKey("review_model", dict)
KEPT_FIGURES = web.AppKey("kept_figures", KeptFigures)  # the latest figures read, for each console's ask every 30 s
# set on SIGTERM, for server.drain_seconds and the stop after: /healthz answers 503, each response closes its connection
DRAINING = web.AppKey("draining", asyncio.Event)
HUNG_UP = web.AppKey("hung_up", asyncio.Event)  # set when SIGHUP began the stop, which SIGHUP begins as SIGTERM does
DEVICE = web.AppKey("device", str)  # `bot serve --device`, "" for torch's choice: every swap loads there too
STARTED_WITH = web.AppKey("started_with", BotConfig)  # bot.yml as the server set itself up from it at start
FILES_READ = web.AppKey("files_read", dict)  # edited_files_stamp() of the bot's files as the server answers with them
# The paths of the platforms whose channel is off (:func:`~bot.channels.off_callbacks`), and until when (monotonic) a
# 404 to each goes unsaid (:func:`say_channel_off`)
OFF_CALLBACKS = web.AppKey("off_callbacks", dict)
OFF_SAID_UNTIL = web.AppKey("off_said_until", dict)
STATIC = Path(str(resources.files("bot") / "static"))
SERVER = "deskbot"  # every response's Server header (protective_headers)
# aiohttp answers a request it cannot parse (a malformed request line or header) with a 400 of its own, made below the
# application, where no on_response_prepare hook sees it, and its Server header named Python and aiohttp, versions and
# all. aiohttp has no setting for it (aio-libs/aiohttp#6463): its default is deskbot's.
web_response.SERVER_SOFTWARE = SERVER
_aiohttp_error = RequestHandler.handle_error


def _error_not_sniffed(handler: RequestHandler, request: web.BaseRequest, status: int = 500,
                       exc: BaseException | None = None, message: str | None = None) -> web.StreamResponse:
    """aiohttp's own error response (that 400) with ``X-Content-Type-Options: nosniff``, as deskbot's have it
    (:func:`protective_headers`): its plain-text body quotes what the client sent, which a browser guessing the
    type could take for a page and run."""
    response = _aiohttp_error(handler, request, status, exc, message)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


RequestHandler.handle_error = _error_not_sniffed  # type: ignore[method-assign]
COUNTED = web.RequestKey("counted", bool)  # the request's response is counted for /metrics already
# how long a scrape waits on the store before answering without it, and /healthz on its checks of the store, all at
# once: well under a load balancer's probe timeout (the Dockerfile's 4 s), so a slow store reads as a 503, not a timeout
STORE_WAIT_S = 2.0
HEALTH_PROBE_S = 3.0  # while the store cannot write, /healthz tries a write at most this often (StoreProbe)
RESPONSE_GRACE_S = 1.0  # on SIGTERM, once the turns in flight are done, for their responses to be written
ADOPT_EVERY_S = 5.0  # how often a server looks for platform messages a stopped one kept (answer_kept_messages)
STORE_WATCH_S = 5.0  # how often the server looks whether a store that refused requests writes again
# how often the keys of platform messages past their retry window are deleted, and the limits forget the clients
# none of whose requests still counts
FORGET_KEYS_EVERY_S = 60.0
RETENTION_EVERY_S = 3600.0  # how often conversations past privacy.retention_days are deleted (purge_past_retention)
WATCH_OFF_S = 5.0  # while learning.watch_seconds is 0, how often watch_models looks whether a reload set it
# How often the action map's watcher looks whether the action server, silent so far, is due to be asked again
ACTION_MAP_WATCH_S = 1.0


def load_serving_model(project: Project, device: str | None = None, workers: int | None = None) -> NLU:
    """The registry's current version with bot.yml's inference settings; ``workers=1`` for a caller that
    analyses one batch at a time on every core (and may train later in the same process)."""
    registry = Registry(project.models_dir)
    path = registry.current_path()
    while True:
        try:
            return load_version(project, path, device, workers)
        except ModelLoadError as exc:
            # CURRENT replaced while the version it named loaded: a retrain or a rollback made another serve, and its
            # prune (learning.keep_served, `bot models --prune`) deleted the one read. The reload was refused, a model
            # "missing" named, while the version now serving loads. Tried again only after CURRENT changed meanwhile.
            if registry.readable_current() not in (None, path.name):
                path = registry.current_path()
                continue
            if not (advice := registry.rollback_advice(path.name)):  # damaged: the one that served before it
                raise
            raise ModelLoadError(f"{exc}{advice}") from exc


def load_at_start(project: Project, device: str | None = None) -> NLU:
    """What `bot serve` starts with: the registry's current version, or, when it cannot load (a folder cut short
    or half deleted) or models/CURRENT is gone, the newest other version that has served and loads, said loudly
    in the log. The customers keep a bot that answers until someone on call mends or rolls back; CURRENT stays as
    it was, for them to decide. Only when no such version loads does the server refuse to start."""
    registry = Registry(project.models_dir)
    try:
        named = registry.current()
    except RegistryError as exc:  # unreadable, or a folder: as if gone
        named, broken = None, str(exc)
    else:
        broken = registry.nothing_serving()
    while named is not None:
        try:
            return load_version(project, registry.path(named), device)
        except (ModelLoadError, RegistryError) as exc:
            broken = f"model {named}, which models/CURRENT names, cannot load: {exc}"
        # A server started (or restarted by a SIGHUP) as a retrain or a rollback made another version serve and pruned
        # the one read: the one CURRENT names now, not an older one served instead (load_serving_model does the same).
        if (now := registry.readable_current()) in (None, named):
            break
        named = now
    alternatives = registry.sound_alternatives(named)
    if named is None and not alternatives:
        raise RegistryError(broken)
    for name in alternatives:
        try:
            nlu = load_version(project, registry.root / name, device)
        except ModelLoadError as exc:
            broken += f"; {name} cannot load either: {exc}"
            continue
        mend = "" if named is None else f", or mend {named} and POST /admin/reload"
        log.warning("%s. SERVING %s INSTEAD, the newest other version that has served and loads; `bot rollback %s %s` "
                    "makes it the serving version%s", broken, name, project.root, name, mend)
        return nlu
    raise ModelLoadError(f"{broken}; no other version that has served loads: "
                         f"`bot train {shlex.quote(str(project.root))}` trains one")


def load_version(project: Project, path: Path, device: str | None = None, workers: int | None = None) -> NLU:
    """Version folder ``path`` with bot.yml's inference settings, warning of what it serves differently from
    the bot's files (other intents, an older history.jsonl)."""
    inference = project.config.server.inference
    if workers is not None:
        inference = inference.model_copy(update={"workers": workers})
    # bot.yml's retrieval.options.device, else the model's: `--device cpu` keeps the search off the GPU too.
    options = project.config.retrieval.options
    index_device = options.device if "device" in options.model_fields_set else "cpu" if device == "cpu" else "auto"
    nlu = NLU.load(path, device=device, k=project.config.retrieval.k, inference=inference, index_device=index_device)
    nlu.name = current_names(project)  # read again at each load: a `bot relabel` applies from the next reload on
    if warning := other_intents(nlu.labels, nlu.version, project):
        log.warning("%s", warning)
    indexed = nlu.meta.get("history")  # as loaded: the file once, not again
    if indexed is not None and indexed != history_fingerprint(project):
        log.warning("history.jsonl or history.csv changed since %s was indexed: their answers are given as they were "
                    "until `bot retrain %s`, which indexes them without training again", nlu.version, project.root)
    return nlu


def say_channel_off(request: web.Request) -> None:
    """Say in the log why a platform's callback got 404, once in ``REFUSAL_SAID_S`` for each path at most: its
    channel is off, none of its secrets set where `bot serve` reads them. WeCom's check of the callback URL, saved
    in its admin console before the keys were set (or set in another shell than the server's), got a 404, and the
    log said nothing."""
    cls = request.app.get(OFF_CALLBACKS, {}).get(request.path)
    said_until = request.app.get(OFF_SAID_UNTIL, {})
    if cls is None or time.monotonic() < said_until.get(request.path, 0.0):
        return
    said_until[request.path] = time.monotonic() + REFUSAL_SAID_S
    variables = ", ".join(cls.env[key] for key in cls.required)
    log.warning("a request to %s, where %s calls back, was answered 404: the %s channel is off, as none of %s (or "
                "channels.%s in bot.yml) is set where bot serve reads them; set them all and start it again "
                "(docs/channels.md)", request.path, cls.platform, cls.platform, variables, cls.name)


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error leaves as JSON with a reason; nothing leaks a stack trace."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(cors_headers(request))  # the rate limits' 429 and 413 come before any route's handler
        if exc.status == 404:
            say_channel_off(request)
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        exc.text = dumps({"error": exc.reason})
        exc.content_type = "application/json"
        raise
    except web.RequestPayloadError as exc:  # a body the client sent broken: a gzip that is not one, a cut chunk
        reason = getattr(exc.__cause__, "message", "") or "broken in transfer"  # aiohttp's, e.g. "Can not decode …"
        response = json_response({"error": f"body: cannot be read: {reason}"}, status=400)
        response.force_close()  # the rest of the stream cannot be read either, so the connection ends here
        return response
    except Exception as exc:
        if cannot_write(exc):  # a full disk, a file made read-only, a lock held: one line a bout, and a wait
            await request.app[BOT].refusals.refused_one(route_of(request), exc)
            return json_response({"error": store_failed(exc), "code": "store_unwritable"}, status=503,
                                 headers={"Retry-After": str(STORE_RETRY_S), **cors_headers(request)})
        if request.app[BOT].refusals.said_damaged(exc):
            return json_response({"error": STORE_DAMAGED, "code": "store_damaged"}, status=503, headers=cors_headers(request))
        if isinstance(exc, ConnectionResetError) and (request.transport is None or request.transport.is_closing()):
            # The client hung up before its body arrived (a phone losing signal): there is nobody to answer.
            log.debug("%s: the client hung up", route_of(request))
            return json_response({"error": "connection lost"}, status=400)
        log.exception("unhandled error on %s", route_of(request))
        return json_response({"error": "internal error", "code": "internal"}, status=500)


def route_of(request: web.Request) -> str:
    """The request's method and route (``GET /api/conversations/{conversation_id}/history``), as the log names it: its
    path may hold a conversation's id (an older client's), a web visitor's key to their conversation."""
    resource = request.match_info.route.resource
    return f"{request.method} {resource.canonical if resource is not None else request.path}"


def loopback(host: str) -> bool:
    """Whether every address ``host`` names is this machine's loopback (127.0.0.1, ::1, localhost): a server there is
    reached only through a proxy on this machine. A name that does not resolve is not, as far as can be told."""
    try:
        return all(ipaddress.ip_address(info[4][0].partition("%")[0]).is_loopback
                   for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM))
    except (OSError, ValueError):
        return False


def local_name(name: str | None) -> bool:
    """Whether a ``Host`` names this machine by a name no site's owner can make resolve elsewhere: localhost, a name
    under it (which browsers resolve to loopback themselves) or a loopback address."""
    if name is None:
        return False
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


LOCAL_ONLY = ("a server listening on loopback serves localhost alone while server.hosts is unset: list the names its "
              "clients reach it by in server.hosts in bot.yml (a proxy in front passing its clients' Host), or set "
              "server.limits.trust_forwarded_for or trusted_proxies for that proxy")
LOCAL_ONLY_SAID_S = 3600.0  # the log says a host refused by the loopback default once an hour at most


def host_check(server: ServerConfig, bound: str) -> Any | None:
    """The middleware holding requests to the names they may give in their ``Host`` (:func:`served_hosts`):
    ``server.hosts``; unset, on a server listening on loopback (``bound``) with no proxy configured in front
    (``limits.trust_forwarded_for``, ``trusted_proxies``), this machine's own names alone (:func:`local_name`), since a
    page of any site whose name its owner makes resolve to 127.0.0.1 is same-origin to the browser of whoever runs
    it (DNS rebinding); else None, any host, as deskbot cannot know the names a proxy passes on."""
    if server.hosts is not None:
        listed = frozenset(server.hosts)
        return served_hosts(lambda name: name in listed, "list it in server.hosts in bot.yml")
    if loopback(bound) and not (server.limits.trust_forwarded_for or server.limits.trusted_proxies):
        return served_hosts(local_name, LOCAL_ONLY, said_every_s=LOCAL_ONLY_SAID_S)
    return None


def served_hosts(allowed: Callable[[str | None], bool], hint: str, said_every_s: float | None = None) -> Any:
    """A middleware answering 421 to a request whose ``Host`` names a host not ``allowed`` (:func:`host_check`),
    saying what to set (``hint``). A page whose own name its owner makes resolve to this server (DNS rebinding) is
    same-origin to the browser, which sends its ``Sec-Fetch-Site: same-origin``: only the name it asked for tells it
    apart. ``said_every_s``: a refusal is logged, once in that time at most, where an operator who set nothing
    would otherwise find their proxy's requests refused without a word."""
    said_at = -math.inf

    @web.middleware
    async def check_host(request: web.Request, handler: Any) -> web.StreamResponse:
        nonlocal said_at
        if not allowed(host_name(request.host)):
            if said_every_s is not None and time.monotonic() - said_at >= said_every_s:
                said_at = time.monotonic()
                log.warning("refused a request for host %r (421): %s", request.host, hint)
            raise http_error(web.HTTPMisdirectedRequest, f"host not served: {request.host!r}; {hint}")
        return await handler(request)

    return check_host


def cors_headers(request: web.Request) -> dict[str, str]:
    """The web chat's CORS headers for its API (``/api/``), so that a widget on an allowed site can read
    every refusal it gets, and how long to wait."""
    channel = request.app[BOT].channels.get("web")
    return channel.cors_headers(request) if isinstance(channel, WebChannel) and request.path.startswith("/api/") else {}


MIN_TOKEN_CHARS = 16  # an admin or metrics token shorter, `bot serve` says it can be guessed


def configured_token(variable: str | None, configured: str | None) -> str:
    """The environment's ``variable``, else bot.yml's value, without the white space around it: a token read
    from a file (a mounted secret) ends in a newline, which no one types, and every request got 401."""
    return ((os.environ.get(variable) if variable else None) or configured or "").strip()


def admin_token(project: Project) -> str:
    return configured_token("DESKBOT_ADMIN_TOKEN", project.config.server.admin_token)


def agent_tokens(project: Project, admin: str | None = None) -> dict[str, str]:
    """Each agent's own token (``server.agents``), by their name; an agent whose token is not set is left out (``bot
    serve`` says so). ProjectError for a token two agents share, or one agent shares with the admin token (``admin``,
    the one served, which a reload leaves as at start; else bot.yml's): a call made with it could not say whose it
    is; and for two names of one agent as the bot reads names ("Ana", "ANA": :func:`~dialogues.store.agent_key`),
    each of which could act as the other."""
    names: dict[str, str] = {}
    for name in project.config.server.agents:
        if (other := names.setdefault(agent_key(name), name)) != name:
            raise ProjectError(f"bot.yml: server.agents: {other} and {name} name one agent (names are read in any "
                               "letter case): give each agent one name")
    tokens = {name: configured_token(agent.token_env, agent.token)
              for name, agent in project.config.server.agents.items()}
    tokens = {name: token for name, token in tokens.items() if token}
    admin = admin_token(project) if admin is None else admin
    holders: dict[str, str] = {admin: "the admin token"} if admin else {}
    for name, token in tokens.items():
        if (other := holders.setdefault(token, f"agent {name}")) != f"agent {name}":
            raise ProjectError(f"bot.yml: server.agents: agent {name}'s token is {other}'s too: give each their own")
    return tokens


def metrics_token(project: Project) -> str:
    """What a scraper of /metrics must send; "" leaves the figures open to anyone who reaches the server."""
    return configured_token("DESKBOT_METRICS_TOKEN", project.config.server.metrics_token)


def bearer(request: web.Request, token: str) -> bool:
    """Whether the request carries ``token`` as ``Authorization: Bearer TOKEN`` (the token alone, without its
    scheme, is not accepted), compared in constant time; never when ``token`` is ""."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and same_secret(given.strip(), token) and scheme.lower() == "bearer"


def require_admin(request: web.Request, grant: AgentGrant | None = None) -> None:
    """Admin endpoints are off (404) without a configured token (the admin token or an agent's), and refuse (401) a
    request without one (:func:`is_admin`, which compares them in constant time). An endpoint beyond answering
    customers (``grant``: reload, export, stats, review) refuses (403) an agent's own token unless bot.yml grants it
    them (:meth:`AgentConfig.granted`): a token taken from one agent's browser would otherwise swap the model or read
    every conversation out, and any agent taught the next model whatever they labelled."""
    if not request.app[ADMIN_TOKEN] and not request.app[AGENT_TOKENS]:
        raise web.HTTPNotFound()
    if not is_admin(request):
        raise web.HTTPUnauthorized(headers={"WWW-Authenticate": "Bearer"})
    agent, granted = request[AGENT], token_grants(request)
    if grant and grant not in granted:
        # the grants to set, those the agent has kept: grants: [export] alone took review from an agent without grants
        grants = ", ".join([*granted, grant])
        raise http_error(web.HTTPForbidden, f"{request.method} {request.path} needs the admin token, or an agent's "
                                            f"token granted {grant}: this one is agent {agent}'s (server.agents: "
                                            f"{agent}: {{grants: [{grants}]}} in bot.yml grants it)",
                         {"code": "not_granted", "agent": agent, "grant": grant})


def token_grants(request: web.Request) -> list[AgentGrant]:
    """What the request's token may do beyond answering customers: everything with the admin token, what bot.yml
    grants an agent's own (:meth:`AgentConfig.granted`), nothing for an agent a reload took out meanwhile."""
    if not request[AGENT]:
        return list(AGENT_GRANTS)
    configured = request.app[BOT].config.server.agents.get(request[AGENT])
    return configured.granted() if configured else []


ADMIN = web.RequestKey("admin", bool)
AGENT = web.RequestKey("agent", str)  # the agent whose own token the request carries; "" for any other request


def is_admin(request: web.Request) -> bool:
    """Whether the request carries the admin token or an agent's own (:func:`bearer`), and whose that is (``AGENT``);
    compared once per request, for the address limit and the endpoint, and every token each time: how long it takes
    says nothing of which one came close."""
    if ADMIN not in request:
        agents = [name for name, token in request.app.get(AGENT_TOKENS, {}).items() if bearer(request, token)]
        admin = bearer(request, request.app.get(ADMIN_TOKEN, ""))  # compared whether or not an agent's matched
        request[AGENT] = agents[0] if agents else ""
        request[ADMIN] = bool(agents) or admin
    return request[ADMIN]


def caller(request: web.Request) -> str:
    """Who made an admin call, for the log: the agent whose own token it carries, else the admin token (never the
    token itself). A reload or an export changes what every customer is answered, or takes every conversation's
    training data out: the log must say whose hand it was."""
    return f"agent {agent}" if (agent := request.get(AGENT)) else "the admin token"


def acting_agent(request: web.Request, named: str | None) -> str | None:
    """Who an admin call acts as (replies, takes over, writes notes, labels): the agent whose own token it carries, who
    may give their own name alone (403 for another's: any agent could act in a colleague's name); with the admin
    token, the agent it names, if any."""
    own = request.get(AGENT) or None
    if own is None:
        return named
    if named is not None and agent_key(named) != agent_key(own):
        raise http_error(web.HTTPForbidden, f"agent: this token is {own}'s, who cannot act as {named}",
                         {"code": "not_your_name", "agent": own})
    return own


ADMIN_NAME = "admin"  # who a change of hands made with the admin token in an agent's name is kept as made by


def by_admin(request: web.Request, agent: str | None) -> str | None:
    """The admin (``ADMIN_NAME``), for a change of hands (a takeover, a reply taking the customer over, a handback, a
    release, a transfer) made with the admin token in the name of an agent with a token of their own, who changes
    hands with it; else None (made by ``agent``). Kept as theirs, a lead's forced takeover,
    or the release of an absent agent's customers, read as that agent's own: their console did not tell them of a
    customer given to them, and the transcript showed no lead moving anyone."""
    if request.get(AGENT) or agent is None:
        return None
    own = any(agent_key(name) == agent_key(agent) for name in request.app.get(AGENT_TOKENS, {}))
    return ADMIN_NAME if own else None


def passer(request: web.Request, agent: str | None) -> str | None:
    """Who a release or transfer in ``agent``'s name is kept as made by: :func:`by_admin`, and the admin for one with the
    admin token that names nobody (allowed on a customer of a colleague a reload took out of server.agents, or of
    nobody): kept with no maker, the colleague's inbox named nobody (``taken``'s ``by`` null), and the transcript
    said nobody moved the customer."""
    if agent is None and not request.get(AGENT):
        return ADMIN_NAME
    return by_admin(request, agent)


def releaser(request: web.Request, agent: str) -> str | None:
    """Who a release of all ``agent``'s customers with the admin token is kept as made by: :func:`by_admin`, and the
    admin too for a name server.agents, when set, lacks (a colleague a reload took out): they sign in no more, and the
    transcript said they released their customers themselves."""
    if by := by_admin(request, agent):
        return by
    team = request.app[BOT].team
    gone = not request.get(AGENT) and bool(team) and agent_key(agent) not in {agent_key(name) for name in team}
    return ADMIN_NAME if gone else None


def giver(request: web.Request, agent: str | None, otherwise: Callable[..., str | None] = by_admin) -> str | None:
    """Who makes a takeover, a handback or a release of all their customers in ``agent``'s name, when not ``agent``
    themself: ``?by=`` (:func:`acting_agent`), else ``otherwise(request, agent)`` (:func:`by_admin`,
    :func:`releaser`)."""
    by = acting_agent(request, query_name(request, "by"))
    return by if by is not None else otherwise(request, agent)


def body_agent(request: web.Request, named: str | None) -> str | None:
    """Who a call whose body names ``named`` as its ``agent`` acts as (:func:`acting_agent`), the name without the
    spaces around it."""
    return acting_agent(request, named.strip() if named else None)


# The chat page, the agents' page and the widget may be cached, but are checked with the server on every
# load (a 304 when unchanged): a browser that kept another version's widget, guessing its freshness from its
# age, would send fields this server does not read, or miss ones it needs, for days after an upgrade or a
# rollback.
REVALIDATE = {"Cache-Control": "no-cache"}


async def index(request: web.Request) -> web.FileResponse:
    """The chat page, framed by no site but the bot's own and those its widget may be on (channels.web.origins): in
    another site's frame it sends to the bot as the bot's own page, and that site could lay its own page over it and
    trick a visitor into clicking its buttons ("Talk to a person") or sending what it has typed."""
    channel = request.app[BOT].channels["web"]
    assert isinstance(channel, WebChannel)
    framing = {} if "*" in channel.origins else {
        "Content-Security-Policy": " ".join(["frame-ancestors 'self'", *sorted(channel.origins)])}
    return web.FileResponse(STATIC / "index.html", headers={**REVALIDATE, **framing})


def console_policy(page: str) -> str:
    """The agents' page's Content-Security-Policy: its own inline script and style (by their sha256), this server's
    scripts (widget.js, whose Markdown the console draws with) and requests to this server, nothing else. The page
    keeps the admin token, so a script that got into it some other way (a customer's text shown as markup by a
    future change, an extension's injection) must not run, nor send anything elsewhere; and no other site may
    frame it, so none can trick a signed-in agent into clicking."""
    def hashes(tag: str) -> str:
        found = re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.DOTALL)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()}'"
                        for code in found)

    return (f"default-src 'none'; script-src 'self' {hashes('script')}; style-src {hashes('style')}; connect-src 'self'; "
            "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


CONSOLE_POLICY = console_policy((STATIC / "agent.html").read_text(encoding="utf-8"))


async def agent_console(request: web.Request) -> web.FileResponse:
    """The agents' page: static, it holds no data; everything it shows comes from the admin API."""
    return web.FileResponse(STATIC / "agent.html", headers={**REVALIDATE, "X-Frame-Options": "DENY",
                                                            "Content-Security-Policy": CONSOLE_POLICY})


async def widget(request: web.Request) -> web.FileResponse:
    # A script without a charset is read in its page's: on a GBK page (many a Chinese shop's) it did not run.
    # Public and static, it is anyone's to read: a tag marked crossorigin (Sentry's, SRI's) refused it without CORS.
    return web.FileResponse(STATIC / "widget.js", headers={**REVALIDATE, "Access-Control-Allow-Origin": "*",
                                                           "Content-Type": "application/javascript; charset=utf-8"})


class StoreProbe:
    """/healthz's write to a store that cannot write (:meth:`~dialogues.store.Store.probe`, or :meth:`Bot.probe_renewals`
    on the renewals' connection): one at a time, and one every ``HEALTH_PROBE_S`` at most, the checks between answered
    as the last one found. /healthz answers anyone, uncounted (a load balancer's probes), and a write tried for each
    call queued ahead of the customers' own on the store's one thread, each held up to 30 s by a locked store: anyone
    could keep a failing store busy. The check waits for the write as long as /healthz waits (:func:`store_checks`);
    the write goes on without it."""

    def __init__(self) -> None:
        self._probe: asyncio.Future[None] | None = None  # the latest write, which may outlast the check that tried it
        self._next = 0.0  # the event loop's time before which no other write is tried

    async def __call__(self, write: Callable[[], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        if (self._probe is not None and not self._probe.done()) or loop.time() < self._next:
            return
        self._next = loop.time() + HEALTH_PROBE_S
        self._probe = asyncio.ensure_future(write())
        with contextlib.suppress(Exception):  # what the write found, the store's and the renewals' states say
            await asyncio.shield(self._probe)


STORE_PROBE = web.AppKey("store_probe", StoreProbe)
RENEWAL_PROBE = web.AppKey("renewal_probe", StoreProbe)  # the same for the renewals' connection


class SharedRead:
    """/healthz's read of the store's schema (:func:`migrated_by_newer`), one at a time: the checks that come while it
    is on its way wait for that one. Each check queued a read of its own on the look-ups' thread, the one a customer's
    message waits on, and went on without it after ``STORE_WAIT_S``: a burst of probes (several load balancers, a
    monitor polling in a loop) against a slow store queued reads without bound ahead of the customers' look-ups."""

    def __init__(self) -> None:
        self._read: asyncio.Future[int] | None = None  # the read on its way, which may outlast the checks waiting
        self.last: int | None = None  # what the latest read that worked found, for the checks between probes

    async def __call__(self, read: Callable[[], Awaitable[int]]) -> int:
        if self._read is None or self._read.done():
            self._read = asyncio.ensure_future(read())
            self._read.add_done_callback(self._keep)
        return await asyncio.shield(self._read)

    def _keep(self, done: asyncio.Future[int]) -> None:
        """Keep what a read found (:attr:`last`); one every check gave up waiting for fails unheard: its failure is the
        next check's to see."""
        if not done.cancelled() and done.exception() is None:
            self.last = done.result()


SCHEMA_READ = web.AppKey("schema_read", SharedRead)


async def migrated_by_newer(bot: Bot, read: SharedRead) -> str | None:
    """Why this server must not go on (None while it may): a newer deskbot's server, started on the same store, has
    migrated it to a schema this one does not know, and writes by it (a Retry it does not claim, a column it does not
    fill) would no longer be what the newer one reads. Read on the look-ups' connection, not behind a long figures
    read, one read for the checks that come at once (``read``), and not waited for long (:func:`store_checks`)."""
    try:
        return newer_schema(await read(functools.partial(bot._look_up, lambda store: store.schema)))
    except (StoreError, sqlite3.Error):
        return None


def newer_schema(schema: int | None) -> str | None:
    """Why this server must not go on with a store of ``schema`` (:func:`migrated_by_newer`); None for one it knows, or
    none read yet."""
    if schema is None or schema <= len(MIGRATIONS):
        return None
    return (f"the conversation store was migrated by a newer deskbot while this server ran (schema {schema}; it knows "
            f"up to {len(MIGRATIONS)}): stop it and serve the newer deskbot")


def own_unready(app: web.Application) -> str | None:
    """This server's own reason not to be ready, as it stands now (None: none), for a web chat socket connecting
    between two probes (:meth:`WebChannel.websocket`): its store file moved or replaced, a newer deskbot's schema as the
    latest read found it, its renewals failing. Asked of the causes themselves, not of the last probe's answer: a
    socket connecting once a cause has ended stays, whenever the next probe comes."""
    bot = app[BOT]
    return bot.store.moved() or newer_schema(app[SCHEMA_READ].last) or bot.renewals_failing()


async def store_checks(app: web.Application, bot: Bot) -> str | None:
    """/healthz's checks that wait on the store: its schema (:func:`migrated_by_newer`, None where not read in time),
    and, while the store or the renewals fail, a write on their connection (:class:`StoreProbe`). Side by side, all
    waited for ``STORE_WAIT_S`` at most: one after another, each waiting that long, a slow store kept the check
    three times that, past a load balancer's probe timeout, which read as the server gone rather than a 503."""
    newer = asyncio.ensure_future(migrated_by_newer(bot, app[SCHEMA_READ]))
    checks = [newer]
    if bot.store.failing is not None:
        checks.append(asyncio.ensure_future(app[STORE_PROBE](functools.partial(bot._store, bot.store.probe))))
    if bot.renewals_failing() is not None:
        checks.append(asyncio.ensure_future(app[RENEWAL_PROBE](bot.probe_renewals)))
    _, late = await asyncio.wait(checks, timeout=STORE_WAIT_S)
    for check in late:  # a write goes on without its check (StoreProbe); a schema read is answered as unknown
        check.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    return None if newer in late else newer.result()


def not_ready(app: web.Application, reason: str, own: bool = False) -> web.HTTPException:
    """/healthz's 503 saying ``reason``. Where the reason is this server's ``own``, which the other servers on the
    store do not share (its renewals' connection, the file it has open, a newer deskbot on the store), its web chat's
    sockets are sent away too (:meth:`WebChannel.send_away`): the load balancer sends it no new customers, and those
    connected reconnect through it to a server that is ready. Not for the store's trouble (locked, full, damaged),
    which every server on it shares: sent away, every customer of every server reconnected, to a server no better."""
    if own and (channel := app[BOT].channels.get("web")) is not None:
        channel.send_away()
    return http_error(web.HTTPServiceUnavailable, reason)


async def healthz(request: web.Request) -> web.Response:
    """Ready: the model serves and the store writes, to the file its path names. Once a write has failed (a full
    disk), a check tries one, every few seconds at most (:class:`StoreProbe`), until one succeeds: a load balancer
    stops sending customers whose every message would get a 503, and sends them again once the disk has room. So
    while a write has long waited for another process's lock, or on a disk that stopped answering
    (:meth:`~dialogues.store.Store.lock_wait`): every message waits behind it. And while this server's renewals of its
    turns and claims have failed ``TURN_STALE_S`` (:meth:`Bot.renewals_failing`): the other servers on the store take
    its conversations over, until a renewal, or a check's write on their connection, works again. It answers within
    ``STORE_WAIT_S`` (:func:`store_checks`), whatever the store does. Stopping, its sockets close as it stops."""
    app, bot = request.app, request.app[BOT]
    if app[DRAINING].is_set():
        raise http_error(web.HTTPServiceUnavailable, "stopping: send requests elsewhere")
    if (moved := bot.store.moved()) is not None:
        raise not_ready(app, moved, own=True)
    if (newer := await store_checks(app, bot)) is not None:
        raise not_ready(app, newer, own=True)
    if (damage := bot.refusals.damaged) is not None:
        raise not_ready(app, f"the conversation store is damaged ({damage}): the log says what to do")
    if (failing := bot.store.failing) is not None:
        raise not_ready(app, f"the conversation store cannot write: {failing}")
    if (stalled := bot.store.lock_wait()) is not None:
        raise not_ready(app, stalled)
    if (unrenewed := bot.renewals_failing()) is not None:
        raise not_ready(app, unrenewed, own=True)
    # CURRENT's version beside the one serving: another while a swap to it is on its way, or since it could not load
    # (the log says why), which a monitor can alert on while the customers are still answered.
    current = app[REGISTRY].readable_current()
    return json_response({"status": "ok", "model_version": bot.nlu.version, "current": current})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format: traffic, latency, batch sizes, queue depths, the serving model, memory,
    and the customers waiting for a person. With a metrics token configured, only for a request that carries it:
    the shop's traffic and queue are no stranger's business."""
    if (token := request.app[METRICS_TOKEN]) and not bearer(request, token):
        raise web.HTTPUnauthorized(headers={"WWW-Authenticate": "Bearer"})
    bot = request.app[BOT]
    # Read beside the store's writer, and not waited for long: a scrape held up behind a stuck store (29 s)
    # lost the figures exactly when they mattered; the last ones stand meanwhile. So they do when the store
    # cannot be read (its file deleted): a 500 lost every figure, and Prometheus took the bot for down.
    try:
        customers, since = await asyncio.wait_for(bot._read(Store.waiting), STORE_WAIT_S)
        bot.metrics.waiting(customers, 0.0 if since is None else max(time.time() - since, 0.0))
    except asyncio.TimeoutError:
        pass
    except (StoreError, sqlite3.Error) as exc:
        log.warning("/metrics: the customers waiting are as last read; the store cannot be read: %s", exc)
    body, content_type = bot.metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


EDITED_FILES = ("bot.yml", "nlu.yml", "responses.yml")  # what a running server serves again once saved


def _saved(path: Path) -> tuple[int, int]:
    """When and to what size ``path`` was last saved, or (0, 0) when it is missing."""
    try:
        stat = path.stat()
    except OSError:
        return 0, 0
    return stat.st_mtime_ns, stat.st_size


def edited_files_stamp(root: Path) -> dict[str, tuple[int, int]]:
    """When and to what size each of ``EDITED_FILES`` was last saved ((0, 0) for one that is missing), and each
    Python file of actions/ (as ``actions/orders.py``): a change means someone saved, added or deleted one, which the
    model watcher then serves (:func:`watch_models`)."""
    actions = root / "actions"
    code = sorted(actions.rglob("*.py")) if actions.is_dir() else []
    return {**{name: _saved(root / name) for name in EDITED_FILES},
            **{path.relative_to(root).as_posix(): _saved(path) for path in code}}


def bot_files_stamp(root: Path) -> tuple[Any, ...]:
    """When the bot's files last changed (0 for one that is missing), and actions/'s Python files: a swap refused
    for an action that failed to import is tried again once that is mended."""
    files = tuple(path.stat().st_mtime_ns if path.exists() else 0 for path in (root / name for name in BOT_FILES))
    return files + (code_stamp(root / "actions") if (root / "actions").is_dir() else ())


async def swap_to_current(app: web.Application, unless_served: str | None = None,
                          unless_read: dict[str, tuple[int, int]] | None = None,
                          model_kept: bool = False) -> tuple[NLU, str | None]:
    """Load the bot's files, its custom actions where they changed, and the registry's current version off the
    event loop, then serve them. One load at a time; the old model, files and actions answer until the new ones
    are loaded and checked, and keep answering if either fails; actions/ that fails to import alone leaves the
    actions loaded before running, and the rest swaps: why comes back beside the model (else None), and goes to the
    log. ``unless_served``: the version the caller saw in CURRENT, not loaded again if a reload that held the lock
    meanwhile has swapped to it; ``unless_read``: the bot's files as the caller saw them saved, not read again if such
    a reload has read them; ``model_kept``: the model serving is kept while CURRENT names it, as nothing it is loaded
    with (bot.yml's settings, nlu.yml's intents) changed."""
    bot = app[BOT]

    def load() -> tuple[dict[str, tuple[int, int]], Project, dict[str, str], ActionRunner, NLU, str | None]:
        files_read = edited_files_stamp(bot.project.root)  # before the read, as at start
        try:
            project = load_project(bot.project.root)
        except ProjectError as exc:  # the action map's mistakes too, checked against the actions running
            raise with_map_mistakes(exc, bot.project.root, bot.actions) from None
        refuse_a_moved_store(project, bot.store.path)
        agents = agent_tokens(project, app[ADMIN_TOKEN])  # a token two agents would share refuses the swap, as at start
        actions, refused = bot.actions, None
        try:
            actions = bot.actions.reloaded(project)
        except ActionError as exc:
            refused = str(exc)
            log.error("actions/ not reloaded: %s; the actions loaded before run on until it is mended and reloaded",
                      refused)
        actions.check(project)  # before the model's load, as at start
        kept = model_kept and app[REGISTRY].readable_current() == bot.nlu.version
        nlu = bot.nlu if kept else load_serving_model(project, app[DEVICE] or None)
        if lost := lost_intents(nlu.labels, nlu.version, project, bot.project):  # an intent renamed in the files alone
            raise ProjectError(lost)
        return files_read, project, agents, actions, nlu, refused

    async with app[RELOAD_LOCK]:
        if (unless_served is not None and bot.nlu.version == unless_served) or app[FILES_READ] == unless_read:
            return bot.nlu, None
        files_read, project, agents, actions, nlu, refused = await asyncio.to_thread(load)
        bot.swap(nlu, project, actions)
        # in place: the application's state is set once, at start
        app[FILES_READ].clear()  # an actions/ file deleted since is no longer read
        app[FILES_READ].update(files_read)
        app[AGENT_TOKENS].clear()
        app[AGENT_TOKENS].update(agents)
        if tokenless := tokenless_agents(app):
            log.warning("server.agents without a token, who cannot sign in: %s (a token_env is read from the "
                        "server's environment, which only a restart changes)", ", ".join(tokenless))
        app[REVIEW_MODEL].clear()  # the old version's, which would hold it in memory until the queue is read
        if waiting := restart_needed(app):
            log.warning("changed since the start, and applied only by a restart: %s (bot.yml's sections)",
                        ", ".join(waiting))
    # the map served checked against the action server as it is now, which a shop may just have mended or started;
    # customers are answered with it meanwhile
    await bot.actions.check_listed_map(bot.config, bot.project.root, again=True)
    return nlu, refused


class StoreMoved(ProjectError):
    """A swap refused for bot.yml's ``store_dir``, changed since the server started (:func:`refuse_a_moved_store`):
    nothing is wrong with the model or the files, and a restart serves them."""


def refuse_a_moved_store(project: Project, serving: Path) -> None:
    """Refuse a swap whose bot.yml keeps the store elsewhere (a changed ``store_dir``) than the one the server has
    open: the server went on writing the old store while what a swap reads of the store (the intents `bot relabel`
    renamed) came from the new one. A store moves with a restart, the old bot.yml serving until then."""
    if project.db_path != serving:
        raise StoreMoved(f"store_dir: bot.yml now keeps the conversation store at {project.db_path}, and this server "
                           f"writes {serving}: a store moves only with a restart (stop the server, move the store's "
                           "files, start it again); until then bot.yml is served as it was")


def tokenless_agents(app: web.Application) -> list[str]:
    """The agents of server.agents whose token is not set: one added with a ``token_env`` the running server's
    environment lacks could not sign in, and the reload that added them said nothing."""
    return sorted(app[BOT].config.server.agents.keys() - app[AGENT_TOKENS].keys())


def restart_needed(app: web.Application) -> list[str]:
    """The sections of bot.yml the server set itself up from at start, which a swap leaves as they were
    (see :meth:`Bot.swap`), that the file now served changes: a reload answered as if it had applied them.
    ``server.agents`` is not among them: a swap reads the agents' tokens again (:func:`swap_to_current`); nor is
    ``privacy.retention_days`` and ``privacy.slot_hours``, read at each round of :func:`purge_past_retention`."""
    started, now = app[STARTED_WITH], app[BOT].config
    server = now.server.model_copy(update={"agents": started.server.agents})
    privacy = now.privacy.model_copy(update={"retention_days": started.privacy.retention_days,
                                             "slot_hours": started.privacy.slot_hours})
    return [name for name, changed in (("server", server != started.server), ("channels", started.channels != now.channels),
                                       ("privacy", started.privacy != privacy)) if changed]


async def reload_model(request: web.Request) -> web.Response:
    require_admin(request, "reload")
    bot = request.app[BOT]
    try:
        nlu, refused = await swap_to_current(request.app)
    except (ModelLoadError, Exception) as exc:  # the old model keeps serving
        # In the log too, as the watcher's swaps are: the one who reloaded may not be the one on call.
        log.error("reload by %s refused, still serving %s: %s", caller(request), bot.nlu.version, exc)
        return json_response({"error": f"reload refused: {exc}", "model_version": bot.nlu.version}, status=409)
    log.info("reloaded by %s: now serving model %s with the bot's files as they are now", caller(request), nlu.version)
    try:  # for the other servers on the store, which a load balancer did not send this request to
        await bot._store(bot.store.reloaded)
    except Exception as exc:  # this server's reload stands
        log.warning("cannot tell the other servers on the store of this reload: %r; reload each of them", exc)
    return json_response({"model_version": nlu.version, "restart_needed": restart_needed(request.app),
                          **({"actions_not_reloaded": refused} if refused else {}),
                          **({"actions_not_listed": unlisted} if (unlisted := bot.actions.unlisted_error) else {}),
                          **({"agents_without_token": tokenless} if (tokenless := tokenless_agents(request.app)) else {})})


class RoundFailures:
    """How a job that runs every few seconds logs its failures. A store that cannot write (a full disk, a
    file made read-only: :func:`~dialogues.store.cannot_write`) is one line, said again only when its reason
    changes or once the job has succeeded meanwhile: a traceback each round, for as long as the disk stayed
    full, buried every other line. Any other error is a fault, logged with its traceback each time."""

    def __init__(self, job: str) -> None:
        self.job = job
        self.said: str | None = None  # the store's failure said last, until a round succeeds

    def failed(self, exc: Exception) -> None:
        if not cannot_write(exc):
            log.error("%s failed", self.job, exc_info=exc)
        elif str(exc) != self.said:
            log.error("%s: the conversation store cannot write: %s (tried again every few seconds)", self.job, exc)
            self.said = str(exc)

    def mended(self) -> None:
        self.said = None


@contextlib.asynccontextmanager
async def running(job: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run ``job`` as a task for the duration of the block (the app's life, in a cleanup context)."""
    task = asyncio.create_task(job)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def watch_models(app: web.Application) -> AsyncIterator[None]:
    """Swap to a new ``models/CURRENT`` (written by ``bot retrain`` or ``bot rollback``) on its own, reload as
    another server on the store did (:func:`follow_reload`), and as someone saved the bot's files (:func:`follow_edits`).

    A version that fails to load is logged and not tried again until CURRENT changes once more.
    ``learning.watch_seconds`` is read each round, as a reload may change it: 0 stops the checks, and a
    reload that sets it again starts them, within ``WATCH_OFF_S``.
    """
    bot, registry = app[BOT], app[REGISTRY]

    async def watch() -> None:
        refused = unreadable = refused_edits = None
        seen = (await bot._look_up(Store.latest_reload))[0]  # the reloads before this server started are in its files
        while True:
            interval = bot.config.learning.watch_seconds
            await asyncio.sleep(interval if interval > 0 else WATCH_OFF_S)
            if bot.config.learning.watch_seconds <= 0:  # off, until a reload sets it
                continue
            with contextlib.suppress(Exception):  # a store that cannot be read is said where the customers meet it
                seen = await follow_reload(app, seen)
            refused_edits = await follow_edits(app, refused_edits)
            if bot.config.learning.watch_seconds <= 0:  # the files just read turn the checks off
                continue
            try:
                current = registry.current()
                # A refusal holds until CURRENT or a bot file changes: a responses.yml saved half-edited
                # during a retrain must not keep its new model out once the file is mended, nor a version
                # mended since keep out a `bot rollback` to it, which writes CURRENT again.
                attempt = (current, bot_files_stamp(bot.project.root), registry.current_stamp())
            except (RegistryError, OSError) as exc:  # said once, not every round, until it changes
                if str(exc) != unreadable:
                    log.error("still serving %s: %s", bot.nlu.version, exc)
                unreadable = str(exc)
                continue
            unreadable = None
            if current in (None, bot.nlu.version) or attempt == refused:
                continue
            try:  # the version's name only: a reference held here would keep the model past the next swap
                log.info("now serving model %s", (await swap_to_current(app, unless_served=current))[0].version)
            except StoreMoved as exc:  # not the model's fault: said so, or the one on call looks for what is wrong in it
                refused = attempt
                log.error("model %s waits for a restart of the server, which bot.yml's changed store folder needs; "
                          "still serving %s: %s", current, bot.nlu.version, exc)
            except Exception as exc:  # the watcher outlives any one bad version or unreadable file
                refused = attempt
                log.error("model %s refused, still serving %s: %s", current, bot.nlu.version, exc)

    async with running(watch()):
        yield


async def follow_edits(app: web.Application, refused: dict[str, tuple[int, int]] | None
                       ) -> dict[str, tuple[int, int]] | None:
    """Serve the bot's files again once someone saved one of them (``EDITED_FILES``, or a Python file of actions/), as
    ``POST /admin/reload`` does: an answer edited in responses.yml, or an action edited in actions/, reaches customers
    within ``learning.watch_seconds``, with no retrain, restart or admin token. Files that do not load (a YAML slip, an
    unknown intent) are refused in the log with the file, line and fix, and the files read before answer on until one
    is saved again; the files refused, else None. actions/ that fails to import alone is refused so by the swap
    (:func:`swap_to_current`), the actions loaded before running on, and the rest of what was saved is served."""
    read = app[FILES_READ]
    now = edited_files_stamp(app[BOT].project.root)
    if now in (read, refused):
        return refused
    saved = [name for name in sorted(now.keys() | read.keys(), key=_edited_first) if now.get(name) != read.get(name)]
    try:  # responses.yml and actions/ alone: the model is loaded with nothing of them, and loading it again took seconds
        nlu, not_imported = await swap_to_current(
            app, unless_read=now, model_kept=all(name == "responses.yml" or name.startswith("actions/") for name in saved))
    except Exception as exc:  # the files read before answer on
        mistakes = str(exc).splitlines()
        if len(mistakes) == 1:
            log.error("%s saved, and not served: %s; customers are answered as before until it is mended and saved "
                      "again", ", ".join(saved), exc)
        else:  # the count on the record's first line, which log tools show alone; each mistake indented below it
            log.error("%s saved, and not served: %d mistakes; customers are answered as before until they are mended "
                      "and saved again:\n%s", ", ".join(saved), len(mistakes), "\n".join(f"  {line}" for line in mistakes))
        return now
    if served := [name for name in saved if not (not_imported and name.startswith("actions/"))]:
        log.info("%s saved: now answering with the bot's files as they are now (model %s)", ", ".join(served),
                 nlu.version)
    return None


def _edited_first(name: str) -> tuple[int, str]:
    """The order files saved together are named in: bot.yml, nlu.yml and responses.yml, then actions/'s."""
    return (EDITED_FILES.index(name), "") if name in EDITED_FILES else (len(EDITED_FILES), name)


async def follow_reload(app: web.Application, seen: int) -> int:
    """Reload as another server on the store did since the reload ``seen`` (``POST /admin/reload``, which a load
    balancer sent to that server alone: :meth:`Store.reloaded`), so that every server serves the bot's files as they
    are now; the latest reload, seen now. One refused here is logged, and not tried again until the next."""
    bot = app[BOT]
    latest, server = await bot._look_up(Store.latest_reload)
    if latest > seen and server != bot.store.server:
        try:
            nlu, _ = await swap_to_current(app)
        except Exception as exc:  # the old model keeps serving, as at a reload refused
            log.error("reload made on another server of the store refused here, still serving %s: %s",
                      bot.nlu.version, exc)
        else:
            log.info("reloaded as another server on the store was: now serving model %s with the bot's files as "
                     "they are now", nlu.version)
    return latest


async def rounds(job: str, pause: Callable[[], float], work: Callable[[], Coroutine[Any, Any, Any]]) -> None:
    """Run ``work`` every ``pause()`` seconds, for good; a round that fails is logged (:class:`RoundFailures`) and
    the next one tries again."""
    failures = RoundFailures(job)
    while True:
        await asyncio.sleep(pause())
        try:
            await work()
        except Exception as exc:
            failures.failed(exc)
        else:
            failures.mended()


async def watch_waiting(app: web.Application) -> AsyncIterator[None]:
    """Tell customers who have waited ``handoff.busy_after_seconds`` for a person that the agents are busy.
    The setting is read each round, at least every 5 s, as a reload may set, change or clear it."""
    bot = app[BOT]

    def pause() -> float:
        after = bot.config.handoff.busy_after_seconds
        return 5.0 if after is None else min(after / 2, 5.0)

    async with running(rounds("telling waiting customers that the agents are busy", pause, bot.tell_overdue)):
        yield


def on_the_store(context: Callable[[web.Application, Store], AsyncIterator[None]]
                 ) -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context ``context``, which keeps up the conversation store, given the bot's store: a bot built
    without one has nothing for it to do."""

    @functools.wraps(context)
    async def with_store(app: web.Application) -> AsyncIterator[None]:
        store = app[BOT].store
        if store is None:
            yield
            return
        async with contextlib.asynccontextmanager(context)(app, store):
            yield

    return with_store


@on_the_store
async def watch_store(app: web.Application, store: Store) -> AsyncIterator[None]:
    """Say, within ``STORE_WATCH_S``, that the conversation store writes again after requests were refused for it
    (:class:`~bot.channels.base.StoreRefusals`): a write tried each round (:meth:`~dialogues.store.Store.probe`)
    tells, whichever of its writes failed."""
    bot = app[BOT]

    async def check() -> None:
        if bot.refusals.reason is None:
            return
        with contextlib.suppress(Exception):  # still failing, as said already
            await bot._store(store.probe)
            bot.refusals.mended()

    async with running(rounds("watching the conversation store", lambda: STORE_WATCH_S, check)):
        yield


@on_the_store
async def forget_old_keys(app: web.Application, store: Store) -> AsyncIterator[None]:
    """Delete, every ``FORGET_KEYS_EVERY_S``, the keys of the Slack and WeCom messages past their platform's retry
    window (:meth:`~dialogues.store.Store.forget_old_keys`), a purged conversation's among them, whether or not
    another message comes."""
    bot = app[BOT]

    async def forget() -> None:
        await bot._store(store.forget_old_keys)

    async with running(rounds("forgetting answered platform messages", lambda: FORGET_KEYS_EVERY_S, forget)):
        yield


def purge_older_than(project: Project, days: int) -> tuple[int, list[str]]:
    """Delete the conversations of ``project``'s store with nothing written in ``days`` days, as `bot purge --before`
    does, over a connection of its own, and return how many, and what may still hold them as `bot purge` says it
    (:func:`~bot.retrain.kept_elsewhere`): on the store's one thread, a purge of thousands held every customer's reply
    up behind it."""
    store = Store(project.db_path)
    try:
        cutoff = time.time() - days * 86400
        conversations = store.conversation_ids(before=cutoff)
        began = {row["id"]: row["created"] for row in store.conversations(conversations) if row}
        purged = store.purge(*conversations, before=cutoff) if conversations else None
    finally:
        store.close()
    if purged and not purged.wal_cleared:
        log.warning("privacy.retention_days: another process kept reading %s, so dialogues.db-wal holds a copy of what "
                    "was deleted until the next round", project.db_path)
    return len(purged.deleted) if purged else 0, kept_elsewhere(project, purged, began) if purged else []


def forget_idle_slots(project: Project, hours: float | None) -> int:
    """Drop the slots holding personal data of the conversations of ``project``'s store with nothing written in ``hours``
    hours (:meth:`~dialogues.store.Store.forget_idle_slots`), over a connection of its own, as
    :func:`purge_older_than` does; how many conversations lost one. ``hours`` 0 or None (``privacy.slot_hours``): none,
    the shop keeps them with their conversation."""
    if not hours:
        return 0
    store = Store(project.db_path)
    try:
        return store.forget_idle_slots(time.time() - hours * 3600)
    finally:
        store.close()


@on_the_store
async def purge_past_retention(app: web.Application, store: Store) -> AsyncIterator[None]:
    """Delete, every ``RETENTION_EVERY_S``, the conversations with nothing written in ``privacy.retention_days`` (read
    each round, as a reload may set or change it; unset, none), so that a retention period needs no cron job, and
    the slots holding personal data of those with nothing written in ``privacy.slot_hours``, and the full-text index
    rid of the words customers edited or deleted since the last round. Each server on a store does it; a round finds
    nothing another deleted."""
    bot = app[BOT]

    async def purge() -> None:
        await bot._store(store.merge_search_index_if_rewritten)  # a customer's edited or deleted words, off the file
        hours = bot.config.privacy.slot_hours
        if dropped := await asyncio.get_running_loop().run_in_executor(None, forget_idle_slots, bot.project, hours):
            log.info("dropped the slots holding personal data of %d conversation%s with nothing written in %g hours "
                     "(privacy.slot_hours)", dropped, "" if dropped == 1 else "s", hours)
        if days := bot.config.privacy.retention_days:
            deleted, kept = await asyncio.get_running_loop().run_in_executor(None, purge_older_than, bot.project, days)
            if deleted:
                log.info("deleted %d conversation%s with nothing written in %d days (privacy.retention_days)", deleted,
                         "" if deleted == 1 else "s", days)
            for line in kept:
                log.warning("privacy.retention_days: %s", line)

    async with running(rounds("deleting conversations past privacy.retention_days", lambda: RETENTION_EVERY_S, purge)):
        yield


async def forget_idle_clients(app: web.Application) -> AsyncIterator[None]:
    """Let the limits forget, every ``FORGET_KEYS_EVERY_S``, the addresses and conversations none of whose requests
    still counts (:meth:`~bot.limits.Limits.forget_idle`), whether or not another request comes."""
    limits = app[LIMITS]

    async def forget() -> None:
        limits.forget_idle()

    async with running(rounds("forgetting idle clients", lambda: FORGET_KEYS_EVERY_S, forget)):
        yield


def closed_conversations(path: Path) -> int:
    """The signed-in customers' web conversations in the store at ``path``, read over a connection of its own that
    closes after: the reads' one, opened this early, would go on reading a store file moved or deleted since."""
    store = Store(path, read_only=True)
    try:
        return store.verified_conversations()
    finally:
        store.close()


async def check_platforms(app: web.Application) -> None:
    """Have each platform channel check at start, in the background, what only its platform can tell of its settings
    (``PlatformChannel.start``): a revoked token or a mistyped API address showed only when a customer's answer
    failed, and that customer was handed to an agent as undelivered."""
    for channel in app[BOT].channels.values():
        if isinstance(channel, PlatformChannel):
            channel.start()


async def check_action_map(app: web.Application) -> AsyncIterator[None]:
    """Check bot.yml's ``actions.map`` against the actions the action server lists, in the background from the server's
    start (:meth:`~bot.actions.ActionRunner.check_listed_map`): a typo in it against an action server was met only by
    the customers who asked for the action. An action server that does not answer yet is asked again until it does,
    its map checked then: started after deskbot, its missing actions went unsaid until a restart. A reload checks the
    map it brings itself (:func:`swap_to_current`). Asked on the event loop, so that an action server on it answers."""
    bot = app[BOT]

    async def watch() -> None:
        while True:
            await bot.actions.check_listed_map(bot.config, bot.project.root)
            await asyncio.sleep(ACTION_MAP_WATCH_S)

    async with running(watch()):
        yield


async def say_closed_conversations(app: web.Application) -> None:
    """Say at start how many signed-in customers' web conversations stay closed for want of channels.web.identity_secret:
    a bot.yml that dropped it left each one no proof can open, and their customers found a new chat, without a word to
    the shop of why or of how to open them again."""
    bot = app[BOT]
    channel = bot.channels.get("web")
    if not isinstance(channel, WebChannel) or channel.identity_secret or bot.store is None:
        return
    if closed := await asyncio.to_thread(closed_conversations, bot.store.path):
        log.warning("%d web conversation%s of signed-in customers %s closed to the web API, as channels.web.identity_secret "
                    "(or DESKBOT_WEB_IDENTITY_SECRET) is not set and nothing can prove their customers: each starts a new "
                    "chat, and agents still see them; set the secret their pages' hashes were made with to open them "
                    "again (docs/channels.md)", closed, "" if closed == 1 else "s", "is" if closed == 1 else "are")


@on_the_store
async def answer_kept_messages(app: web.Application, store: Store) -> AsyncIterator[None]:
    """Answer the Slack and WeCom messages that a server now gone had acknowledged and not answered: those
    platforms never send an acknowledged message again, so late is the only alternative to never. Looked
    for at start and every ``ADOPT_EVERY_S`` after, since the server that kept them may still be finishing
    its turns when this one starts, or may die later while this one serves (``Store.adopt``)."""
    bot = app[BOT]
    await bot.serve()

    # Only this server's channels: another's messages wait for a server that has that channel.
    platforms = {name: channel for name, channel in bot.channels.items() if isinstance(channel, PlatformChannel)}
    for name, count in (await bot._store(store.waiting_elsewhere, list(platforms))).items():
        log.warning("%d %s message%s kept in the store wait%s for a server with the %s channel, which this one does "
                    "not serve (channels.%s in bot.yml, or its environment variables)",
                    count, name, "s" if count > 1 else "", "" if count > 1 else "s", name, name)

    async def adopt() -> None:
        failures = RoundFailures("looking for messages a stopped server kept")
        while True:
            try:
                rows = await bot._store(store.adopt, list(platforms))
            except Exception as exc:  # a bad moment of the store is logged; the next round tries again
                failures.failed(exc)
                rows = []
            else:
                failures.mended()
            for row in rows:
                if row["reply"] is not None:
                    log.info("sending a %s answer a stopped server logged and did not send", row["channel"])
                    platforms[row["channel"]].redeliver(row)
                    continue
                log.info("answering a %s message a stopped server acknowledged and did not answer", row["channel"])
                platforms[row["channel"]].resume(kept_turn(row))
            await asyncio.sleep(ADOPT_EVERY_S)

    async with running(adopt()):
        yield


async def review_items(app: web.Application) -> Queue:
    """The review queue, rescored and grouped by the serving model (its views cached per text). The last one built is
    kept with the store's version it was built after (:meth:`Store.version`) and what it was built for: a console on
    the review tab looks every 3 s, and each look built the whole queue again with nothing committed since."""
    bot = app[BOT]
    similarity = bot.project.config.learning.review_similarity
    cache = app[REVIEW_MODEL]
    if cache.get("model") is None or cache["model"].version != bot.nlu.version:
        cache["model"] = CachedModel(bot.nlu.classifier, bot.nlu.version)
    model: CachedModel = cache["model"]
    threshold = review_threshold(bot.config, bot.nlu.intent_threshold)

    # read on the figures' thread, the long reads' (see ``Bot._read_figures``): on the admin's reads' thread, every
    # agent's console poll waited behind a queue of thousands of turns
    store = await bot._read_figures(lambda reads: reads)  # the read-only connection, opened on its thread
    # read before the queue: a commit after it, before or while the queue is read, makes the next look's version another
    asked = (await bot._read_figures(Store.version), model.version, threshold, similarity, sorted(bot.project.labels))
    if (kept := cache.get("queue")) is not None and kept[0] == asked:
        return kept[1]

    def on_store(read: Callable[[], Any]) -> Any:  # the store is read on the figures' thread, the model ranks on this one
        return bot._figures.submit(bot._read_on, "_figures_store", lambda _: read()).result()

    queue = await asyncio.to_thread(queue_of, store, threshold, model.embed if similarity else None, similarity,
                                    rank=model.rank, labels=bot.project.labels, read=on_store)
    cache["queue"] = (asked, queue)
    return queue


def query_limit(request: web.Request, default: int) -> int:
    """``?limit=N``: how many items a list endpoint returns, 0 to ``MAX_LIMIT``."""
    given = request.query.get("limit", str(default))
    if not re.fullmatch(r"[0-9]{1,9}", given):  # as the schema says: no sign, no "1_0", no full-width digits
        raise http_error(web.HTTPBadRequest, "limit: must be a number")
    limit = int(given)
    if not 0 <= limit <= MAX_LIMIT:
        raise http_error(web.HTTPBadRequest, f"limit: must be between 0 and {MAX_LIMIT}")
    return limit


def query_offset(request: web.Request) -> int:
    """``?offset=N``: how many items of a list endpoint to pass over, to read the page after them."""
    given = request.query.get("offset", "0")
    if not re.fullmatch(r"[0-9]{1,9}", given):
        raise http_error(web.HTTPBadRequest, "offset: must be a number")
    return int(given)


async def review_queue(request: web.Request) -> web.Response:
    """The review queue's first ``?limit=`` items, past the first ``?offset=``: a queue longer than a page was read
    its first page alone."""
    require_admin(request, "review")
    limit = query_limit(request, 20)
    offset = query_offset(request)
    items = await review_items(request.app)
    return json_response({"items": [i.to_json() for i in items[offset:offset + limit]], "total": len(items),
                          "more_waiting": items.more_waiting, "intents": request.app[BOT].project.intents})


async def review_label(request: web.Request) -> web.Response:
    """Label the queue item holding a turn: ``{"intent": NAME | "oos"}`` or ``{"accept": true, "predicted": NAME}``."""
    require_admin(request, "review")
    bot = request.app[BOT]
    body = await read_json(request, ReviewLabelRequest)
    reviewer = acting_agent(request, body.reviewer)
    turn_id = int(request.match_info["turn_id"])
    if body.correct and body.accept:
        raise http_error(web.HTTPBadRequest, "correct takes an intent, not accept")
    if body.correct and body.intent is not None:
        try:
            check_label(body.intent, bot.project.intents)
            labelled = await bot._store(bot.store.correct_label, [turn_id], body.intent, reviewer)
        except ValueError as exc:
            raise unknown_intent(exc, body.intent) from None
        except KeyError as exc:
            raise http_error(web.HTTPNotFound, exc.args[0], {"code": "no_label"}) from None
        return json_response({"intent": body.intent, "turn_ids": labelled})
    item = next((i for i in await review_items(request.app) if turn_id in i.turn_ids), None)
    if item is None:
        if label := await bot._store(bot.store.label_of, turn_id):  # labelled since it was read
            raise labelled_meanwhile(LabelledMeanwhile.by(label, reviewer), ' (send "correct": true to change it)')
        raise http_error(web.HTTPNotFound, f"turn {turn_id} is not in the review queue", NOT_IN_QUEUE)
    intent = item.intent if body.accept else body.intent
    if intent is None:
        raise http_error(web.HTTPConflict, "there is no prediction to accept; send an intent")
    if body.accept and intent != body.predicted:  # a retrain or rollback swapped the model since the queue was read
        raise http_error(web.HTTPConflict, f"the model now predicts {intent!r}, not {body.predicted!r}: read the queue again")
    try:  # a prediction too: the serving model may know an intent nlu.yml no longer has
        check_label(intent, bot.project.intents)
    except ValueError as exc:
        raise unknown_intent(exc, intent) from None
    try:  # checked again as it is stored: another reviewer may have labelled the item since the queue was read
        labelled = await bot._store(bot.store.add_labels, item.turn_ids, intent, reviewer, True,
                                    bot.project.labels)
    except LabelledMeanwhile as exc:
        raise labelled_meanwhile(exc) from None
    return json_response({"intent": intent, "turn_ids": labelled})


def labelled_meanwhile(said: LabelledMeanwhile, advice: str = "") -> web.HTTPException:
    """The 409 for an item labelled since the queue was read, with the label's intent (``labelled``, which the
    agents' console offers to correct), who gave it (``reviewer``) and whether that was the reviewer sending, from
    another window (``yours``): told "a colleague labelled it", they took their own label for someone else's."""
    label = said.label
    fields = {} if label is None else {"labelled": label["intent"], "reviewer": label["reviewer"], "yours": said.yours}
    return http_error(web.HTTPConflict, f"{said}{advice}", {"code": "labelled_meanwhile", **fields})


def unknown_intent(exc: ValueError, intent: str) -> web.HTTPException:
    """The 400 of a review label naming an intent nlu.yml does not have (:func:`check_label`), naming it."""
    return http_error(web.HTTPBadRequest, str(exc), {"code": "unknown_intent", "intent": intent})


NOT_IN_QUEUE = {"code": "not_in_queue"}  # the 404 of a label for a message the review queue no longer holds


def query_since(request: web.Request, name: str = "since") -> float | None:
    """``?since=YYYY-MM-DD``: the start of that day (the server's local time); or a moment with its offset
    (``2026-12-04T16:00:00Z``), as the agents' console sends the start of its own day (an agent in Shanghai
    and a server on UTC: "today" began at 08:00); None when not given. ``name``: the parameter read
    (``until`` is read as ``since`` is)."""
    moment = request.query.get(name)
    if moment is None:
        return None
    try:
        return unix_time(read_moment(moment, local_time=False))  # a date alone: the server's day
    except ValueError:
        raise http_error(web.HTTPBadRequest, f"{name}: {moment!r} is not a date (YYYY-MM-DD), nor a time with its "
                                             "offset (2026-12-04T16:00:00Z, 2026-12-04 16:00+08:00)") from None


async def export_data(request: web.Request) -> web.Response:
    """What `bot export` writes, as JSON lines, for a pipeline that cannot reach the bot's disk:
    ``?since=YYYY-MM-DD`` keeps what was labelled or answered from that day on."""
    require_admin(request, "export")
    bot = request.app[BOT]
    start = query_since(request) or 0.0
    # every label and answer ever: read on the figures' thread, the long reads', not before the consoles' polls
    labels, answers = await bot._read_figures(lambda store: (store.labels(start), store.answer_candidates(start)))
    out = io.StringIO()
    lines = await asyncio.to_thread(  # written there too: every label and answer ever, line by line
        lambda: write_jsonl(exported(bot.project, learned_from(labels, answers, bot.config.privacy.redact)), out))
    log.info("exported by %s: %d lines of training data%s", caller(request), lines,
             f" since {request.query['since']}" if start else "")
    return web.Response(text=out.getvalue(), content_type="application/x-ndjson")


async def stats(request: web.Request) -> web.Response:
    """What `bot stats --json` prints, for dashboards and the agents' console: ``?since=YYYY-MM-DD``, and
    ``&until=`` for a closed period (last week's, to set beside this week's), ``&channel=`` for one channel's,
    ``&language=`` for one language's, ``&compare=previous`` for the period of equal length before it too, with each
    figure's change (:func:`compared_with_previous`); ``&format=csv`` as `bot stats --csv` prints them, for a
    spreadsheet kept week by week from a scheduled download. The same asked again with nothing committed since is
    answered with the figures read before (:class:`KeptFigures`)."""
    require_admin(request, "stats")
    bot = request.app[BOT]
    since, until = query_since(request) or 0.0, query_since(request, "until")
    if until is not None and until < since:  # the same moment is an empty period, whose figures are all zero
        raise http_error(web.HTTPBadRequest, "until: comes before since: a period cannot end before it begins")
    channel = request.query.get("channel")
    if channel is not None and channel not in CHANNELS:  # a typo's zeros would pass for a quiet week
        raise http_error(web.HTTPBadRequest, f"channel: {channel!r} is none of {', '.join(CHANNELS)}")
    try:
        language = language_kept(request.query.get("language"), bot.config.language)
    except ValueError as exc:
        raise http_error(web.HTTPBadRequest, f"language: {exc}") from None
    compare = request.query.get("compare")
    if compare not in (None, "previous"):
        raise http_error(web.HTTPBadRequest, f"compare: {compare!r} is not previous")
    if compare and not since:
        raise http_error(web.HTTPBadRequest, "compare: needs since: all time has no period before it")
    form = request.query.get("format", "json")
    if form not in ("json", "csv"):
        raise http_error(web.HTTPBadRequest, f"format: {form!r} is not json or csv")
    read = compared_with_previous if compare else conversation_stats
    asked = None if compare and until is None else (since, until, channel, language, compare)  # None: up to now
    kept = request.app[KEPT_FIGURES]
    figures = await bot._read_figures(lambda store: kept.read(
        store, asked, lambda: read(store, since, until=until, channel=channel, language=language)))
    return web.Response(text=figures_as_csv(figures), content_type="text/csv") if form == "csv" else json_response(figures)


def query_search(request: web.Request) -> str:
    """What the inbox is searched for: ``X-Deskbot-Search`` (percent-encoded UTF-8), over the deprecated ``?q=`` that
    older consoles send: a URL goes into the proxies' and servers' access logs, and an agent's search holds what they
    know of a customer (a name, an e-mail address, an order number). "" for none."""
    try:
        said = percent_decoded(request, SEARCH_HEADER)
    except Refused as exc:
        raise http_error(web.HTTPBadRequest, str(exc)) from None
    searches = {"q": request.query.get("q", "").strip(), SEARCH_HEADER: (said or "").strip()}
    for name, search in searches.items():  # each held to its rule, the one not read too
        if len(search) > MAX_SEARCH_CHARS:
            raise http_error(web.HTTPBadRequest, f"{name}: at most {MAX_SEARCH_CHARS} characters")
    return searches["q"] if said is None else searches[SEARCH_HEADER]


async def inbox(request: web.Request) -> web.Response:
    """The agents' inbox: ``?status=handed_off`` (the default), longest-waiting first, or ``open``; those that hold a
    text alone (:func:`query_search`), ``?offset=`` the page after the first ones, ``?holder=`` one agent's
    customers alone, ``?unheld=true`` those nobody has (a colleague's a reload took out of server.agents included: see
    :meth:`Store.inbox`); ``passed``: the customers colleagues passed to the
    agent (``?agent=``) who are theirs still, for their console to tell them, on any tab or page; ``taken``: those
    someone else moved from that agent to a colleague (:meth:`Store.taken_from`), for their console to tell them too;
    ``team``: server.agents' names; ``colleagues``: those whose customers alone a lead's console offers to list
    (``?holder=``): server.agents, else the agents who have customers now (:meth:`Store.holders`), where the console
    offered none and a lead had no way to list an absent colleague's customers; ``unread_yours``: that agent's
    customers with what each wrote that they have not read (:meth:`Store.unread_of`), for their console to say aloud
    who wrote again on any tab or page; ``waiting_yours``:
    the customers waiting on that agent or on nobody (nor on anyone server.agents no longer names), whom their console
    counts and announces (every waiting one without ``?agent=``); ``token_grants``: what the token may do beyond
    answering customers, for the console to offer what it may (the review queue). With an ``ETag``: sent back in
    ``If-None-Match``, 304 while nothing the answer shows changed since (:func:`inbox_tag`): on the waiting tab, while
    the inbox is as it was (:meth:`Store.inbox_version`), whatever the customers with the bot write; on the other, while
    the conversations with the bot are as they were too (:meth:`Store.open_version`): on any server of the store."""
    require_admin(request)
    status = request.query.get("status", "handed_off")
    if status not in ("handed_off", "open"):
        raise http_error(web.HTTPBadRequest, f"status: {status!r} is not handed_off or open")
    limit = query_limit(request, 50)
    offset = query_offset(request)
    search = query_search(request)
    bot = request.app[BOT]
    agent = query_agent(request)
    team = bot.team  # as a reload left them: a colleague taken out has customers nobody has
    holder = query_holder(request)

    grants = token_grants(request)

    def read(store: Store) -> tuple[dict[str, Any] | None, str]:
        """The page, its counts and the customers passed to the agent or taken from them in one snapshot, so that they
        agree, and on one trip to the reads' thread: every agent's console asks every 3 s. None, with the ETag, where
        the console holds this answer already (:func:`inbox_tag`)."""
        # the waiting tab changes with the inbox alone; the other lists the conversations with the bot, which every
        # customer's message to it changes: both the store's, alike on every server of it
        version = store.inbox_version() if status == "handed_off" else store.open_version()
        tag = inbox_tag(version, status, limit, offset, search, agent, holder, team, request[AGENT], grants)
        if held := held_already(request, tag):
            return None, held
        polled = store.poll(status, limit, agent, search, offset, holder, team)
        answer = {**{name: polled[name] for name in ("conversations", "total", "waiting", "waiting_yours",
                                                     "unread_yours")},
                  "passed": store.passed_to(agent), "taken": store.taken_from(agent),
                  "colleagues": team or polled["holders"]}
        until = told_until(answer["taken"])
        return answer, tag if until is None else f"{tag}-{math.ceil(until)}"

    answer, tag = await bot._read(read)
    if answer is None:
        return web.Response(status=304, headers={"ETag": f'"{tag}"'})
    return json_response({**answer, "team": team, "token_agent": request[AGENT] or None, "token_grants": grants},
                         headers={"ETag": f'"{tag}"'})


def inbox_tag(version: str, *asked: Any) -> str:
    """The ETag of an inbox answer: the store as the read saw it (:meth:`Store.inbox_version`, or
    :meth:`Store.open_version` for the conversations with the bot) and everything asked that shapes the answer, hashed. A console polling every
    3 s sends it back (``If-None-Match``) and is answered 304 at the cost of a look at the store's version, where each
    poll read and sent its page's 200 rows again with nothing changed; an answer naming a handback is sent with the
    moment it expires (:func:`told_until`) after a ``-``."""
    return hashlib.blake2b(dumps([version, *asked]).encode(), digest_size=12).hexdigest()


def held_already(request: web.Request, tag: str) -> str | None:
    """The ETag in ``If-None-Match`` that names the answer ``tag`` (:func:`inbox_tag`), one naming a handback before it
    expires; None where none does."""
    for held in request.if_none_match or ():
        named, _, until = held.value.partition("-")
        if named == tag and (not until or (until.isdigit() and still_before(int(until)))):
            return held.value
    return None


def unknown_conversation(conversation_id: str) -> web.HTTPException:
    """The 404 of an admin call on a conversation the store does not hold, naming it."""
    return http_error(web.HTTPNotFound, f"no conversation {conversation_id!r}",
                      {"code": "no_conversation", "conversation_id": conversation_id})


async def transcript(request: web.Request) -> web.Response:
    """A conversation with the bot's reading of each customer message, for the agent taking it over; ``?after=`` a
    turn id, the turns after it alone (:meth:`Store.transcript`), for the console's poll of the one it shows."""
    require_admin(request)
    conversation_id = valid_conversation_id(request)
    limit = query_limit(request, 200)
    after = query_turn_id(request)
    bot = request.app[BOT]
    # beside the turns the store's thread writes; more turns than the console's first page on the admin's reads' thread:
    # 10,000 took 450 ms on the look-ups', where each customer's message waited (its reply kept for a Retry, its status)
    read = bot._look_up if limit <= LOOKED_UP_TURNS else bot._read
    found = await read(Store.transcript, conversation_id, limit, after)
    if found is None:
        raise unknown_conversation(conversation_id)
    return await long_json_response(as_read(found), "turns")  # up to MAX_LIMIT turns: 3 MB of JSON


def as_read(transcript: dict[str, Any]) -> dict[str, Any]:
    """The ``transcript`` with ``markdown``, whether its customer reads the replies' Markdown drawn, and each reply,
    an agent's or the bot's, as its customer got it in ``sent`` where that differs from what was written, in plain text
    on a platform that draws no Markdown (WeCom): the console drew a WeCom customer's replies as the web chat does,
    bold and links, and said what the customer got only where their Chinese script differed, and of the bot's replies
    never, where a web or Slack customer's read as the console shows them."""
    plain = unmarked(transcript["channel"])
    turns = transcript["turns"]
    if plain is not None:
        turns = [turn if turn["role"] not in ("agent", "bot")
                 or (got := plain(turn["sent"] or turn["text"])) == turn["text"]
                 else {**turn, "sent": got} for turn in turns]
    return {**transcript, "turns": turns, "markdown": plain is None}


LOOKED_UP_TURNS = 200  # a transcript read beside the customers' look-ups at most: the console's first page


async def referred(request: web.Request) -> web.Response:
    """The conversation a handoff notice names by its reference (:meth:`Store.reference`), for the agents' console
    opening the notice's link: the notice carries the reference alone, which shows and grants nothing without a token,
    where it carried the id, a web customer's key to their conversation, to everyone in the webhook's room."""
    require_admin(request)
    bot = request.app[BOT]
    conversation_id = await bot._look_up(Store.referred, request.match_info["ref"])
    found = conversation_id and await bot._look_up(Store.conversation, conversation_id)
    if not found:
        raise http_error(web.HTTPNotFound, "no conversation has this reference: purged, or never handed off here")
    return json_response({"conversation_id": found["id"], "channel": found["channel"], "status": found["status"]})


# the 400 of a change of hands that names no agent where one is needed: the console asks its agent's name first
NAME_NEEDED = {"code": "name_needed"}


def named_when_forced(force: bool, agent: str | None, what: str) -> None:
    """Refuse a lead's forced takeover (``what``) that names no agent: it took the customer from the colleague
    who had them, and left them with nobody, in no agent's hands and offered to every one."""
    if force and agent is None:
        raise http_error(web.HTTPBadRequest, f"agent: a forced {what} names the agent who takes the customer over",
                         NAME_NEEDED)


def named_when_forced_away(force: bool, agent: str | None) -> None:
    """Refuse a lead's forced handback, release or transfer that names no agent: it took the customer from the
    colleague who had them, and the transcript would say nobody did."""
    if force and agent is None:
        raise http_error(web.HTTPBadRequest, "agent: a forced change of hands names the agent who makes it", NAME_NEEDED)


async def agent_message(request: web.Request) -> web.Response:
    """An agent's reply, sent in their name: an agent's own token names them; with the admin token the body must
    (400, ``name_needed``), or the customer got a reply from nobody, the transcript could not say whose it was, and
    the customer became nobody's, offered to every agent as if no one had answered."""
    require_admin(request)
    body = await read_json(request, AgentMessageRequest)
    conversation_id = valid_conversation_id(request)
    if (agent := body_agent(request, body.agent)) is None:
        raise http_error(web.HTTPBadRequest, "agent: a reply names the agent who sends it, whom the customer sees "
                                             "beside it (an agent's own token names them)", NAME_NEEDED)
    try:
        turn_id = await request.app[BOT].agent_message(conversation_id, body.text.strip(), agent, body.key, body.after,
                                                       body.force, by_admin(request, agent))
    except KeyError:
        raise unknown_conversation(conversation_id) from None
    except KeyReused as exc:
        raise key_reused(exc) from None
    except Overtaken as exc:
        raise overtaken(exc) from None
    except MaybeDelivered as exc:  # sent again, it would reach the customer twice
        log.warning("an agent's reply may not have reached the customer: %s", exc)
        raise http_error(web.HTTPGatewayTimeout, f"kept in the transcript; it may have reached the customer, whose "
                                                 f"platform did not say ({exc}): check before sending it again",
                         {"code": "maybe_delivered"}) from None
    except DeliveryError as exc:
        log.warning("an agent's reply did not reach the customer: %s", exc)
        raise http_error(web.HTTPBadGateway, f"kept in the transcript, but the customer did not get it: {exc}",
                         {"code": "not_delivered"}) from None
    return json_response({"turn_id": turn_id})


async def add_note(request: web.Request) -> web.Response:
    """An agent's internal note on the conversation: kept for the agents (the transcript's ``notes``), sent nowhere."""
    require_admin(request)
    body = await read_json(request, NewNoteRequest)
    conversation_id = valid_conversation_id(request)
    bot = request.app[BOT]
    try:
        note_id = await bot._store(bot.store.add_note, conversation_id, body.text.strip(),
                                   body_agent(request, body.agent), body.key)
    except KeyError:
        raise unknown_conversation(conversation_id) from None
    except KeyReused as exc:
        raise key_reused(exc) from None
    return json_response({"note_id": note_id})


def key_reused(exc: KeyReused) -> web.HTTPException:
    """The 422 of a reply or note sent under a key another one went with: neither kept nor sent."""
    return http_error(web.HTTPUnprocessableEntity, f"key: {exc}", {"code": "key_reused"})


async def delete_note(request: web.Request) -> web.Response:
    """Take back an internal note (``?agent=``: its author, who alone may; one written with no name is anyone's)."""
    require_admin(request)
    return await change_note(request, Store.delete_note, query_agent(request))


async def edit_note(request: web.Request) -> web.Response:
    """Correct an internal note (``agent``: its author, who alone may, as for a deletion): shown as edited."""
    require_admin(request)
    body = await read_json(request, NoteRequest)
    return await change_note(request, Store.edit_note, body.text.strip(),
                             body_agent(request, body.agent))


async def change_note(request: web.Request, change: Callable[..., None], *args: Any) -> web.Response:
    """``change(store, conversation_id, note_id, *args)`` on the note the path names: 404 for a note the conversation
    does not hold, 403 naming its author for another agent's."""
    conversation_id = valid_conversation_id(request)
    note_id = int(request.match_info["note_id"])
    bot = request.app[BOT]
    try:
        await bot._store(change, bot.store, conversation_id, note_id, *args)
    except KeyError:
        raise http_error(web.HTTPNotFound, f"no note {note_id} in conversation {conversation_id!r}",
                         {"code": "no_note"}) from None
    except NotTheAuthor as exc:
        raise http_error(web.HTTPForbidden, str(exc), {"code": "not_the_author", "agent": exc.author}) from None
    return json_response({"ok": True})


def query_agent(request: web.Request) -> str | None:
    """Who a call acts as (:func:`acting_agent`) by its ``?agent=``: the agent taking the conversation over or handing
    it back, reading the inbox, deleting a note."""
    return acting_agent(request, query_name(request, "agent"))


def query_name(request: web.Request, key: str) -> str | None:
    """An agent's name in the query's ``key``, without the spaces around it, in NFC (:func:`agent_name`); None when
    not given or blank, 400 past ``MAX_AGENT_CHARS`` or for an invisible or control character."""
    name = request.query.get(key, "").strip() or None
    if name is not None and len(name) > MAX_AGENT_CHARS:
        raise http_error(web.HTTPBadRequest, f"{key}: at most {MAX_AGENT_CHARS} characters", {"code": "bad_name"})
    try:
        return None if name is None else agent_name(name)
    except ValueError as exc:
        raise http_error(web.HTTPBadRequest, f"{key}: {exc}", {"code": "bad_name"}) from None


def overtaken(exc: Overtaken) -> web.HTTPException:
    """The 409 of a reply or a handback refused for what a colleague or the customer did first, with its ``code`` and
    fields (``agent``, who has the customer: the agents' console asks its agent whether to override), which the
    console says in its agent's language."""
    return http_error(web.HTTPConflict, str(exc), {"code": exc.code, **exc.fields})


def query_flag(request: web.Request, key: str) -> bool:
    """``?key=true``, else false (400 for anything but true or false)."""
    flag = request.query.get(key, "false")
    if flag not in ("true", "false"):
        raise http_error(web.HTTPBadRequest, f"{key}: must be true or false")
    return flag == "true"


def query_force(request: web.Request) -> bool:
    """``?force=true``: a lead takes over or hands back a customer a colleague has (:class:`HeldByColleague`)."""
    return query_flag(request, "force")


def query_holder(request: web.Request) -> str | None:
    """Whose customers the inbox lists: ``?holder=`` one agent's, ``?unheld=true`` nobody's (``""``, as
    :meth:`Store.inbox` reads it: every name is an agent's, so nobody is no value of ``?holder=``), else everyone's."""
    holder = query_name(request, "holder")
    if not query_flag(request, "unheld"):
        return holder
    if holder is not None:
        raise http_error(web.HTTPBadRequest, "unheld: the customers nobody has are no one agent's (holder)")
    return ""


def query_turn_id(request: web.Request, default: str = "0") -> int:
    """``?after=``, a turn id (``default`` where it is not given; none refuses a request without it)."""
    after = request.query.get("after", default)
    if not re.fullmatch(r"[0-9]{1,18}", after):
        raise http_error(web.HTTPBadRequest, "after: must be a turn id")
    return int(after)


async def mark_seen(request: web.Request) -> web.Response:
    """``?after=``, the latest turn the agent (``?agent=``) has read in the conversation: their inbox no longer
    counts the customer's messages up to it as new."""
    require_admin(request)
    conversation_id = valid_conversation_id(request)
    after = query_turn_id(request, "")
    agent = query_agent(request)
    bot = request.app[BOT]
    if await bot._store(bot.store.conversation, conversation_id) is None:
        raise unknown_conversation(conversation_id)
    await bot._store(bot.store.mark_seen, conversation_id, agent, after)
    return json_response({"ok": True})


async def set_handoff(request: web.Request) -> web.Response:
    require_admin(request)
    handed_off = request.match_info["action"] == "handoff"
    bot = request.app[BOT]
    status = "handed_off" if handed_off else "open"
    conversation_id = valid_conversation_id(request)
    after = request.query.get("after")  # the latest turn the agent handing back has read
    if after is not None and (handed_off or not re.fullmatch(r"[0-9]{1,18}", after)):
        raise http_error(web.HTTPBadRequest, "after: must be a turn id, and is read by a handback only")
    agent = query_agent(request)
    by = giver(request, agent)  # a lead taking a customer over, or handing them back, in a colleague's name
    force = query_force(request)
    if handed_off:
        named_when_forced(force, agent, "takeover")
    else:
        named_when_forced_away(force, agent)
    if await bot._look_up(Store.conversation, conversation_id) is None:  # no customer waits in an unknown one
        raise unknown_conversation(conversation_id)
    try:  # the widget shows the change at once
        await bot.set_handoff(conversation_id, handed_off, "agent", after=None if after is None else int(after),
                              agent=agent, force=force, by=by)
    except Overtaken as exc:
        raise overtaken(exc) from None
    if not handed_off:
        return json_response({"status": status})
    # who has the customer now: the agent, as they first named themselves to them (none: a takeover without a name)
    return json_response({"status": status, "agent": await holder_now(bot, conversation_id)})


async def holder_now(bot: Bot, conversation_id: str) -> str | None:
    """Who has the customer after the change the request made (:meth:`Store.holder`), read on the look-ups' read-only
    connection: on the store's thread the console's answer waited behind customers' turns. The change was committed
    before this read began, so the read sees it."""
    return await bot._look_up(Store.holder, conversation_id)


async def release(request: web.Request) -> web.Response:
    """Leave a handed-off customer waiting for a person, held by nobody (``Store.pass_on``): an agent ending a shift
    could only hand them back to the bot, or leave them marked as theirs. ``?agent=`` and ``?force=`` as for a
    handback; the transcript keeps who released them."""
    return await pass_on(request, None)


async def release_all(request: web.Request) -> web.Response:
    """Release every customer ``?agent=`` has (:meth:`~bot.engine.Bot.release_all`), each as :func:`release` releases
    one: an agent leaving for the day released them one by one. With an agent's own token, their own (their name
    alone, as for a release); ``?agent=`` is required with the admin token, which has no customers of its own, and
    the release is kept as made by ``?by=`` (a lead, in the console: one whose colleague has no token of their own, or
    who works without server.agents, was kept as the colleague releasing their customers themself, whom nobody told),
    else the admin's (:func:`releaser`)."""
    require_admin(request)
    if (agent := query_agent(request)) is None:
        raise http_error(web.HTTPBadRequest, "agent: the agent whose customers to release is required", NAME_NEEDED)
    return json_response({"released": await request.app[BOT].release_all(agent, giver(request, agent, releaser))})


async def transfer(request: web.Request) -> web.Response:
    """Give a handed-off customer to the colleague ``?to=`` (``Store.pass_on``): with agents' own tokens, an agent could
    not make a customer a colleague's, whose name their token cannot act in. One of ``server.agents`` (as a reload left
    them), when set, as the bot spells them: 400 for another name, which would make the customer nobody's to the agents.
    Without server.agents the bot knows no names, and takes the one given. The token is checked first: the 400 would
    tell anyone without one which names are agents'."""
    require_admin(request)
    if (to := query_name(request, "to")) is None:
        raise http_error(web.HTTPBadRequest, "to: the colleague's name is required", {"code": "colleague_needed"})
    if agents := list(request.app[BOT].config.server.agents):
        named = [name for name in agents if agent_key(name) == agent_key(to)]
        if not named:
            raise http_error(web.HTTPBadRequest, f"to: {to} is none of server.agents ({', '.join(agents)})",
                             {"code": "not_a_colleague", "to": to, "agents": agents})
        to = named[0]
    return await pass_on(request, to)


async def pass_on(request: web.Request, to: str | None) -> web.Response:
    """Give the conversation's customer to the agent ``to`` (None: to nobody), answering who has them now."""
    require_admin(request)
    conversation_id = valid_conversation_id(request)
    agent = query_agent(request)
    force = query_force(request)
    named_when_forced_away(force, agent)
    bot = request.app[BOT]
    conversation = await bot._look_up(Store.conversation, conversation_id)
    if conversation is None:
        raise unknown_conversation(conversation_id)
    if conversation["status"] != "handed_off":
        raise http_error(web.HTTPConflict, "the bot has this customer: no agent has them to pass on", {"code": "open"})
    try:
        await bot.pass_on(conversation_id, agent, to, force, passer(request, agent))
    except Overtaken as exc:
        raise overtaken(exc) from None
    return json_response({"status": "handed_off", "agent": await holder_now(bot, conversation_id)})


async def protective_headers(request: web.Request, response: web.StreamResponse) -> None:
    """No browser guesses another type than the one sent (nosniff), and no browser or proxy keeps a copy
    of a conversation: transcripts, histories and exports hold what customers wrote. And each response is
    counted by its status for /metrics, as it goes out (a file's 304 or 206 is known only then), the
    limits' and the handlers' refusals included: requests are not logged one by one. The ``Server`` header
    names deskbot alone: aiohttp's told anyone which Python and aiohttp versions run, and so which of their
    published flaws to try."""
    if COUNTED not in request:  # a handler failing after its 101 or stream went out makes a second response
        request[COUNTED] = True
        request.app[BOT].metrics.response(response.status)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers["Server"] = SERVER
    if request.app[DRAINING].is_set() and not isinstance(response, web.WebSocketResponse):
        # Its client opens its next request elsewhere, not on a connection about to close; said in the headers
        # too, which aiohttp set before this hook.
        response.force_close()
        response.headers["Connection"] = "close"
    if request.path.startswith(("/admin/", "/api/conversations/")):
        response.headers.setdefault("Cache-Control", "no-store")


async def finish_reload(app: web.Application, timeout: float) -> None:
    """On SIGTERM, wait up to ``timeout`` seconds for a reload or a watcher's swap under way (its model loading): cut
    off, a ``POST /admin/reload`` (a deploy's, just before the rolling restart reached this server) got no answer, and
    the other servers on the store were never told to reload. One still loading then is said in the log."""
    lock = app[RELOAD_LOCK]
    if not lock.locked():
        return
    log.info("stopping: finishing the reload under way, for up to %g s (server.shutdown_seconds)", timeout)
    try:
        async with asyncio.timeout(timeout), lock:
            pass
    except TimeoutError:
        log.warning("stopping: the reload under way cut off after %g s (server.shutdown_seconds): the other servers "
                    "on the store were not told of it; reload one of them", timeout)


async def stop_on_sigterm(app: web.Application) -> None:
    """An ``on_startup`` hook of ``bot serve`` (after aiohttp's own signal handlers, which it replaces for SIGTERM
    and SIGINT): says which signal arrived and that the server stops, at once or after ``server.drain_seconds``.
    Without that line, a stop with no turn in flight logged nothing before "deskbot stopped", and could not be told
    from a crash by its log's last lines. With ``drain_seconds``, SIGTERM has the server go on serving for those
    seconds, /healthz answering 503 and each response closing its connection, and only then close its port and stop:
    a load balancer that stopped a server at once had requests reset on the kept-alive connections it reused as the
    port closed (a 502 for a POST); meanwhile it sees the server stopping and sends them elsewhere. A second SIGTERM,
    or SIGINT, stops at once. One more once the stop has begun (Ctrl-C pressed again, a process manager's second
    SIGTERM) is said, and the stop goes on: raised again, it broke the stop off, the answers in flight cut, the store
    left open, exit status 1 after a page of tracebacks; so did the drain's end coming while the turns finished.

    SIGHUP (the terminal it ran in closed, a log rotation's ``kill -HUP``) stops it as SIGTERM does, and says so; by
    default it killed the server mid-turn without a line in the log. deskbot logs to stderr: it has no log file to
    reopen. A stop SIGHUP began exits with 129 (:data:`HUNG_UP`), which a service manager restarts; one arriving once a
    stop or drain is under way leaves that stop's exit status as it was: a log rotation during a deploy's SIGTERM
    turned the deploy's clean stop into a fault (129)."""
    loop = asyncio.get_running_loop()
    server = app[STARTED_WITH].server
    stopping = False
    drained: asyncio.TimerHandle | None = None  # the drain's end, set by the first SIGTERM

    def stop(name: str) -> None:
        nonlocal stopping
        if stopping:
            log.info("%s: deskbot is stopping already: the turns in flight finish (up to %g s), then the store "
                     "closes", name, server.shutdown_seconds)
            return
        stopping = True
        if drained is not None:
            drained.cancel()
        # the answers of the turns in flight close their connections too: kept alive, a proxy could send its next
        # request on one as the server closed it, and answer that with a 502
        app[DRAINING].set()
        log.info("%s: deskbot stopping: the port closes, the turns in flight finish (up to %g s), then the store "
                 "closes", name, server.shutdown_seconds)
        raise GracefulExit()  # as aiohttp's own handler: run_app then shuts down

    def terminated(name: str = "SIGTERM") -> None:
        nonlocal drained
        if not server.drain_seconds or app[DRAINING].is_set():
            stop(name)
            return
        app[DRAINING].set()
        log.info("%s: stopping in %g s: /healthz answers 503 and connections close meanwhile", name,
                 server.drain_seconds)
        drained = loop.call_later(server.drain_seconds, stop, name)

    def hung_up() -> None:
        if not app[DRAINING].is_set():  # the stop's own cause, for its exit status
            log.warning("SIGHUP: stopping as on SIGTERM (deskbot logs to stderr and has no log file to reopen: rotate "
                        "its log with logrotate's copytruncate, or leave it to the service manager)")
            app[HUNG_UP].set()
        terminated("SIGHUP")

    loop.add_signal_handler(signal.SIGTERM, terminated)
    loop.add_signal_handler(signal.SIGINT, stop, "SIGINT")
    loop.add_signal_handler(signal.SIGHUP, hung_up)


def create_app(root: Path | str, device: str | None = None, nlu: NLU | None = None,
               host: str | None = None) -> web.Application:
    """The server of the bot project at ``root``: one :class:`~bot.engine.Bot` that every channel's routes hand their
    customers' messages to (docs/architecture.md, How a message flows), and the agents' and admin's routes beside
    them. What would refuse to serve (agents' tokens, the action map, a newer deskbot's store, a model that does not
    load) is checked before anything starts; ``nlu``, a model loaded already, spares the load (tests start many servers
    on one model). ``host``: the address it listens on, when not bot.yml's ``server.host`` (``bot serve --host``), on
    which the names it serves by default depend (:func:`host_check`)."""
    files_read = edited_files_stamp(Path(root))  # before the read: an edit made meanwhile is read at the next look
    project = load_project(root)
    agents = agent_tokens(project)  # a token or a name two agents share, before the model loads
    actions = ActionRunner.for_project(project)  # a mistake in actions/ or its map, before the model loads
    refuse_newer(project.db_path, project.root)  # a newer deskbot's store, before the model loads
    nlu = nlu or load_at_start(project, device)  # refuse to start when no version that served loads
    server = project.config.server
    limits = Limits(server.limits, server.max_body_bytes, trusted=is_admin)
    hosts = host_check(server, host or server.host)
    app = web.Application(middlewares=[json_errors, *([hosts] if hosts else []), limits.middleware],
                          client_max_size=server.max_body_bytes)
    app.on_response_prepare.append(protective_headers)
    logging.getLogger("aiohttp.server").addFilter(CLIENT_ERRORS)  # the same filter once, however many apps
    logging.getLogger("aiohttp.websocket").addFilter(unasked_subprotocols)
    privacy = project.config.privacy
    bot = Bot(project, nlu, Store(project.db_path, redact=privacy.redact, keep_raw=privacy.keep_raw), actions)
    app[BOT] = bot
    app[REGISTRY] = Registry(project.models_dir)  # one, which reads models/CURRENT again only when it changed
    app[LIMITS] = bot.limits = limits
    app[DRAINING] = asyncio.Event()
    app[HUNG_UP] = asyncio.Event()
    app[ADMIN_TOKEN] = admin_token(project)
    app[AGENT_TOKENS] = agents
    app[METRICS_TOKEN] = metrics_token(project)
    app[RELOAD_LOCK] = asyncio.Lock()
    app[REVIEW_MODEL] = {}
    app[KEPT_FIGURES] = KeptFigures()
    app[STORE_PROBE] = StoreProbe()
    app[RENEWAL_PROBE] = StoreProbe()
    app[SCHEMA_READ] = SharedRead()
    app[DEVICE] = device or ""
    app[STARTED_WITH] = project.config
    app[FILES_READ] = files_read
    app.cleanup_ctx.append(watch_models)
    app.cleanup_ctx.append(watch_waiting)
    app.cleanup_ctx.append(answer_kept_messages)
    app.cleanup_ctx.append(forget_old_keys)
    app.cleanup_ctx.append(purge_past_retention)
    app.cleanup_ctx.append(forget_idle_clients)
    app.cleanup_ctx.append(watch_store)
    app.cleanup_ctx.append(check_action_map)
    app.on_startup.append(say_closed_conversations)
    app.on_startup.append(check_platforms)
    settings = {"max_message_chars": server.max_message_chars, "max_body_bytes": server.max_body_bytes,
                "max_web_turns": server.max_web_turns, "language": project.config.language}
    channels = build_channels(bot, project.config.channels, settings)
    app[OFF_CALLBACKS] = off_callbacks(channels)
    app[OFF_SAID_UNTIL] = {}
    for channel in channels:
        bot.channels[channel.name] = channel
        if isinstance(channel, WebChannel):
            channel.unready = functools.partial(own_unready, app)
            channel.draining = app[DRAINING].is_set
        routes = app.add_routes(channel.routes())
        if isinstance(channel, PlatformChannel):
            limits.callbacks |= {route.resource.canonical for route in routes if route.resource is not None}
    if "web" in bot.channels:  # the chat page and its widget, which without the web API could only fail
        app.add_routes([web.get("/", index), web.get("/widget.js", widget)])
    app.add_routes([
        web.get("/agent", agent_console),
        web.get("/healthz", healthz),
        web.get("/metrics", metrics),
        web.post("/admin/reload", reload_model),
        web.get("/admin/review", review_queue),
        web.post("/admin/review/{turn_id:\\d{1,18}}", review_label),
        web.get("/admin/export", export_data),
        web.get("/admin/stats", stats),
        web.get("/admin/conversations", inbox),
        web.post("/admin/release", release_all),
        web.get(f"/admin/refs/{{ref:{NOTICE_REFERENCE}}}", referred),
        web.get("/admin/conversations/{conversation_id}", transcript),
        web.post("/admin/conversations/{conversation_id}/messages", agent_message),
        web.post("/admin/conversations/{conversation_id}/seen", mark_seen),
        web.post("/admin/conversations/{conversation_id}/notes", add_note),
        web.delete("/admin/conversations/{conversation_id}/notes/{note_id:\\d{1,18}}", delete_note),
        web.patch("/admin/conversations/{conversation_id}/notes/{note_id:\\d{1,18}}", edit_note),
        web.post(r"/admin/conversations/{conversation_id}/{action:handoff|handback}", set_handoff),
        web.post("/admin/conversations/{conversation_id}/release", release),
        web.post("/admin/conversations/{conversation_id}/transfer", transfer),
    ])

    publish_openapi(app, project.config.name, sorted(project.labels), server.max_message_chars, admin=is_admin,
                    misdirected=hosts is not None)

    async def shutdown(app: web.Application) -> None:
        """SIGTERM: the port is closed already; let the turns in flight finish and their answers reach their
        customers, all within ``server.shutdown_seconds``, then close the sockets and platform sessions.
        aiohttp then gives the requests ``RESPONSE_GRACE_S`` to write their responses (twice: once before
        cancelling those still running, once after), where it had waited shutdown_seconds twice more."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + server.shutdown_seconds
        platforms = [channel for channel in bot.channels.values() if isinstance(channel, PlatformChannel)]
        for platform in platforms:
            platform.stop()
        await asyncio.gather(bot.finish_turns(server.shutdown_seconds), finish_reload(app, server.shutdown_seconds),
                             *(channel.close(server.shutdown_seconds) for channel in bot.channels.values()
                               if channel not in platforms))
        # Slack's and WeCom's sessions carry the takeover notices finish_turns waited for: closed after them (a
        # notice sent on a closed channel opened a session that was never closed), in what is left of the grace.
        await asyncio.gather(*(channel.close(max(0.0, deadline - loop.time())) for channel in platforms))

    async def cleanup(app: web.Application) -> None:
        """After the requests in flight have finished: drain and close the store."""
        bot.refusals.stopping()
        await bot.close()

    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)
    return app
