#!/bin/sh
# Installs one sandbox runtime's Debian packages with the current bookworm updates, then deletes
# what no sandbox uses: apt and its keyrings, package lists and caches, documentation and logs.
#
# Usage: install.sh RUNTIME_DIR
#   RUNTIME_DIR/packages     one Debian package per line; `#` starts a comment
#   RUNTIME_DIR/prune-paths  optional; one absolute path per line, deleted after installing
#
# Both build paths run this script: the runtime's Dockerfile on top of debian:12-slim, and the
# offline builder (bootstrap-rootfs) inside a debootstrap tree before that tree becomes a base
# image. When the Dockerfile then runs on that offline base, apt is already gone, so the script
# only checks that every listed package is installed and finds nothing left to delete.
set -eu

runtime_dir=$1
packages=$(sed -e 's/#.*//' "$runtime_dir/packages")

is_installed() {
    [ "$(dpkg-query -W -f '${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    # The image's apt sources name bookworm, bookworm-updates and bookworm-security, so the
    # upgrade brings in security fixes that the bookworm release files do not have yet.
    apt-get -q update
    apt-get -q -y -o Dpkg::Use-Pty=0 upgrade
    # $packages is split on purpose: one word per package.
    # shellcheck disable=SC2086
    apt-get -q -y -o Dpkg::Use-Pty=0 install --no-install-recommends $packages
fi

for package in $packages; do
    if ! is_installed "$package"; then
        echo "install.sh: package $package is listed in $runtime_dir/packages but is not installed" >&2
        exit 1
    fi
done

# apt and its keyrings only serve installing packages, which nothing in a sandbox may do. dpkg
# stays: it is Essential, and its database /var/lib/dpkg/status lets image scanners list the
# installed packages. adduser goes too because harden.sh uses useradd from `passwd`.
apt_tooling=""
for package in apt libapt-pkg6.0 gpgv debian-archive-keyring adduser; do
    if is_installed "$package"; then
        apt_tooling="$apt_tooling $package"
    fi
done
if [ -n "$apt_tooling" ]; then
    # shellcheck disable=SC2086
    dpkg --purge $apt_tooling
fi

rm -rf /etc/apt /var/lib/apt /var/cache/apt /var/cache/debconf/*-old /var/lib/dpkg/*-old
rm -rf /var/log/* /usr/share/man/* /usr/share/info/* /usr/share/lintian
find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +

# Debian's copyright files stay: they are the licence notices that go with redistributing the image.
find /usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
find /usr/share/doc -mindepth 1 -depth -type d -empty -delete

if [ -f "$runtime_dir/prune-paths" ]; then
    sed -e 's/#.*//' "$runtime_dir/prune-paths" | while read -r path; do
        [ -n "$path" ] || continue
        case $path in
            /?*) rm -rf -- "$path" ;;
            *)
                echo "install.sh: $runtime_dir/prune-paths: '$path' is not an absolute path" >&2
                exit 1
                ;;
        esac
    done
fi
