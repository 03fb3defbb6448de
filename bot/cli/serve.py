"""``bot serve`` and ``bot chat``, and what they check and say before serving."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import re
import socket
import sys
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import click

from bot.cli import stop_on_signals_while_starting
from bot.cli.common import BOT_DIR, cli, device_option, fail, load_bot, plural, say_gaps, shell
from bot.project import Project, too_long


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# sysexits' EX_CONFIG (systemd logs it as status=78/CONFIG): `bot serve` cannot start, and a restart would not mend it.
# The unit of docs/security.md names it in RestartPreventExitStatus=, so that systemd stops restarting.
UNMENDABLE = 78


class UnmendableStart(click.ClickException):
    """A start that fails the same way at every restart until a person acts: no version of the bot's models loads (a
    corrupt or missing model folder, or none trained), the store's file or folder this user may not write, a store a
    newer deskbot migrated (:class:`~dialogues.store.Unservable`). Each exited with status 1, as any fault does, and a
    service manager restarted it (``Restart=on-failure``) again and again, each start loading the model for seconds
    and failing the same way, with the reason buried among the restarts. What a restart may mend keeps status 1: a
    port still held by the server stopping before it, a store locked by another process's transaction (a backup), a
    full disk given room, a store folder whose volume is mounted after the start."""

    exit_code = UNMENDABLE

    def __init__(self, fault: Exception, why: str = "A restart does not mend this") -> None:
        super().__init__(f"{fault}. {why}: stopped with status {UNMENDABLE} (docs/security.md)")


BOUND_URL = re.compile(r"Running on (\S+)")  # in aiohttp's announcement of the address it bound


def readable_secrets(project: Project) -> list[str]:
    """The secrets bot.yml holds (``server.admin_token``, a channel's keys, a webhook whose URL is its secret) while
    every account on the machine may read it: a bot.yml made before `bot init` made it for its owner alone, or copied
    with the umask's mode, which nothing else said."""
    if not (project.root / "bot.yml").stat().st_mode & 0o004:
        return []
    config = project.config
    held = {"server.admin_token": config.server.admin_token, "server.metrics_token": config.server.metrics_token,
            **{f"server.agents.{name}.token": agent.token for name, agent in config.server.agents.items()},
            "handoff.notify_url": config.handoff.notify_url,
            "channels.web.identity_secret": config.channels.web.identity_secret,
            **{f"channels.slack.{key}": getattr(config.channels.slack, key) for key in ("signing_secret", "bot_token")},
            **{f"channels.wecom.{key}": getattr(config.channels.wecom, key) for key in ("token", "aes_key", "secret")}}
    return [name for name, value in held.items() if value]


def cleartext(url: str) -> bool:
    """Whether ``url`` is plain ``http://`` to another machine: its host is not this machine's loopback by its name
    alone (nothing is looked up at start)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme.lower() != "http" or host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def cleartext_addresses(project: Project) -> dict[str, str]:
    """The settings (each as bot.yml and the environment name it) whose address is plain ``http://`` to another
    machine, with the address: deskbot sends them the platforms' tokens, the action server customers' conversations
    and slots, the webhook handoff notices, which a mistyped scheme sent unencrypted without a word. ``http://`` to
    this machine's loopback is a local test server's."""
    from bot.channels import platforms
    from bot.channels.base import resolve_settings

    config = project.config
    addresses = {"handoff.notify_url": config.handoff.notify_url, "actions.endpoint": config.actions.endpoint}
    for cls in platforms():
        url = resolve_settings(getattr(config.channels, cls.name).model_dump(), cls.env).get("api_url")
        addresses[f"channels.{cls.name}.api_url (or {cls.env['api_url']})"] = url
    return {setting: url for setting, url in addresses.items() if url and cleartext(url)}


@cli.command()
@click.argument("directory", type=BOT_DIR)
@click.option("--host", default=None, metavar="HOST", help="Interface to listen on (default from bot.yml: 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, metavar="PORT", help="Port (default from bot.yml: 8080).")
@device_option
def serve(directory: Path, host: str | None, port: int | None, device: str | None) -> None:
    """Serve the web chat, the HTTP API and the channels.

    The web chat at /, the agents' console at /agent (with an admin token), and Slack and WeCom where
    their secrets are set.

    Examples:

    \b
      bot serve mybot
      bot serve mybot --host 0.0.0.0 --port 8081
      export DESKBOT_ADMIN_TOKEN=$(openssl rand -base64 32); echo "$DESKBOT_ADMIN_TOKEN"
      bot serve mybot

    The last two lines serve the agents' console with a token that cannot be guessed: sign in there with what
    echo printed.
    """
    import logging

    stop_on_signals_while_starting()

    from aiohttp import web

    from bot.log_format import DESKBOT_LOGGERS, LOG_FORMAT, RedactedTracebacks, Verbatim
    from bot.server import BOT, HUNG_UP, RESPONSE_GRACE_S, create_app, stop_on_sigterm
    from dialogues.store import Unservable
    from finetune.classifier import ModelLoadError
    from finetune.registry import RegistryError

    project = load_bot(directory)
    try:
        refuse_an_unfit_store_dir(project)
    except Unservable as exc:
        raise UnmendableStart(exc) from None
    say_if_the_store_is_shared(project)
    host = host or project.config.server.host
    port = project.config.server.port if port is None else port  # 0: any free port
    level = os.environ.get("DESKBOT_LOG_LEVEL", "").strip().upper() or "INFO"  # set but empty, as compose files do
    if level not in LOG_LEVELS:
        fail(f"DESKBOT_LOG_LEVEL={os.environ['DESKBOT_LOG_LEVEL']!r}: expected one of {', '.join(LOG_LEVELS)}")
    say_risks(project, host)
    say_gaps(project)
    # The port before anything else: at start the server answers the Slack and WeCom messages a killed one
    # kept, and one that then failed on a port the running server holds had answered them a second time.
    try:
        socks = listening(host, port)
    except OSError as exc:  # the port is taken, or the host is not this machine's
        hint = ": is the bot already running? --port (PORT= with make demo) or server.port in bot.yml picks another" \
            if exc.errno == errno.EADDRINUSE else ""
        # The OS's words for a bind failure; a failed name lookup has negative codes of its own, and its own words.
        reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or exc
        fail(f"cannot serve on {host}:{port}: {reason}{hint}")
    # deskbot's own lines (a model swapped in, a request its client broke) at INFO, or DESKBOT_LOG_LEVEL, with
    # the time; every request is not one of them: the reverse proxy's access log has those, and /metrics counts them.
    # A traceback's exception text and other libraries' lines redacted (RedactedTracebacks): they may quote what a
    # customer wrote.
    said = logging.StreamHandler()
    said.setFormatter(RedactedTracebacks(LOG_FORMAT))
    logging.basicConfig(handlers=[said])
    for name in (*DESKBOT_LOGGERS, "aiohttp.server"):
        logging.getLogger(name).setLevel(level)
    log = logging.getLogger("deskbot.serve")  # its start (with the address bound) and stop are said at any level
    log.setLevel(logging.INFO)
    with contextlib.ExitStack() as bound:
        for sock in socks:
            bound.enter_context(sock)
        try:
            app = create_app(directory, device=device, host=host)
        except (ModelLoadError, RegistryError) as exc:  # nothing that has served loads: a restart loads the same
            raise UnmendableStart(exc, "Nothing to serve, which a restart does not mend") from None
        except Unservable as exc:  # a newer deskbot's store, or one this user may not write
            raise UnmendableStart(exc) from None
        served = app[BOT]
        app.on_startup.append(stop_on_sigterm)
        # SIGTERM closes the port and lets the turns in flight finish (up to shutdown_seconds, create_app's
        # shutdown hook), their responses be written, then closes the store.
        web.run_app(app, sock=socks, shutdown_timeout=RESPONSE_GRACE_S, access_log=None,
                    # each open connection holds a file: one idle, or sending its headers a byte at a time, goes then
                    keepalive_timeout=project.config.server.keepalive_seconds,
                    # said once the port listens, with the address bound (with --port 0, the port the system chose),
                    # the model version and the channels on (a platform's without its secrets is off: its events 404)
                    print=lambda said: log.info("deskbot serving %s (model %s; channels: %s) on %s", project.config.name,
                                                served.nlu.version, ", ".join(served.channels),
                                                Verbatim(BOUND_URL.search(said)[1])))
    # Stopped: the turns in flight answered, the store closed, the port let go. Python's own teardown of the
    # models' objects took 3 to 6 s more, which a process manager restarting the bot waited out.
    log.info("deskbot stopped")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(129 if app[HUNG_UP].is_set() else 0)  # 128 + SIGHUP: a service manager restarts it, as after a fault


def refuse_an_unfit_store_dir(project: Project) -> None:
    """Refuse, before the model loads, a store folder a command that writes conversations (`bot serve`, `bot chat`)
    cannot serve from: one it cannot write (:func:`refuse_unwritable_store_dir`), or one with no store yet while the
    bot folder holds the store kept so far (:func:`refuse_a_store_left_behind`). One check for both commands, so that
    what one refuses the other does too."""
    refuse_unwritable_store_dir(project)
    refuse_a_store_left_behind(project)


def refuse_unwritable_store_dir(project: Project) -> None:
    """Refuse, before the model loads, to serve a bot whose store's folder cannot be written: the store, its -wal file
    and the servers' lock files are created there. A bot folder mounted read-only (a container's configuration) said
    only that SQLite could not open the file, and a store folder named for a volume that was not mounted would have
    been created in the container's own layer, which is lost with it. A folder its permissions or its mount keep this
    user from writing is :class:`~dialogues.store.Unwritable`, which no restart mends; one not there yet may be a
    volume mounted after the start, and one that refuses a file for another reason a full or failing disk."""
    from bot.project import STORE_DIR_ENV
    from dialogues.store import Unwritable

    folder, setting = project.store_dir, project.store_dir_setting
    moved = (f"put the store on a writable volume: {STORE_DIR_ENV}=/data in the environment, or store_dir: /data in "
             "bot.yml (docs/configuration.md)")
    if setting and not folder.is_dir():
        fail(f"{setting[0]} names {folder}, which is no folder: create it, or mount the volume there")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        where = f" ({setting[0]})" if setting else ""
        said = (f"{folder}{where}: cannot write there ({exc.strerror}), where the conversation store "
                f"{project.db_path.name} is kept: make the folder writable for this user, or {moved}")
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):  # its permissions or its mount, a person's to change
            raise Unwritable(said) from None
        fail(said)  # a full disk, a failing one


def refuse_a_store_left_behind(project: Project) -> None:
    """Refuse to start a new store where ``store_dir`` (or DESKBOT_STORE_DIR) moved it while the bot folder still holds
    the store it kept so far: the server began an empty one, and the conversations, the review queue and the customers
    waiting for a person stayed behind, unserved, without a word."""
    left = project.root / project.db_path.name
    if project.db_path.exists() or not left.exists() or left.resolve() == project.db_path.resolve():
        return
    setting = project.store_dir_setting
    assert setting is not None  # the store is elsewhere than the bot folder only by a setting
    fail(f"{left} holds this bot's conversations, and {setting[0]} keeps the store in {project.store_dir}, where there "
         f"is none yet: with no server running, move it there (mv {shell(left)}* {shell(project.store_dir)}/), or "
         f"unset {setting[0]} to serve it where it is")


def say_if_the_store_is_shared(project: Project) -> None:
    """Note a store on a network file system (an NFS export, a Kubernetes volume several pods mount at once): SQLite's
    locks and the memory its log's -shm file shares hold only between processes on one machine, and servers on two
    machines writing one store damage it, which nothing said until a request met a damaged page."""
    from dialogues.disk import network_filesystem

    if kind := network_filesystem(project.store_dir):
        click.echo(f"note: {project.store_dir} is on a network file system ({kind}): SQLite keeps a store safe only "
                   f"between processes on one machine, so serve {project.db_path.name} from one machine alone (one "
                   "replica, not a volume pods on several machines mount at once), or keep it on a local disk "
                   "(docs/security.md)", err=True)


def say_risks(project: Project, host: str) -> None:
    """Before `bot serve` listens on ``host``, name what of its set-up leaves customers unanswered or their data
    open: no admin token (nobody can answer a handoff), an agent without one, a short token or identity secret, an
    open /metrics, a socket cap above the open-file limit, plain http:// to another machine, a bot.yml with secrets
    that anyone on the machine can read."""
    from bot.channels.base import shown_url
    from bot.channels.web import MIN_IDENTITY_SECRET_CHARS, identity_secret
    from bot.limits import open_file_limit
    from bot.server import MIN_TOKEN_CHARS, admin_token, agent_tokens, loopback, metrics_token

    token, agents = admin_token(project), agent_tokens(project)
    if not token and not agents:
        click.echo("note: no admin token (DESKBOT_ADMIN_TOKEN or server.admin_token): the agents' console and the "
                   "admin API are off, so nobody can answer a customer handed to a person", err=True)
    for name in project.config.server.agents.keys() - agents.keys():
        click.echo(f"note: agent {name} has no token (server.agents.{name}): they cannot sign in", err=True)
    for name, value in (("admin token", token), ("metrics token", metrics_token(project)),
                        *((f"token of agent {agent}", value) for agent, value in agents.items())):
        # every address may try server.limits.failed_auth_per_ip_per_minute guesses
        if 0 < len(value) < MIN_TOKEN_CHARS:
            click.echo(f"note: the {name} is {plural(len(value), 'character')} long: anyone who reaches the server "
                       "from many addresses can try guesses at it from each; use a random one of 32 or more "
                       "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')", err=True)
    if not metrics_token(project) and not loopback(host):
        click.echo(f"note: no metrics token (DESKBOT_METRICS_TOKEN or server.metrics_token), and {host} is no loopback "
                   "address: /metrics tells anyone who reaches it the traffic, the customers waiting and the process's "
                   "memory and open files; set one, or have the proxy in front answer /metrics to the scraper alone",
                   err=True)
    secret = identity_secret(project.config.channels.web.model_dump()) if project.config.channels.web.enabled else ""
    if secret and len(secret) < MIN_IDENTITY_SECRET_CHARS:
        click.echo(f"note: the web identity secret is {plural(len(secret), 'character')} long: a signed-in customer "
                   "sees their id and its hash, and can try guesses at it offline, without limit; use a random one "
                   "of 32 or more (python3 -c 'import secrets; print(secrets.token_urlsafe(32))')", err=True)
    sockets, files = project.config.server.limits.websockets, open_file_limit()
    if sockets and sockets >= files:
        click.echo(f"note: server.limits.websockets is {sockets:,}, and this process may open {files:,} files "
                   "(ulimit -n): sockets could take them all, and the server then accept no connection nor open its "
                   "store; raise the limit (systemd's LimitNOFILE=, docker run --ulimit nofile=) or lower the cap",
                   err=True)
    for setting, url in cleartext_addresses(project).items():
        click.echo(f"note: {setting} is {shown_url(url)}, plain http:// to another machine: what deskbot sends there "
                   "(a token, a customer's words) crosses the network unencrypted; write https://", err=True)
    if secrets := readable_secrets(project):
        click.echo(f"note: {project.root / 'bot.yml'} holds {', '.join(secrets)}, and every account on this machine "
                   f"can read it: chmod 600 {shell(project.root / 'bot.yml')} (docs/security.md)", err=True)


def listening(host: str, port: int) -> list[socket.socket]:
    """Sockets listening on every address ``host`` names (localhost: 127.0.0.1 and ::1), as aiohttp binds a
    host; with port 0, all on the port the system chose for the first."""
    socks: list[socket.socket] = []
    try:
        for family, _, _, _, address in dict.fromkeys(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                                         flags=socket.AI_PASSIVE)):
            socks.append(socket.create_server((address[0], port or (socks[0].getsockname()[1] if socks else 0)),
                                              family=family))
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


TTY_LINE_BYTES = 4096  # what a terminal's line editing holds (Linux's N_TTY), the newline included


def ask(prompt: str) -> str:
    """``input(prompt)``, where Ctrl-C ends the wait at once. The kernel may hand SIGINT to any of the
    process's threads (torch's, the tokenizer's): then the main thread's read of the terminal is not
    interrupted and waits for Enter. The signal's wakeup fd hears it whichever thread it lands on."""
    if sys.stdin is None:  # closed (`<&-`, a service without one): the end of input
        raise EOFError
    if not sys.stdin.isatty():  # piped: shown after its prompt as a terminal shows what is typed, for a transcript
        line = input(prompt)
        print(line)
        return line
    import select
    import signal

    heard, wake = os.pipe()
    os.set_blocking(wake, False)
    previous = signal.set_wakeup_fd(wake)
    try:
        sys.stdout.write(prompt)
        sys.stdout.flush()
        while True:
            ready, _, _ = select.select([sys.stdin, heard], [], [])
            if heard in ready and signal.SIGINT in os.read(heard, 64):
                raise KeyboardInterrupt
            if sys.stdin in ready:
                return input()
    finally:
        signal.set_wakeup_fd(previous)
        os.close(heard)
        os.close(wake)


