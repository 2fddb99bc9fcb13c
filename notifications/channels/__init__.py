"""The notification channels, by name. A new channel is a module here and a row in CHANNELS."""

from .base import Channel
from .email import EmailChannel
from .webhook import WebhookChannel

CHANNELS: dict[str, Channel] = {channel.name: channel for channel in (EmailChannel(), WebhookChannel())}

__all__ = ["CHANNELS", "Channel", "EmailChannel", "WebhookChannel"]
