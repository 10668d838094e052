#!/usr/bin/env bash
# Builds the two images of docker/docker-compose.yml with podman where no image registry is reachable:
# from the Debian base image scripts/bootstrap.sh makes with debootstrap. Layers are cached, so a rebuild
# after a change to pipelines/ only redoes the last copies. Run from anywhere; needs scripts/bootstrap.sh
# first (the base image and the jars in .deps/).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO_ROOT"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO_ROOT/docker/podman/containers.conf}"
BASE_IMAGE="${USAGEWATCH_CONTAINER_BASE_IMAGE:-localhost/debian-base:bookworm}"
# Debian's bundle of the roots this machine trusts: where outbound TLS is re-signed by a local CA, pip
# inside the build trusts what the host trusts. Mounted for the build only, never part of an image.
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

die() {
    printf 'build: error: %s\n' "$*" >&2
    exit 1
}

podman image exists "$BASE_IMAGE" || die "no image $BASE_IMAGE: run scripts/bootstrap.sh (as root) first"
# The build copies the jars from the context, which a link to another checkout would leave.
[[ ! -L .deps ]] || die ".deps is a link: replace it with a copy (cp -a) so the build context holds the jars"
for jars in .deps/kafka .deps/flink .deps/udf; do
    [[ -d "$jars" ]] || die "$jars missing: run scripts/bootstrap.sh"
done

# The tags the compose file runs.
image_of() { sed -n "s/^ *image: \\(usagewatch-$1:[^ ]*\\)\$/\\1/p" docker/docker-compose.yml | head -1; }

build_args=(--file docker/Dockerfile --build-arg "BASE_IMAGE=$BASE_IMAGE")
if [[ -f "$HOST_CA_BUNDLE" ]]; then
    build_args+=(--volume "$HOST_CA_BUNDLE:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
fi
for target in kafka flink; do
    image="$(image_of "$target")"
    [[ -n "$image" ]] || die "docker/docker-compose.yml names no usagewatch-$target image"
    podman build "${build_args[@]}" --target "$target" --tag "$image" .
done
