#!/usr/bin/env bash
# Prepare a checkout to run usagewatch: the Python venv and the JVM artifacts (Kafka broker, Flink
# connectors, the project's UDF jar). Idempotent: each step records the sha256 of its inputs in a stamp
# file next to its output and is skipped while that fingerprint is unchanged, so a second run is instant.
#
# Needs only python3.11, java (17+) and mvn on PATH; everything else comes from PyPI / Maven Central.
# USAGEWATCH_DEPS_DIR relocates .deps (same variable pipelines/infra/paths.py reads).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

VENV_DIR="$REPO_ROOT/.venv"
DEPS_DIR="${USAGEWATCH_DEPS_DIR:-$REPO_ROOT/.deps}"
UDF_PROJECT_DIR="$REPO_ROOT/pipelines/stream/jvm"
STAMP_NAME=".bootstrap-stamp"

say() { printf 'bootstrap: %s\n' "$*"; }
die() {
    printf 'bootstrap: error: %s\n' "$*" >&2
    exit 1
}

require_tools() {
    command -v python3.11 >/dev/null 2>&1 || die "python3.11 not found on PATH (install Python 3.11)"
    command -v java >/dev/null 2>&1 || die "java not found on PATH (install a JDK 17, e.g. openjdk-17-jdk-headless)"
    command -v mvn >/dev/null 2>&1 || die "mvn not found on PATH (install Apache Maven 3.8+)"
    local java_version java_major
    java_version="$(java -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
    java_major="${java_version%%.*}"
    [[ "$java_major" =~ ^[0-9]+$ && "$java_major" -ge 17 ]] ||
        die "java 17 or newer required (Kafka 4 and Flink 2), found '${java_version:-unknown}'"
}

# One sha256 over the named files' paths and contents, read from stdin when no file is named.
fingerprint() {
    sha256sum "$@" | sha256sum | cut -d' ' -f1
}

# Quiet batch-mode Maven; Maven 3.8 still prints colour resets, stripped so CI logs stay readable.
maven() {
    mvn -B -q --no-transfer-progress "$@" 2>&1 | sed -e 's/\x1b\[[0-9;]*m//g'
}

is_current() { [[ -f "$1/$STAMP_NAME" && "$(<"$1/$STAMP_NAME")" == "$2" ]]; }
mark_current() { printf '%s\n' "$2" >"$1/$STAMP_NAME"; }

setup_venv() {
    local fingerprint_now
    # The interpreter counts too: a new python3.11 patch release triggers a fresh pip install.
    fingerprint_now="$({ sha256sum constraints.txt pyproject.toml; python3.11 -VV; } | fingerprint)"
    if [[ -x "$VENV_DIR/bin/python" ]] && is_current "$VENV_DIR" "$fingerprint_now"; then
        say "venv ok"
        return
    fi
    if [[ ! -x "$VENV_DIR/bin/python" ]]; then
        say "creating venv in ${VENV_DIR#"$REPO_ROOT"/}"
        python3.11 -m venv "$VENV_DIR"
    fi
    "$VENV_DIR/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
        die "$VENV_DIR is not a Python 3.11 venv; remove it and re-run"
    say "installing Python packages (constraints.txt)"
    # Root in CI: pip's root warning is noise there.
    PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$VENV_DIR/bin/python" -m pip install -q -c constraints.txt -e '.[dev]'
    mark_current "$VENV_DIR" "$fingerprint_now"
    say "venv ok"
}

# Copies one pom's runtime classpath (options live in the pom) into $DEPS_DIR/<name>.
fetch_jars() {
    local name="$1"
    local pom="docker/deps/$name/pom.xml"
    local out_dir="$DEPS_DIR/$name"
    local fingerprint_now
    fingerprint_now="$(fingerprint "$pom")"
    if compgen -G "$out_dir/*.jar" >/dev/null && is_current "$out_dir" "$fingerprint_now"; then
        say "$name jars ok"
        return
    fi
    say "fetching $name jars (Maven)"
    # Start empty so jars dropped from the pom never linger on a classpath.
    rm -rf "$out_dir"
    maven -f "$pom" dependency:copy-dependencies -Dusagewatch.deps.dir="$DEPS_DIR"
    compgen -G "$out_dir/*.jar" >/dev/null || die "Maven copied no jars into $out_dir"
    mark_current "$out_dir" "$fingerprint_now"
    say "$name jars ok ($(find "$out_dir" -name '*.jar' | wc -l) jars)"
}

