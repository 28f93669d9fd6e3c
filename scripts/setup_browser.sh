#!/bin/sh
# Headless Chromium and its driver for tests/test_browser.py, from Debian's repositories (`make test` runs this).
# Does nothing when /usr/bin/chromium and /usr/bin/chromedriver exist. Installs with apt-get as root (or sudo -n);
# where that is impossible it says so and leaves the failure to the browser test, except under CI, where it fails.
set -eu
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    SUDO="none"
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$SUDO" = "none" ]; then
    echo "setup_browser: cannot install chromium and chromium-driver here (needs apt-get as root);" \
         "install them by hand or tests/test_browser.py fails" >&2
    [ "${CI:-}" = "true" ] && exit 1
    exit 0
fi
echo "setup_browser: apt-get install chromium chromium-driver" >&2
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    chromium chromium-driver fonts-liberation
