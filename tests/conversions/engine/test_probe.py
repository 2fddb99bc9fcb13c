"""conversions.engine.probe: what a file holds, from the real ffmpeg on generated media and from its output."""


import pytest

from conversions import engine
from conversions.engine import (
    AudioStream,
    UnsupportedMedia,
)
from tests.conversions.engine.helpers import AUDIO_SPECS, UNREADABLE_SPECS, VIDEO_ONLY_SPECS, default_track
from tests.media import SPECS


@pytest.mark.parametrize("name", AUDIO_SPECS + ["truncated_faststart_mp4"])
def test_probe_reads_audio_streams_and_duration(media, name):
    spec = SPECS[name]
    info = engine.probe(media(name))
    assert info.has_audio
    assert len(info.audio_streams) == len(spec.audio)
    assert info.duration == pytest.approx(spec.duration, abs=0.15)
    assert info.format_name == spec.format
    assert info.has_video == (spec.video_codec is not None)
    for stream, track in zip(info.audio_streams, spec.audio, strict=True):
        assert stream.codec == track.codec
        assert stream.sample_rate == track.sample_rate
        assert stream.channels == track.channels
    chosen = info.default_audio
    assert (chosen.codec, chosen.channels) == (default_track(spec).codec, default_track(spec).channels)


@pytest.mark.parametrize("name", VIDEO_ONLY_SPECS)
def test_probe_of_video_without_audio(media, name):
    info = engine.probe(media(name))
    assert not info.has_audio
    assert info.default_audio is None
    assert info.has_video
    assert info.duration == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize("name", UNREADABLE_SPECS)
def test_probe_refuses_non_media_images_and_text(media, name):
    with pytest.raises(UnsupportedMedia) as raised:
        engine.probe(media(name))
    assert raised.value.code == "unsupported_media"
    assert len(raised.value.message) > 20


def test_unreadable_specs_are_the_expected_ones():
    # Guards the parametrisation above: a new spec must land in exactly one group.
    assert set(UNREADABLE_SPECS) == {"png", "truncated_mp4", "text", "text_large", "random_bytes_mp4", "empty_mp4"}
    assert VIDEO_ONLY_SPECS == ["mp4_noaudio"]



# --- parse_probe_output ----------------------------------------------------------------------------------------
SURROUND_MKV = """\
Input #0, matroska,webm, from 'file:/tmp/surround.mkv':
  Metadata:
    ENCODER         : Lavf61.7.100
  Duration: 00:01:02.50, start: 0.000000, bitrate: 245 kb/s
  Stream #0:0: Video: h264 (High), yuv420p(progressive), 160x120 [SAR 1:1 DAR 4:3], 10 fps, 10 tbr, 1k tbn (default)
      Metadata:
        ENCODER         : Lavc61.19.100 libx264
        DURATION        : 00:01:02.500000000
  Stream #0:1(eng): Audio: ac3, 48000 Hz, 5.1(side), fltp, 192 kb/s (default)
      Metadata:
        DURATION        : 00:01:02.496000000
At least one output file must be specified
"""

PCM_SIX_CHANNELS = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/tmp/studio.mov':
  Duration: 00:00:10.00, start: 0.000000, bitrate: 6913 kb/s
  Stream #0:0[0x1](und): Audio: pcm_s24le (in24 / 0x34326E69), 48000 Hz, 6 channels, s32 (24 bit), 6912 kb/s (default)
      Metadata:
        handler_name    : SoundHandler
At least one output file must be specified
"""

MP3_WITH_COVER = """\
[mp3 @ 0x55d0c1a3e740] Estimating duration from bitrate, this may be inaccurate
Input #0, mp3, from 'file:/tmp/song.mp3':
  Metadata:
    title           : Song
    artist          : Someone
  Duration: 00:03:25.47, start: 0.025057, bitrate: 192 kb/s
  Stream #0:0: Audio: mp3 (mp3float), 44100 Hz, stereo, fltp, 192 kb/s
      Metadata:
        encoder         : LAME3.100
  Stream #0:1: Video: mjpeg (Baseline), yuvj420p(pc, bt470bg/unknown/unknown), 500x500 [SAR 1:1 DAR 1:1], 90k tbr, 90k tbn (attached pic)
      Metadata:
        comment         : Cover (front)
