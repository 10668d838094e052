#!/bin/sh
# The Flink image's entrypoint, in the manner of the official image's: `jobmanager` and `taskmanager` run
# that process in the foreground; anything else (`flink run ...`, `python3 ...`) is run as given.
set -eu

# FLINK_PROPERTIES: flat `key: value` lines (compose); written over the JVM flags the image keeps.
if [ -n "${FLINK_PROPERTIES:-}" ]; then
    { cat "$FLINK_HOME/conf/config.base.yaml"; printf '%s\n' "$FLINK_PROPERTIES"; } \
        >"$FLINK_HOME/conf/config.yaml"
fi

if [ "$(id -u)" = 0 ]; then
    # Docker and podman create a missing bind-mount source (the lake) as root: hand it to flink, who
    # writes the files, then drop root for good.
    for dir in /data/lake /data/checkpoints; do
        if [ -d "$dir" ]; then chown flink:flink "$dir"; fi
    done
    exec setpriv --reuid=flink --regid=flink --init-groups -- "$0" "$@"
fi

case "${1:-}" in
jobmanager)
    shift
    exec jobmanager.sh start-foreground "$@"
    ;;
taskmanager)
    shift
    exec taskmanager.sh start-foreground "$@"
    ;;
*) exec "$@" ;;
esac
