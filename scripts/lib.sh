# shellcheck shell=bash
# Shared helpers for cairn's scripts: dependency installation and CMake builds.
# Source this file; it is not meant to be run on its own.

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

CAIRN_DEPS=(build-essential cmake pkg-config libcaf-dev liblmdb-dev lmdb-utils
  libcereal-dev libspdlog-dev libfmt-dev catch2 libexpected-dev libxxhash-dev
  libcli11-dev libcpp-httplib-dev)

# Install whichever of CAIRN_DEPS are missing (Debian 12). Idempotent.
cairn_install_deps() {
  local pkg missing=() sudo=()
  for pkg in "${CAIRN_DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$pkg")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    echo "deps: all ${#CAIRN_DEPS[@]} packages already installed"
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "error: missing packages (run as root to install): ${missing[*]}" >&2
      exit 1
    fi
  fi
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
  echo "deps: installed ${missing[*]}"
}

# cairn_configure_build DIR [extra cmake args...]: configure and build into $root/DIR.
# CAIRN_WERROR=1 in the environment adds -DCAIRN_WERROR=ON.
cairn_configure_build() {
  local dir="$1" werror=OFF
  shift
  [ "${CAIRN_WERROR:-0}" = 1 ] && werror=ON
  cmake -S "$root" -B "$root/$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCAIRN_WERROR="$werror" "$@"
  cmake --build "$root/$dir" -j "$(nproc)"
}
