"""Adversarial tests: schemathesis against the live app's ``/openapi.json``, atheris on the channels.

* schemathesis generates valid and invalid requests for every documented operation (admin ones
  with the token) and runs all its checks: no 5xx, and every answer's status, headers and body
  match the document.
* atheris (coverage-guided, libFuzzer) feeds the Slack and WeCom handlers bodies that carry valid
  signatures, so the fuzzed bytes reach the JSON, form and XML parsing behind them, and feeds the
  WeCom decrypt path arbitrary ciphertext. A handler may answer 200 or a 4xx; anything else (an
  uncaught exception, a 5xx, a Turn the engine should never see) is a crash.

The suite runs both briefly. Longer runs print their figures (bench/ROBUSTNESS.md):
``python tests/test_fuzz.py {slack,wecom,decrypt} -runs=N`` and, from the repository root,
``python -m tests.test_fuzz schemathesis BOT_DIR EXAMPLES`` (against ``bot serve`` in its own process).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlencode

import pytest

TOKEN = "fuzz-admin-token"
SLACK = {"signing_secret": "8f742231b10e8888abcd99yyyzzz85a5", "bot_token": "xoxb-fuzz", "api_url": "http://127.0.0.1:9/api/"}
WECOM = {"token": "QDG6eK", "aes_key": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "corp_id": "wx5823bf96d3bd56c7",
         "secret": "fuzz", "agent_id": "1000002", "api_url": "http://127.0.0.1:9/cgi-bin/"}
FUZZ_CONFIG: dict[str, dict[str, Any]] = {
    "server": {"admin_token": TOKEN, "limits": {"per_ip_per_minute": 0, "per_conversation_per_minute": 0,
                                                   "conversations_per_ip": 0, "messages_per_ip_per_minute": 0,
                                                   "failed_auth_per_ip_per_minute": 0}},
    "channels": {"slack": SLACK, "wecom": WECOM},
    "learning": {"watch_seconds": 0},
}
ATHERIS_RUNS = {"slack": 1000, "wecom": 1000, "decrypt": 20000}  # a few seconds each on one core
SCHEMATHESIS_EXAMPLES = 8
# The refusals of schema-valid data that the schema does not state, each a rule between two fields: a period whose
# `until` comes before its `since`, or compared with the one before it (`compare`) without a `since`, a forced
# takeover, reply, release, transfer or handback (`force`) that names no `agent`, an inbox of one agent's customers and
# of nobody's at once (`holder`, `unheld`), and a release of all of one agent's customers with the admin token that
# names no `agent`, and an admin path whose `~` says X-Deskbot-Conversation names the conversation, without that
# header: in the stateful phase too, which reads no operation's settings.
EXPECTED = '["2xx", "400", "401", "403", "404", "409"]'
SCHEMATHESIS_CONFIG = "".join(f"""
[[operations]]
include-path = "{path}"
checks.positive_data_acceptance.expected-statuses = {EXPECTED}
""" for path in ("/admin/stats", "/admin/conversations", "/admin/conversations/{conversation_id}",
                 "/admin/conversations/{conversation_id}/seen", "/admin/conversations/{conversation_id}/notes",
                 "/admin/conversations/{conversation_id}/notes/{note_id}", "/admin/conversations/{conversation_id}/handoff",
                 "/admin/conversations/{conversation_id}/messages", "/admin/conversations/{conversation_id}/release",
                 "/admin/conversations/{conversation_id}/transfer", "/admin/conversations/{conversation_id}/handback",
                 "/admin/release")) + f"""