build_udf_jar() {
    if [[ ! -d "$UDF_PROJECT_DIR" ]]; then
        say "udf jar skipped (pipelines/stream/jvm not present)"
        return
    fi
    [[ -f "$UDF_PROJECT_DIR/pom.xml" ]] || die "pipelines/stream/jvm/pom.xml missing: cannot build the udf jar"
    local out_dir="$DEPS_DIR/udf"
    local fingerprint_now
    local -a sources
    mapfile -t sources < <(find pipelines/stream/jvm -path pipelines/stream/jvm/target -prune -o -type f -print | sort)
    fingerprint_now="$(fingerprint "${sources[@]}")"
    if [[ -f "$out_dir/usagewatch-udf.jar" ]] && is_current "$out_dir" "$fingerprint_now"; then
        say "udf jar ok"
        return
    fi
    say "building udf jar (Maven)"
    # clean: an older usagewatch-udf-<version>.jar left in target/ would make the copy ambiguous.
    maven -f "$UDF_PROJECT_DIR/pom.xml" clean package
    local -a built
    mapfile -t built < <(find "$UDF_PROJECT_DIR/target" -maxdepth 1 -name 'usagewatch-udf-*.jar' \
        ! -name '*-sources.jar' ! -name '*-javadoc.jar' ! -name '*-tests.jar')
    ((${#built[@]} == 1)) || die "expected one pipelines/stream/jvm/target/usagewatch-udf-*.jar, found ${#built[@]}"
    rm -rf "$out_dir"
    mkdir -p "$out_dir"
    cp "${built[0]}" "$out_dir/usagewatch-udf.jar"
    mark_current "$out_dir" "$fingerprint_now"
    say "udf jar ok"
}

# True when every command named is on PATH.
have() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || return 1
    done
}

# Debian's packages (the arguments after the first), installed only where we may (root, apt-get present);
# elsewhere the step says what is missing ($1) and the bootstrap goes on without them.
apt_install() {
    local missing_message=$1
    shift
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        say "$missing_message"
        return
    fi
    say "installing $* (apt-get)"
    # dpkg is machine-wide: wait (up to 10 minutes) for another install to finish instead of failing.
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >/dev/null
}

# Headless Chromium renders the compliance report to PDF and checks it in the tests.
ensure_chromium() {
    have chromium ||
        apt_install "chromium missing: install Debian's 'chromium' package for PDF reports and the report rendering test" chromium
    if have chromium; then say "chromium ok"; fi
}

# podman runs the images in docker/ (tests/test_container_stack.py). runc because crun cannot run
# containers here (docker/podman/containers.conf says why).
CONTAINER_PACKAGES=(podman runc debootstrap podman-compose)
CONTAINER_BASE_IMAGE="${USAGEWATCH_CONTAINER_BASE_IMAGE:-localhost/debian-base:bookworm}"

ensure_container_tools() {
    have "${CONTAINER_PACKAGES[@]}" ||
        apt_install "container tools missing: install Debian's ${CONTAINER_PACKAGES[*]} for the container images" \
            "${CONTAINER_PACKAGES[@]}"
    if have "${CONTAINER_PACKAGES[@]}"; then say "podman ok"; fi
}

# The Debian bookworm mirror apt is configured with (empty before the first `apt-get update`).
bookworm_mirror() {
    apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Identifier: Packages' |
        awk '$2 == "bookworm" { print $1; exit }'
}

# No image registry is reachable from these machines, so the images in docker/ start from a Debian
# bookworm root filesystem made here with debootstrap, from the Debian mirror apt already uses.
# Built once: instant while the image exists.
ensure_container_base_image() {
    command -v podman >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 || return 0
    export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO_ROOT/docker/podman/containers.conf}"
    if podman image exists "$CONTAINER_BASE_IMAGE"; then
        say "container base image ok ($CONTAINER_BASE_IMAGE)"
        return
    fi
    if [[ $(id -u) -ne 0 ]]; then
        say "container base image missing: run scripts/bootstrap.sh as root to build $CONTAINER_BASE_IMAGE"
        return
    fi
    local mirror rootfs
    mirror="$(bookworm_mirror)"
    if [[ -z "$mirror" ]]; then # no package lists yet on a fresh machine
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
        mirror="$(bookworm_mirror)"
    fi
    [[ -n "$mirror" ]] || die "no Debian bookworm mirror in apt's sources: cannot debootstrap $CONTAINER_BASE_IMAGE"
    say "building container base image $CONTAINER_BASE_IMAGE (debootstrap)"
    rootfs="$(mktemp -d)"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null ||
        die "debootstrap failed (its log: $rootfs/debootstrap/debootstrap.log)"
    tar -C "$rootfs" -c . | podman import --quiet - "$CONTAINER_BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    say "container base image ok ($CONTAINER_BASE_IMAGE)"
}

require_tools
ensure_chromium
ensure_container_tools
ensure_container_base_image
setup_venv
fetch_jars kafka
fetch_jars flink
build_udf_jar
say "done"
