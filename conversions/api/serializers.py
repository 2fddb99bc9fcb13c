"""Input serializers parse requests; output serializers only shape data.

The option rules live in engine.OutputOptions, once. Each option field parses its value and asks OutputOptions
whether it is fine on its own (so every bad field is reported at once, as DRF does); `validate` then builds the
OutputOptions, which checks the rules across options. What each field accepts is also in the API schema, read from
the same format table.
"""

import copy

from django.urls import reverse
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from mp3converter.errors import ErrorCode

from .. import engine
from ..engine import MP3
from ..models import Conversion
from ..presets import PRESETS, preset_options
from ..zips import NO_IDS, TOO_MANY_IDS, ZIP_MAX_CONVERSIONS


class OptionField:
    """A field that parses its value and leaves the rules to OutputOptions; `accepts` states them in the schema."""

    def __init__(self, *, accepts: dict | None = None, **kwargs):
        self.accepts = accepts or {}
        super().__init__(**kwargs)

    def run_validation(self, data=empty):
        value = super().run_validation(data)
        if (problem := engine.OutputOptions.problem_with(self.field_name, value)) is not None:
            raise serializers.ValidationError(problem, code=ErrorCode.INVALID_OPTION)
        return value


class IntegerOption(OptionField, serializers.IntegerField):
    pass


class FloatOption(OptionField, serializers.FloatField):
    pass


class TextOption(OptionField, serializers.CharField):
    pass


class BooleanOption(OptionField, serializers.BooleanField):
    # A box left out of a form is not given (DRF would read it as false), so a preset's `true` stands.
    default_empty_html = empty


class OptionFieldSchema(OpenApiSerializerFieldExtension):
    target_class = OptionField
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        parsed = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        return {**parsed, **self.target.accepts}


class ConversionOptionsInputSerializer(serializers.Serializer):
    """The output options, shared by the native upload and the classic /upload (as form fields)."""

    preset = serializers.ChoiceField(
        required=False,
        choices=[(preset.name, str(preset.label)) for preset in PRESETS.values()],
        help_text="A named set of options (conversions/presets.py); options sent with it override it.",
    )
    bitrate_kbps = IntegerOption(
        required=False, help_text="Constant bitrate in kbit/s.", accepts={"enum": list(MP3.bitrates_kbps)}
    )
    vbr_quality = IntegerOption(
        required=False,
        help_text=f"LAME VBR quality, {MP3.vbr_qualities[0]} (best, largest) to {MP3.vbr_qualities[-1]} (smallest). "
        f"The default when no bitrate is given: {MP3.default_vbr_quality}.",
        accepts={"minimum": MP3.vbr_qualities[0], "maximum": MP3.vbr_qualities[-1]},
    )
    sample_rate = IntegerOption(
        required=False, help_text="Output sample rate in Hz. Default: the source's when MP3 allows it.",
        accepts={"enum": list(MP3.sample_rates)},
    )
    channels = IntegerOption(
        required=False, help_text="1 (mono) or 2 (stereo).", accepts={"enum": list(range(1, MP3.max_channels + 1))}
    )
    trim_start = FloatOption(required=False, help_text="Start at this many seconds.", accepts={"minimum": 0})
    trim_end = FloatOption(
        required=False, help_text="End at this many seconds (after trim_start).", accepts={"minimum": 0}
    )
    normalize = BooleanOption(required=False, help_text="EBU R128 loudness normalisation.")
    title = TextOption(
        required=False, help_text="ID3 title. Default: the file name's stem.",
        accepts={"maxLength": engine.TAG_MAX_LENGTH},
    )
    artist = TextOption(required=False, help_text="ID3 artist.", accepts={"maxLength": engine.TAG_MAX_LENGTH})
    album = TextOption(required=False, help_text="ID3 album.", accepts={"maxLength": engine.TAG_MAX_LENGTH})
    cover = BooleanOption(required=False, help_text="Embed a frame of the video as cover art.")
    audio_track = IntegerOption(
        required=False,
        help_text="Which audio track to convert, counting from 0. Default: the track marked default, else the first.",
        accepts={"minimum": 0},
    )

    def validate(self, attrs):
        given = {name: value for name, value in attrs.items() if name in engine.OutputOptions.names()}
        options = preset_options(attrs.get("preset"), given)
        try:
            self._options = engine.OutputOptions(**options)
        except engine.InvalidOption as exc:
            raise serializers.ValidationError(exc.field_errors()) from exc
        return attrs

    def to_options(self) -> engine.OutputOptions:
        return self._options


class ConversionCreateInputSerializer(ConversionOptionsInputSerializer):
    file = serializers.FileField(help_text="The video (or audio) file to convert.")

    def get_fields(self):
        # The file first, then the options: the browsable API's form reads from the top.
        fields = super().get_fields()
        return {"file": fields.pop("file"), **fields}


class ConversionZipInputSerializer(serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.UUIDField(),
        allow_empty=False,
        max_length=ZIP_MAX_CONVERSIONS,
        error_messages={"required": NO_IDS, "empty": NO_IDS, "max_length": TOO_MANY_IDS},
        help_text=f"The ids of up to {ZIP_MAX_CONVERSIONS} of your done conversions. Each MP3 goes in once; "
        "a name met twice gets \" (2)\" before its extension.",
    )


class ConversionErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ConversionOutputSerializer(serializers.ModelSerializer):
    error = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()
    # Annotated by conversions.selectors; missing (None) on a job just created, which nobody was told about yet.
    notified_at = serializers.DateTimeField(read_only=True, allow_null=True)

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

    def get_fields(self):
        # A ModelSerializer builds every field from the model for each instance, a third of a job-status GET's time:
        # built once per process here, each instance gets its own copies (as declared fields always do).
        cls = type(self)
        if "_model_fields" not in cls.__dict__:
            cls._model_fields = super().get_fields()
        return copy.deepcopy(cls._model_fields)

    @extend_schema_field(ConversionErrorSerializer(allow_null=True))
    def get_error(self, conversion: Conversion) -> dict | None:
        if not conversion.error_code:
            return None
        return {"code": conversion.error_code, "message": conversion.error_message}

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_download_url(self, conversion: Conversion) -> str | None:
        if conversion.status != Conversion.Status.DONE:
            return None
        path = reverse("conversion-download", args=[conversion.id])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class DownloadLinkOutputSerializer(serializers.Serializer):
    """A signed download link (conversions.services.DownloadLink)."""

    url = serializers.URLField(help_text="Serves the MP3 to whoever opens it, with no sign-in, until expires_at.")
    expires_at = serializers.DateTimeField()
