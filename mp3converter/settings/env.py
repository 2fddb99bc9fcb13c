"""The one `env` object every settings module reads from.

Values come from the process environment; a git-ignored `.env` file at the project root (written by `make run`)
fills in what the environment leaves unset, so a local checkout works with zero setup.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
# Local state (SQLite file, media folder, file broker, mail folder) lives in one git-ignored folder.
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# read_env never overrides variables already set in the environment.
environ.Env.read_env(BASE_DIR / ".env")
