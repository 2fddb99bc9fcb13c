"""The notification channels, by name. A new channel is a module here and a row in CHANNELS."""

from .base import Channel
from .email import EmailChannel

CHANNELS: dict[str, Channel] = {channel.name: channel for channel in (EmailChannel(),)}

__all__ = ["CHANNELS", "Channel", "EmailChannel"]
