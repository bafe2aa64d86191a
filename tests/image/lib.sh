# shellcheck shell=bash
# tests/image/lib.sh: the podman set-up the image test shares between its
# build step (tests/image/build) and its checks (tests/image/run). Sourced.
#
# Everything podman keeps (images, layers, containers, its run-time files,
# events) lives under one directory, IMAGE_DIR; nothing goes to
# /var/lib/containers or /run/containers. podman_env IMAGE_DIR writes the
# three configuration files there and exports the variables that point
# podman at them.

# shellcheck disable=SC2034 # used by the scripts that source this file
# The images, by the names the build gives them (never pulled: --pull=never
# and no search registries).
DEBIAN_STANDIN=localhost/tailfence-ci/debian:bookworm
TAILSCALE_STANDIN=localhost/tailfence-ci/tailscale:v1.100.0
LITELLM_STANDIN=localhost/tailfence-ci/litellm:standin
RAILWAY_IMAGE=localhost/tailfence-ci/litellm-tailfence:test

podman_env() {
	local dir=$1
	mkdir -p "$dir/storage" "$dir/run" "$dir/tmp" "$dir/libpod" "$dir/network"
	# This sandbox refuses to raise hard rlimits (podman's default is to
	# raise nofile and nproc to the maximum) and has a hybrid cgroup layout
	# without a systemd that podman could ask: cgroupfs, events to a file.
	cat >"$dir/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$dir/events.log"
tmp_dir = "$dir/libpod"
static_dir = "$dir/storage/libpod"
volume_path = "$dir/storage/volumes"
image_copy_tmp_dir = "$dir/tmp"

[network]
network_config_dir = "$dir/network"
CONF
	cat >"$dir/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$dir/storage"
runroot = "$dir/run"
CONF
	# No registry is ever asked for anything.
	printf 'unqualified-search-registries = []\n' >"$dir/registries.conf"
	export CONTAINERS_CONF=$dir/containers.conf
	export CONTAINERS_STORAGE_CONF=$dir/storage.conf
	export CONTAINERS_REGISTRIES_CONF=$dir/registries.conf
	export TMPDIR=$dir/tmp
}

# podman_clean IMAGE_DIR: removes every container and image, unmounts what
# podman left mounted under IMAGE_DIR, and removes the directory.
podman_clean() {
	local dir=$1 m
	[ -d "$dir" ] || return 0
	if [ -f "$dir/containers.conf" ]; then
		podman_env "$dir"
		podman rm -a -f >/dev/null 2>&1 || true
		podman rmi -a -f >/dev/null 2>&1 || true
		podman system reset -f >/dev/null 2>&1 || true
	fi
	# Deepest first.
	while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done < <(awk -v d="$dir" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
	rm -rf -- "$dir"
}