[phases.stateful.checks]
positive_data_acceptance.expected-statuses = {EXPECTED}
"""


def schemathesis_command(url: str, examples: int, report_dir: Path) -> list[str]:
    """The run, with a JSON summary and a HAR log of every request made (to count them and their 5xx). Hypothesis's
    too_slow health check is off: it times the generation of data, which a loaded machine slows (the notes' and
    messages' bodies failed it), and says nothing of the server; every check of the answers stays on."""
    return [sys.executable, "-m", "schemathesis.cli", "run", url, "--checks", "all", "-n", str(examples),
            "--suppress-health-check", "too_slow",
            "-H", f"Authorization: Bearer {TOKEN}", "--seed", "1", "--workers", "1", "--report", "json,har",
            "--report-json-path", str(report_dir / "run.json"), "--report-har-path", str(report_dir / "run.har")]


def har_statuses(path: Path) -> list[int]:
    return [entry["response"]["status"] for entry in json.loads(path.read_text())["log"]["entries"]]


async def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(
        aiohttp_server: Any, tiny_demo_bot: Path, tmp_path: Path) -> None:
    from bot.openapi import OPENAPI
    from bot.server import create_app
    from tests.conftest import configured_copy

    root = configured_copy(tiny_demo_bot, tmp_path / "fuzz-bot", **FUZZ_CONFIG)
    server = await aiohttp_server(create_app(root, device="cpu"))
    command = schemathesis_command(str(server.make_url("/openapi.json")), SCHEMATHESIS_EXAMPLES, tmp_path)
    (tmp_path / "schemathesis.toml").write_text(SCHEMATHESIS_CONFIG)
    process = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                   cwd=tmp_path)  # its cache folder goes there
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()[-4000:]
    run = json.loads((tmp_path / "run.json").read_text())
    documented = [(path, method) for path, item in server.app[OPENAPI]["paths"].items() for method in item]
    assert ("/wecom/callback", "post") in documented and ("/slack/events", "post") in documented
    assert run["operations"]["tested"] == run["operations"]["total"] == len(documented) - 1  # all but /openapi.json
    assert run["failures"] == [] and run["errors"] == []
    statuses = har_statuses(tmp_path / "run.har")
    assert len(statuses) >= 300 and [s for s in statuses if s >= 500] == []
    assert {400, 401, 404} <= set(statuses) and 200 in statuses  # it reached past validation and auth


@pytest.mark.parametrize("target", ["slack", "wecom", "decrypt"])
def test_atheris_on_the_channel_parsers(target: str, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, __file__, target, f"-runs={ATHERIS_RUNS[target]}", "-seed=1"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)  # the corpus and any crash file land there
    assert result.returncode == 0, result.stderr[-4000:]
    done = re.search(r"Done (\d+) runs", result.stderr)
    assert done and int(done.group(1)) == ATHERIS_RUNS[target], result.stderr[-2000:]


def test_the_fuzz_seeds_reach_the_engine() -> None:
    """The harness is not vacuous: its seeds, signed and encrypted, become turns and answers."""
    harness = Harness()
    for target in ("slack", "wecom"):
        for seed in seeds(target, harness):
            getattr(harness, f"{target}_input")(seed)
    assert [turn.text for turn in harness.slack.bot.turns] == ["where is my order?", "/track_order"]
    assert [turn.text for turn in harness.wecom.bot.turns] == ["where is my order?", "/deny"]  # "2" picks button 2
    assert harness.statuses == [200] * 5 and harness.sent[0][0] == "slack:T1:C1:1.2"
    for seed in seeds("decrypt", harness):
        harness.decrypt_input(seed)


# --- the atheris harness (run as a script) -------------------------------------------------------


class StubBot:
    """What the channels need of the engine. It holds each Turn to the channels' promises, and
    answers with the text back and two buttons, so replies take the numbered-choice path too."""

    store = None  # the channels keep nothing between acknowledgement and answer without a store

    def __init__(self, prefix: str, max_chars: int) -> None:
        self.prefix, self.max_chars = prefix, max_chars
        self.turns: list[Any] = []

    async def handle(self, turn: Any) -> Any:
        from bot.channels.base import Reply

        assert turn.conversation_id.startswith(self.prefix), turn
        assert isinstance(turn.text, str) and 0 < len(turn.text) <= self.max_chars, turn
        self.turns.append(turn)
        return Reply(turn.text, "i", 0.9, "template", [{"title": "Yes", "payload": "/affirm"},
                                                         {"title": "No", "payload": "/deny"}])


