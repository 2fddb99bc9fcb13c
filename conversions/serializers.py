"""Input serializers validate requests; output serializers only shape data."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from . import engine
from .models import Conversion


class ConversionOptionsInputSerializer(serializers.Serializer):
    bitrate_kbps = serializers.ChoiceField(
        choices=engine.CBR_BITRATES_KBPS, required=False, help_text="Constant bitrate in kbit/s."
    )
    vbr_quality = serializers.IntegerField(
        min_value=0, max_value=9, required=False, help_text="LAME VBR quality, 0 (best) to 9 (smallest). Default 2."
    )

    def validate(self, attrs):
        if attrs.get("bitrate_kbps") is not None and attrs.get("vbr_quality") is not None:
            raise serializers.ValidationError(
                {"vbr_quality": "Choose either bitrate_kbps (constant bitrate) or vbr_quality, not both."}
            )
        return attrs

    def to_options(self) -> engine.OutputOptions:
        return engine.OutputOptions(**self.validated_data)


class ConversionCreateInputSerializer(ConversionOptionsInputSerializer):
    file = serializers.FileField(help_text="The video (or audio) file to convert.")

    def to_options(self) -> engine.OutputOptions:
        values = {key: value for key, value in self.validated_data.items() if key != "file"}
        return engine.OutputOptions(**values)


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

    @extend_schema_field(OpenApiTypes.URI)
    def get_download_url(self, conversion: Conversion) -> str | None:
        if conversion.status != Conversion.Status.DONE:
            return None
        path = f"/api/conversions/{conversion.id}/download/"
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

