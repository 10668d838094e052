#!/bin/sh
# Starts one KRaft node from the environment, as the official apache/kafka image does: every KAFKA_X_Y
# variable becomes the server property x.y; CLUSTER_ID formats the data directory on first start.
set -eu

CONFIG=/opt/kafka/config/server.properties
CLASSPATH='/opt/kafka/libs/*'
LOG4J="-Dlog4j2.configurationFile=/opt/kafka/log4j2.properties"
: "${CLUSTER_ID:?CLUSTER_ID must be set (22 characters of base64url, the same on every start)}"

env | sort | while IFS= read -r line; do
    case "$line" in
    KAFKA_HEAP_OPTS=* | KAFKA_OPTS=*) ;;
    KAFKA_*=*)
        name="${line%%=*}"
        printf '%s=%s\n' "$(printf '%s' "${name#KAFKA_}" | tr 'A-Z_' 'a-z.')" "${line#*=}"
        ;;
    esac
done >"$CONFIG"

log_dirs="$(sed -n 's/^log\.dirs=//p' "$CONFIG")"
: "${log_dirs:?KAFKA_LOG_DIRS must be set}"
if [ ! -f "$log_dirs/meta.properties" ]; then
    # One argument: an id may start with "-", which the tool would take for an option.
    java "$LOG4J" -cp "$CLASSPATH" kafka.tools.StorageTool format --cluster-id="$CLUSTER_ID" -c "$CONFIG"
fi
# shellcheck disable=SC2086  # KAFKA_HEAP_OPTS / KAFKA_OPTS are lists of JVM flags
exec java ${KAFKA_HEAP_OPTS:--Xmx512m} ${KAFKA_OPTS:-} -Djava.awt.headless=true "$LOG4J" \
    -cp "$CLASSPATH" kafka.Kafka "$CONFIG"
