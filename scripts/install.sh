#!/usr/bin/env bash
# Installs edge_deeplab and everything it needs on a fresh Debian bookworm machine (Python 3.11).
#
#   scripts/install.sh          # runtime + test extras into ./.venv
#   EXTRAS=gui scripts/install.sh
#
# It installs Mesa 25 (lavapipe, a software Vulkan driver) from bookworm-backports so the real
# LiteRT GPU accelerator (WebGPU over Vulkan) can start on a machine without a GPU. On a machine
# with a real GPU driver, lavapipe is simply one more Vulkan device.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${EXTRAS:-test}"
VENV="${VENV:-.venv}"

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

if command -v apt-get >/dev/null 2>&1 && [ "${SKIP_APT:-0}" != 1 ]; then
  if ! dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | grep -qE '^(2[4-9]|[3-9][0-9])\.'; then
    if [ -r /etc/os-release ] && grep -q 'VERSION_CODENAME=bookworm' /etc/os-release; then
      echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports \
        mesa-vulkan-drivers libvulkan1 >/dev/null
    else
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
    fi
  fi
  # ffmpeg-free video: OpenCV wheels carry their own codecs; nothing else is needed.
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[${EXTRAS}]"
echo "installed: $("$VENV/bin/python" -c 'import edge_deeplab; print(edge_deeplab.__version__)') into $VENV"
