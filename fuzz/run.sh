#!/usr/bin/env bash
# Coverage-guided fuzzing of notmeta-webhooks with cargo-fuzz (libFuzzer + ASan).
#
#   fuzz/run.sh smoke              every target for 15 s (about 1 minute in all)
#   fuzz/run.sh full [SECONDS]     every target for SECONDS (default 300): the plateau runs
#   fuzz/run.sh TARGET [SECONDS]   one target (header, verify_and_parse, signed_parse,
#                                  parse_unverified) for SECONDS (default 300)
#   fuzz/run.sh coverage           line and region coverage of src/ reached by the
#                                  corpora, all targets together (needs the nightly
#                                  llvm-tools-preview component)
#
# Needs the nightly toolchain (`rustup toolchain install nightly`) and python3; installs
# cargo-fuzz if it is absent. Seeds fuzz/corpus/<target>/ from data/ at every run
# (fuzz/seed.py). One job, 2 GiB RSS limit, 5 s per input. Exits non-zero on any crash,
# panic, failed check, timeout or out-of-memory; the input is saved under
# fuzz/artifacts/<target>/ and `cargo +nightly fuzz run TARGET <file>` replays it.
# Logs and a summary line per target go to fuzz/artifacts/logs/.
set -euo pipefail

FUZZ_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$FUZZ_DIR")"
TARGETS=(header verify_and_parse signed_parse parse_unverified)

max_len() {
    case "$1" in
        header) echo 512 ;;
        *) echo 16384 ;;
    esac
}

usage() {
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

mode="${1:-}"
case "$mode" in
    smoke) seconds=15; targets=("${TARGETS[@]}") ;;
    coverage) seconds=0; targets=("${TARGETS[@]}") ;;
    full) seconds="${2:-300}"; targets=("${TARGETS[@]}") ;;
    header | verify_and_parse | signed_parse | parse_unverified)
        seconds="${2:-300}"; targets=("$mode") ;;
    *) usage ;;
esac
[[ "$seconds" =~ ^[0-9]+$ ]] || usage

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: the nightly toolchain is required: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz (about a minute on two cores)"
    start=$(date +%s)
    cargo install cargo-fuzz --locked
    echo "fuzz: cargo-fuzz installed in $(($(date +%s) - start)) s"
fi

python3 "$FUZZ_DIR/seed.py"

cd "$ROOT"

if [[ "$mode" == coverage ]]; then
    sysroot="$(rustup run nightly rustc --print sysroot)"
    tools="$(echo "$sysroot"/lib/rustlib/*/bin)"
    if [[ ! -x "$tools/llvm-cov" ]]; then
        echo "fuzz: coverage needs: rustup component add llvm-tools-preview --toolchain nightly" >&2
        exit 1
    fi
    host="$(rustup run nightly rustc -vV | sed -n 's/^host: //p')"
    objects=()
    profiles=()
    for target in "${targets[@]}"; do
        echo "== fuzz: coverage of $target over fuzz/corpus/$target"
        cargo +nightly fuzz coverage "$target" "$FUZZ_DIR/corpus/$target" >/dev/null 2>&1
        # Where cargo-fuzz leaves the instrumented binary depends on its version.
        bin=""
        for dir in "$ROOT/target" "$FUZZ_DIR/target"; do
            candidate="$dir/$host/coverage/$host/release/$target"
            [[ -x "$candidate" ]] && { bin="$candidate"; break; }
        done
        [[ -n "$bin" ]] || { echo "fuzz: no coverage binary for $target" >&2; exit 1; }
        objects+=(-object "$bin")
        profiles+=("$FUZZ_DIR/coverage/$target/coverage.profdata")
    done
    "$tools/llvm-profdata" merge -sparse "${profiles[@]}" -o "$FUZZ_DIR/coverage/all.profdata"
    # Only the crate's own sources: dependencies and the harness are left out.
    "$tools/llvm-cov" report "${objects[@]:1}" -instr-profile="$FUZZ_DIR/coverage/all.profdata" \
        --ignore-filename-regex='(/\.cargo/|/rustc/|/fuzz/|/rustlib/)'
    exit 0
fi
echo "== fuzz: building the targets (nightly, release, debug assertions, ASan)"
cargo +nightly fuzz build --debug-assertions

logs="$FUZZ_DIR/artifacts/logs"
mkdir -p "$logs"
status=0
for target in "${targets[@]}"; do
    log="$logs/$target.log"
    echo "== fuzz: $target for ${seconds} s"
    if ! cargo +nightly fuzz run --debug-assertions "$target" -- \
        -max_total_time="$seconds" \
        -rss_limit_mb=2048 \
        -timeout=5 \
        -max_len="$(max_len "$target")" \
        -dict="$FUZZ_DIR/notmeta.dict" \
        -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz: $target FAILED (crash, panic, timeout or OOM); see $log and fuzz/artifacts/$target/" >&2
        status=1
        continue
    fi
    # Final figures: runs, seconds, coverage, features, corpus, and the run at which
    # coverage last grew (a plateau shows as an early last growth).
    # (A run that finds nothing new has no NEW lines: no grep here may fail the script.)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
    final=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n 1 || true)
    cov=$(sed -E 's/.* cov: ([0-9]+).*/\1/' <<<"$final")
    ft=$(sed -E 's/.* ft: ([0-9]+).*/\1/' <<<"$final")
    corp=$(sed -E 's/.* corp: ([0-9]+)\/.*/\1/' <<<"$final")
    last_new=$({ grep -E '^#[0-9]+[[:space:]]+NEW' "$log" || true; } | tail -n 1 | sed -E 's/^#([0-9]+).*/\1/')
    growth="coverage last grew at run #$last_new"
    [[ -n "$last_new" ]] || growth="no new coverage"
    line="$target: ${runs:-?} runs in ${seconds} s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}, peak RSS ${rss:-?} MB, $growth, no crash"
    echo "$line"
    echo "$(date -u +%FT%TZ) $line" >>"$logs/summary.txt"
done
exit "$status"
