#!/usr/bin/env bash
# Installs what ssd needs on Debian 12 when it is missing, and nothing else:
#
#   - Deno, pinned to SETUP_DENO_VERSION, through npm (the Deno installer's
#     host may be unreachable; npm's `deno` package ships the same binary).
#   - Mesa's software Vulkan driver (llvmpipe), at least SETUP_MESA_MIN, and
#     the Vulkan loader: the WebGPU adapter of a machine without a GPU.
#     Debian 12's own Mesa (22.x) is too old, so it comes from
#     bookworm-backports.
#   - With --with-chromium: Debian's Chromium, for the test that opens
#     `ssd report`'s page in a headless browser.
#
#   scripts/setup.sh [--check] [--with-chromium]
#
# --check installs nothing: it prints one line per missing item and exits 1,
# or exits 0 when nothing is missing. Every message goes to stderr, so that
# stdout stays the caller's. A run that finds everything present is silent.
#
# Sourcing the file defines ssd_setup (same options) without running it; the
# entry points and .ci/run do that so that a Deno which npm put outside PATH
# lands on their PATH.

SETUP_DENO_VERSION=2.9.6
SETUP_MESA_MIN=24
SETUP_BACKPORTS_LINE="deb http://deb.debian.org/debian bookworm-backports main"
SETUP_CHROMIUM_BIN=/usr/bin/chromium

setup_log() { echo "setup: $*" >&2; }

# Runs a command as root: directly when we are root, else through sudo.
# setup_plan has already refused when neither is possible.
setup_as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  else
    sudo "$@"
  fi
}

SETUP_APT_UPDATED=0
setup_apt_update() {
  [ "$SETUP_APT_UPDATED" -eq 1 ] && return 0
  # apt and npm write progress to stdout; stdout belongs to the caller.
  setup_as_root apt-get update -q >&2 && SETUP_APT_UPDATED=1
}

setup_apt_install() {
  setup_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

# Version ("2.9.6") of the deno at path $1, or of the one on PATH; or nothing.
setup_deno_version() {
  local bin="${1:-deno}"
  command -v "$bin" >/dev/null 2>&1 || return 0
  "$bin" --version 2>/dev/null | awk 'NR == 1 && $1 == "deno" { print $2 }'
}

# npm's global prefix (its bin/ holds what `npm install -g` installs), or nothing.
setup_npm_prefix() {
  command -v npm >/dev/null 2>&1 || return 0
  npm prefix -g 2>/dev/null
}

# Installed version of a Debian package, or nothing (removed packages whose
# config files remain report a version too, hence the status check; one line
# even when several architectures are installed).
setup_pkg_version() {
  dpkg-query -W -f='${db:Status-Status} ${Version}\n' "$1" 2>/dev/null |
    awk '$1 == "installed" { print $2; exit }'
}

# True when Mesa's Vulkan driver >= SETUP_MESA_MIN and the Vulkan loader are installed.
setup_mesa_ok() {
  local v
  v="$(setup_pkg_version mesa-vulkan-drivers)"
  [ -n "$v" ] && dpkg --compare-versions "$v" ge "$SETUP_MESA_MIN" &&
    [ -n "$(setup_pkg_version libvulkan1)" ]
}

# True when an apt source (one-line or deb822 format) already names bookworm-backports.
setup_has_backports() {
  grep -sqE '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    /etc/apt/sources.list.d/*.sources
}

setup_is_debian() {
  command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1
}

setup_codename() {
  # shellcheck disable=SC1091
  [ -r /etc/os-release ] && (. /etc/os-release && echo "${VERSION_CODENAME:-}")
}

# Puts the pinned Deno on PATH when it is installed but not there (npm's bin
# folder or the Deno installer's ~/.deno/bin); true when the pinned Deno is
# then the one on PATH.
setup_find_deno() {
  [ "$(setup_deno_version)" = "$SETUP_DENO_VERSION" ] && return 0
  local prefix dir
  prefix="$(setup_npm_prefix)"
  for dir in ${prefix:+"$prefix/bin"} "${HOME:-/nonexistent}/.deno/bin"; do
    if [ "$(setup_deno_version "$dir/deno")" = "$SETUP_DENO_VERSION" ]; then
      # First on PATH: another deno may sit earlier.
      export PATH="$dir:$PATH"
      hash -r
      return 0
    fi
  done
  return 1
}

# What is missing, filled by setup_plan: item names (deno, npm, mesa,
# chromium), one reason line per item to print, and whether apt is needed.
SETUP_ITEMS=()
SETUP_LINES=()

# Decides what to install. $1 = 1 to include Chromium.
setup_plan() {
  local with_chromium="$1" found
  SETUP_ITEMS=()
  SETUP_LINES=()
  if ! setup_find_deno; then
    found="$(setup_deno_version)"
    SETUP_ITEMS+=(deno)
    if command -v npm >/dev/null 2>&1; then
      SETUP_LINES+=("Deno $SETUP_DENO_VERSION (the runtime ssd is written for; found: ${found:-none}) with npm")
    else
      SETUP_ITEMS+=(npm)
      SETUP_LINES+=("Deno $SETUP_DENO_VERSION (the runtime ssd is written for; found: ${found:-none}) with npm, and npm itself with apt")
    fi
  fi
  if ! setup_is_debian; then
    setup_log "not a Debian system: not checking for Mesa's Vulkan driver (ssd needs a WebGPU adapter)"
  elif ! setup_mesa_ok; then
    found="$(setup_pkg_version mesa-vulkan-drivers)"
    local from="apt"
    [ "$(setup_codename)" = bookworm ] && from="bookworm-backports"
    SETUP_ITEMS+=(mesa)
    SETUP_LINES+=("Mesa >= $SETUP_MESA_MIN (Vulkan software driver: the WebGPU adapter of a machine without a GPU; found: ${found:-none}) from $from")
  fi
  if [ "$with_chromium" -eq 1 ] && [ ! -x "$SETUP_CHROMIUM_BIN" ]; then
    if setup_is_debian; then
      SETUP_ITEMS+=(chromium)
      SETUP_LINES+=("Chromium (the headless browser of the report page's test; no $SETUP_CHROMIUM_BIN) with apt")
    else
      setup_log "not a Debian system: not installing Chromium (the browser test will be skipped)"
    fi
  fi
}

# The plan's items as people name them: "Deno 2.9.6, Mesa >= 24".
setup_names() {
  local item names=()
  for item in "${SETUP_ITEMS[@]}"; do
    case "$item" in
      deno) names+=("Deno $SETUP_DENO_VERSION") ;;
      npm) names+=(npm) ;;
      mesa) names+=("Mesa >= $SETUP_MESA_MIN") ;;
      chromium) names+=(Chromium) ;;
    esac
  done
  local IFS=,
  echo "${names[*]}" | sed 's/,/, /g'
}

