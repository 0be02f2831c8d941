#!/usr/bin/env bash
# Builds the given examples in release for one chip and prints the flash and static RAM of each.
#
#   ./sizes.sh [--chip esp32c3|esp32c6] [--features F,G] [--no-build] [--max-flash BYTES]
#              [--max-ram BYTES] [--max-flash-ratio R] [--max-ram-ratio R] EXAMPLE...
#
# flash = the sections stored in flash: .text, .rodata*, .rwtext*, .trap, .data*, .flash.appdesc
#         and RTC/LP code and data (initialised RAM sections are copied from flash at boot).
# RAM   = static RAM taken before main runs: .trap, .rwtext* (instruction RAM), .data*, .bss*
#         (which holds the 36 KiB heap), .noinit, RTC/LP sections. Not the stack: the socket
#         buffers the examples keep in main's frame come out of the RAM left over.
# With `baseline` among the examples, each line also gives its ratio to baseline.
# --features: the package's features besides the chip's (e.g. `cjk`, `sh1106`), for every example.
# --max-flash / --max-ram: exit 1 if any example exceeds them.
# --max-flash-ratio / --max-ram-ratio: exit 1 if any example exceeds that multiple of
#         baseline's size (needs `baseline` among the examples), e.g. the footprint budget
#         `--max-flash-ratio 1.05 --max-ram-ratio 1.10 baseline tcp_server`.
# Needs riscv64-unknown-elf-size (Debian: binutils-riscv64-unknown-elf) or an llvm-size.
set -euo pipefail
cd "$(dirname "$0")"

chip=esp32c3
features=
build=1
max_flash=
max_ram=
max_flash_ratio=
max_ram_ratio=
examples=()
while [ $# -gt 0 ]; do
    case "$1" in
        --chip) chip="$2"; shift 2 ;;
        --features) features="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --max-flash) max_flash="$2"; shift 2 ;;
        --max-ram) max_ram="$2"; shift 2 ;;
        --max-flash-ratio) max_flash_ratio="$2"; shift 2 ;;
        --max-ram-ratio) max_ram_ratio="$2"; shift 2 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) examples+=("$1"); shift ;;
    esac
done
if [ ${#examples[@]} -eq 0 ]; then
    echo "usage: $0 [--chip CHIP] [--no-build] [--max-flash B] [--max-ram B] EXAMPLE..." >&2
    exit 2
fi

case "$chip" in
    esp32c3) target=riscv32imc-unknown-none-elf ;;
    esp32c6) target=riscv32imac-unknown-none-elf ;;
    *) echo "$chip: not built here (Xtensa chips need Espressif's toolchain)" >&2; exit 2 ;;
esac

size_tool=$(command -v riscv64-unknown-elf-size || command -v llvm-size || true)
if [ -z "$size_tool" ]; then
    size_tool=$(ls "$(rustc --print sysroot)"/lib/rustlib/*/bin/llvm-size 2>/dev/null | head -n1 || true)
fi
if [ -z "$size_tool" ]; then
    echo "no riscv64-unknown-elf-size or llvm-size (apt-get install binutils-riscv64-unknown-elf)" >&2
    exit 2
fi

if [ "$build" = 1 ]; then
    args=()
    for example in "${examples[@]}"; do args+=(--example "$example"); done
    cargo build --release --target "$target" --no-default-features --features "$chip${features:+,$features}" "${args[@]}"
fi

# Prints "flash ram" of one ELF.
measure() {
    "$size_tool" -A "$1" | awk '
        $1 ~ /^\.(text|rodata|rodata\..*|rwtext|rwtext\..*|trap|data|data\..*|flash\.appdesc|rtc_fast\.(text|data)|rtc_slow\.(text|data)|lp_ram\.(text|data))$/ { flash += $2 }
        $1 ~ /^\.(trap|rwtext|rwtext\..*|data|data\..*|bss|bss\..*|noinit|rtc_fast\..*|rtc_slow\..*|lp_ram\..*)$/ { ram += $2 }
        END { print flash + 0, ram + 0 }'
}

base_flash=
base_ram=
for example in "${examples[@]}"; do
    if [ "$example" = baseline ]; then
        read -r base_flash base_ram < <(measure "${CARGO_TARGET_DIR:-target}/$target/release/examples/baseline")
    fi
done

if { [ -n "$max_flash_ratio" ] || [ -n "$max_ram_ratio" ]; } && [ -z "$base_flash" ]; then
    echo "--max-flash-ratio and --max-ram-ratio need baseline among the examples" >&2
    exit 2
fi
# Prints "over" when $1 > $2 * $3.
over() { awk -v size="$1" -v base="$2" -v ratio="$3" 'BEGIN { if (size > base * ratio) print "over" }'; }

status=0
printf '%-16s %-8s %-10s %11s %10s %12s %10s\n' example chip features flash_bytes ram_bytes flash/base ram/base
for example in "${examples[@]}"; do
    read -r flash ram < <(measure "${CARGO_TARGET_DIR:-target}/$target/release/examples/$example")
    if [ -n "$base_flash" ]; then
        ratios=$(awk -v f="$flash" -v r="$ram" -v bf="$base_flash" -v br="$base_ram" \
            'BEGIN { printf "%12.3f %10.3f", f / bf, r / br }')
    else
        ratios=$(printf '%12s %10s' - -)
    fi
    printf '%-16s %-8s %-10s %11d %10d %s\n' "$example" "$chip" "${features:--}" "$flash" "$ram" "$ratios"
    if [ -n "$max_flash" ] && [ "$flash" -gt "$max_flash" ]; then
        echo "$example: flash $flash B over the budget of $max_flash B" >&2
        status=1
    fi
    if [ -n "$max_ram" ] && [ "$ram" -gt "$max_ram" ]; then
        echo "$example: static RAM $ram B over the budget of $max_ram B" >&2
        status=1
    fi
    if [ -n "$max_flash_ratio" ] && [ -n "$(over "$flash" "$base_flash" "$max_flash_ratio")" ]; then
        echo "$example: flash $flash B over ${max_flash_ratio}x the baseline's $base_flash B" >&2
        status=1
    fi
    if [ -n "$max_ram_ratio" ] && [ -n "$(over "$ram" "$base_ram" "$max_ram_ratio")" ]; then
        echo "$example: static RAM $ram B over ${max_ram_ratio}x the baseline's $base_ram B" >&2
        status=1
    fi
done
exit $status
