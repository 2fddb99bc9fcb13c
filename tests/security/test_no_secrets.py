"""No file in the repository holds a real-looking secret: only placeholders (`change-me-...`), the throwaway
credentials of the local test services, and values computed at run time."""

import math
import re
import secrets
import string
import subprocess
from collections import Counter
from pathlib import Path

from accounts.apikeys import key_make

ROOT = Path(__file__).resolve().parents[2]

TOKEN_FORMATS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "Stripe live key": re.compile(r"\b[sr]k_live_[0-9A-Za-z]{16,}"),
    "JSON Web Token": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),
    # This service's own personal API keys (accounts/apikeys.py).
    "mp3converter API key": re.compile(r"\bmp3k_[0-9a-f]{12}_[A-Za-z0-9_-]{43}"),
}
# scheme://user:password@host
URL_CREDENTIALS = re.compile(r"\b[a-z][a-z0-9+.-]*://([^\s/:@'\"]+):([^\s@'\"]+)@([^\s/:'\"]+)")
# NAME=value / NAME: value / "NAME": "value" for secret-like names.
SECRET_ASSIGNMENT = re.compile(
    r"""(?i)\b[A-Z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|ACCESS_KEY|PRIVATE_KEY|_PASS)[A-Z0-9_]*["']?\s*[:=]\s*["']?([^\s"',)}]+)"""
)
# Credentials of the throwaway services the tests start on this machine (tests/services.sh), or of example hosts.
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "example.com", "smtp.example.com", "smtp.example.org"}
PLACEHOLDER = re.compile(r"^(change-me|\$|\{|<|%|\*|\.\.\.)", re.IGNORECASE)
# Code, not a value: a call, a subscript, an attribute or a constant's name.
CODE = re.compile(r"^[A-Za-z_][\w.]*[(\[]|^[A-Za-z_]\w*(\.\w+)+$|^[A-Z][A-Z0-9_]+$")
# A phrase a person chose (words and hyphens, such as a test user's password), not a generated secret.
PHRASE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)+$")
HEX = re.compile(r"^[0-9a-fA-F]+$")


def entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def looks_real(value: str) -> bool:
    """Long, varied and not a placeholder or a reference: the shape of a generated secret."""
    value = value.strip("\"'`")
    if PLACEHOLDER.match(value) or CODE.match(value) or PHRASE.match(value) or len(value) < 16:
        return False
    # Hex carries at most 4 bits a character: one random 36-digit hex string in ten measures under 3.5, none under 3.
    varied = 3.0 if HEX.match(value) else 3.5
    return entropy(value) >= varied and any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def findings(text: str) -> list[str]:
    found = [name for name, pattern in TOKEN_FORMATS.items() if pattern.search(text)]
    for user, password, host in URL_CREDENTIALS.findall(text):
        if host not in LOCAL_HOSTS and not PLACEHOLDER.match(password) and looks_real(password):
            found.append(f"password in a URL for {host}")
    for value in SECRET_ASSIGNMENT.findall(text):
        if looks_real(value):
            found.append(f"secret-like value {value[:6]}...")
    return found


def tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in listed.decode().split("\0") if name]


def test_no_tracked_file_holds_a_real_looking_secret():
    files = tracked_files()
    assert len(files) > 50, "git ls-files found the repository"
    report = {}
    for path in files:
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError):
            continue  # binary files, or a file deleted but not yet committed
        if found := findings(text):
            report[str(path.relative_to(ROOT))] = found
    assert report == {}


def random_text(alphabet: str, length: int) -> str:
    """A generated secret's shape: random characters, with at least one digit and one letter (the scanner's rule;
    24 random letters and digits hold no digit about once in seventy draws)."""
    while True:
        text = "".join(secrets.choice(alphabet) for _ in range(length))
        if any(c.isdigit() for c in text) and any(c.isalpha() for c in text):
            return text


def test_the_scan_finds_secrets_of_each_kind():
    """Guards the test above against a scanner that finds nothing. The samples are made here, never committed."""
    upper = string.ascii_uppercase + string.digits
    mixed = string.ascii_letters + string.digits
    samples = {
        "aws": "AKIA" + random_text(upper, 16),
        "github": "token = ghp_" + random_text(mixed, 36),
        "url": f"DATABASE_URL=mysql://app:{random_text(mixed, 24)}@db.internal:3306/app",
        "assignment": f"DJANGO_SECRET_KEY={random_text(mixed, 50)}",
        "yaml": f"  MYSQL_ROOT_PASSWORD: {random_text(mixed, 24)}",
        "pem": "-----BEGIN RSA " + "PRIVATE KEY-----",  # split, so this file does not match itself
        "api key": f"curl -H 'Authorization: Bearer {key_make().key}'",
    }
    for kind, sample in samples.items():
        assert findings(sample), kind
    assert findings("DJANGO_SECRET_KEY=change-me-django-secret-key") == []
    assert findings("CELERY_BROKER_URL=amqp://mp3converter:mp3converter@127.0.0.1:5672/mp3converter_test") == []
    assert findings('  MANAGEMENT_URL: "http://mp3converter:$rabbitmq_password@rabbitmq:15672/mp3converter"') == []


def test_the_scan_would_catch_generated_kubernetes_secrets_if_they_were_committed():
    generated = subprocess.run(["sh", str(ROOT / "k8s" / "make-secrets.sh")], capture_output=True, text=True, check=True)
    found = findings(generated.stdout)
    assert "password in a URL for mysql" in found
    assert sum(item.startswith("secret-like value") for item in found) >= 4