# True when an item of the plan needs root: anything from apt, or an npm
# whose global prefix we cannot write.
setup_needs_root() {
  local item
  for item in "${SETUP_ITEMS[@]}"; do
    case "$item" in
      npm | mesa | chromium) return 0 ;;
      deno) [ -w "$(setup_npm_prefix)" ] || return 0 ;;
    esac
  done
  return 1
}

setup_install_deno() {
  if ! command -v npm >/dev/null 2>&1; then
    setup_apt_update && setup_apt_install npm || return 1
  fi
  local prefix
  prefix="$(setup_npm_prefix)"
  if [ -w "$prefix" ]; then
    npm install -g "deno@$SETUP_DENO_VERSION" >&2 || return 1
  else
    setup_as_root npm install -g "deno@$SETUP_DENO_VERSION" >&2 || return 1
  fi
  if ! setup_find_deno; then
    setup_log "npm installed Deno, but 'deno --version' reports $(setup_deno_version "$prefix/bin/deno")"
    return 1
  fi
}

setup_install_mesa() {
  if [ "$(setup_codename)" = bookworm ]; then
    if ! setup_has_backports; then
      echo "$SETUP_BACKPORTS_LINE" |
        setup_as_root tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null || return 1
    fi
    setup_apt_update &&
      setup_apt_install -t bookworm-backports mesa-vulkan-drivers libvulkan1 || return 1
  else
    # Later Debian releases carry Mesa >= 24 in their main suite.
    setup_apt_update && setup_apt_install mesa-vulkan-drivers libvulkan1 || return 1
  fi
  if ! setup_mesa_ok; then
    setup_log "Mesa's Vulkan driver is still older than $SETUP_MESA_MIN: $(setup_pkg_version mesa-vulkan-drivers)"
    return 1
  fi
}

setup_install_chromium() {
  setup_apt_update && setup_apt_install chromium || return 1
  if [ ! -x "$SETUP_CHROMIUM_BIN" ]; then
    setup_log "the chromium package installed, but $SETUP_CHROMIUM_BIN is still missing"
    return 1
  fi
}

# Checks, then installs what is missing. Options: --check (report only),
# --with-chromium. Returns 0 when everything is (now) present.
ssd_setup() {
  local check=0 with_chromium=0 arg
  for arg in "$@"; do
    case "$arg" in
      --check) check=1 ;;
      --with-chromium) with_chromium=1 ;;
      *)
        setup_log "unknown option '$arg' (options: --check, --with-chromium)"
        return 2
        ;;
    esac
  done
  setup_plan "$with_chromium"
  if [ "${#SETUP_ITEMS[@]}" -eq 0 ]; then
    [ "$check" -eq 1 ] && setup_log "everything present"
    return 0
  fi
  local line
  if [ "$check" -eq 1 ]; then
    for line in "${SETUP_LINES[@]}"; do setup_log "would install $line"; done
    return 1
  fi
  if setup_needs_root && [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    setup_log "cannot install $(setup_names): that needs root or sudo (run as root, or see README's Install to do it by hand)"
    return 1
  fi
  for line in "${SETUP_LINES[@]}"; do setup_log "installing $line"; done
  local item
  for item in "${SETUP_ITEMS[@]}"; do
    case "$item" in
      npm) ;; # installed by setup_install_deno, which needs it first
      deno) setup_install_deno || { setup_log "cannot install Deno $SETUP_DENO_VERSION"; return 1; } ;;
      mesa) setup_install_mesa || { setup_log "cannot install Mesa's Vulkan driver"; return 1; } ;;
      chromium) setup_install_chromium || { setup_log "cannot install Chromium"; return 1; } ;;
    esac
  done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -uo pipefail
  ssd_setup "$@"
  exit $?
fi
