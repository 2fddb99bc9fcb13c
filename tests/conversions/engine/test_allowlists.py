"""conversions.engine.ffmpeg: ffmpeg opens only what it should (allowlists of demuxers and protocols) and sees
none of the service's secrets (a minimal environment). Real ffmpeg on generated media and crafted manifests."""

import ast
import subprocess
from pathlib import Path

import pytest

from conversions import engine
from conversions.engine import OutputOptions, UnsupportedMedia
from conversions.engine.formats import COVER_DEMUXERS
from tests.media.crafted import MANIFESTS, flac_header_claims, http_server, manifest, silent_flac

ENGINE = Path(engine.__file__).parent
SECRETS = {
    "DATABASE_URL": "mysql://app:db-secret-value@db:3306/app",
    "CELERY_BROKER_URL": "amqp://app:broker-secret-value@mq:5672/app",
    "DJANGO_SECRET_KEY": "django-secret-value",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-value",
    "MONGODB_URI": "mongodb://app:mongo-secret-value@mongo/app",
}
# Formats the README lists are the media specs (tests/conversions/engine/test_probe.py); these are the others the
# allowlist keeps: (extension, ffmpeg output options).
MORE_INPUTS = {
    "mpeg-ps": (".mpg", ("-c:a", "mp2", "-f", "mpeg")),
    "asf": (".wma", ("-c:a", "wmav2", "-f", "asf")),
    "aiff": (".aiff", ("-f", "aiff")),
    "caf": (".caf", ("-f", "caf")),
    "w64": (".w64", ("-f", "w64")),
    "ac3": (".ac3", ("-c:a", "ac3", "-f", "ac3")),
    "adts": (".aac", ("-c:a", "aac", "-f", "adts")),
    "eac3": (".eac3", ("-c:a", "eac3", "-f", "eac3")),
    "wavpack": (".wv", ("-c:a", "wavpack", "-f", "wv")),
    "mp2": (".mp2", ("-c:a", "mp2", "-f", "mp2")),
}
NAMES = ("holiday.mp4", "native")  # a media name, and the kind's own extension (which some demuxers look for)


def crafted(kind: str, where: str, server, folder: Path, media, name: str) -> Path:
    """A manifest of `kind` pointing at a real local media file ("local") or at the server ("http")."""
    if kind == "sdp":
        target = server.url  # an SDP names a host and port, never a file
    elif where == "http":
        target = f"{server.url}/holiday{'.ts' if kind == 'hls' else '.m4a'}"
    else:
        target = str(media("ts_aac") if kind == "hls" else media("m4a_aac"))
    path = folder / (name if name != "native" else f"holiday{MANIFESTS[kind][1]}")
    path.write_bytes(manifest(kind, target))
    return path


@pytest.fixture
def server():
    with http_server() as running:
        yield running


# --- what is still read ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", MORE_INPUTS)
def test_other_real_audio_formats_are_still_read(tmp_path, kind):
    extension, output = MORE_INPUTS[kind]
    source = tmp_path / f"tone{extension}"
    subprocess.run(
        [engine.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=duration=1",
         *output, str(source)], check=True, capture_output=True, timeout=60,
    )
    info = engine.probe(source)
    assert info.has_audio and info.duration == pytest.approx(1.0, abs=0.2)
    assert set(info.format_name.split(",")) & set(engine.INPUT_DEMUXERS), info.format_name
    target = tmp_path / "out.mp3"
    assert engine.convert(source, target, options=OutputOptions()).duration == pytest.approx(1.0, abs=0.2)


def test_no_manifest_demuxer_is_allowed():
    allowed = set(engine.INPUT_DEMUXERS) | set(COVER_DEMUXERS)
    for demuxer in ("hls", "dash", "concat", "sdp", "rtsp", "rtp", "imf", "image2", "tty", "ffmetadata", "lavfi",
                    "webm_dash_manifest", "avisynth", "dvdvideo", "bluray"):
        assert demuxer not in allowed


# --- manifests: what ffmpeg would do without the allowlists, and what it does with them ----------------------
@pytest.mark.parametrize("kind", [kind for kind in MANIFESTS if kind != "sdp"])
def test_each_crafted_manifest_makes_a_plain_ffmpeg_open_its_target(media, server, tmp_path, kind):
    # Guards the tests below: without the allowlists, ffmpeg reads the local file the manifest names, and fetches
    # the URL once http is allowed. (ffconcat's own "safe" mode refuses absolute paths: it names a neighbour.)
    demuxer = MANIFESTS[kind][0]
    local = crafted(kind, "local", server, tmp_path, media, "native")
    if kind == "ffconcat":
        neighbour = media("m4a_aac")
        local = neighbour.parent / local.name
        local.write_bytes(manifest(kind, neighbour.name))
    opened = subprocess.run([engine.ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(local)],
                            capture_output=True, text=True, timeout=30).stderr
    assert f"Input #0, {demuxer}, from" in opened and "Audio: aac" in opened, opened

    (tmp_path / "http").mkdir()
    remote = crafted(kind, "http", server, tmp_path / "http", media, "native")
    unsafe = ["-safe", "0"] if kind == "ffconcat" else []
    subprocess.run([engine.ffmpeg_exe(), "-hide_banner", "-nostdin", "-protocol_whitelist", "file,http,tcp",
                    *unsafe, "-i", str(remote)], capture_output=True, timeout=30)
    assert server.requests, "the crafted URL was never fetched"


