"""split=chapters end to end: a file with three chapters uploaded, converted by a real worker into three tagged
MP3s, listed on the job, downloaded one by one (with Range) and as a ZIP with an .m3u (native, classic, a signed
link); a file without chapters refused at upload; unknown form fields refused on both upload doors."""

import io
import re
import zipfile

import pytest
from django.core.files.storage import default_storage
from django.test import Client

from conversions.models import Conversion, Track
from tests.conversions.api.helpers import job_url, mp3_bytes, upload, wait_finished
from tests.fixtures.media import CHAPTERS
from tests.media import probe_output
from tests.utils import stored_files

pytestmark = [pytest.mark.e2e]

TITLES = ["Intro", "Part: Two / Middle", "Chapter 3"]
ZIP_NAMES = ["01 - Intro.mp3", "02 - Part Two Middle.mp3", "03 - Chapter 3.mp3"]  # ":" and "/" made safe


def unzip(response) -> zipfile.ZipFile:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/zip"
    body = b"".join(response.streaming_content)
    assert int(response["Content-Length"]) == len(body)
    return zipfile.ZipFile(io.BytesIO(body))


def test_a_file_with_chapters_becomes_one_tagged_mp3_per_chapter(
    live_workers, api_client, other_client, chaptered_media, tmp_path
):
    response = upload(api_client, chaptered_media, split="chapters", cover="true", artist="Ada")
    assert response.status_code == 202, response.content
    assert response.json()["tracks"] == []  # none until it is done
    job = wait_finished(api_client, response.json()["id"])
    assert job["status"] == "done", job
    assert job["options"]["split"] == "chapters"

    tracks = job["tracks"]
    assert [(t["number"], t["title"]) for t in tracks] == list(enumerate(TITLES, start=1))
    for track, (start, end, _) in zip(tracks, CHAPTERS, strict=True):
        assert track["start_seconds"] == start
        assert track["duration_seconds"] == pytest.approx(end - start, abs=0.05)
        number = track["number"]
        assert track["download_url"] == f"http://testserver{job_url(job['id'], f'tracks/{number}/download')}"
    assert job["mp3_size"] == sum(track["size"] for track in tracks)

    # Each track on its own, tagged, with its cover; a Range answers 206.
    bodies = []
    for track, (start, end, _) in zip(tracks, CHAPTERS, strict=True):
        download = api_client.get(track["download_url"])
        assert download.status_code == 200 and download["Content-Type"] == "audio/mpeg"
        bodies.append(mp3_bytes(download))
        assert len(bodies[-1]) == track["size"]
        path = tmp_path / f"{track['number']}.mp3"
        path.write_bytes(bodies[-1])
        probed = probe_output(path)
        assert probed["duration"] == pytest.approx(end - start, abs=0.15)
        assert probed["tags"]["track"] == f"{track['number']}/3"
        assert probed["tags"]["title"] == track["title"]
        assert probed["tags"]["album"] == "lecture"  # the title option's default: the file name's stem
        assert probed["tags"]["artist"] == "Ada"
        assert [video["dispositions"] for video in probed["video"]] == [["attached pic"]]
    ranged = api_client.get(tracks[1]["download_url"], HTTP_RANGE="bytes=0-99")
    assert ranged.status_code == 206
    assert ranged["Content-Range"] == f"bytes 0-99/{tracks[1]['size']}"
    assert mp3_bytes(ranged) == bodies[1][:100]
    assert api_client.get(job_url(job["id"], "tracks/4/download")).status_code == 404

    # The job's download: a ZIP of the tracks in order and a playlist of them.
    with unzip(api_client.get(job_url(job["id"], "download"))) as archive:
        assert archive.namelist() == [*ZIP_NAMES, "lecture.m3u"]
        assert [archive.read(name) for name in ZIP_NAMES] == bodies
        playlist = archive.read("lecture.m3u").decode()
        assert playlist.splitlines()[0] == "#EXTM3U"
        assert [line for line in playlist.splitlines() if not line.startswith("#")] == ZIP_NAMES
        assert "#EXTINF:2,Intro" in playlist

    # The classic download and a signed link serve the same ZIP.
    token = api_client._credentials["HTTP_AUTHORIZATION"]
    with unzip(Client().get("/download", {"fid": job["id"]}, HTTP_AUTHORIZATION=token)) as archive:
        assert archive.namelist() == [*ZIP_NAMES, "lecture.m3u"]
    link = api_client.post(job_url(job["id"], "link")).json()["url"].removeprefix("http://testserver")
    with unzip(Client().get(link)) as archive:
        assert [archive.read(name) for name in ZIP_NAMES] == bodies

    # Someone else's: nothing there.
    assert other_client.get(tracks[0]["download_url"]).status_code == 404
    assert other_client.get(job_url(job["id"], "download")).status_code == 404

    # Deleting the job removes every track's file.
    names = list(Track.objects.filter(conversion_id=job["id"]).values_list("mp3", flat=True))
    assert len(names) == 3 and all(re.fullmatch(rf"tracks/{job['id']}-1-00\d\.mp3", name) for name in names)
    assert all(default_storage.exists(name) for name in names)
    assert api_client.delete(job_url(job["id"])).status_code == 204
    assert not any(default_storage.exists(name) for name in names)
    assert Track.objects.count() == 0


def test_split_without_chapters_is_refused_at_upload_and_nothing_is_kept(live_workers, api_client, media):
    before = stored_files()
    response = upload(api_client, media("mp4_aac"), split="chapters")
    assert response.status_code == 422, response.content
    assert response.json()["code"] == "no_chapters"
    assert "no chapters" in response.json()["detail"]
    assert Conversion.objects.count() == 0
    assert stored_files() == before


def test_unknown_fields_are_refused_by_name(live_workers, api_client, user, media):
    before = stored_files()
    response = upload(api_client, media("mp4_aac"), bitrate=128, csrfmiddlewaretoken="from a form")
    assert response.status_code == 400
    assert list(response.json()) == ["bitrate"]
    assert "Unknown field “bitrate”" in response.json()["bitrate"][0]
    # With a bad option as well: both are told at once.
    both = upload(api_client, media("mp4_aac"), bitrate=128, channels=5)
    assert both.status_code == 400 and set(both.json()) == {"bitrate", "channels"}

    token = api_client._credentials["HTTP_AUTHORIZATION"]
    with open(media("mp4_aac"), "rb") as source:
        classic = Client().post("/upload", {"upload": source, "sample_rte": "44100"}, HTTP_AUTHORIZATION=token)
    assert classic.status_code == 400
    assert classic.content.decode().startswith("sample_rte: Unknown field “sample_rte”")
    assert Conversion.objects.count() == 0
    assert stored_files() == before
