"""The table of every media file the suite can make: `SPECS`, name -> MediaSpec."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_DURATION = 2.0
VIDEO_SIZE = "160x120"
VIDEO_RATE = 10

# Demuxer names exactly as ``ffmpeg -i`` prints them after "Input #0, ".
MP4_FAMILY = "mov,mp4,m4a,3gp,3g2,mj2"
MATROSKA = "matroska,webm"


# --------------------------------------------------------------------------
# The spec table
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioTrack:
    """One audio stream a generated file should contain (in stream order)."""

    codec: str  # codec name as ffmpeg reports it: "aac", "mp3", "opus", ...
    sample_rate: int
    channels: int
    frequency: float = 440.0  # sine tone in Hz
    default: bool | None = None  # force the "default" disposition on/off; None = muxer's choice


@dataclass(frozen=True)
class MediaSpec:
    name: str  # stable key, e.g. "mp4_aac"
    filename: str  # basename of the generated file, e.g. "clip.mp4"
    # Seconds of audio a file made with the default duration (2.0) contains;
    # 0.0 when there is no audio.  Use expected_audio_duration() for others.
    duration: float
    has_audio: bool  # probe_output() lists at least one audio stream
    is_media: bool  # probe_output() succeeds (ffmpeg can open the file)
    kind: str = "ffmpeg"  # key into _BUILDERS: ffmpeg | text | random | empty
    format: str | None = None  # demuxer name ffmpeg reports, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    video_codec: str | None = None  # "h264", "vp9", "mpeg4", "png" ... (as ffmpeg reports)
    audio: tuple[AudioTrack, ...] = ()
    muxer: str | None = None  # ffmpeg -f value used to write it
    tags: tuple[tuple[str, str], ...] = ()  # container metadata written (-metadata k=v)
    extra_args: tuple[str, ...] = ()  # extra ffmpeg output options
    truncate: float | None = None  # keep only this fraction of the bytes
    note: str = ""

    @property
    def title(self) -> str | None:
        return dict(self.tags).get("title")

    @property
    def truncated(self) -> bool:
        return self.truncate is not None

    def expected_audio_duration(self, requested: float = DEFAULT_DURATION) -> float:
        """Audio seconds a file generated with ``duration=requested`` should decode to.

        Truncated files report what the container *claims*; they decode to less.
        """
        return requested if self.has_audio else 0.0


# Encoder options per codec.  "{s}" becomes the output stream specifier
# ("v:0", "a:1", ...), so the same row serves multi-track files.
_VIDEO_ENCODERS: dict[str, tuple[str, ...]] = {
    "h264": ("-c:{s}", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"),
    "vp9": (
        "-c:{s}", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
        "-b:{s}", "150k", "-pix_fmt", "yuv420p",
    ),
    "mpeg4": ("-c:{s}", "mpeg4", "-q:{s}", "5", "-pix_fmt", "yuv420p"),
    "png": ("-c:{s}", "png", "-frames:{s}", "1"),
}
_AUDIO_ENCODERS: dict[str, tuple[str, ...]] = {
    "aac": ("-c:{s}", "aac", "-b:{s}", "64k"),
    "mp3": ("-c:{s}", "libmp3lame", "-b:{s}", "64k"),
    "opus": ("-c:{s}", "libopus", "-b:{s}", "48k"),
    "vorbis": ("-c:{s}", "libvorbis", "-q:{s}", "1"),
    "ac3": ("-c:{s}", "ac3", "-b:{s}", "192k"),
    "flac": ("-c:{s}", "flac"),
    "pcm_s16le": ("-c:{s}", "pcm_s16le"),
}


def _t(codec: str, rate: int = 44100, ch: int = 2, **kw) -> tuple[AudioTrack, ...]:
    return (AudioTrack(codec, rate, ch, **kw),)


def _av(name, filename, fmt, muxer, video, audio=(), **kw) -> MediaSpec:
    return MediaSpec(
        name=name, filename=filename,
        duration=DEFAULT_DURATION if audio else 0.0,
        has_audio=bool(audio), is_media=True,
        format=fmt, muxer=muxer, video_codec=video, audio=tuple(audio), **kw,
    )


_TONE_TITLE = "Test Tone 440"
_CLIP_TITLE = "Test Clip"

_SPEC_LIST: tuple[MediaSpec, ...] = (
    # ---- video containers -------------------------------------------------
    _av("mp4_aac", "clip.mp4", MP4_FAMILY, "mp4", "h264", _t("aac"),
        tags=(("title", _CLIP_TITLE),)),
    _av("mp4_noaudio", "silent.mp4", MP4_FAMILY, "mp4", "h264"),
    _av("mov_aac", "clip.mov", MP4_FAMILY, "mov", "h264", _t("aac")),
    _av("mkv_opus", "clip.mkv", MATROSKA, "matroska", "h264", _t("opus", 48000)),
    _av("webm_vorbis", "clip.webm", MATROSKA, "webm", "vp9", _t("vorbis")),
    _av("avi_mp3", "clip.avi", "avi", "avi", "mpeg4", _t("mp3")),
    _av("flv_aac", "clip.flv", "flv", "flv", "h264", _t("aac")),
    _av("ts_aac", "clip.ts", "mpegts", "mpegts", "h264", _t("aac"),
        note="mpegts starts at 1.4 s; ADTS AAC keeps its 1024-sample priming"),
    _av("3gp_aac", "clip.3gp", MP4_FAMILY, "3gp", "h264", _t("aac", 22050, 1)),
    _av("mkv_ac3", "surround.mkv", MATROSKA, "matroska", "h264", _t("ac3", 48000, 6),
        note="6 channels; ffmpeg reports the layout as 5.1(side)"),
    _av("mkv_flac", "lossless.mkv", MATROSKA, "matroska", "h264", _t("flac")),
    _av("mkv_pcm", "pcm.mkv", MATROSKA, "matroska", "h264", _t("pcm_s16le")),
    _av("mkv_two_tracks", "two_tracks.mkv", MATROSKA, "matroska", "h264",
        (AudioTrack("aac", 44100, 2, 440.0, default=False),
         AudioTrack("aac", 44100, 1, 880.0, default=True)),
        note="a:0 440 Hz stereo (not default), a:1 880 Hz mono flagged default"),
    # ---- audio only -------------------------------------------------------
    _av("m4a_aac", "tone.m4a", MP4_FAMILY, "ipod", None, _t("aac")),
    _av("mp3", "tone.mp3", "mp3", "mp3", None, _t("mp3"),
        tags=(("title", _TONE_TITLE),), extra_args=("-id3v2_version", "3")),
    _av("ogg_vorbis", "tone.ogg", "ogg", "ogg", None, _t("vorbis")),
    _av("oga_vorbis", "tone.oga", "ogg", "oga", None, _t("vorbis")),
    _av("opus", "tone.opus", "ogg", "opus", None, _t("opus", 48000)),
    _av("wav", "tone.wav", "wav", "wav", None, _t("pcm_s16le")),
    _av("flac", "tone.flac", "flac", "flac", None, _t("flac")),
    # ---- images / damaged / not media ------------------------------------
    MediaSpec("png", "image.png", 0.0, has_audio=False, is_media=True,
              format="png_pipe", muxer="image2pipe", video_codec="png",
              note="a still image: ffmpeg opens it (one png video stream) but it has no audio"),
    MediaSpec("truncated_mp4", "truncated.mp4", 0.0, has_audio=False, is_media=False,
              muxer="mp4", video_codec="h264", audio=_t("aac"), truncate=0.40,
              note="mp4_aac cut to 40% of its bytes; moov is at the end so ffmpeg "
                   "says 'moov atom not found' and cannot open it"),
    MediaSpec("truncated_faststart_mp4", "truncated_faststart.mp4", DEFAULT_DURATION,
              has_audio=True, is_media=True, format=MP4_FAMILY,
              muxer="mp4", video_codec="h264", audio=_t("aac"), truncate=0.50,
              extra_args=("-movflags", "+faststart"),
              note="moov first, cut to 50% of its bytes: opens and claims the full "
                   "duration, decoding stops part-way ('partial file')"),
    MediaSpec("text", "notes.txt", 0.0, has_audio=False, is_media=False, kind="text",
              note="short plain text (< ~400 bytes): ffmpeg cannot open it"),
    MediaSpec("text_large", "long_notes.txt", 0.0, has_audio=False, is_media=True,
              kind="text", format="tty", video_codec="ansi",
              note="~2 KiB plain text: ffmpeg's tty demuxer opens any .txt over "
                   "~400-450 bytes as an 'ansi' video stream (no audio)"),
    MediaSpec("random_bytes_mp4", "random.mp4", 0.0, has_audio=False, is_media=False,
              kind="random", note="64 KiB of seeded pseudo-random bytes"),
    MediaSpec("empty_mp4", "empty.mp4", 0.0, has_audio=False, is_media=False, kind="empty"),
)

SPECS: dict[str, MediaSpec] = {s.name: s for s in _SPEC_LIST}
