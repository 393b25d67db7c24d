#!/usr/bin/env bash
# Make sure the Debian / Raspberry Pi OS packages guard needs are present.
# As root: installs what is missing with apt-get. Otherwise: prints the exact line and fails.
# Usage: tools/system-deps.sh [runtime|test]
set -euo pipefail
mode=${1:-runtime}
missing=()

need() {  # need PACKAGE CHECK-COMMAND...
    local pkg=$1; shift
    if ! "$@" >/dev/null 2>&1; then missing+=("$pkg"); fi
}

need python3-venv python3 -c 'import ensurepip, venv'
need libportaudio2 sh -c 'ldconfig -p | grep -q libportaudio.so.2'   # the microphone
if [ "$mode" = test ]; then
    need systemd command -v systemd-analyze
    # The microphone test: a PulseAudio null sink captured through ALSA's "pulse" device.
    need pulseaudio command -v pulseaudio
    need pulseaudio-utils command -v paplay
    need libasound2-plugins sh -c 'ls /usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so'
    need mosquitto sh -c 'command -v mosquitto || test -x /usr/sbin/mosquitto'
    need openssl command -v openssl   # self-signed certificates in the door-lock TLS test
    # Synthetic voices in the perturbation_net trainer's test (guard/training/tts.py).
    need espeak-ng command -v espeak-ng
    need sox command -v sox
fi

if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
line="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing system packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $line
else
    echo "guard needs system packages that are missing. Run:" >&2
    echo "  sudo $line" >&2
    exit 1
fi
