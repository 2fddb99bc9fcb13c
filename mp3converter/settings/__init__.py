"""Settings package: a base module plus one small module per integration.

Production differs from a local run only by environment variables (see README, "Configuration").
"""

from .base import *  # noqa: F401,F403
from .celery import *  # noqa: F401,F403
from .email import *  # noqa: F401,F403
from .logs import *  # noqa: F401,F403
from .metrics import *  # noqa: F401,F403
from .storage import *  # noqa: F401,F403
