"""Input serializers validate requests; output serializers only shape data."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from . import engine
from .models import Conversion


class ConversionOptionsInputSerializer(serializers.Serializer):
    """The output options, shared by the native upload and the classic /upload (as form fields)."""

    bitrate_kbps = serializers.ChoiceField(
        choices=engine.CBR_BITRATES_KBPS, required=False, help_text="Constant bitrate in kbit/s."
    )
    vbr_quality = serializers.IntegerField(
        min_value=0, max_value=9, required=False,
        help_text="LAME VBR quality, 0 (best, largest) to 9 (smallest). The default when no bitrate is given: 2.",
    )
    sample_rate = serializers.ChoiceField(
        choices=engine.MP3_SAMPLE_RATES, required=False,
        help_text="Output sample rate in Hz. Default: the source's when MP3 allows it.",
    )
    channels = serializers.ChoiceField(choices=(1, 2), required=False, help_text="1 (mono) or 2 (stereo).")
    trim_start = serializers.FloatField(min_value=0, required=False, help_text="Start at this many seconds.")
    trim_end = serializers.FloatField(min_value=0, required=False, help_text="End at this many seconds.")
    normalize = serializers.BooleanField(required=False, help_text="EBU R128 loudness normalisation.")
    title = serializers.CharField(
        max_length=engine.TAG_MAX_LENGTH, required=False, help_text="ID3 title. Default: the file name's stem."
    )
    artist = serializers.CharField(max_length=engine.TAG_MAX_LENGTH, required=False, help_text="ID3 artist.")
    album = serializers.CharField(max_length=engine.TAG_MAX_LENGTH, required=False, help_text="ID3 album.")
    cover = serializers.BooleanField(required=False, help_text="Embed a frame of the video as cover art.")
    audio_track = serializers.IntegerField(
        min_value=0, required=False,
        help_text="Which audio track to convert, counting from 0. Default: the track marked default, else the first.",
    )

    def validate(self, attrs):
        if attrs.get("bitrate_kbps") is not None and attrs.get("vbr_quality") is not None:
            raise serializers.ValidationError(
                {"vbr_quality": "Choose either bitrate_kbps (constant bitrate) or vbr_quality, not both."}
            )
        start, end = attrs.get("trim_start"), attrs.get("trim_end")
        if end is not None and end <= (start or 0):
            raise serializers.ValidationError({"trim_end": "trim_end must be later than trim_start."})
        return attrs

    def to_options(self) -> engine.OutputOptions:
        names = self.fields.keys() - {"file"}
        return engine.OutputOptions(**{name: self.validated_data[name] for name in names if name in self.validated_data})


class ConversionCreateInputSerializer(ConversionOptionsInputSerializer):
    file = serializers.FileField(help_text="The video (or audio) file to convert.")


class ConversionErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ConversionOutputSerializer(serializers.ModelSerializer):
    error = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Conversion
        fields = [
            "id",
            "status",
            "progress",
            "original_filename",
            "source_size",
            "options",
            "mp3_size",
            "duration_seconds",
            "error",
            "download_url",
            "created_at",
            "started_at",
            "finished_at",
            "notified_at",
        ]
        read_only_fields = fields

    @extend_schema_field(ConversionErrorSerializer(allow_null=True))
    def get_error(self, conversion: Conversion) -> dict | None:
        if not conversion.error_code:
            return None
        return {"code": conversion.error_code, "message": conversion.error_message}

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_download_url(self, conversion: Conversion) -> str | None:
        if conversion.status != Conversion.Status.DONE:
            return None
        path = f"/api/conversions/{conversion.id}/download/"
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

