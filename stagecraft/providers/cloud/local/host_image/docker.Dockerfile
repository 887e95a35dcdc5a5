# The local cloud's "docker" host image: the bare host image with what the bootstrap
# role installs from Debian (Docker Engine, Compose v2, timesyncd, unattended-upgrades)
# already installed, as clouds offer a Docker image beside the bare one. Bootstrap
# still runs every step; its package step then finds nothing to install.
ARG BASE_IMAGE=stagecraft/host:latest
FROM ${BASE_IMAGE}

ARG PACKAGES="docker.io docker-compose"
ARG DEBIAN_FRONTEND=noninteractive

LABEL org.stagecraft.image="host" \
      org.stagecraft.os="debian-13" \
      org.stagecraft.flavour="docker"

# Package lists stay, as on a droplet that has run apt once; the downloaded .debs go.
RUN set -eu; \
    apt-get update; \
    apt-get install -y ${PACKAGES}; \
    apt-get clean
