#!/usr/bin/env bash
# `make fuzz`: runs every fuzz target (fuzz/fuzz_targets, wrappers around src/fuzz.rs) with
# libFuzzer for FUZZ_SECONDS each (default 600), from a corpus of fuzz/seeds, the PDFs of
# tests/fixtures and ../shared/eval, and sample pages. A panic, an input over the RSS cap
# (2 GB) or over the per-input timeout (10 s) is a finding: libFuzzer stops, the input is kept
# in fuzz/artifacts/<target>/, and this script exits non-zero after printing every target's
# executions. Copy a finding into fuzz/regressions/<target>/ with its fix: `make test` runs
# every target over the seeds and the regressions.
#
#   make fuzz                                   # all targets, 10 minutes each
#   FUZZ_SECONDS=60 FUZZ_TARGETS="decode_tiff" make fuzz
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-600}"
targets="${FUZZ_TARGETS:-decode_image decode_tiff decode_pdf multipart qwen3vl_html render config}"
eval_dir="${OCRD_EVAL_DIR:-../shared/eval}"

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: cargo-fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked --version 0.13.2
fi

# The corpus: seeds first, then larger real files (truncated to max_len by libFuzzer).
for target in $targets; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus"
    cp -n fuzz/seeds/"$target"/* "$corpus"/ 2>/dev/null || true
    cp -n fuzz/regressions/"$target"/* "$corpus"/ 2>/dev/null || true
    case "$target" in
        decode_image)
            for f in "$eval_dir"/public/page_00[0-2].png "$eval_dir"/real-public/00[0-2].jpg \
                "$eval_dir"/skew/*.png; do
                [ -f "$f" ] && cp -n "$f" "$corpus/eval-$(basename "$f")"
            done ;;
        decode_pdf)
            for f in tests/fixtures/pdf/*.pdf "$eval_dir"/pdf/*.pdf; do
                [ -f "$f" ] && cp -n "$f" "$corpus/$(basename "$f")"
            done ;;
    esac
done

# Release with overflow checks and debug assertions; no sanitizer: ocrd's own code is safe Rust, where a bug is a panic that libFuzzer catches
# without one; this runs several times faster. FUZZ_SANITIZER=address brings ASan back.
sanitizer="${FUZZ_SANITIZER:-none}"
cargo +nightly fuzz build --fuzz-dir fuzz -O -a -s "$sanitizer"

status=0
report=()
for target in $targets; do
    log="fuzz/artifacts/$target.log"
    mkdir -p "fuzz/artifacts/$target"
    echo "fuzz: $target for ${seconds}s"
    if cargo +nightly fuzz run --fuzz-dir fuzz -O -a -s "$sanitizer" "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
        -max_len=131072 -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$target/" \
        >"$log" 2>&1; then
        outcome="no finding"
    else
        outcome="FINDING: $(grep -m1 -E 'ERROR: libFuzzer|panicked at|deadly signal' "$log" || echo 'see log')"
        status=1
    fi
    execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    report+=("$(printf '%-14s %12s executions in %ss  %s' "$target" "${execs:-?}" "$seconds" "$outcome")")
done
echo
echo "fuzz: results (logs in fuzz/artifacts/<target>.log, findings in fuzz/artifacts/<target>/)"
printf '%s\n' "${report[@]}"
exit "$status"
