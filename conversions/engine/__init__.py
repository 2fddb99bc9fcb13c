"""The conversion engine: probe a media file and convert its audio to MP3 with ffmpeg. No Django in here.

The only code that builds ffmpeg command lines (`command.py`). Every command is an argument list, never a shell,
and every path is passed with the `file:` protocol (`ffmpeg.py`).

- `formats`: the output format as data (MP3 is the one row).
- `options`: OutputOptions, what the user asked for, and every rule about it.
- `probe`: what a file holds.
- `command`: the ffmpeg argument lists.
- `run`: a conversion, start to end (progress, cancel, timeout, failures).
- `errors`: what can go wrong with the input.
"""

from .command import COVER_MAX_SIDE, LOUDNORM_FILTER, build_command, copies_stream, cover_command, expected_duration
from .errors import (
    UNDECODABLE_MESSAGE,
    ConversionCancelled,
    ConversionTimeout,
    CorruptMedia,
    InvalidOption,
    MediaError,
    NoAudioStream,
    TrimOutOfRange,
    UnsupportedMedia,
)
from .ffmpeg import ffmpeg_exe
from .formats import MP3, OutputFormat
from .options import TAG_MAX_LENGTH, OutputOptions
from .probe import AudioStream, MediaInfo, parse_probe_output, probe
from .run import SHORTFALL_TOLERANCE_SECONDS, ConversionResult, convert

__all__ = [
    "COVER_MAX_SIDE",
    "LOUDNORM_FILTER",
    "MP3",
    "SHORTFALL_TOLERANCE_SECONDS",
    "TAG_MAX_LENGTH",
    "UNDECODABLE_MESSAGE",
    "AudioStream",
    "ConversionCancelled",
    "ConversionResult",
    "ConversionTimeout",
    "CorruptMedia",
    "InvalidOption",
    "MediaError",
    "MediaInfo",
    "NoAudioStream",
    "OutputFormat",
    "OutputOptions",
    "TrimOutOfRange",
    "UnsupportedMedia",
    "build_command",
    "convert",
    "copies_stream",
    "cover_command",
    "expected_duration",
    "ffmpeg_exe",
    "parse_probe_output",
    "probe",
]
