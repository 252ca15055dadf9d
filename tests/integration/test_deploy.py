"""The deployment files in deploy/: the systemd unit (systemd-analyze) and the container image
(built and run with docker or podman when one can run containers here)."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.harness import free_port

ROOT = Path(__file__).resolve().parents[2]
RESTGUARD = str(Path(sys.executable).with_name("restguard"))


# --- deploy/restguard.service -------------------------------------------------------------------

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def _unit_here(tmp_path: Path, text: str) -> Path:
    """The unit with ExecStart's binary where this test installed restguard (verify checks
    that the binary exists)."""
    unit = tmp_path / "restguard.service"
    unit.write_text(text.replace("/opt/restguard/bin/restguard", RESTGUARD))
    return unit


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    text = (ROOT / "deploy" / "restguard.service").read_text()
    for setting in (
        "DynamicUser=yes",
        "StateDirectory=restguard",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ExecStart=/opt/restguard/bin/restguard serve",
    ):
        assert f"\n{setting}\n" in text, setting
    unit = _unit_here(tmp_path, text)
    verify = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert (verify.returncode, verify.stdout, verify.stderr) == (0, "", "")
    security = subprocess.run(
        [str(SYSTEMD_ANALYZE), "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for restguard\.service: (\d+\.\d+)", security.stdout)
    assert found, security.stdout + security.stderr
    assert float(found.group(1)) <= 2.0  # systemd rates 0-10; below 2 is "OK"


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_template_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    """deploy/restguard@.service: instance NAME serves /var/lib/restguard/NAME.toml."""
    text = (ROOT / "deploy" / "restguard@.service").read_text()
    for setting in (
        "User=restguard",
        "StateDirectory=restguard",
        "Environment=RESTGUARD_CONFIG=/var/lib/restguard/%i.toml",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ExecStart=/opt/restguard/bin/restguard serve --workers ${RESTGUARD_WORKERS}",
    ):
        assert f"\n{setting}\n" in text, setting
    unit = tmp_path / "restguard@gw1.service"
    unit.write_text(text.replace("/opt/restguard/bin/restguard", RESTGUARD))
    verify = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert (verify.returncode, verify.stdout, verify.stderr) == (0, "", "")
    security = subprocess.run(
        [str(SYSTEMD_ANALYZE), "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(
        r"Overall exposure level for restguard@gw1\.service: (\d+\.\d+)", security.stdout
    )
    assert found, security.stdout + security.stderr
    assert float(found.group(1)) <= 2.0


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The twin: a mistake in the unit does produce output, so the test above can fail."""
    text = (ROOT / "deploy" / "restguard.service").read_text()
    unit = _unit_here(tmp_path, text.replace("ProtectSystem=strict", "ProtectSystem=strickt"))
    verify = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert "ProtectSystem" in verify.stderr or "protect system" in verify.stderr


# --- deploy/Dockerfile --------------------------------------------------------------------------

RUNTIMES = [path for path in (shutil.which("docker"), shutil.which("podman")) if path]
RUNTIME: str | None = None  # the first of RUNTIMES that can run containers here


def _container(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    assert RUNTIME is not None
    return subprocess.run([RUNTIME, *args], capture_output=True, text=True, timeout=timeout)


def _runtime() -> str:
    global RUNTIME
    for candidate in RUNTIMES:
        RUNTIME = candidate
        if _container("info").returncode == 0:
            return candidate
    pytest.skip(f"no container runtime can run containers here (tried {RUNTIMES})")


def _base_image() -> str:
    """The Dockerfile's base image (RESTGUARD_TEST_BASE_IMAGE overrides it: a local image made
    for machines that cannot reach Docker Hub); skip when it cannot be had."""
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)
    assert default, "deploy/Dockerfile names its base image in ARG PYTHON_IMAGE"
    image = os.environ.get("RESTGUARD_TEST_BASE_IMAGE", default.group(1))
    if _container("image", "inspect", image).returncode != 0:
        pulled = _container("pull", image, timeout=300)
        if pulled.returncode != 0:
            pytest.skip(f"cannot pull {image}: {pulled.stderr.strip()[-200:]}")
    return image


@pytest.mark.slow
@pytest.mark.skipif(not RUNTIMES, reason="no container runtime (docker or podman)")
def test_container_image_serves_and_is_healthy(tmp_path: Path) -> None:
    runtime = _runtime()
    base = _base_image()
    tag = f"localhost/restguard-test:{uuid.uuid4().hex[:8]}"
    name = f"restguard-test-{uuid.uuid4().hex[:8]}"
    build = [
        "build",
        "-f",
        str(ROOT / "deploy" / "Dockerfile"),
        "--build-arg",
        f"PYTHON_IMAGE={base}",
        "-t",
        tag,
    ]
    if runtime.endswith("podman"):
        build += ["--format", "docker"]  # the OCI format has no HEALTHCHECK
    built = _container(*build, str(ROOT), timeout=900)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    port = free_port()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    # Within this host's limits: a runtime's defaults may exceed what it is allowed to set.
    limits = ("--ulimit", f"nofile=1024:{min(hard, 65536)}", "--ulimit", "nproc=1024:4096")
    try:
        inspect = json.loads(_container("image", "inspect", tag).stdout)[0]
        config = inspect.get("Config") or inspect["config"]
        assert config["User"] == "restguard:restguard"
        assert "/var/lib/restguard" in config["Volumes"]
        assert config["Cmd"] == ["restguard", "serve"]
        healthcheck = config.get("Healthcheck") or inspect["Healthcheck"]  # docker | podman
        assert "/healthz" in " ".join(healthcheck["Test"])

        first = _container("run", "--rm", *limits, tag)  # an empty volume, no upstream named
        assert first.returncode == 1
        assert "Set RESTGUARD_UPSTREAM" in first.stderr

        started = _container(
            "run",
            "-d",
            "--name",
            name,
            *limits,
            "-p",
            f"127.0.0.1:{port}:8080",
            "-e",
            "RESTGUARD_UPSTREAM=http://127.0.0.1:9",
            tag,
        )
        assert started.returncode == 0, started.stderr
        deadline = time.monotonic() + 60
        while True:
            health = (
                _container("healthcheck", "run", name)
                if RUNTIME.endswith("podman")
                else _container("inspect", "--format", "{{.State.Health.Status}}", name)
            )
            healthy = health.returncode == 0 and "unhealthy" not in health.stdout
            if healthy and (RUNTIME.endswith("podman") or "healthy" in health.stdout):
                break
            assert time.monotonic() < deadline, _container("logs", name).stderr
            time.sleep(1)
        # the gateway answers from outside the container: default deny, as JSON
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing", timeout=5)
            pytest.fail("no route matches: 404 expected")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
            assert json.loads(exc.read())["error"] == "not_found"
        who = _container("exec", name, "sh", "-c", "id -u; stat -c '%a %U' /var/lib/restguard/*")
        lines = who.stdout.splitlines()
        assert lines[0] == "10001"
        assert lines[1:] and all(line == "600 restguard" for line in lines[1:]), lines
        listed = _container("exec", name, "restguard", "apikey", "list", "--json")
        assert json.loads(listed.stdout) == []
        stopped = _container("stop", "-t", "30", name, timeout=60)
        assert stopped.returncode == 0
        code = _container("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert code == "0"
    finally:
        _container("rm", "-f", name)
        _container("rmi", "-f", tag)
