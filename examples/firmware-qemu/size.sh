#!/usr/bin/env bash
# The firmware's flash and RAM, measured from the built image (run.sh builds it):
# section sizes from the ELF section headers and the model's and buffers' sizes from the
# symbol table, read with llvm-size/llvm-nm (LLVM) or arm-none-eabi-size/-nm (binutils).
#
#   examples/firmware-qemu/size.sh
# The stack's high-water mark is measured at run time: see the firmware's stats line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
elf="$here/../../target/firmware-qemu/thumbv7em-none-eabihf/release/mamba-firmware-qemu"
if [ ! -f "$elf" ]; then
    echo "no firmware image at $elf: run run.sh first" >&2
    exit 1
fi
if command -v arm-none-eabi-size >/dev/null 2>&1; then
    size_tool=arm-none-eabi-size nm_tool=arm-none-eabi-nm
else
    size_tool=llvm-size nm_tool=llvm-nm
fi
section() { "$size_tool" -A "$elf" | awk -v s="$1" '$1 == s { print $2; f = 1 } END { if (!f) print 0 }'; }
# Size of the symbol whose demangled name ends with $1.
symbol() {
    local hex
    # (LLVM's nm keeps the legacy-mangling hash suffix: dropped.)
    hex=$("$nm_tool" -S -C "$elf" | awk -v s="$1" '{ n = $NF; sub(/::h[0-9a-f]+$/, "", n) }
        substr(n, length(n) - length(s) + 1) == s { print $2; exit }')
    echo $((16#${hex:-0}))
}

vectors=$(section .vector_table)
text=$(section .text)
rodata=$(section .rodata)
data=$(section .data)
bss=$(section .bss)
uninit=$(section .uninit)
model=$(symbol '::MODEL')
if [ "$model" -eq 0 ]; then
    echo "no MODEL symbol in $elf: cannot tell the model from the code" >&2
    exit 1
fi
code=$((vectors + text + rodata - model + data))
ram_static=$((data + bss + uninit))

printf 'measured with %s / %s from %s\n' "$size_tool" "$nm_tool" "${elf#"$here"/../../}"
printf 'flash  %8d bytes  total\n' $((code + model))
printf '       %8d bytes  code (.vector_table %d + .text %d + .rodata without the model %d + .data %d)\n' \
    "$code" "$vectors" "$text" $((rodata - model)) "$data"
printf '       %8d bytes  model (models/tiny-q8_0.gguf, in .rodata)\n' "$model"
printf 'RAM    %8d bytes  static (.data %d + .bss %d + .uninit %d)\n' "$ram_static" "$data" "$bss" "$uninit"
for b in STATE SCRATCH LOGITS WORK HISTORY; do
    printf '       %8d bytes  %s\n' "$(symbol "::$b")" "$b"
done
echo "       + the stack (high-water mark: the firmware's stats line on stderr)"
