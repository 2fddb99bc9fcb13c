"""The convert page's form. It only renders and collects the fields: the API's input serializer checks them, so the
page and the API take the same options with the same rules (conversions/api/serializers.py)."""

from django import forms
from django.utils.translation import gettext_lazy as _

from .. import engine
from ..engine import MP3
from ..presets import DEFAULT_PRESET, PRESETS


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one field (Django's documented recipe); the view reads them from request.FILES."""

    def clean(self, data, initial=None):
        single = super().clean
        return [single(item, initial) for item in data] if isinstance(data, list | tuple) else single(data, initial)


def _choices(values, label=str):
    return [("", _("As the preset says"))] + [(value, label(value)) for value in values]


class ConvertForm(forms.Form):
    files = MultipleFileField(
        label=_("Videos or audio files"),
        widget=MultipleFileInput(attrs={"multiple": True, "accept": "video/*,audio/*"}),
        required=False,
        help_text=_("Pick one or more files, or drop them anywhere on this page. Each file becomes its own conversion."),
    )
    # Import from a URL instead (or as well): the fetch worker downloads it. Checked by the API's serializer.
    source_url = forms.CharField(
        label=_("Or a link to a video"), required=False, max_length=2048,
        widget=forms.URLInput(attrs={"placeholder": "https://", "inputmode": "url", "class": "wide"}),
        help_text=_("An http or https address of a video or audio file on the internet: we download and convert it."),
    )
    preset = forms.ChoiceField(
        label=_("Quality"),
        choices=[(preset.name, preset.label) for preset in PRESETS.values()],
        initial=DEFAULT_PRESET,
        widget=forms.RadioSelect,
    )
    # "Advanced": every API option. Empty means "as the preset says".
    bitrate_kbps = forms.TypedChoiceField(
        label=_("Constant bitrate"), required=False, coerce=int, empty_value=None,
        choices=_choices(MP3.bitrates_kbps, lambda kbps: f"{kbps} kbps"),
    )
    vbr_quality = forms.TypedChoiceField(
        label=_("Variable bitrate quality"), required=False, coerce=int, empty_value=None,
        choices=_choices(MP3.vbr_qualities, lambda q: f"V{q}"),
        help_text=_("V0 is the best and largest, V9 the smallest. Choose a constant bitrate or this, not both."),
    )
    sample_rate = forms.TypedChoiceField(
        label=_("Sample rate"), required=False, coerce=int, empty_value=None,
        choices=[("", _("As the source"))] + [(rate, f"{rate} Hz") for rate in MP3.sample_rates],
    )
    channels = forms.TypedChoiceField(
        label=_("Channels"), required=False, coerce=int, empty_value=None,
        choices=[("", _("As the preset says")), (1, _("Mono")), (2, _("Stereo"))],
    )
    trim_start = forms.FloatField(label=_("Start at (seconds)"), required=False, min_value=0,
                                  widget=forms.NumberInput(attrs={"step": "any"}))
    trim_end = forms.FloatField(label=_("End at (seconds)"), required=False, min_value=0,
                                widget=forms.NumberInput(attrs={"step": "any"}))
    normalize = forms.BooleanField(label=_("Normalise loudness (EBU R128)"), required=False)
    title = forms.CharField(label=_("Title"), required=False, max_length=engine.TAG_MAX_LENGTH,
                            help_text=_("Empty: the file's name."))
    artist = forms.CharField(label=_("Artist"), required=False, max_length=engine.TAG_MAX_LENGTH)
    album = forms.CharField(label=_("Album"), required=False, max_length=engine.TAG_MAX_LENGTH)
    cover = forms.BooleanField(label=_("Use a frame of the video as the cover picture"), required=False)
    audio_track = forms.IntegerField(label=_("Audio track"), required=False, min_value=0,
                                     help_text=_("Counting from 0. Empty: the file's default track."))
    split = forms.ChoiceField(
        label=_("Split"), required=False, initial=engine.SPLITS[0],
        choices=[(engine.SPLITS[0], _("One MP3 of the whole file")), (engine.SPLITS[1], _("One MP3 per chapter"))],
        help_text=_("Per chapter: for lectures, audiobooks and DJ sets whose file has chapters. The download is then "
                    "a ZIP of the tracks with a playlist."),
    )
    # Not an audio option: the job's own webhook, told when it is done or failed (checked by the API's serializer).
    webhook_url = forms.CharField(
        label=_("Webhook URL"), required=False, max_length=2048,
        widget=forms.URLInput(attrs={"placeholder": "https://", "inputmode": "url", "class": "wide"}),
        help_text=_("Your server gets a signed POST when each conversion is done or has failed (Standard Webhooks, "
                    "signed with your jobs' webhook secret)."),
    )

    ADVANCED = ("bitrate_kbps", "vbr_quality", "sample_rate", "channels", "trim_start", "trim_end", "normalize",
                "title", "artist", "album", "cover", "audio_track", "split", "webhook_url")

    def advanced_fields(self):
        return [self[name] for name in self.ADVANCED]

    def api_data(self) -> dict:
        """The options as the API's input serializer takes them: only what was given (an unticked box is not)."""
        data = {"preset": self.cleaned_data["preset"]}
        for name in self.ADVANCED:
            value = self.cleaned_data.get(name)
            if value not in (None, "", False):
                data[name] = value
        return data
