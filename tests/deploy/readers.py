"""Readers for the deployment files the tests check: the Dockerfile, docker/compose.yaml, docker/.env.example, the
settings' environment variables and the entrypoint scripts. Each reads the files as the tool that uses them would."""

import ast
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
# The settings every app container reads (env_file), tracked: no secret is in it.
APP_ENV = DOCKER / "app.env"
DOCKERFILE = DOCKER / "Dockerfile"
SETTINGS = ROOT / "mp3converter" / "settings"

# The image's roles, as Compose runs them: service name → entrypoint in docker/bin/.
APP_SERVICES = {
    "migrate": "migrate",
    "web": "web",
    "fetch": "fetch-worker",
    "convert": "convert-worker",
    "notify": "notify-worker",
    "flower": "flower",
}
# Where the image keeps the checkout (WORKDIR); Compose commands name scripts by their path in the image.
IMAGE_APP_DIR = "/app"


# --- Dockerfile ------------------------------------------------------------------------------------------------------
@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arguments for name, arguments in self.instructions if name == keyword]


def logical_lines(path: Path) -> list[str]:
    """Shell or Dockerfile lines with comments and blank lines dropped and backslash continuations joined."""
    lines, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):  # also a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return lines


def dockerfile_stages(path: Path = DOCKERFILE) -> list[Stage]:
    """The build stages, each with its instructions (continuation lines joined, comments dropped, ARGs resolved)."""
    logical = logical_lines(path)
    global_args, stages = {}, []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword, arguments = keyword.upper(), arguments.strip()
        if keyword == "ARG" and not stages:
            name, _, default = arguments.partition("=")
            global_args[name] = default
        elif keyword == "FROM":
            base, *rest = arguments.split()
            base = re.sub(r"\$\{(\w+)\}", lambda match: global_args[match.group(1)], base)
            name = rest[1] if len(rest) == 2 and rest[0].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        else:
            stages[-1].instructions.append((keyword, arguments))
    return stages


def image_env() -> dict[str, str]:
    """The ENV of the final stage: what every container of the image starts with."""
    env = {}
    for arguments in dockerfile_stages()[-1].all("ENV"):
        for pair in arguments.split():
            name, _, value = pair.partition("=")
            env[name] = value
    return env


def apt_packages(stage: Stage) -> set[str]:
    """Packages a stage installs with apt-get install."""
    packages = set()
    for command in stage.all("RUN"):
        for part in re.split(r"&&|;", command):
            words = part.split()
            if "apt-get" in words and "install" in words:
                packages |= {word for word in words[words.index("install") + 1:] if not word.startswith("-")}
    return packages


# --- Environment files and Compose -----------------------------------------------------------------------------------
@dataclass
class EnvFile:
    active: dict[str, str]  # NAME=value lines: what the containers get
    commented: dict[str, str]  # "# NAME=value" lines: documented, not set

    @property
    def listed(self) -> set[str]:
        return set(self.active) | set(self.commented)


_ENV_LINE = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def env_file(path: Path = ENV_EXAMPLE) -> EnvFile:
    active, commented = {}, {}
    for line in path.read_text().splitlines():
        match = _ENV_LINE.match(line.strip())
        if match:
            target = commented if match.group("comment") else active
            target[match.group("name")] = match.group("value").strip()
    return EnvFile(active=active, commented=commented)


