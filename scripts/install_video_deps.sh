#!/usr/bin/env bash
# Installs what the video tests need beyond requirements-dev.txt (which has
# PyAV, FFmpeg inside its wheel, for veil itself):
#   apt: ffmpeg, for its ffprobe (an independent reader that checks veil's
#        outputs carry no metadata) and its ffmpeg (which builds test inputs
#        full of metadata, subtitles, chapters, attachments and timecode).
# Usage: scripts/install_video_deps.sh   (as root, or with sudo available)
set -euo pipefail

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

if ! command -v ffprobe >/dev/null 2>&1 || ! command -v ffmpeg >/dev/null 2>&1; then
  echo "install_video_deps: apt-get install ffmpeg"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends ffmpeg
fi
echo "install_video_deps: done"
