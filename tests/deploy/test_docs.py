"""docs/deploy.md stays true to the repository: the files it names exist, and its table of k8s/ is complete."""

import re

from tests.deploy.manifests import K8S, ROOT

DOC = ROOT / "docs" / "deploy.md"


def test_every_path_the_deploy_guide_names_exists():
    text = DOC.read_text()
    paths = set(re.findall(r"`((?:k8s|docker|tests|mp3converter|conversions)/[\w./-]*\w)`", text))
    assert "k8s/kustomization.yaml" in paths  # the pattern finds paths
    missing = {path for path in paths if not (ROOT / path).exists()}
    # docker/.env is the user's copy of docker/.env.example, never committed.
    assert missing - {"docker/.env"} == set()


def test_the_deploy_guide_describes_every_file_in_k8s():
    text = DOC.read_text()
    described = set(re.findall(r"^\| (`[^|]+`) \|", text, re.MULTILINE))
    names = {name.rstrip("/") for cell in described for name in re.findall(r"`([^`]+)`", cell)}
    on_disk = {path.name for path in K8S.iterdir()} - {"kustomization.yaml"}
    assert on_disk - names == set(), "files in k8s/ that docs/deploy.md does not describe"
