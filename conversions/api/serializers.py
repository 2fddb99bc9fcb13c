"""Input serializers parse requests; output serializers only shape data.

The option rules live in engine.OutputOptions, once. Each option field parses its value and asks OutputOptions
whether it is fine on its own (so every bad field is reported at once, as DRF does); `validate` then builds the
OutputOptions, which checks the rules across options. What each field accepts is also in the API schema, read from
the same format table.

Input serializers of forms refuse fields they do not know (`KnownFieldsOnly`): a misspelt option is an error, not
silently the default.
"""

from django.urls import reverse
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from mp3converter import outbound
from mp3converter.errors import ErrorCode
from mp3converter.serializers import FieldsBuiltOnce

from .. import engine
from ..engine import MP3
from ..models import Conversion, Track
from ..presets import PRESETS, preset_options
from ..zips import NO_IDS, TOO_MANY_IDS, ZIP_MAX_CONVERSIONS


class KnownFieldsOnly:
    """A serializer mixin: a field the serializer does not declare is refused (400, naming it), with the other field
    errors. The known fields are the declared ones, whatever subclasses add. Django's CSRF token, which every HTML
    form sends, is not a field; `extra_fields` in the context names more to let through (the classic upload's file,
    under any name)."""

    ignored_fields = frozenset({"csrfmiddlewaretoken"})

    def unknown_fields(self, data) -> list[str]:
        if not hasattr(data, "keys"):
            return []
        allowed = set(self.fields) | self.ignored_fields | set(self.context.get("extra_fields", ()))
        return [name for name in data.keys() if name not in allowed]

    def to_internal_value(self, data):
        unknown = {
            name: [f"Unknown field “{name}”. The fields are: {', '.join(self.fields)}."]
            for name in self.unknown_fields(data)
        }
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if unknown and isinstance(exc.detail, dict):
                raise serializers.ValidationError({**exc.detail, **unknown}) from exc
            raise
        if unknown:
            raise serializers.ValidationError(unknown)
        return value


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


class ChoiceOption(OptionField, serializers.ChoiceField):
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


class ConversionOptionsInputSerializer(KnownFieldsOnly, serializers.Serializer):
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

    split = ChoiceOption(
        required=False, choices=list(engine.SPLITS),
        help_text="chapters: one MP3 per chapter of the file (a file without chapters is refused, code no_chapters; "
        f"at most {engine.MAX_CHAPTERS}), tagged with the track number, the chapter's title and album = album or "
        "title; the download is then a ZIP of the tracks and an .m3u playlist. Not with trim_start or trim_end. "
        "Default: none, one MP3.",
    )
    # Not an output option: where the job's own webhook goes (notifications/webhooks.py). Every way in takes it with
    # the options: the native and classic uploads, tus metadata and the web page.
    webhook_url = serializers.CharField(
        required=False, allow_blank=True, max_length=outbound.MAX_URL_LENGTH, trim_whitespace=True,
        help_text="An http or https URL told by a signed POST (Standard Webhooks) when this job is done or failed, "
        "as your webhook endpoints are; signed with your jobs' webhook secret (POST /api/webhooks/job-secret/). Only "
        "public addresses are reached (OUTBOUND_ALLOWED_NETWORKS adds others).",
    )

    def validate_webhook_url(self, value: str) -> str:
        from notifications.webhooks import webhook_url_problem

        if value and (problem := webhook_url_problem(value)) is not None:
            raise serializers.ValidationError(problem, code=ErrorCode.INVALID_REQUEST)
        return value

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

    def to_webhook_url(self) -> str:
        """The job's own webhook URL; empty: none."""
        return self.validated_data.get("webhook_url", "")


def source_url_problem(value: str) -> str:
    """A `source_url` field's value, checked before any lookup (scheme, host, port, no credentials)."""
    value = value.strip()
    if value and (problem := outbound.url_problem(value)) is not None:
        raise serializers.ValidationError(problem, code=ErrorCode.INVALID_REQUEST)
    return value


class ConversionSourceUrlInputSerializer(serializers.Serializer):
    """The URL to import the source from, instead of a file (the classic /upload takes it as a form field too)."""

    source_url = serializers.CharField(
        required=False, allow_blank=True, max_length=outbound.MAX_URL_LENGTH, trim_whitespace=True,
        help_text="An http or https URL to download the video (or audio) from, instead of sending a file. Only public "
        "addresses are reached (OUTBOUND_ALLOWED_NETWORKS adds others).",
    )

    def validate_source_url(self, value: str) -> str:
        return source_url_problem(value)


class ConversionCreateInputSerializer(ConversionSourceUrlInputSerializer, ConversionOptionsInputSerializer):
    file = serializers.FileField(required=False, help_text="The video (or audio) file to convert (or a source_url).")

    def get_fields(self):
        # The file and the URL first, then the options: the browsable API's form reads from the top.
        fields = super().get_fields()
        return {"file": fields.pop("file"), "source_url": fields.pop("source_url"), **fields}

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if attrs.get("file") and attrs.get("source_url"):
            raise serializers.ValidationError(
                {"source_url": ["Send either a file or a source_url, not both."]}, code=ErrorCode.INVALID_REQUEST
            )
        if not attrs.get("file") and not attrs.get("source_url"):
            raise serializers.ValidationError(
                {"file": ["No file was submitted: send a file, or a source_url to import it from."]},
                code=ErrorCode.INVALID_REQUEST,
            )
        return attrs


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


def _absolute(serializer: serializers.Serializer, path: str) -> str:
    """An absolute URL: on the request's host, or on `base_url` in the context (a webhook's, PUBLIC_BASE_URL)."""
    request = serializer.context.get("request")
    if request is not None:
        return request.build_absolute_uri(path)
    return serializer.context.get("base_url", "") + path


class TrackOutputSerializer(FieldsBuiltOnce, serializers.ModelSerializer):
    """One chapter's MP3 of a split job."""

    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Track
        fields = ["number", "title", "start_seconds", "duration_seconds", "size", "download_url"]
        read_only_fields = fields

    @extend_schema_field(serializers.URLField())
    def get_download_url(self, track: Track) -> str:
        return _absolute(self, reverse("conversion-track-download", args=[track.conversion_id, track.number]))


class ConversionOutputSerializer(FieldsBuiltOnce, serializers.ModelSerializer):
    error = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()
    tracks = TrackOutputSerializer(
        source="track_list", many=True, read_only=True,
        help_text="With split=chapters, once done: one MP3 per chapter, in order. Empty otherwise.",
    )
    source_url = serializers.CharField(
        read_only=True, help_text="The URL the source was imported from; empty for an uploaded file."
    )
    webhook_url = serializers.CharField(read_only=True, help_text="The job's own webhook; empty: none.")
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
            "source_url",
            "options",
            "webhook_url",
            "mp3_size",
            "duration_seconds",
            "error",
            "download_url",
            "tracks",
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
        return _absolute(self, reverse("conversion-download", args=[conversion.id]))


class DownloadLinkOutputSerializer(serializers.Serializer):
    """A signed download link (conversions.services.DownloadLink)."""

    url = serializers.URLField(help_text="Serves the MP3 to whoever opens it, with no sign-in, until expires_at.")
    expires_at = serializers.DateTimeField()
