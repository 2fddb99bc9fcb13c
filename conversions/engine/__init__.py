"""The conversion engine: probe a media file and convert its audio to MP3 with ffmpeg. No Django in here.

The only code that builds ffmpeg command lines (`command.py`). Every command is an argument list, never a shell,
every path is passed with the `file:` protocol, every input with allowlists of the protocols (`file`) and demuxers
(real containers and audio files) ffmpeg may use, and every process gets a minimal environment (`ffmpeg.py`).
Limits (duration, output size) are passed in by the caller.

- `formats`: the output format as data (MP3 is the one row), and the input demuxers allowed.
- `options`: OutputOptions, what the user asked for, and every rule about it.
- `probe`: what a file holds, and whether it lasts longer than a limit.
- `command`: the ffmpeg argument lists (one MP3, or one per chapter in one run).
- `run`: a conversion, start to end (progress, cancel, timeout, the limits, failures).
- `errors`: what can go wrong with the input.
"""

from .command import (
    COVER_MAX_SIDE,
    LOUDNORM_FILTER,
    TrackPlan,
    build_command,
    build_split_command,
    copies_stream,
    cover_command,
    expected_duration,
    track_plan,
)
from .errors import (
    UNDECODABLE_MESSAGE,
    ConversionCancelled,
    ConversionTimeout,
    CorruptMedia,
    InvalidOption,
    MediaError,
    NoAudioStream,
    NoChapters,
    OutputTooLarge,
    TooLong,
    TooManyChapters,
    TrimOutOfRange,
    UnsupportedMedia,
)
from .ffmpeg import child_env, ffmpeg_exe, input_args
from .formats import INPUT_DEMUXERS, MP3, OutputFormat
from .options import MAX_CHAPTERS, SPLITS, TAG_MAX_LENGTH, OutputOptions
from .probe import AudioStream, Chapter, MediaInfo, measure_duration, parse_chapters, parse_probe_output, probe
from .run import SHORTFALL_TOLERANCE_SECONDS, ConversionResult, TrackResult, TracksResult, convert, convert_tracks

__all__ = [
    "COVER_MAX_SIDE",
    "INPUT_DEMUXERS",
    "LOUDNORM_FILTER",
    "MAX_CHAPTERS",
    "MP3",
    "SHORTFALL_TOLERANCE_SECONDS",
    "SPLITS",
    "TAG_MAX_LENGTH",
    "UNDECODABLE_MESSAGE",
    "AudioStream",
    "Chapter",
    "ConversionCancelled",
    "ConversionResult",
    "ConversionTimeout",
    "CorruptMedia",
    "InvalidOption",
    "MediaError",
    "MediaInfo",
    "NoAudioStream",
    "NoChapters",
    "OutputFormat",
    "OutputOptions",
    "OutputTooLarge",
    "TooLong",
    "TooManyChapters",
    "TrackPlan",
    "TrackResult",
    "TracksResult",
    "TrimOutOfRange",
    "UnsupportedMedia",
    "build_command",
    "build_split_command",
    "child_env",
    "convert",
    "convert_tracks",
    "copies_stream",
    "cover_command",
    "expected_duration",
    "ffmpeg_exe",
    "input_args",
    "measure_duration",
    "parse_chapters",
    "parse_probe_output",
    "probe",
    "track_plan",
]