@cli.command()
@click.argument("directory", type=BOT_DIR)
@device_option
def chat(directory: Path, device: str | None) -> None:
    """Talk to the bot in the terminal, as the server answers.

    Each reply is followed by how it was answered, its intent and confidence (on stderr); Ctrl-D ends.

    Examples:

    \b
      bot chat mybot
      echo 'where is my order?' | bot chat mybot
    """
    from bot.actions import ActionRunner
    from bot.channels.base import Turn, readable
    from bot.engine import Bot
    from bot.server import load_serving_model
    from dialogues.store import TRYOUT_CHANNEL, Store, refuse_migrating_under_a_server, refuse_newer, tag_logs_by

    project = load_bot(directory)
    refuse_an_unfit_store_dir(project)
    privacy = project.config.privacy
    actions = ActionRunner.for_project(project)  # an ActionError: a mistake in actions/ or its map, said at once
    refuse_newer(project.db_path, project.root)  # and a store this deskbot may not open, before the model loads
    refuse_migrating_under_a_server(project.db_path, project.root)
    nlu = load_serving_model(project, device, workers=1)  # one message at a time
    store = Store(project.db_path, redact=privacy.redact, keep_raw=privacy.keep_raw)
    tag_logs_by(project.db_path)  # its warnings name a conversation as the server's do

    async def start() -> Bot:
        return Bot(project, nlu, store, actions)

    with asyncio.Runner() as runner:
        bot = runner.run(start())
        conversation = f"cli:{uuid.uuid4().hex[:8]}"
        click.echo("Type a message (Ctrl-D to quit).", err=True)
        try:
            while True:
                try:
                    text: str | None = ask("you> ")
                except EOFError:  # Ctrl-D, or the end of what was piped in: the shell's prompt on a line of its own
                    click.echo()
                    break
                except UnicodeDecodeError:  # bytes that are not UTF-8, or a character the terminal's line cut in two
                    text = None
                if text is not None and not text.strip():
                    continue
                if text is not None and sys.stdin.isatty() and len(text.encode(sys.stdin.encoding or "utf-8", "replace")) >= TTY_LINE_BYTES - 1:
                    click.echo(f"(not sent: a terminal cuts a line at {TTY_LINE_BYTES - 1:,} bytes, and this one may "
                               "have been cut; send it in pieces, or through `bot serve`)", err=True)
                    continue
                if text is None or not readable(text):  # readable() also refuses what surrogateescape let through
                    cut = f", or over the {TTY_LINE_BYTES - 1:,} bytes a terminal's line holds" if sys.stdin.isatty() else ""
                    click.echo(f"(not sent: nothing to read, or not valid UTF-8{cut})", err=True)
                    continue
                if problem := too_long(text, project.config.server.max_message_chars, "message"):  # as the server
                    click.echo(f"(not sent: {problem})", err=True)
                    continue
                reply = runner.run(bot.handle(Turn(conversation, text, TRYOUT_CHANNEL)))
                if reply.text:  # a reply's later lines under its first, apart from the next "you> "
                    click.echo("bot> " + reply.text.replace("\n", "\n     "))
                for button in reply.buttons:  # an action's message may be buttons alone
                    click.echo(f"     [{button['title']}] {button['payload']}")
                understood = f"{reply.intent} {reply.confidence:.2f}" if reply.intent else "no intent"
                silent = (": handed off; in the terminal no agent can answer, /resume hands it back to the bot"
                          if reply.source == "silent" else "")
                click.echo(f"     ({reply.source}, {understood}{silent})", err=True)
        finally:
            runner.run(bot.close())
