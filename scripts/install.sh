#!/usr/bin/env bash
# Installs edge_deeplab and everything it needs on a fresh Debian bookworm machine (Python 3.11).
#
#   scripts/install.sh          # runtime + test extras into ./.venv
#   EXTRAS=gui scripts/install.sh
#
# With apt it installs what a fresh Debian lacks: python3-venv (Debian splits `python3 -m venv`
# out of python3) and Mesa 25 (lavapipe, a software Vulkan driver) from bookworm-backports so the
# real LiteRT GPU accelerator (WebGPU over Vulkan) can start on a machine without a GPU. On a machine
# with a real GPU driver, lavapipe is simply one more Vulkan device. The backports source is the
# machine's own configured mirror (scripts/apt_backports_source.sh), never a fixed one.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${EXTRAS:-test}"
VENV="${VENV:-.venv}"

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

if command -v apt-get >/dev/null 2>&1 && [ "${SKIP_APT:-0}" != 1 ]; then
  need_venv=0 need_mesa=0 need_strace=0 target=()
  # Debian's python3 lacks ensurepip (so `python3 -m venv` fails) until python3-venv is installed.
  if [ ! -x "$VENV/bin/python" ] && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    need_venv=1
  fi
  # strace: the multi-worker test proves which process wrote which file of a run.
  if ! command -v strace >/dev/null 2>&1; then need_strace=1; fi
  if ! dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | grep -qE '^(2[4-9]|[3-9][0-9])\.'; then
    need_mesa=1
    if [ -r /etc/os-release ] && grep -q 'VERSION_CODENAME=bookworm' /etc/os-release; then
      source_line="$(scripts/apt_backports_source.sh bookworm)"
      if [ -n "$source_line" ]; then
        echo "$source_line" | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
      fi
      target=(-t bookworm-backports)
    fi
  fi
  if [ "$need_venv$need_mesa$need_strace" != 000 ]; then
    $SUDO apt-get update -qq
  fi
  if [ "$need_venv" = 1 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
  fi
  if [ "$need_strace" = 1 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq strace >/dev/null
  fi
  if [ "$need_mesa" = 1 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${target[@]}" \
      mesa-vulkan-drivers libvulkan1 >/dev/null
  fi
  # no system FFmpeg: the OpenCV and PyAV (`av`) wheels carry their own codecs.
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[${EXTRAS}]"
echo "installed: $("$VENV/bin/python" -c 'import edge_deeplab; print(edge_deeplab.__version__)') into $VENV"
