#!/usr/bin/env bash
# Installs the Debian packages that the test suite drives for real: Chromium for the browser
# tests, Orthanc with its DICOMweb plugin for the DICOMweb datastore tests, dicom3tools' dciodvfy
# and dcmtk's dsrdump, which check the DICOM results the project writes.
# Does nothing when they are already there; needs root (or sudo) otherwise.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v Orthanc >/dev/null 2>&1 || need+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
command -v dsrdump >/dev/null 2>&1 || need+=(dcmtk)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing Debian packages for the tests: ${need[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
        echo "error: the tests need the Debian packages ${need[*]}; install them as root (apt-get install ${need[*]})" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the packaged Orthanc service on install; the tests run their own instances.
if command -v service >/dev/null 2>&1; then $sudo service orthanc stop >/dev/null 2>&1 || true; fi
