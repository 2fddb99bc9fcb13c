"""Small media files for the test suite, generated with the bundled ffmpeg.

Nothing here is checked in: every file is synthesised on demand from ffmpeg's
``lavfi`` sources (``testsrc2`` for video, ``sine`` for audio) with the ffmpeg
binary shipped by ``imageio-ffmpeg``.  Files are tiny (160x120 @ 10 fps) and
each one takes a few hundredths of a second to make.

Public API
----------
``SPECS``            name -> :class:`MediaSpec` (the table of everything we can make)
``make_media``       generate one spec into a directory (cached per name+duration)
``ffmpeg_exe``       path of the ffmpeg binary
``probe_output``     parse ``ffmpeg -i FILE`` (there is no ffprobe) into a dict
``decoded_duration`` decode a stream to ``null`` and return how long it really is

Probe contract
--------------
:func:`probe_output` **raises** :class:`ProbeError` when ffmpeg cannot open the
file at all (no ``Input #0`` header in its output: empty files, random bytes,
an mp4 whose ``moov`` atom is missing, short text files ...).  When ffmpeg can
open the file it returns a dict, whose ``audio``/``video`` lists may be empty.
So "is this something we can convert?" is ``probe_output(p)["audio"] != []``
guarded by ``except ProbeError``.

``MediaSpec.is_media`` means exactly "probe_output() succeeds"; ``has_audio``
means "probe_output() lists at least one audio stream".  Hence the PNG (and the
long text file, see below) are ``is_media=True, has_audio=False``.
"""

from .ffmpeg import MediaError, ProbeError, ffmpeg_exe
from .generate import make_media
from .inspect import decoded_duration, probe_output
from .specs import SPECS, AudioTrack, MediaSpec

__all__ = [
    "SPECS",
    "AudioTrack",
    "MediaError",
    "MediaSpec",
    "ProbeError",
    "decoded_duration",
    "ffmpeg_exe",
    "make_media",
    "probe_output",
]
