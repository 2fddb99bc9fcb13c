"""requirements.txt: the image installs it with --no-deps, so it must pin every dependency of every pin."""

import importlib.metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.readers import ROOT


def test_requirements_pin_the_whole_dependency_closure():
    """The image installs requirements.txt with --no-deps: every dependency of every pin must be pinned too."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            [specifier] = requirement.specifier
            assert specifier.operator == "==", line
            pins[canonicalize_name(requirement.name)] = (requirement, specifier.version)
    unpinned = set()
    for name, (requirement, version) in pins.items():
        if requirement.marker and not requirement.marker.evaluate():
            continue  # a backport this interpreter does not install, e.g. async-timeout before Python 3.11.3
        distribution = importlib.metadata.distribution(name)
        assert distribution.version == version, f"{name}: installed {distribution.version}, pinned {version}"
        for dependency in map(Requirement, distribution.requires or []):
            environments = [{"extra": extra} for extra in requirement.extras or {""}]
            if dependency.marker and not any(dependency.marker.evaluate(env) for env in environments):
                continue
            if canonicalize_name(dependency.name) not in pins:
                unpinned.add(f"{dependency.name} (needed by {name})")
    assert unpinned == set()
