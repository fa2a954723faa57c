#!/bin/sh
# An arm64 CPython to run the Lambda's build of the hot path on this machine, under qemu:
# Debian's python3.N for arm64 and the libraries it needs, unpacked (not installed) into DIR, to
# be run as `qemu-aarch64-static -L DIR DIR/usr/bin/python3.N` (tests/infra/test_hotpath_build.py).
# Debian's minor version is not Lambda's 3.12; the module is abi3 (CPython >= 3.11), so either
# loads it. Needs root and apt-get (`make system-deps` runs it); does nothing once DIR is complete.
#
#     scripts/arm64_python.sh /opt/tradelake-arm64
set -eu

dir=$1
[ -e "$dir/.complete" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "scripts/arm64_python.sh: only root with apt-get prepares $dir: the emulated run of" \
		"the Lambda's hot path build will be SKIPPED (sudo make system-deps)" >&2
	exit 0
fi

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
	dpkg --add-architecture arm64
fi
apt-get update -q
# python3-minimal:arm64 depends on this release's python3.N-minimal: take its N.
python=$(apt-cache depends python3-minimal:arm64 | sed -n 's/.*Depends: \(python3\.[0-9]*\)-minimal.*/\1/p' | head -n 1)
[ -n "$python" ] || { echo "scripts/arm64_python.sh: no python3.N-minimal:arm64 found" >&2; exit 1; }

debs=$(mktemp -d)
trap 'rm -rf "$debs"' EXIT
# apt-get download writes to the current directory, as the _apt user where it can.
chmod 777 "$debs"
(cd "$debs" && apt-get download -q \
	"$python-minimal:arm64" "lib$python-minimal:arm64" "lib$python-stdlib:arm64" \
	libc6:arm64 zlib1g:arm64 libexpat1:arm64)
rm -rf "$dir"
mkdir -p "$dir"
for deb in "$debs"/*.deb; do
	dpkg-deb -x "$deb" "$dir"
done
touch "$dir/.complete"
echo "scripts/arm64_python.sh: $python for arm64 in $dir"