At least one output file must be specified
"""

COVER_ONLY = """\
Input #0, mp3, from 'file:/tmp/cover.mp3':
  Duration: N/A, start: 0.000000, bitrate: N/A
  Stream #0:0: Video: png, rgb24(pc), 300x300, 90k tbr, 90k tbn (attached pic)
At least one output file must be specified
"""

LIVE_TS_NO_DURATION = """\
Input #0, mpegts, from 'file:/tmp/live.ts':
  Duration: N/A, start: 1.400000, bitrate: N/A
  Program 1
    Metadata:
      service_name    : Service01
  Stream #0:0[0x100]: Video: h264 (Constrained Baseline) ([27][0][0][0] / 0x001B), yuv420p(progressive), 160x120, 10 fps, 10 tbr, 90k tbn
  Stream #0:1[0x101]: Audio: aac (LC) ([15][0][0][0] / 0x000F), 22050 Hz, mono, fltp, 31 kb/s
At least one output file must be specified
"""

SILENT_MP4 = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/tmp/silent.mp4':
  Duration: 00:00:02.00, start: 0.000000, bitrate: 120 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 160x120, 118 kb/s, 10 fps (default)
At least one output file must be specified
"""

STILL_IMAGE = """\
Input #0, png_pipe, from 'file:/tmp/image.png':
  Duration: N/A, bitrate: N/A
  Stream #0:0: Video: png, rgb24(pc), 160x120, 25 fps, 25 tbr, 25 tbn
"""

TEXT_AS_ANSI = """\
Input #0, tty, from 'file:/tmp/long_notes.txt':
  Duration: 00:00:00.36, bitrate: 1 kb/s
  Stream #0:0: Video: ansi, pal8, 640x400, 25 fps, 25 tbr, 25 tbn
"""

NOT_MEDIA = (
    "[in#0 @ 0x5583] Error opening input: Invalid data found when processing input\n"
    "file:/tmp/notes.txt: Invalid data found when processing input\n"
)


def test_parse_surround_layout():
    info = engine.parse_probe_output(SURROUND_MKV)
    assert info.format_name == "matroska,webm"
    assert info.duration == pytest.approx(62.5)
    assert info.has_video
    assert info.audio_streams == (AudioStream(index=0, codec="ac3", sample_rate=48000, channels=6, default=True),)


def test_parse_channel_count_written_out():
    info = engine.parse_probe_output(PCM_SIX_CHANNELS)
    assert info.default_audio == AudioStream(index=0, codec="pcm_s24le", sample_rate=48000, channels=6, default=True)
    assert not info.has_video
    assert info.duration == pytest.approx(10.0)


def test_parse_cover_art_is_not_video():
    info = engine.parse_probe_output(MP3_WITH_COVER)
    assert info.format_name == "mp3"
    assert info.duration == pytest.approx(205.47)
    assert not info.has_video
    assert [(s.codec, s.channels, s.sample_rate) for s in info.audio_streams] == [("mp3", 2, 44100)]


def test_parse_cover_art_alone_is_unsupported():
    with pytest.raises(UnsupportedMedia):
        engine.parse_probe_output(COVER_ONLY)


def test_parse_duration_not_available():
    info = engine.parse_probe_output(LIVE_TS_NO_DURATION)
    assert info.duration is None
    assert info.has_video
    assert info.audio_streams == (AudioStream(index=0, codec="aac", sample_rate=22050, channels=1, default=False),)
    assert info.default_audio.index == 0  # no default flag: the first stream


def test_parse_video_without_audio():
    info = engine.parse_probe_output(SILENT_MP4)
    assert info.has_video and not info.has_audio
    assert info.duration == pytest.approx(2.0)


@pytest.mark.parametrize("stderr", [STILL_IMAGE, TEXT_AS_ANSI, NOT_MEDIA, ""])
def test_parse_images_text_and_garbage_are_unsupported(stderr):
    with pytest.raises(UnsupportedMedia) as raised:
        engine.parse_probe_output(stderr)
    assert raised.value.detail == stderr[-4000:]
