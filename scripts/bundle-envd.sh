#!/bin/sh
# Copies envd with its dynamic loader and every shared library it needs into one directory, so
# it runs inside any root filesystem:  DIR/lib/ld-linux-*.so.2 --library-path DIR/lib DIR/envd
set -eu
bin=$1 out=$2
rm -rf "$out.tmp"
mkdir -p "$out.tmp/lib"
cp "$bin" "$out.tmp/envd"
interp=
for lib in $(ldd "$bin" | awk '/=>/ { print $3 } !/=>/ && $1 ~ /^\// { print $1 }'); do
	cp -L "$lib" "$out.tmp/lib/"
done
interp=$(ldd "$bin" | awk '!/=>/ && $1 ~ /^\// { print $1 }' | head -n1)
[ -n "$interp" ] || { echo "bundle-envd: no dynamic loader found for $bin" >&2; exit 1; }
ln -sf "$(basename "$interp")" "$out.tmp/lib/ld.so"
cat > "$out.tmp/README" <<EOT
Run as: <dir>/lib/ld.so --library-path <dir>/lib <dir>/envd [args]
EOT
rm -rf "$out"
mv "$out.tmp" "$out"
