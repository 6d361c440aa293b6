#!/usr/bin/env bash
# Make Debian's contrib and non-free components available to apt (make system-deps runs this
# before installing): MBROLA and its voices (mbrola, mbrola-us1/us2/us3/en1, mbrola-de1 ...)
# and SVOX Pico (libttspico-utils), TTS engines of the recipe (data_prep/tts.py), are not in main.
# Does nothing when apt already knows a candidate for both mbrola and libttspico-utils;
# otherwise adds one deb822 sources file for contrib and non-free of this host's Debian release
# (same mirror as main) and runs apt-get update. Licences: README, "TTS engines".
# Environment (tests): OS_RELEASE (default /etc/os-release), APT_SOURCES_DIR (default
# /etc/apt/sources.list.d).
set -euo pipefail

has_candidate() {
  apt-cache policy "$1" 2>/dev/null | grep 'Candidate: [^(]' >/dev/null
}
if has_candidate mbrola && has_candidate libttspico-utils; then
  exit 0
fi
# shellcheck disable=SC1090
. "${OS_RELEASE:-/etc/os-release}"
if [ "${ID:-}" = ubuntu ]; then
  echo "apt_contrib_nonfree.sh: on Ubuntu, mbrola, its voices and libttspico-utils are in" \
    "'multiverse': sudo add-apt-repository -y multiverse && sudo apt-get update; or use" \
    "conf/two_train_engines.sh (no mbrola, no pico)" >&2
  exit 1
fi
if [ "${ID:-}" != debian ] || [ -z "${VERSION_CODENAME:-}" ]; then
  echo "apt_contrib_nonfree.sh: not a Debian release (${PRETTY_NAME:-unknown}); install mbrola," \
    "its English voices (us1 us2 us3 en1) and pico2wave by hand, or use" \
    "conf/two_train_engines.sh (no mbrola, no pico)" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
dest=${APT_SOURCES_DIR:-/etc/apt/sources.list.d}/asr-nlu-contrib-non-free.sources
echo "Adding Debian ${VERSION_CODENAME} contrib and non-free to apt ($dest)"
tmp=$(mktemp)
cat > "$tmp" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: ${VERSION_CODENAME} ${VERSION_CODENAME}-updates
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
$SUDO install -m 0644 "$tmp" "$dest"
rm -f "$tmp"
$SUDO apt-get update -qq
