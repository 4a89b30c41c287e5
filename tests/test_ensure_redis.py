"""scripts/ensure-redis.sh on a machine without Redis, with apt-get and systemctl stubbed.

The stubs model what matters: the package install starts the redis-server service unless a
policy-rc.d denies it (exit 101), as invoke-rc.d / deb-systemd-invoke do. The script must
install, leave no service of its own running, never stop a service that ran before, and never
signal other processes (no pkill: the stub PATH has none, so a call would fail the script).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "ensure-redis.sh"

STUBS = {
    "id": "#!/bin/sh\necho 0\n",
    "apt-get": """#!/bin/sh
echo "apt-get $*" >>"$STATE/calls"
case "$1" in install)
    if [ -x "$KVREPL_POLICY_RC_D" ] && ! "$KVREPL_POLICY_RC_D" redis-server start; then :
    else echo active >"$STATE/service"; fi;;
esac
""",
    "systemctl": """#!/bin/sh
echo "systemctl $*" >>"$STATE/calls"
case "$1" in
    is-active) [ "$(cat "$STATE/service" 2>/dev/null)" = active ];;
    stop) echo inactive >"$STATE/service";;
esac
""",
}


def run_script(tmp_path: Path, policy: str | None, service_before: str) -> tuple[str, str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("bash", "sh", "cat", "chmod", "rm"):
        (bin_dir / name).symlink_to(shutil.which(name))
    for name, text in STUBS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "service").write_text(service_before)
    policy_path = tmp_path / "policy-rc.d"
    if policy is not None:
        policy_path.write_text(policy)
        policy_path.chmod(0o755)
    result = subprocess.run(
        [str(bin_dir / "bash"), str(SCRIPT)], capture_output=True, text=True, timeout=30,
        env={"PATH": str(bin_dir), "STATE": str(tmp_path),
             "KVREPL_POLICY_RC_D": str(policy_path), "HOME": os.environ.get("HOME", "/")})
    assert result.returncode == 0, result.stderr
    after = policy_path.read_text() if policy_path.exists() else None
    assert after == policy  # its own policy removed, someone else's left alone
    return (result.stdout, (tmp_path / "calls").read_text(),
            (tmp_path / "service").read_text().strip())


def test_install_starts_no_service(tmp_path: Path) -> None:
    out, calls, service = run_script(tmp_path, None, "inactive")
    assert "apt-get install -y -qq redis-server redis-tools" in calls
    assert service == "inactive" and "systemctl stop" not in calls


@pytest.mark.parametrize("before", ["inactive", "active"])
def test_only_a_service_the_install_started_is_stopped(tmp_path: Path, before: str) -> None:
    allow_all = "#!/bin/sh\nexit 0\n"  # a policy-rc.d of the machine's that lets it start
    out, calls, service = run_script(tmp_path, allow_all, before)
    assert "apt-get install" in calls
    if before == "inactive":
        assert "systemctl stop redis-server" in calls and service == "inactive"
        assert "stopping the redis-server service the package install started" in out
    else:  # the user's own service: left running
        assert "systemctl stop" not in calls and service == "active"