def test_the_crafted_sdp_makes_a_plain_ffmpeg_try_rtp(media, server, tmp_path):
    sdp = crafted("sdp", "http", server, tmp_path, media, "holiday.mp4")
    tried = subprocess.run([engine.ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", f"file:{sdp}"],
                           capture_output=True, text=True, timeout=30).stderr
    assert "[rtp @" in tried, tried


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("where", ["local", "http"])
@pytest.mark.parametrize("kind", MANIFESTS)
def test_the_probe_refuses_every_manifest(media, server, tmp_path, kind, where, name):
    path = crafted(kind, where, server, tmp_path, media, name)
    with pytest.raises(UnsupportedMedia) as refused:
        engine.probe(path, max_duration=3600)
    assert refused.value.code == "unsupported_media"
    assert server.requests == []


@pytest.mark.parametrize("where", ["local", "http"])
@pytest.mark.parametrize("kind", MANIFESTS)
def test_a_conversion_refuses_a_manifest_even_if_the_probe_was_skipped(media, server, tmp_path, kind, where):
    path = crafted(kind, where, server, tmp_path, media, "native")
    # What a probe of the file it names would say: the conversion must still not open it.
    info = engine.probe(media("m4a_aac"))
    target = tmp_path / "out.mp3"
    with pytest.raises(UnsupportedMedia):
        engine.convert(path, target, options=OutputOptions(), info=info)
    assert not target.exists()
    assert server.requests == []


# --- every ffmpeg process: allowlists on every input, a minimal environment -----------------------------------
@pytest.fixture
def inputs(media, tmp_path):
    """Made before the recording starts: a duration-less FLAC (so the probe measures it) and a video."""
    return flac_header_claims(silent_flac(tmp_path / "silence.flac", 5), None), media("mp4_aac")


@pytest.fixture
def started(monkeypatch):
    """Every process the engine starts: its command, the environment it was given, and the one it really got
    (read from /proc as it starts; None when it had already exited, as a probe of a tiny file may)."""
    processes: list[tuple[list[str], dict[str, str], dict[str, str] | None]] = []

    class Recording(subprocess.Popen):
        def __init__(self, args, *rest, **kwargs):
            super().__init__(args, *rest, **kwargs)
            raw = Path(f"/proc/{self.pid}/environ").read_bytes()
            seen = dict(item.split("=", 1) for item in raw.decode().split("\0") if item) if raw else None
            processes.append((list(args), kwargs.get("env"), seen))

    monkeypatch.setattr(subprocess, "Popen", Recording)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return processes


def inputs_of(command: list[str]) -> list[list[str]]:
    """The options given before each `-i`, input by input."""
    groups, current = [], []
    for arg in command:
        if arg == "-i":
            groups.append(current)
            current = []
        else:
            current.append(arg)
    return groups


def test_every_ffmpeg_run_gets_the_allowlists_and_no_secret(inputs, started, tmp_path):
    duration_less, video = inputs
    assert engine.probe(duration_less, max_duration=60).duration == pytest.approx(5.0, abs=0.1)  # probe + measure
    target = tmp_path / "out.mp3"
    engine.convert(video, target, options=OutputOptions(cover=True), max_duration=60,
                   max_output_bytes=10 * 1024 * 1024)  # probe, cover, conversion, probe of the output
    commands = [command for command, _, _ in started]
    assert len(commands) == 6
    assert any("-progress" in command and "null" in command for command in commands)  # the measurement
    assert any("image2" in command for command in commands)  # the cover
    # The conversion runs until its progress output is read: what it really got is always seen.
    assert [seen for command, _, seen in started if "-progress" in command and "null" not in command][0] is not None
    for command, given, seen in started:
        assert command[0] == engine.ffmpeg_exe()
        env = seen if seen is not None else given
        assert given == engine.child_env()
        for options in inputs_of(command):
            assert options[options.index("-protocol_whitelist") + 1] == "file", command
            demuxers = options[options.index("-format_whitelist") + 1].split(",")
            assert demuxers in (list(engine.INPUT_DEMUXERS), list(COVER_DEMUXERS)), command
        assert set(env) <= {"PATH", "LANG", "LC_ALL", "TMPDIR"}, env
        assert env == engine.child_env()
        assert not any(secret in value for secret in SECRETS.values() for value in env.values())
    # The cover, a JPEG the engine wrote, is read back as exactly that.
    [conversion] = [command for command in commands if "-progress" in command and "null" not in command]
    source_options, cover_options = inputs_of(conversion)[:2]
    assert "-f" not in source_options
    assert cover_options[cover_options.index("-f") + 1] == "jpeg_pipe"


def test_no_engine_module_starts_a_process_but_through_ffmpeg_start():
    # With the test above (every process started gets child_env()), ffmpeg never sees a secret.
    for module in ENGINE.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            assert not (isinstance(node, ast.ImportFrom) and node.module in ("subprocess", "os")), module.name
            if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) in ("subprocess", "os"):
                started = node.attr in ("Popen", "run", "call", "check_call", "check_output", "system", "popen",
                                        "execv", "execve", "spawnv", "posix_spawn")
                assert not started or (module.name == "ffmpeg.py" and node.attr == "Popen"), (module.name, node.attr)