class Harness:
    """The real channel handlers on mocked requests, one event loop for all inputs."""

    def __init__(self) -> None:
        from aiohttp import web

        from bot.channels.slack import SlackChannel
        from bot.channels.wecom import WeComChannel

        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.slack = SlackChannel(StubBot("slack:", 4000), dict(SLACK))
        self.wecom = WeComChannel(StubBot("wecom:", 4000), dict(WECOM))
        self.sent: list[tuple[str, str]] = []
        self.statuses: list[int] = []
        self.app = web.Application()  # a real one (no limits set), not aiohttp's mock that answers anything
        for channel in (self.slack, self.wecom):
            channel.send = self._send  # type: ignore[method-assign]  # the platform APIs are not called

    async def _send(self, conversation_id: str, text: str, **kwargs: Any) -> None:
        self.sent.append((conversation_id, text))

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Any:
        from aiohttp import streams
        from aiohttp.test_utils import make_mocked_request

        payload = streams.StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=self.loop)
        payload.feed_data(body)
        payload.feed_eof()
        return make_mocked_request(method, path, headers={**headers, "Content-Length": str(len(body))},
                                   payload=payload, loop=self.loop, app=self.app)

    def answer(self, channel: Any, handler: Any, request: Any, allowed: tuple[int, ...]) -> int:
        """Run ``handler`` and its background turns; its status, which must be 200 or in ``allowed``."""
        from aiohttp import web

        async def run() -> int:
            try:
                status = (await handler(request)).status
            except web.HTTPException as exc:
                status = exc.status
            await channel._tasks.close()  # the turns it started, finished
            return status

        status = self.loop.run_until_complete(run())
        assert status == 200 or status in allowed, status
        self.statuses.append(status)
        return status

    def slack_input(self, data: bytes) -> None:
        """Byte 0 picks events (JSON) or interactions (a form); the rest is the body, signed."""
        from bot.channels.slack import slack_signature

        if not data:
            return
        path, body = ("/slack/events", data[1:]) if data[0] % 2 == 0 else ("/slack/interactions", data[1:])
        timestamp = str(int(time.time()))
        headers = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": slack_signature(SLACK["signing_secret"], timestamp, body)}
        handler = self.slack.handle_events if path == "/slack/events" else self.slack.handle_interactions
        self.answer(self.slack, handler, self.request("POST", path, body, headers), (400,))

    def wecom_input(self, data: bytes) -> None:
        """The bytes are the decrypted inner XML of a correctly encrypted and signed callback."""
        inner = data.decode("utf-8", "replace")
        encrypted = self.wecom.crypto.encrypt(inner)
        timestamp, nonce = str(int(time.time())), "fuzznonce"
        signature = self.wecom.crypto.signature(timestamp, nonce, encrypted)
        body = f"<xml><ToUserName><![CDATA[{WECOM['corp_id']}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
        query = urlencode({"msg_signature": signature, "timestamp": timestamp, "nonce": nonce})
        request = self.request("POST", f"/wecom/callback?{query}", body.encode(), {"Content-Type": "text/xml"})
        self.answer(self.wecom, self.wecom.handle_callback, request, (400,))

    def decrypt_input(self, data: bytes) -> None:
        """Byte 0 picks: arbitrary ciphertext (base64 of the rest), arbitrary text, or an outer body."""
        from bot.channels.wecom_crypto import WeComError

        if not data:
            return
        crypto, mode, rest = self.wecom.crypto, data[0] % 3, data[1:]
        try:
            if mode == 0:
                crypto.decrypt(base64.b64encode(rest).decode())
            elif mode == 1:
                crypto.decrypt(rest.decode("latin-1"))
            else:
                crypto.decrypt_message(rest, "0" * 40, "1700000000", "nonce")
        except WeComError:  # the one refusal these may raise; the handlers answer it with 400 or 401
            pass


