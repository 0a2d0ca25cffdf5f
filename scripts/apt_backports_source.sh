#!/usr/bin/env bash
# Prints the apt source line for CODENAME-backports taken from this machine's own apt configuration
# (the mirror it already uses for CODENAME: a local mirror, one behind a proxy, deb.debian.org),
# or nothing when CODENAME-backports is already configured. Used by scripts/install.sh.
#
#   scripts/apt_backports_source.sh bookworm        # -> deb http://deb.debian.org/debian/ bookworm-backports main
#   scripts/apt_backports_source.sh bookworm -o Dir::Etc::SourceList=/tmp/x.list   # extra apt options
#
# apt itself reads the configuration (one-line .list and deb822 .sources files alike), through
# `apt-get indextargets`. Exit status 1, with one line on stderr, when no source for CODENAME is
# configured at all.
set -euo pipefail
CODENAME="${1:?usage: $0 CODENAME [apt options]}"
shift
targets="$(apt-get "$@" --no-release-info indextargets --format '$(TARGET_OF) $(REPO_URI) $(RELEASE)' 2>/dev/null | sort -u)"
if awk -v s="$CODENAME-backports" '$1 == "deb" && $3 == s {found = 1} END {exit !found}' <<<"$targets"; then
  exit 0
fi
mirror="$(awk -v s="$CODENAME" '$1 == "deb" && $3 == s {print $2; exit}' <<<"$targets")"
if [ -z "$mirror" ]; then
  echo "no apt source for $CODENAME is configured on this machine: cannot derive $CODENAME-backports" >&2
  exit 1
fi
echo "deb $mirror $CODENAME-backports main"
