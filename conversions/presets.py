"""Named sets of output options, for people who do not want to pick a bitrate: the web page offers them, and the API
takes `preset` too. Options given alongside a preset win over it; a bitrate or a VBR quality replaces the preset's
choice of either, since the two cannot go together."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    options: dict


PRESETS = {
    preset.name: preset
    for preset in (
        Preset("standard", _("Standard: VBR 2"), {"vbr_quality": 2}),
        Preset("best", _("Best: 320 kbps"), {"bitrate_kbps": 320}),
        Preset("small", _("Small: VBR 6 mono"), {"vbr_quality": 6, "channels": 1}),
        Preset("voice", _("Voice: 64 kbps mono + loudness normalisation"), {"bitrate_kbps": 64, "channels": 1, "normalize": True}),
    )
}
DEFAULT_PRESET = "standard"
RATE_OPTIONS = ("bitrate_kbps", "vbr_quality")


def preset_options(name: str | None, given: dict) -> dict:
    """The options of preset `name` (none for None), overridden by the ones `given`."""
    options = dict(PRESETS[name].options) if name else {}
    if any(given.get(rate) is not None for rate in RATE_OPTIONS):
        for rate in RATE_OPTIONS:
            options.pop(rate, None)
    options.update({key: value for key, value in given.items() if value is not None})
    return options
