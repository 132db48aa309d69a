"""Patch kind's images/base/files (copied into the build context) for hosts where nodes cannot run privileged.

Root there lacks CAP_SYS_RESOURCE: `docker run --privileged` fails ("unable to apply caps"); the docker shim
runs nodes with every other capability instead, and docker then mounts cgroupfs read-only, so the entrypoint
remounts the v1 hierarchies read-write; without CAP_SYS_RESOURCE runc cannot lower oom_score_adj either, so
containerd gets `restrict_oom_score_adj = true`. Usage: patch-kind-base.py FILES_DIR
"""

import sys
from pathlib import Path

REMOUNT = """# --- pat-booking: nodes run without --privileged (host root lacks CAP_SYS_RESOURCE), so docker
# mounts cgroupfs read-only: make it writable again (we hold CAP_SYS_ADMIN, apparmor/seccomp unconfined).
remount_cgroups_rw() {
  local m
  for m in $(findmnt -lun -o target -t tmpfs,cgroup,cgroup2 | grep '^/sys/fs/cgroup'); do
    if findmnt -n -o OPTIONS "$m" | grep -qw ro; then
      log_info "remounting $m read-write (unprivileged node)"
      mount -o remount,bind,rw "$m"
    fi
  done
  [[ -e /dev/kmsg ]] || ln -sf /dev/console /dev/kmsg
}

# validate state
"""


def replace_once(path: Path, old: str, new: str) -> None:
    """Replace the single occurrence of old, or fail: a new kind version must be looked at again."""
    text = path.read_text()
    if text.count(old) != 1:
        sys.exit(f"{path}: expected exactly one {old!r}")
    path.write_text(text.replace(old, new, 1))


def main() -> None:
    """Patch the entrypoint and containerd's config in place."""
    root = Path(sys.argv[1])
    entrypoint = root / "usr/local/bin/entrypoint"
    replace_once(entrypoint, "# validate state\n", REMOUNT)
    replace_once(entrypoint, "\nfix_mount\nfix_cgroup\n", "\nremount_cgroups_rw\nfix_mount\nfix_cgroup\n")
    config = root / "etc/containerd/config.toml"
    replace_once(config, "restrict_oom_score_adj = false", "restrict_oom_score_adj = true")


if __name__ == "__main__":
    main()
