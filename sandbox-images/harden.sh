#!/bin/sh
# Hardens a sandbox image after install.sh: adds the unprivileged user `sandbox` (uid and gid
# 10001) whose home is the work folder /work, clears every setuid and setgid bit, and deletes
# shell history files. Runs as root during `docker build`, in both build paths.
set -eu

sandbox_id=10001

if ! getent group sandbox >/dev/null; then
    groupadd --gid "$sandbox_id" sandbox
fi
if ! getent passwd sandbox >/dev/null; then
    # --no-log-init keeps a uid this high from growing /var/log/lastlog into a large sparse file.
    useradd --uid "$sandbox_id" --gid "$sandbox_id" --home-dir /work --no-create-home \
        --shell /bin/sh --comment "Cordon sandbox" --no-log-init sandbox
fi

mkdir -p /work
chown "$sandbox_id:$sandbox_id" /work
chmod 0700 /work

# With no setuid or setgid file left, no program in the image gains privileges by being run,
# even in a container started without no-new-privileges.
find / -xdev -perm /6000 -type f -exec chmod ug-s {} +

find / -xdev -type f \( -name '.*_history' -o -name '.history' \) -delete
