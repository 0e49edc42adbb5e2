# shellcheck shell=bash
# Shared helpers for cairn's scripts: dependency installation and CMake builds.
# Source this file; it is not meant to be run on its own.

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

CAIRN_DEPS=(build-essential cmake pkg-config libcaf-dev liblmdb-dev lmdb-utils
  libcereal-dev libspdlog-dev libfmt-dev catch2 libexpected-dev libxxhash-dev
  libcli11-dev libcpp-httplib-dev rapidjson-dev libjemalloc-dev libsodium-dev)

# What the fuzz targets need on top (scripts/test --fuzz): clang and libFuzzer.
# The sanitizer and libFuzzer runtimes clang links are in libclang-rt-14-dev,
# only a recommendation of clang's, which cairn_install_deps does not install.
# shellcheck disable=SC2034 # used by scripts/test
CAIRN_FUZZ_DEPS=(clang libclang-rt-14-dev libfuzzer-14-dev)

# cairn_install_deps [extra packages...]: install whichever of CAIRN_DEPS and
# the extra packages are missing (Debian 12). Idempotent.
cairn_install_deps() {
  local pkg missing=() sudo=()
  for pkg in "${CAIRN_DEPS[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$pkg")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    echo "deps: all $((${#CAIRN_DEPS[@]} + $#)) packages already installed"
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
# CAIRN_WERROR=1 in the environment adds -DCAIRN_WERROR=ON; CAIRN_TARGETS
# (space-separated) builds only those targets.
cairn_configure_build() {
  local dir="$1" werror=OFF
  shift
  [ "${CAIRN_WERROR:-0}" = 1 ] && werror=ON
  cmake -S "$root" -B "$root/$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCAIRN_WERROR="$werror" "$@"
  local targets=()
  for t in ${CAIRN_TARGETS:-}; do targets+=(--target "$t"); done
  cmake --build "$root/$dir" -j "$(nproc)" "${targets[@]}"
}

# ThreadSanitizer sees a data race in every message handoff of a CAF it did
# not instrument, so the TSan build links a libcaf_core built with TSan from
# Debian's own source package of the installed version. Prints its path.
cairn_caf_tsan() {
  local out="$root/build-tsan/caf-tsan"
  local lib="$out/lib/libcaf_core.so"
  if [ -f "$lib" ]; then
    echo "$lib"
    return 0
  fi
  local work="$root/build-tsan/caf-src"
  rm -rf "$work" && mkdir -p "$work/lists/partial"
  # A deb-src twin of the machine's first Debian source, in a private list
  # so the system's apt configuration stays untouched.
  local uri suite
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  suite=$(awk '/^Suites:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  if [ -z "$uri" ]; then
    uri=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)
    suite=$(awk '$1 == "deb" {print $3; exit}' /etc/apt/sources.list)
  fi
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main" \
    > "$work/sources.list"
  local apt_opts=(-o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
                  -o Dir::State::Lists="$work/lists")
  local version
  version=$(dpkg-query -W -f='${source:Version}' libcaf-core0.17)
  apt-get "${apt_opts[@]}" update -qq >&2
  # Only the upstream tarball is needed (Debian's patches do not touch the
  # core library); the mirror may lack the packaging tarball, so fetch without
  # unpacking and check the tarball against the signed .dsc ourselves.
  (cd "$work" && apt-get "${apt_opts[@]}" source --download-only -qq \
     "actor-framework=$version" >&2) || true
  local dsc orig
  dsc=$(find "$work" -maxdepth 1 -name 'actor-framework_*.dsc' | head -n 1)
  orig=$(find "$work" -maxdepth 1 -name 'actor-framework_*.orig.tar.*' | head -n 1)
  if [ -z "$dsc" ] || [ -z "$orig" ]; then
    echo "cairn_caf_tsan: could not download CAF's source package $version" >&2
    return 1
  fi
  local want
  want=$(awk -v f="$(basename "$orig")" '/^Checksums-Sha256:/ {on=1; next} /^[^ ]/ {on=0}
                                          on && $3 == f {print $1}' "$dsc")
  if [ -z "$want" ] || [ "$(sha256sum "$orig" | cut -d' ' -f1)" != "$want" ]; then
    echo "cairn_caf_tsan: $(basename "$orig") does not match its .dsc checksum" >&2
    return 1
  fi
  tar -xf "$orig" -C "$work"
  local src
  src=$(find "$work" -maxdepth 1 -type d -name 'actor-framework-*' | head -n 1)
  cmake -S "$src" -B "$out" -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_FLAGS="-fsanitize=thread -fno-omit-frame-pointer" \
    -DCAF_NO_EXAMPLES=yes -DCAF_NO_IO=yes -DCAF_NO_OPENCL=yes -DCAF_NO_OPENSSL=yes \
    -DCAF_NO_PYTHON=yes -DCAF_NO_TOOLS=yes -DCAF_NO_UNIT_TESTS=yes -DCAF_NO_SUMMARY=yes >&2
  cmake --build "$out" --target libcaf_core_shared -j "$(nproc)" >&2
  [ -f "$lib" ] || { echo "cairn_caf_tsan: $lib was not built" >&2; return 1; }
  echo "$lib"
}
