#!/usr/bin/env bash
# Installs the Debian packages csst-flatcube needs, only those missing, non-interactively.
# Safe to run any number of times. Usage: scripts/install-deps.sh [--bench]
#   --bench  also installs the Python comparison packages used by `make bench`.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libtorch-dev libceres-dev libeigen3-dev libcfitsio-dev libgdal-dev libtbb-dev
  libyaml-cpp-dev catch2 libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  fitsverify gnuplot-nox openmpi-bin libopenmpi-dev clang-format python3
)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(python3-numpy python3-torch)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: done"
