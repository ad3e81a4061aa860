"""docker-compose.yml: the team deployment's services exist, run one image, and every
command names a CLI subcommand or module that exists in this project."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
PROJECT = [name for name, svc in SERVICES.items() if svc.get("image") != "postgres:16"]


def command_words(svc: dict[str, Any]) -> list[str]:
    """The command as words; ``sh -c "a && b"`` is split into its parts too."""
    cmd = svc.get("command", [])
    words = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    if words[:2] == ["sh", "-c"]:
        words = shlex.split(" ".join(words[2:]).replace("&&", " ; "))
    return words


def scalesweep_subcommands() -> set[str]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return set(sub.choices)


def test_services_exist_and_build_from_the_one_dockerfile() -> None:
    assert {"db", "migrate", "ray-head", "ray-worker", "api"} <= set(SERVICES)
    assert SERVICES["db"]["image"].startswith("postgres:16")
    assert "healthcheck" in SERVICES["db"]
    for name in PROJECT:
        svc = SERVICES[name]
        assert "build" in svc or "image" in svc, name
        build = svc["build"]
        assert build["context"] == "." and build.get("dockerfile", "Dockerfile") == "Dockerfile"
    assert (ROOT / "Dockerfile").is_file()


@pytest.mark.parametrize("name", PROJECT)
def test_commands_name_existing_subcommands_and_modules(name: str) -> None:
    words = command_words(SERVICES[name])
    assert words, f"{name} has no command"
    checked = 0
    for i, word in enumerate(words):
        if word == "scalesweep":
            assert words[i + 1] in scalesweep_subcommands(), (name, words[i + 1])
            build_parser().parse_args(
                words[i + 1 : words.index(";", i) if ";" in words[i:] else None]
            )
            checked += 1
        elif word == "-m" and words[i - 1] in ("python", "python3"):
            spec = importlib.util.find_spec(words[i + 1])
            assert spec is not None, (name, words[i + 1])
            if spec.submodule_search_locations:  # a package runs its __main__
                assert importlib.util.find_spec(f"{words[i + 1]}.__main__"), (name, words[i + 1])
            checked += 1
        elif word == "ray":
            assert words[i + 1] == "start"
            checked += 1
    assert checked, f"{name}: command {words} runs nothing known"


def test_ray_head_runs_the_runner_and_workers_join_it() -> None:
    head = command_words(SERVICES["ray-head"])
    assert "--head" in head and "workers" in head
    for name in (n for n in SERVICES if n.startswith("ray-worker")):
        assert "--address=ray-head:6379" in command_words(SERVICES[name])
        assert "SCALESWEEP_DATABASE_URL" not in SERVICES[name].get("environment", {})
    gpu = SERVICES["ray-worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert gpu["profiles"] == ["gpu"]  # optional


@pytest.mark.parametrize("name", ["migrate", "ray-head", "api"])
def test_database_url_points_at_the_db_service(name: str) -> None:
    url = SERVICES[name]["environment"]["SCALESWEEP_DATABASE_URL"]
    assert re.match(r"postgresql\+psycopg://[^@]+@db:5432/\w+$", url), url
    assert "db" in SERVICES[name]["depends_on"] or "migrate" in SERVICES[name]["depends_on"]


def test_startup_order() -> None:
    assert SERVICES["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    for name in ("api", "ray-head"):
        cond = SERVICES[name]["depends_on"]["migrate"]["condition"]
        assert cond == "service_completed_successfully"
    assert "--no-runner" in command_words(SERVICES["api"])


def test_the_ray_nodes_and_the_runner_share_one_token_secret_never_committed() -> None:
    ray_services = ["ray-head", *(n for n in SERVICES if n.startswith("ray-worker"))]
    for name in ray_services:  # ray-head also runs the runner (python -m workers)
        env = SERVICES[name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN_PATH"] == "/run/secrets/ray_auth_token", name
        assert SERVICES[name]["secrets"] == ["ray_auth_token"], name
        assert "RAY_AUTH_TOKEN" not in env, f"{name}: the token itself must not be in the file"
    source = COMPOSE["secrets"]["ray_auth_token"]["file"]
    assert source.endswith("./secrets/ray_auth_token}")
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "secrets/" in ignored
    tracked = subprocess.run(
        ["git", "ls-files", "secrets"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert tracked == ""


def test_the_image_installs_the_lock_and_carries_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install -r requirements.lock" in dockerfile
    for package in ("service", "workers", "api", "cli", "migrations"):
        assert f"COPY {package} ./{package}" in dockerfile, package
