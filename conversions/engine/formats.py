"""The formats as data: the output format (what the options, the command builder, the API schema and the downloads
read), and the input demuxers ffmpeg may use.

MP3 is the only output row. A second format would be a second row here (and a way to choose it), not edits across
modules.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutputFormat:
    name: str
    codec: str  # ffmpeg's encoder
    muxer: str  # ffmpeg's output format (-f)
    muxer_options: tuple[str, ...]  # what the muxer needs beyond the defaults
    extension: str
    mime_type: str
    bitrates_kbps: tuple[int, ...]  # the constant bitrates the encoder offers
    vbr_qualities: tuple[int, ...]  # its VBR quality steps, best first
    default_vbr_quality: int
    sample_rates: tuple[int, ...]  # the rates the format can carry, ascending
    standard_sample_rate: int  # the rate to write when the source's is unknown and one must be set
    max_channels: int
    cover: bool  # whether it can carry an attached cover picture
    copy_codecs: frozenset[str]  # source codecs that can be copied into it as they are, without re-encoding


MP3 = OutputFormat(
    name="mp3",
    codec="libmp3lame",
    muxer="mp3",
    # ID3v2.3: the version most players and tag editors read (ffmpeg writes 2.4 by default).
    muxer_options=("-id3v2_version", "3"),
    extension=".mp3",
    mime_type="audio/mpeg",
    bitrates_kbps=(32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    # LAME's -V 0 (best, largest) to 9 (smallest); -V 2 is transparent for most listeners.
    vbr_qualities=tuple(range(10)),
    default_vbr_quality=2,
    # MPEG-1, -2 and -2.5 layer III.
    sample_rates=(8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
    standard_sample_rate=44100,
    max_channels=2,
    cover=True,
    copy_codecs=frozenset({"mp3"}),
)


# The demuxers ffmpeg may open an upload with (its -format_whitelist; a name matches any part of a demuxer's
# comma-separated name, so "mov" is "mov,mp4,m4a,3gp,3g2,mj2" and "matroska" is "matroska,webm"). Only real
# containers and audio files: no playlist, manifest or script demuxer (hls, dash, concat, sdp, imf, image2, …),
# which would read other files or URLs, and no image or text demuxer. A file any other demuxer claims is refused.
INPUT_DEMUXERS = (
    # video containers
    "mov",  # mp4, mov, m4a, 3gp, 3g2
    "matroska",  # mkv, webm
    "avi",
    "flv",
    "mpegts",
    "mpeg",  # MPEG-PS: .mpg, .vob
    "asf",  # wmv, wma
    # audio files
    "mp3",
    "aac",  # raw ADTS
    "ac3",
    "eac3",
    "dts",
    "truehd",
    "ogg",  # ogg, oga, opus
    "wav",
    "w64",
    "flac",
    "aiff",
    "caf",
    "amr",
    "wv",
)
# Our own cover picture, read back as the second input of the conversion: a JPEG the engine wrote.
COVER_DEMUXERS = ("jpeg_pipe",)
