#!/usr/bin/env bash
# The container image end to end, with a real Docker daemon: build docker/Dockerfile (the
# one operators use; only the base images are build arguments), run it with a volume,
# wait for readiness (and for Docker's HEALTHCHECK to call it healthy), add an account with
# `docker exec`, deposit a message with an inline payload part and one with a blob part and
# read both back, restart the container and read them again from the volume, stop it with
# SIGTERM and check it exited 0. Exit 0 only if all of that worked.
#
#   docker/smoke.sh
#
# Needs a running Docker daemon (.ci/dockerd starts one). Base images: BUILDER_IMAGE and
# RUNTIME_IMAGE when set, else the ones docker/bases.sh makes from Debian's packages (kept
# between runs). The server is reached on a loopback port only.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "smoke: $*" >&2; }
fail() {
  log "FAILED: $*"
  if [ -n "${CONTAINER:-}" ]; then docker logs --tail 40 "$CONTAINER" >&2 || true; fi
  exit 1
}

if [ -z "${BUILDER_IMAGE:-}" ] || [ -z "${RUNTIME_IMAGE:-}" ]; then
  eval "$(docker/bases.sh)"
fi
TAG="cpm-nms:smoke"
RUN_ID="cpm-nms-smoke-$$"
CONTAINER="$RUN_ID"
VOLUME="$RUN_ID"
WORK="$(mktemp -d)"
cleanup() {
  docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
  docker volume rm "$VOLUME" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log "building $TAG (builder $BUILDER_IMAGE, runtime $RUNTIME_IMAGE)"
docker build -f docker/Dockerfile \
  --build-arg "BUILDER_IMAGE=$BUILDER_IMAGE" --build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE" \
  --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  -t "$TAG" . >&2

docker volume create "$VOLUME" >/dev/null
docker run -d --name "$CONTAINER" -p 127.0.0.1::8080 -v "$VOLUME:/data" "$TAG" >/dev/null

PORT=
BASE=
wait_ready() {
  PORT="$(docker port "$CONTAINER" 8080/tcp | grep -m1 -o '127.0.0.1:[0-9]*' | cut -d: -f2)"
  [ -n "$PORT" ] || fail "no published port"
  BASE="http://127.0.0.1:$PORT"
  for _ in $(seq 120); do
    if curl -sf "$BASE/readyz" >/dev/null 2>&1; then
      log "ready on $BASE"
      return
    fi
    sleep 0.5
  done
  fail "not ready within a minute"
}

wait_healthy() {
  for _ in $(seq 60); do
    case "$(docker inspect --format '{{.State.Health.Status}}' "$CONTAINER")" in
      healthy) log "docker reports it healthy"; return ;;
      unhealthy) fail "docker reports it unhealthy" ;;
    esac
    sleep 1
  done
  fail "no healthy report within a minute"
}

wait_ready
wait_healthy
[ "$(docker inspect --format '{{.Config.User}}' "$CONTAINER")" = "nms:nms" ] || fail "not running as nms"

docker exec "$CONTAINER" cpm-nms account add --name alice --box tel:+12125551212 --password smoke-pw >&2 \
  || fail "account add"
AUTH=alice:smoke-pw
NMS="$BASE/nms/v1/base/tel%3A%2B12125551212"

curl -sf -u "$AUTH" -H 'Content-Type: application/json' \
  -d '{"folder":{"parentFolderPath":"/","name":"RCSMessageStore"}}' "$NMS/folders" >/dev/null || fail "folder"

# An SMS (a small part, kept inline in the database) and a file (a blob on the volume).
printf 'Smoke test message through the container\n' >"$WORK/sms.txt"
head -c 20000 /dev/urandom >"$WORK/image.png"
printf '{"object":{"parentFolderPath":"/RCSMessageStore"}}' >"$WORK/file-root-fields.json"
deposit() { # ROOT-FIELDS FILE TYPE -> the object's path
  curl -sf -u "$AUTH" \
    -F "root-fields=@$1;type=application/json" \
    -F "attachments=@$2;type=$3" \
    "$NMS/objects" | grep -o '"resourceURL":"[^"]*"' | cut -d'"' -f4 | sed 's#^https\?://[^/]*##'
}
SMS="$(deposit fixtures/walkthrough/sms-root-fields.json "$WORK/sms.txt" text/plain)" || fail "deposit of the SMS"
IMAGE="$(deposit "$WORK/file-root-fields.json" "$WORK/image.png" image/png)" || fail "deposit of the image"
[ -n "$SMS" ] && [ -n "$IMAGE" ] || fail "no resourceURL"
log "deposited $SMS and $IMAGE"

read_back() { # label
  curl -sf -u "$AUTH" "$BASE$SMS/payloadParts/1" -o "$WORK/sms.out" || fail "$1: reading the SMS"
  curl -sf -u "$AUTH" "$BASE$IMAGE/payloadParts/1" -o "$WORK/image.out" || fail "$1: reading the image"
  cmp -s "$WORK/sms.txt" "$WORK/sms.out" || fail "$1: the SMS came back different"
  cmp -s "$WORK/image.png" "$WORK/image.out" || fail "$1: the image came back different"
  log "$1: both payloads read back intact"
}
read_back "after deposit"

docker restart "$CONTAINER" >/dev/null
wait_ready
read_back "after restart"

docker stop -t 30 "$CONTAINER" >/dev/null
code="$(docker inspect --format '{{.State.ExitCode}}' "$CONTAINER")"
[ "$code" = 0 ] || fail "exit code $code after SIGTERM"
log "stopped with SIGTERM, exit 0"
echo "docker smoke OK"
