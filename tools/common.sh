# shellcheck shell=bash
# Shared by tools/replicate, tools/test and datasets/fetch: install what is missing, configure, build.
# Source it; it defines functions and TG_ROOT (the repository root) and changes nothing else.
#
#   . "$(dirname "$0")/common.sh"
#   tg_install_build_deps && tg_configure && tg_build tools/mnist

TG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TG_BUILD="${TG_BUILD:-$TG_ROOT/build}"

# What a build needs, as Debian packages.
TG_BUILD_PACKAGES=(meson ninja-build g++ libeigen3-dev doctest-dev pkg-config nlohmann-json3-dev libcli11-dev zlib1g-dev
                   libopenmpi-dev openmpi-bin)  # MPI: data parallelism (meson -Dmpi=disabled builds without)
# What the tests need besides: cmake (a user's CMake build against the installed library), qemu-user (the
# default build on an emulated CPU without AVX-512), doxygen (the API reference builds without warnings).
TG_TEST_PACKAGES=(cmake qemu-user doxygen)
# The aarch64 cross build (tools/test --aarch64, tools/cross/aarch64-linux-gnu.ini): the cross compiler with its
# libstdc++ and libgomp, zlib for arm64 (multiarch), qemu-aarch64 to run the tests, cmake to find doctest.
TG_AARCH64_PACKAGES=(g++-aarch64-linux-gnu zlib1g-dev:arm64 qemu-user cmake ccache)

tg_log() { printf '%s\n' "$*" >&2; }
tg_die() { printf 'error: %s\n' "$1" >&2; exit "${2:-1}"; }

# True when the Debian package is installed: for this machine's architecture (or all), or for the one named
# (zlib1g-dev:arm64). With a second architecture dpkg-query lists an unqualified name once per architecture.
tg_have_package() {
  local arch
  case "$1" in *:*) arch=${1##*:} ;; *) arch="$(dpkg --print-architecture)|all" ;; esac
  dpkg-query -W -f='${Architecture} ${Status}\n' "$1" 2>/dev/null | grep -qE "^($arch) install ok installed$"
}

# Installs the packages that are not installed yet (apt-get only when something is missing).
tg_need_packages() {
  local missing=() p
  for p in "$@"; do tg_have_package "$p" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || tg_die "missing packages ${missing[*]} and no apt-get to install them"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || tg_die "missing packages ${missing[*]}: run as root or install them: apt-get install ${missing[*]}"
    sudo=(sudo)
  fi
  tg_log "installing missing packages: ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 ||
    tg_die "apt-get update failed (needed for: ${missing[*]})"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    tg_die "apt-get install ${missing[*]} failed"
}

tg_install_build_deps() { tg_need_packages "${TG_BUILD_PACKAGES[@]}"; }

# The aarch64 packages: zlib1g-dev:arm64 needs dpkg to know the arm64 architecture first (apt-get update follows).
tg_install_aarch64_deps() {
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    tg_log "adding the arm64 architecture to dpkg (for zlib1g-dev:arm64)"
    "${sudo[@]}" dpkg --add-architecture arm64 || tg_die "dpkg --add-architecture arm64 failed"
  fi
  tg_need_packages "${TG_AARCH64_PACKAGES[@]}"
}

# Configures $TG_BUILD once (ninja re-runs meson by itself when a meson.build changes). Extra arguments go
# to `meson setup` on the first configure only.
tg_configure() {
  if [ -f "$TG_BUILD/build.ninja" ]; then return 0; fi
  tg_log "configuring $TG_BUILD"
  meson setup "$TG_BUILD" "$TG_ROOT" "$@" >&2 || tg_die "meson setup $TG_BUILD failed"
}

# Builds the given ninja targets (everything when none), e.g. tg_build tools/mnist.
tg_build() {
  ninja -C "$TG_BUILD" "$@" >&2 || tg_die "build failed: ninja -C $TG_BUILD $*"
}
