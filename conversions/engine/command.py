"""The ffmpeg command lines: the conversion itself (one MP3, or one per chapter) and the cover picture. The only
place that builds them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import NoAudioStream
from .ffmpeg import ffmpeg_exe, file_url, input_args, output_args
from .formats import COVER_DEMUXERS, MP3, OutputFormat
from .options import TAG_MAX_LENGTH, TAGS, OutputOptions
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
        command += _cover_args(1)
    command += ["-map_metadata", "-1", "-map_chapters", "-1"]
    if copies_stream(info, options, output):
        command += ["-c:a", "copy"]
    else:
        command += _encoder_args(stream, options, output)
        if options.normalize:
            command += ["-filter:a", LOUDNORM_FILTER]
    for tag in TAGS:
        if value := getattr(options, tag):
            command += ["-metadata", f"{tag}={value}"]
    command += _limit_args(max_duration, max_output_bytes)
    command += [*output.muxer_options, *output_args(), "-f", output.muxer, file_url(target)]
    return command


def _encoder_args(stream: AudioStream, options: OutputOptions, output: OutputFormat) -> list[str]:
    """Output options: the encoder, its rate or quality, and the sample rate and channels to encode at."""
    args = ["-c:a", output.codec]
    if options.bitrate_kbps is not None:
        args += ["-b:a", f"{options.bitrate_kbps}k"]
    else:
        quality = options.vbr_quality if options.vbr_quality is not None else output.default_vbr_quality
        args += ["-q:a", str(quality)]
    if (rate := _output_sample_rate(stream, options, output)) is not None:
        args += ["-ar", str(rate)]
    if (channels := _output_channels(stream, options, output)) is not None:
        args += ["-ac", str(channels)]
    return args


def _limit_args(max_duration: float | None, max_output_bytes: int | None) -> list[str]:
    args = []
    if max_duration is not None:
        args += ["-t", _seconds(max_duration + DURATION_CAP_MARGIN_SECONDS)]
    if max_output_bytes is not None:
        args += ["-fs", str(max_output_bytes)]
    return args


def _cover_args(cover_input: int) -> list[str]:
    return [
        "-map", f"{cover_input}:v:0", "-c:v", "copy", "-disposition:v:0", "attached_pic",
        "-metadata:s:v:0", "title=Album cover", "-metadata:s:v:0", "comment=Cover (front)",
    ]


@dataclass(frozen=True)
class TrackPlan:
    """One MP3 of a split: the chapter it holds (seconds into the source) and its tags."""

    number: int  # from 1
    title: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def track_plan(info: MediaInfo) -> tuple[TrackPlan, ...]:
    """The tracks a file's chapters become, in order: an untitled chapter is "Chapter N"; a chapter is cut at the end
    of the file when the container says it goes further."""
    plan = []
    for chapter in info.chapters:
        end = min(chapter.end, info.duration) if info.duration else chapter.end
        if end <= chapter.start:
            continue  # begins at or past the end of the audio: nothing to hold
        number = len(plan) + 1
        title = (chapter.title or f"Chapter {number}")[:TAG_MAX_LENGTH]
        plan.append(TrackPlan(number=number, title=title, start=chapter.start, end=end))
    return tuple(plan)


def build_split_command(
    source: Path | str,
    targets: Sequence[Path | str],
    *,
    info: MediaInfo,
    options: OutputOptions,
    cover_image: Path | str | None = None,
    output: OutputFormat = MP3,
    max_duration: float | None = None,
    max_output_bytes: int | None = None,
) -> list[str]:
    """The ffmpeg argument list that writes each track of `track_plan(info)` to its target, in one run.

    The audio is decoded once and split in a filter graph: each branch is cut at its chapter (atrim, to the sample)
    and starts again at 0, then goes to its own output with its own tags (title, track N/total, album, artist) and
    `cover_image`. One more branch, the whole audio, goes to a null output: ffmpeg's progress reports the furthest
    output, so that one tells how far into the source the run is. `max_duration` and `max_output_bytes` apply to
    each output (the caller checks the total size).
    """
    stream = selected_stream(info, options)
    tracks = track_plan(info)
    if len(targets) != len(tracks):
        raise ValueError(f"{len(tracks)} tracks need as many targets, not {len(targets)}")
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y"]
    command += ["-progress", "pipe:1", "-stats_period", "0.5"]
    command += [*input_args(), "-vn", "-sn", "-dn", "-i", file_url(source)]
    if cover_image is not None:
        command += ["-f", COVER_DEMUXERS[0], *input_args(COVER_DEMUXERS), "-i", file_url(cover_image)]
    whole = f"[whole{len(tracks)}]"
    branches = "".join(f"[part{track.number}]" for track in tracks)
    graph = [f"[0:a:{stream.index}]asplit={len(tracks) + 1}{branches}{whole}"]
    for track in tracks:
        cut = f"atrim=start={_seconds(track.start)}:end={_seconds(track.end)},asetpts=PTS-STARTPTS"
        if options.normalize:
            cut += f",{LOUDNORM_FILTER}"
        graph.append(f"[part{track.number}]{cut}[track{track.number}]")
    command += ["-filter_complex", ";".join(graph)]
    album = options.album or options.title
    for track, target in zip(tracks, targets, strict=True):
        command += ["-map", f"[track{track.number}]"]
        if cover_image is not None:
            command += _cover_args(1)
        command += ["-map_metadata", "-1", "-map_chapters", "-1", *_encoder_args(stream, options, output)]
        tags = {"title": track.title, "track": f"{track.number}/{len(tracks)}", "album": album,
                "artist": options.artist}
        for tag, value in tags.items():
            if value:
                command += ["-metadata", f"{tag}={value}"]
        command += _limit_args(max_duration, max_output_bytes)
        command += [*output.muxer_options, *output_args(), "-f", output.muxer, file_url(target)]
    # The whole audio, decoded and dropped: the progress. A null output opens no file.
    command += ["-map", whole, "-map_metadata", "-1", "-map_chapters", "-1", *_limit_args(max_duration, None)]
    command += ["-c:a", "pcm_s16le", "-f", "null", "-"]
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
