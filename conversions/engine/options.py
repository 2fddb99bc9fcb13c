"""OutputOptions: what the user asked the MP3 to be. Every option rule lives here, once; the API delegates to it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields

from .errors import (
    UNDECODABLE_MESSAGE,
    InvalidOption,
    NoChapters,
    TooManyChapters,
    TrimOutOfRange,
    UnsupportedMedia,
)
from .formats import MP3
from .probe import MediaInfo

TAG_MAX_LENGTH = 200
TAGS = ("title", "artist", "album")
# `split`: one MP3 of the whole file (the default), or one per chapter.
SPLIT_NONE, SPLIT_CHAPTERS = "none", "chapters"
SPLITS = (SPLIT_NONE, SPLIT_CHAPTERS)
# The most chapters a file may be split into: each is an encoder in the one ffmpeg run, and a stored file.
MAX_CHAPTERS = 200


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
    - `split`: "none" (default, one MP3) or "chapters" (one MP3 per chapter of the file, tagged as an album's
      tracks: title = the chapter's, album = `album` or else `title`). Not with a trim.

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
    split: str | None = None

    def __post_init__(self):
        if self.split == SPLIT_NONE:
            object.__setattr__(self, "split", None)  # the default, stored as no choice at all
        problems: dict[str, list[str]] = {}
        for name, problem in self._problems():
            problems.setdefault(name, []).append(problem)
        if problems:
            raise InvalidOption(problems)

    def _problems(self) -> Iterator[tuple[str, str]]:
        """(option, sentence) for every rule broken: all of them, so a client can fix them all at once."""
        for name in self.names():
            value = getattr(self, name)
            if value is not None and (problem := self.problem_with(name, value)) is not None:
                yield name, problem
        # Rules across options.
        if self.bitrate_kbps is not None and self.vbr_quality is not None:
            yield "vbr_quality", "Choose either bitrate_kbps (constant bitrate) or vbr_quality, not both."
        if self.trim_end is not None and self.trim_end <= (self.trim_start or 0):
            yield "trim_end", "trim_end must be later than trim_start."
        if self.splits_chapters and (self.trim_start is not None or self.trim_end is not None):
            yield "split", "split=chapters splits the whole file at its chapters; leave out trim_start and trim_end."

    @staticmethod
    def problem_with(name: str, value) -> str | None:
        """What is wrong with one option on its own, or None. The API asks this of every option it parses."""
        if name == "bitrate_kbps" and value not in MP3.bitrates_kbps:
            return f"bitrate_kbps must be one of {_listed(MP3.bitrates_kbps)}."
        if name == "vbr_quality" and value not in MP3.vbr_qualities:
            best, smallest = MP3.vbr_qualities[0], MP3.vbr_qualities[-1]
            return f"vbr_quality must be between {best} (best) and {smallest} (smallest)."
        if name == "sample_rate" and value not in MP3.sample_rates:
            return f"sample_rate must be one of {_listed(MP3.sample_rates)}."
        if name == "channels" and value not in range(1, MP3.max_channels + 1):
            return "channels must be 1 (mono) or 2 (stereo)."
        if name in ("trim_start", "trim_end") and value < 0:
            return f"{name} must be zero or more seconds."
        if name == "audio_track" and value < 0:
            return "audio_track must be zero or more."
        if name == "split" and value not in SPLITS:
            return f"split must be one of {_listed(SPLITS)}."
        if name in TAGS and len(value) > TAG_MAX_LENGTH:
            return f"{name} must be at most {TAG_MAX_LENGTH} characters."
        return None

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
    def splits_chapters(self) -> bool:
        return self.split == SPLIT_CHAPTERS

    @property
    def changes_audio(self) -> bool:
        """Whether these options need the audio re-encoded (tags and cover alone do not; cutting at chapters does)."""
        return any(
            (self.bitrate_kbps, self.vbr_quality is not None, self.sample_rate, self.channels,
             self.trim_start, self.trim_end, self.normalize, self.splits_chapters)
        )

    def check_against(self, info: MediaInfo) -> None:
        """Raise if the options do not fit this file: a missing audio track, or a trim beyond its end."""
        if self.audio_track is not None and self.audio_track >= len(info.audio_streams):
            count = len(info.audio_streams)
            tracks = f"{count} audio track{'s' if count != 1 else ''}"
            raise InvalidOption({"audio_track": [f"This file has {tracks}: choose 0 to {count - 1}."]})
        stream = info.audio_streams[self.audio_track] if self.audio_track is not None else info.default_audio
        if stream is not None and stream.codec == "none":
            raise UnsupportedMedia(UNDECODABLE_MESSAGE)
        if self.splits_chapters and not info.chapters:
            raise NoChapters()
        if self.splits_chapters and len(info.chapters) > MAX_CHAPTERS:
            raise TooManyChapters(len(info.chapters), MAX_CHAPTERS)
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
