#!/usr/bin/env bash
# Prints the figures the boxes care about for one built binary: stripped size, the
# shared libraries it links (must be glibc's only: no libudev, no OpenSSL), and the
# oldest glibc it runs on (the highest GLIBC_x.y symbol version it needs).
# Fails if the size is over the limit (armv7: 6 MB) or a non-glibc library is linked.
# Usage: cross/inspect.sh BINARY
set -euo pipefail
bin=$1
readelf=readelf
case "$(file -b "$bin")" in
*ARM\ aarch64*) readelf=aarch64-linux-gnu-readelf ;;
*ARM*) readelf=arm-linux-gnueabihf-readelf ;;
esac
size=$(stat -c %s "$bin")
needed=$("$readelf" -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
glibc=$("$readelf" -V "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -u -V | tail -n1)
stripped=yes
if "$readelf" -S "$bin" | grep -q '\.symtab'; then stripped=no; fi
printf '%s: %d bytes (%.2f MB), stripped=%s, needs [%s], oldest glibc %s\n' \
    "$(basename "$bin")" "$size" "$(echo "$size / 1000000" | bc -l)" "$stripped" \
    "${needed% }" "${glibc#GLIBC_}"

bad=0
for lib in $needed; do
    case "$lib" in
    libc.so.* | libm.so.* | libgcc_s.so.* | libpthread.so.* | libdl.so.* | librt.so.* | \
        ld-linux*.so.*) ;;
    *) echo "  links $lib, which is not part of glibc/the C runtime" >&2; bad=1 ;;
    esac
done
if [ "$readelf" = arm-linux-gnueabihf-readelf ] && [ "$size" -gt 6000000 ]; then
    echo "  armv7 binary is over 6 MB" >&2
    bad=1
fi
exit "$bad"
