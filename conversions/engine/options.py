"""OutputOptions: what the user asked the MP3 to be. Every option rule lives here, once; the API delegates to it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields

from .errors import UNDECODABLE_MESSAGE, InvalidOption, TrimOutOfRange, UnsupportedMedia
from .formats import MP3
from .probe import MediaInfo

TAG_MAX_LENGTH = 200
TAGS = ("title", "artist", "album")


def _listed(values) -> str:
    return ", ".join(map(str, values))


@dataclass(frozen=True)
class OutputOptions:
    """What the MP3 should be. Every field left as None (or False) takes the documented default.

    - `bitrate_kbps` (CBR) or `vbr_quality` (LAME -V 0..9; default 2), not both.
    - `sample_rate`: default the source's when MP3 can carry it, else the nearest lower rate it can.
    - `channels`: 1 or 2; default the source's, surround downmixed to 2.
    - `trim_start`, `trim_end`: seconds into the source.
    - `normalize`: EBU R128 loudness normalisation.
    - `title`, `artist`, `album`: ID3 tags. `cover`: a frame of the video as the cover picture.
    - `audio_track`: which audio stream (0-based among the audio streams); default the one flagged default.

    Building one checks every option on its own (raising InvalidOption, which names the field); `check_against`
    then checks them against a probed file.
    """

    bitrate_kbps: int | None = None
    vbr_quality: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    trim_start: float | None = None
    trim_end: float | None = None
    normalize: bool = False
    title: str | None = None
    artist: str | None = None
    album: str | None = None
    cover: bool = False
    audio_track: int | None = None

    def __post_init__(self):
        problems = dict(self._problems())
        if problems:
            raise InvalidOption(problems)

    def _problems(self) -> Iterator[tuple[str, str]]:
        """(field, sentence) for every option that breaks a rule: all of them, so a client can fix all at once."""
        if self.bitrate_kbps is not None and self.vbr_quality is not None:
            yield "vbr_quality", "Choose either bitrate_kbps (constant bitrate) or vbr_quality, not both."
        if self.bitrate_kbps is not None and self.bitrate_kbps not in MP3.bitrates_kbps:
            yield "bitrate_kbps", f"bitrate_kbps must be one of {_listed(MP3.bitrates_kbps)}."
        if self.vbr_quality is not None and self.vbr_quality not in MP3.vbr_qualities:
            best, smallest = MP3.vbr_qualities[0], MP3.vbr_qualities[-1]
            yield "vbr_quality", f"vbr_quality must be between {best} (best) and {smallest} (smallest)."
        if self.sample_rate is not None and self.sample_rate not in MP3.sample_rates:
            yield "sample_rate", f"sample_rate must be one of {_listed(MP3.sample_rates)}."
        if self.channels is not None and self.channels not in range(1, MP3.max_channels + 1):
            yield "channels", "channels must be 1 (mono) or 2 (stereo)."
        if self.trim_start is not None and self.trim_start < 0:
            yield "trim_start", "trim_start must be zero or more seconds."
        if self.trim_end is not None and self.trim_end <= (self.trim_start or 0):
            yield "trim_end", "trim_end must be later than trim_start."
        if self.audio_track is not None and self.audio_track < 0:
            yield "audio_track", "audio_track must be zero or more."
        for tag in TAGS:
            if len(getattr(self, tag) or "") > TAG_MAX_LENGTH:
                yield tag, f"{tag} must be at most {TAG_MAX_LENGTH} characters."

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(option.name for option in fields(cls))

    def as_dict(self) -> dict:
        """The options the user chose, as stored on the job (defaults are left out)."""
        # `is` comparisons: vbr_quality=0 and trim_start=0 are real choices, unlike None and False.
        return {key: value for key, value in asdict(self).items() if value is not None and value is not False}

    @classmethod
    def from_dict(cls, values: dict) -> OutputOptions:
        known = cls.names()
        return cls(**{key: value for key, value in values.items() if key in known and value is not None})

    @property
    def changes_audio(self) -> bool:
        """Whether these options need the audio re-encoded (tags and cover alone do not)."""
        return any(
            (self.bitrate_kbps, self.vbr_quality is not None, self.sample_rate, self.channels,
             self.trim_start, self.trim_end, self.normalize)
        )

    def check_against(self, info: MediaInfo) -> None:
        """Raise if the options do not fit this file: a missing audio track, or a trim beyond its end."""
        if self.audio_track is not None and self.audio_track >= len(info.audio_streams):
            count = len(info.audio_streams)
            tracks = f"{count} audio track{'s' if count != 1 else ''}"
            raise InvalidOption({"audio_track": f"This file has {tracks}: choose 0 to {count - 1}."})
        stream = info.audio_streams[self.audio_track] if self.audio_track is not None else info.default_audio
        if stream is not None and stream.codec == "none":
            raise UnsupportedMedia(UNDECODABLE_MESSAGE)
        if info.duration is None:
            return
        for name in ("trim_start", "trim_end"):
            value = getattr(self, name)
            # A trim end a little past the end (rounding in the container's duration) is harmless.
            limit = info.duration if name == "trim_start" else info.duration + 0.5
            if value is not None and value >= limit:
                raise TrimOutOfRange(
                    f"{name} is {value:g} s, but the file is only {info.duration:.2f} s long."
                )