def seeds(target: str, harness: Harness) -> list[bytes]:
    """Well-formed inputs to start from, so the mutations explore near real traffic."""
    from bot.channels.slack import BUTTON_ACTION

    event = {"type": "event_callback", "team_id": "T1", "event_id": "Ev1",
             "authorizations": [{"user_id": "UBOT", "is_bot": True}],
             "event": {"type": "app_mention", "user": "U1", "channel": "C1", "ts": "1.2", "text": "<@UBOT> where is my order?"}}
    click = {"type": "block_actions", "trigger_id": "tr1", "user": {"id": "U1"}, "team": {"id": "T1"},
             "container": {"channel_id": "C1", "thread_ts": "1.2"},
             "actions": [{"action_id": f"{BUTTON_ACTION}:0", "value": "/track_order"}]}
    message = ("<xml><ToUserName><![CDATA[corp]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName>"
               "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{}]]></Content>"
               "<MsgId>{}</MsgId><AgentID>1000002</AgentID></xml>")
    ciphertext = base64.b64decode(harness.wecom.crypto.encrypt(message.format("你好", 1)))
    return {
        "slack": [b"\x00" + json.dumps(event).encode(), b"\x00" + b'{"type": "url_verification", "challenge": "c"}',
                  b"\x01" + urlencode({"payload": json.dumps(click)}).encode()],
        "wecom": [message.format("where is my order?", 1).encode(), message.format("2", 2).encode()],
        "decrypt": [b"\x00" + ciphertext, b"\x01" + base64.b64encode(ciphertext),
                    b"\x02" + f"<xml><Encrypt>{base64.b64encode(ciphertext).decode()}</Encrypt></xml>".encode()],
    }[target]


def fuzz(target: str, libfuzzer_args: list[str]) -> None:
    """Run atheris on ``target`` with libFuzzer's arguments (``-runs=N``, ``-seed=S``...)."""
    import atheris

    for module in ("aiohttp", "aiohttp.test_utils", "pydantic", "yaml", "limits", "cryptography", "rasa_sdk"):
        __import__(module)  # imported before the hook, so only deskbot's own code is instrumented
    with atheris.instrument_imports(include=["bot"]):
        import bot.channels.slack  # noqa: F401
        import bot.channels.wecom  # noqa: F401

    harness = Harness()
    corpus = Path(f"fuzz-corpus-{target}")  # in the working folder, with any crash file, as libFuzzer keeps them
    corpus.mkdir(exist_ok=True)
    for n, seed in enumerate(seeds(target, harness)):
        (corpus / f"seed-{n}").write_bytes(seed)
    one_input = {"slack": harness.slack_input, "wecom": harness.wecom_input, "decrypt": harness.decrypt_input}[target]
    # libFuzzer's RSS limit is on the process's peak RSS, which Linux carries over fork and exec: run from
    # the test suite, this process starts at the peak of the pytest that trained models before it. So the
    # limit is 2 GB (libFuzzer's default) above the peak it starts fuzzing from, torch's import included.
    start_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    atheris.Setup([sys.argv[0], f"-rss_limit_mb={start_mb + 2048}", *libfuzzer_args, str(corpus)], one_input)
    atheris.Fuzz()


def schemathesis_against_bot_serve(bot_dir: Path, examples: int) -> dict[str, Any]:
    """``bot serve`` (its own process) on a copy of ``bot_dir`` set up as in the test; the run's figures."""
    from collections import Counter

    from bot.bench import running_server
    from tests.conftest import configured_copy

    with tempfile.TemporaryDirectory(prefix="deskbot-schemathesis-") as tmp:
        root = configured_copy(bot_dir, Path(tmp) / "bot", **FUZZ_CONFIG)
        with running_server(root, "cpu") as (url, _):
            command = schemathesis_command(f"{url}/openapi.json", examples, Path(tmp))
            finished = subprocess.run(command, capture_output=True, text=True, cwd=tmp)
        run = json.loads((Path(tmp) / "run.json").read_text())
        statuses = har_statuses(Path(tmp) / "run.har")
    return {"command": "schemathesis", "examples_per_operation": examples, "exit_code": finished.returncode,
            "operations": run["operations"]["tested"], "test_cases": run["test_cases"]["generated"],
            "requests": len(statuses), "server_errors": sum(s >= 500 for s in statuses),
            "by_status": dict(sorted(Counter(statuses).items())), "failures": run["failures"], "errors": run["errors"]}


if __name__ == "__main__":
    if sys.argv[1] == "schemathesis":  # python -m tests.test_fuzz schemathesis BOT_DIR EXAMPLES
        print(json.dumps(schemathesis_against_bot_serve(Path(sys.argv[2]), int(sys.argv[3]))))
    else:  # python tests/test_fuzz.py {slack,wecom,decrypt} -runs=N ...
        fuzz(sys.argv[1], sys.argv[2:])