_INTERPOLATION = re.compile(
    r"\$\$"
    r"|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?[-?])(?P<argument>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


class MissingVariable(KeyError):
    pass


def interpolate(value, variables: dict[str, str]):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} and $$ over a loaded Compose file."""
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match):
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        operator, argument = match.group("operator"), match.group("argument")
        present = name in variables and (variables[name] != "" or operator not in (":-", ":?"))
        if present:
            return variables[name]
        if operator in (":-", "-"):
            return argument
        raise MissingVariable(f"{name}: {argument or 'not set'}")

    return _INTERPOLATION.sub(replace, value)


def compose_variables(value) -> set[str]:
    """Names a Compose file interpolates."""
    if isinstance(value, dict):
        return set().union(*(compose_variables(item) for item in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(compose_variables(item) for item in value)) if value else set()
    if not isinstance(value, str):
        return set()
    matches = [match for match in _INTERPOLATION.finditer(value) if match.group(0) != "$$"]
    return {match.group("braced") or match.group("bare") for match in matches}


def compose_raw() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose(variables: dict[str, str] | None = None) -> dict:
    """docker/compose.yaml as Compose sees it when docker/.env is a copy of the example (YAML merge keys resolved)."""
    return interpolate(compose_raw(), env_file().active if variables is None else variables)


def filled_in() -> dict[str, str]:
    """docker/.env as a person makes it from the example: every change-me placeholder replaced by a random value
    (the same ones for the whole test run, as the file is written once)."""
    if not _FILLED_IN:
        for name, value in env_file().active.items():
            _FILLED_IN[name] = secrets.token_urlsafe(50) if "change-me" in value else value
        _FILLED_IN["FLOWER_BASIC_AUTH"] = f"admin:{secrets.token_urlsafe(16)}"
    return dict(_FILLED_IN)


_FILLED_IN: dict[str, str] = {}


def service_environment(service: str, variables: dict[str, str] | None = None) -> dict[str, str]:
    """What a container of an app service starts with: the image's ENV, then env_file, then `environment:`.
    The secrets are those of `variables` (default: docker/.env filled in from the example)."""
    config = compose(filled_in() if variables is None else variables)["services"][service]
    env = dict(image_env())
    env_files = config.get("env_file", [])
    for entry in [env_files] if isinstance(env_files, str) else env_files:
        path = entry if isinstance(entry, str) else entry["path"]
        # docker/.env is the user's copy of the example: the example is what the repository can check.
        path = COMPOSE_FILE.parent / path
        env.update(env_file(ENV_EXAMPLE if path == DOCKER / ".env" else path).active)
    environment = config.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    env.update({name: str(value) for name, value in environment.items()})
    # The image's PATH names its virtualenv; here the tests' own Python runs the code.
    env["PATH"] = os.environ["PATH"]
    return env


def image_path(path: str) -> Path:
    """A path inside the image (/app/...) → the same file in this checkout."""
    return ROOT / Path(path).relative_to(IMAGE_APP_DIR)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")


def duration_seconds(text: str) -> float:
    """A Compose duration (1h5m, 40s, 1m30s) in seconds."""
    parts = _DURATION_PART.findall(text)
    assert parts and "".join(number + unit for number, unit in parts) == text, f"not a duration: {text!r}"
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(number) * scale[unit] for number, unit in parts)


# --- Who reads which variable ----------------------------------------------------------------------------------------
@dataclass
class Variable:
    name: str
    default: object  # the literal default, or NO_LITERAL_DEFAULT when it is computed (or absent)
    where: str


NO_LITERAL_DEFAULT = object()


def settings_variables() -> dict[str, Variable]:
    """Every `env(...)` / `env.<type>("NAME", default=...)` call in mp3converter/settings/."""
    found = {}
    for path in sorted(SETTINGS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
                continue
            function = node.func
            # env("NAME", ...) or env.<type>("NAME", ...)
            target = function.value if isinstance(function, ast.Attribute) else function
            reads_env = isinstance(target, ast.Name) and target.id == "env"
            if not reads_env or not isinstance(node.args[0].value, str):
                continue
            default = NO_LITERAL_DEFAULT
            for keyword in node.keywords:
                if keyword.arg == "default":
                    try:
                        default = ast.literal_eval(keyword.value)
                    except ValueError:
                        default = NO_LITERAL_DEFAULT
            found[node.args[0].value] = Variable(node.args[0].value, default, str(path.relative_to(ROOT)))
    return found


_SCRIPT_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?:(?P<operator>:?[-?=+])(?P<argument>[^}]*))?\}")


def script_variables(paths) -> dict[str, Variable]:
    """Variables shell scripts read as ${NAME}, ${NAME:-default} or ${NAME:?message}."""
    found = {}
    for path in paths:
        for match in _SCRIPT_VARIABLE.finditer(Path(path).read_text()):
            name, operator = match.group("name"), match.group("operator")
            default = match.group("argument") if operator in (":-", "-") else NO_LITERAL_DEFAULT
            if name in found and found[name].default != default:
                default = NO_LITERAL_DEFAULT  # one default per role (a worker's node name, say)
            found[name] = Variable(name, default, str(Path(path).relative_to(ROOT)))
    return found


def env_text(value) -> str:
    """A settings default as it would be written in an env file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return str(value)


def without_env_file_lookup() -> str:
    """Python that stops settings/env.py reading the checkout's .env, as in the image (.dockerignore leaves it out)."""
    return "import environ; environ.Env.read_env = staticmethod(lambda *args, **kwargs: None); "
