#!/usr/bin/env bash
# The whole suite at the real date and under shifted clocks (Debian's faketime, libfaketime).
#
#   scripts/test_dates.sh [SHIFT...]     SHIFT: now, an offset (+45d, +400d, +4y) or a date
#                                        (2028-02-29, run from 12:00 UTC that day)
#
# Prints one line per shift with pytest's summary; exits 1 if any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[ $# -gt 0 ] || set -- now +45d +400d +4y 2028-02-29
# File times stay the kernel's (libfaketime would shift them in some stat calls and not in
# others): tests that age files set their times relative to a file written at that moment.
export NO_FAKE_STAT=1
base=$(mktemp -d)
trap 'rm -rf "$base"' EXIT
failed=0
summary=()
for shift in "$@"; do
    case $shift in
        now) clock=() ;;
        [+-]*) clock=(faketime -f "$shift") ;;  # the offset applies to every child process
        *) clock=(faketime "$shift 12:00:00") ;;  # a running clock that starts then
    esac
    echo "== suite at ${shift}: $("${clock[@]}" date -u '+%Y-%m-%d %H:%M UTC')"
    log="$base/${shift//[^A-Za-z0-9]/_}.log"
    # A base temp dir per run: pytest would otherwise judge other runs' dirs by its own clock.
    "${clock[@]}" "$python" -m pytest -q -p no:cacheprovider --basetemp "$base/tmp" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    [ "$status" -eq 0 ] || failed=1
    summary+=("$(printf '%-12s %s' "$shift" "$(tail -n 1 "$log")")")
done
echo "== suite under each clock"
printf '%s\n' "${summary[@]}"
exit "$failed"
