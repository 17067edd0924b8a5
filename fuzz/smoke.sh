#!/usr/bin/env bash
# The fuzz smoke for CI: every target for 15 s (about 1 minute of fuzzing in all),
# failing on any crash, panic, failed check, timeout or out-of-memory. Installs
# cargo-fuzz if absent (needs the nightly toolchain). See fuzz/run.sh for full runs.
set -euo pipefail
exec "$(dirname "$0")/run.sh" smoke
