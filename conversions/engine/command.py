"""The ffmpeg command lines: the conversion itself and the cover picture. The only place that builds them."""

from __future__ import annotations

from pathlib import Path

from .errors import NoAudioStream
from .ffmpeg import ffmpeg_exe, file_url, input_args, output_args
from .formats import COVER_DEMUXERS, MP3, OutputFormat
from .options import TAGS, OutputOptions
from .probe import AudioStream, MediaInfo

# EBU R128 targets for `normalize`: -16 LUFS integrated, -1.5 dBTP peak (common for spoken word and music online).
LOUDNORM_FILTER = "loudnorm=I=-16:TP=-1.5:LRA=11"
# Longest side of an embedded cover picture, in pixels.
COVER_MAX_SIDE = 600
# With a duration limit, the output stops this far past it (headers can lie: the limit is enforced on what decodes).
DURATION_CAP_MARGIN_SECONDS = 1.0


def selected_stream(info: MediaInfo, options: OutputOptions) -> AudioStream:
    if options.audio_track is not None:
        options.check_against(info)
        return info.audio_streams[options.audio_track]
    stream = info.default_audio
    if stream is None:
        raise NoAudioStream()
    return stream


def _output_sample_rate(stream: AudioStream, options: OutputOptions, output: OutputFormat) -> int | None:
    if options.sample_rate is not None:
        return options.sample_rate
    if stream.sample_rate is None:
        # loudnorm works at 192 kHz internally, so its output always needs an explicit rate.
        return output.standard_sample_rate if options.normalize else None
    if stream.sample_rate in output.sample_rates:
        return stream.sample_rate
    lower = [rate for rate in output.sample_rates if rate <= stream.sample_rate]
    return lower[-1] if lower else output.sample_rates[0]


def _output_channels(stream: AudioStream, options: OutputOptions, output: OutputFormat) -> int | None:
    if options.channels is not None:
        return options.channels
    # MP3 holds at most two channels: downmix surround sound.
    return output.max_channels if stream.channels is not None and stream.channels > output.max_channels else None


def expected_duration(info: MediaInfo, options: OutputOptions) -> float | None:
    """Seconds of audio the output should hold, given the trim."""
    if info.duration is None:
        return None
    end = min(options.trim_end if options.trim_end is not None else info.duration, info.duration)
    return max(0.0, end - (options.trim_start or 0.0))


def copies_stream(info: MediaInfo, options: OutputOptions, output: OutputFormat = MP3) -> bool:
    """Audio already in the output's codec that no option changes is copied as it is, not decoded and re-encoded."""
    return selected_stream(info, options).codec in output.copy_codecs and not options.changes_audio


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def build_command(
    source: Path | str,
    target: Path | str,
    *,
    info: MediaInfo,
    options: OutputOptions,
    cover_image: Path | str | None = None,
    output: OutputFormat = MP3,
    max_duration: float | None = None,
    max_output_bytes: int | None = None,
) -> list[str]:
    """The ffmpeg argument list that writes `source`'s audio to `target` in `output`, with `cover_image` attached.

    `max_duration` (seconds) stops the output just past it (-t), `max_output_bytes` once it is that large (-fs).
    """
    stream = selected_stream(info, options)
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y"]
    # Machine-readable progress on stdout, twice a second (also how a cancel is noticed quickly).
    command += ["-progress", "pipe:1", "-stats_period", "0.5"]
    # As input options, -ss/-to seek the input: decoding starts near the trim instead of at the beginning.
    if options.trim_start is not None:
        command += ["-ss", _seconds(options.trim_start)]
    if options.trim_end is not None:
        command += ["-to", _seconds(options.trim_end)]
    # Input options: the demuxer drops video, subtitle and data packets unread instead of passing them on.
    command += [*input_args(), "-vn", "-sn", "-dn", "-i", file_url(source)]
    if cover_image is not None:
        command += ["-f", COVER_DEMUXERS[0], *input_args(COVER_DEMUXERS), "-i", file_url(cover_image)]
    command += ["-map", f"0:a:{stream.index}"]
    if cover_image is not None:
        command += ["-map", "1:v:0", "-c:v", "copy", "-disposition:v:0", "attached_pic"]
        command += ["-metadata:s:v:0", "title=Album cover", "-metadata:s:v:0", "comment=Cover (front)"]
    command += ["-map_metadata", "-1", "-map_chapters", "-1"]
    if copies_stream(info, options, output):
        command += ["-c:a", "copy"]
    else:
        command += ["-c:a", output.codec]
        if options.bitrate_kbps is not None:
            command += ["-b:a", f"{options.bitrate_kbps}k"]
        else:
            quality = options.vbr_quality if options.vbr_quality is not None else output.default_vbr_quality
            command += ["-q:a", str(quality)]
        if options.normalize:
            command += ["-filter:a", LOUDNORM_FILTER]
        if (rate := _output_sample_rate(stream, options, output)) is not None:
            command += ["-ar", str(rate)]
        if (channels := _output_channels(stream, options, output)) is not None:
            command += ["-ac", str(channels)]
    for tag in TAGS:
        if value := getattr(options, tag):
            command += ["-metadata", f"{tag}={value}"]
    if max_duration is not None:
        command += ["-t", _seconds(max_duration + DURATION_CAP_MARGIN_SECONDS)]
    if max_output_bytes is not None:
        command += ["-fs", str(max_output_bytes)]
    command += [*output.muxer_options, *output_args(), "-f", output.muxer, file_url(target)]
    return command


def cover_command(source: Path | str, target: Path | str, *, info: MediaInfo, options: OutputOptions) -> list[str]:
    """The ffmpeg argument list that saves one frame, a tenth of the way into the (trimmed) clip, as a JPEG."""
    at = (options.trim_start or 0.0) + (expected_duration(info, options) or 0.0) * 0.1
    # Only ever shrink: fit within COVER_MAX_SIDE, keep the aspect ratio.
    side = COVER_MAX_SIDE
    scale = f"scale='min({side},iw)':'min({side},ih)':force_original_aspect_ratio=decrease:force_divisible_by=2"
    return [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y",
        "-ss", _seconds(at), *input_args(), "-i", file_url(source),
        "-map", "0:v:0", "-frames:v", "1", "-filter:v", scale, "-c:v", "mjpeg", "-q:v", "3",
        *output_args(), "-f", "image2", "-update", "1", file_url(target),
    ]
