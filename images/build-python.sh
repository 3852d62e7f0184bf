#!/bin/sh
# Build stage of images/Dockerfile: put one CPython at $PREFIX, then trim what benchmarks don't
# need (test suites, static libpython, debug info). Inputs (environment):
#   KIND=source  SOURCE_FILE (in /src), CONFIGURE_FLAGS (from runner/images.py, where they are
#                defined once for every version and profile, and recorded in the image labels)
#   KIND=prefix  /src/prefix is an existing install, copied to $PREFIX as it is
set -eu
: "${KIND:?}" "${PREFIX:?}"

if [ "$KIND" = source ]; then
    flags="${CONFIGURE_FLAGS:?}"
    mkdir -p /build && cd /build
    tar -xf "/src/$SOURCE_FILE" --strip-components=1
    echo "gilmatrix: ./configure --prefix=$PREFIX $flags LDFLAGS=-Wl,-rpath,$PREFIX/lib"
    # shellcheck disable=SC2086
    ./configure --prefix="$PREFIX" $flags LDFLAGS="-Wl,-rpath,$PREFIX/lib" >/build/configure.log 2>&1 \
        || { tail -50 /build/config.log; exit 1; }
    echo "gilmatrix: make -j$(nproc)"
    make -j"$(nproc)" >/build/make.log 2>&1 || { tail -80 /build/make.log; exit 1; }
    grep -A12 'necessary bits to build these optional modules were not found' /build/make.log || true
    grep -B2 -A8 'Failed to build these modules' /build/make.log && exit 1
    echo "gilmatrix: make install"
    make install >/build/install.log 2>&1 || { tail -50 /build/install.log; exit 1; }
    cd / && rm -rf /build
    # Free-threaded builds install python3.Xt/python3t only: give every image a bin/python3.
    if [ ! -e "$PREFIX/bin/python3" ]; then
        ln -s "$(basename "$(ls "$PREFIX"/bin/python3.*[0-9]t | head -1)")" "$PREFIX/bin/python3"
    fi
elif [ "$KIND" = prefix ]; then
    mkdir -p "$(dirname "$PREFIX")"
    cp -a /src/prefix "$PREFIX"
else
    echo "unknown KIND=$KIND" >&2; exit 2
fi

before=$(du -sm "$PREFIX" | cut -f1)
find "$PREFIX/lib" -depth -type d \( -name test -o -name tests -o -name idle_test \) \
    -path "$PREFIX/lib/python3*" -exec rm -rf {} +
find "$PREFIX" -name 'libpython*.a' -delete
find "$PREFIX" -type f \( -name '*.so' -o -name '*.so.*' \) -exec strip --strip-debug {} +
for exe in "$PREFIX"/bin/python3*; do
    if [ -f "$exe" ] && [ ! -L "$exe" ] && head -c4 "$exe" | grep -q ELF; then
        strip --strip-debug "$exe"
    fi
done
echo "gilmatrix: $PREFIX trimmed from ${before} MB to $(du -sm "$PREFIX" | cut -f1) MB"
"$PREFIX/bin/python3" -VV
