"""The web app's conversion pages: convert (drop or pick files), your conversions (live progress, actions, one ZIP)
and a conversion's own page (player, options, share links). Thin views: the same services and selectors as the API.

With JavaScript the convert page sends each file to the API (`POST /api/conversions/`) with an upload progress bar,
and the pages poll each running job's JSON (ETag, 304 while nothing changed). Without it, the same form posts here
and every page works by reloading.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseNotAllowed
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from mp3converter.api import as_service_error
from mp3converter.errors import ServiceError

from ..api.downloads import zip_download
from ..api.serializers import ConversionCreateInputSerializer
from ..models import Conversion
from ..selectors import conversion_get, conversion_list
from ..services import (
    conversion_cancel,
    conversion_create,
    conversion_create_from_url,
    conversion_delete,
    conversion_link_create,
    conversion_links_revoke,
    conversion_retry,
    upload_check_declared,
)
from ..zips import conversions_zip
from .forms import ConvertForm

PAGE_SIZE = 20


def _owned_or_404(request, conversion_id) -> Conversion:
    conversion = conversion_get(user=request.user, conversion_id=conversion_id)
    if conversion is None:
        raise Http404(_("No conversion with this id."))
    return conversion


def _csrf_refusal(request):
    """Django's CSRF check, run by the view after the body was read: the middleware would read it first, and a file
    past MAX_UPLOAD_MB would then be an error page instead of a sentence next to the file."""
    check = CsrfViewMiddleware(lambda req: None)
    check.process_request(request)
    return check.process_view(request, None, (), {})


def _error_sentences(errors) -> str:
    """One sentence from DRF's field errors ({field: [messages]} or a list)."""
    if isinstance(errors, dict):
        return " ".join(_error_sentences(value) for value in errors.values())
    if isinstance(errors, list):
        return " ".join(_error_sentences(value) for value in errors)
    return str(errors)


def _convert_files(request, form: ConvertForm) -> list[dict]:
    """Each picked file, and the URL if one was given, becomes its own conversion; one refusal does not stop the
    others."""
    sources = [(upload.name, {"file": upload}) for upload in request.FILES.getlist("files")]
    if source_url := form.cleaned_data.get("source_url"):
        sources.append((source_url, {"source_url": source_url}))
    results = []
    for name, source in sources:
        serializer = ConversionCreateInputSerializer(data={**form.api_data(), **source})
        try:
            if not serializer.is_valid():
                results.append({"name": name, "error": _error_sentences(serializer.errors), "status": 400})
                continue
            if "file" in source:
                conversion = conversion_create(
                    owner=request.user, upload=source["file"], options=serializer.to_options(),
                    webhook_url=serializer.to_webhook_url(),
                )
            else:
                conversion = conversion_create_from_url(
                    owner=request.user, source_url=serializer.validated_data["source_url"],
                    options=serializer.to_options(), webhook_url=serializer.to_webhook_url(),
                )
            results.append({"name": name, "conversion": conversion})
        except Exception as exc:
            if (error := as_service_error(exc)) is None:
                raise
            message = _error_sentences(error.field_errors()) or error.message
            results.append({"name": name, "error": message, "status": error.status})
    return results


@csrf_exempt  # checked by _csrf_refusal, once the body has been read safely
def home(request):
    if not request.user.is_authenticated:
        if request.method == "POST":
            return redirect("account:login")
        return render(request, "conversions/welcome.html")
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    form, results, status = ConvertForm(), [], 200
    if request.method == "POST":
        try:
            upload_check_declared(user=request.user, content_length=request.META.get("CONTENT_LENGTH"))
            request.FILES  # noqa: B018 -- streams the files to temporary files, within MAX_UPLOAD_MB
        except ServiceError as error:
            form, status = ConvertForm(), error.status
            results = [{"name": _("Your upload"), "error": error.message}]
        else:
            if (refusal := _csrf_refusal(request)) is not None:
                return refusal
            form = ConvertForm(request.POST, request.FILES)
            if not request.FILES.getlist("files") and not request.POST.get("source_url", "").strip():
                form.add_error("files", _("Pick at least one file to convert, or give a link to one."))
            if form.is_valid():
                results = _convert_files(request, form)
                if all("conversion" in result for result in results):
                    messages.success(request, _("Your files are uploaded and being converted."))
                    return redirect("pages:conversion-list")
                if not any("conversion" in result for result in results):
                    status = results[0]["status"]  # every file was refused: the answer says why, as the API would
            else:
                status = 400
    return render(request, "conversions/convert.html", {"form": form, "results": results, "nav": "convert"}, status=status)


@login_required
def conversion_list_page(request):
    paginator = Paginator(conversion_list(user=request.user), PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    return render(request, "conversions/list.html", {"page": page, "nav": "conversions"})


def _option_rows(conversion: Conversion) -> list[tuple[str, object]]:
    """The job's options as (label, value), labelled as the convert form labels them."""
    fields = ConvertForm.base_fields
    return [
        (fields[name].label if name in fields else name, _("yes") if value is True else value)
        for name, value in conversion.options.items()
    ]


def _detail(request, conversion: Conversion, **extra):
    context = {"conversion": conversion, "options": _option_rows(conversion), "nav": "conversions", **extra}
    return render(request, "conversions/detail.html", context)


@login_required
def conversion_page(request, conversion_id):
    return _detail(request, _owned_or_404(request, conversion_id))


def _retry(conversion):
    return conversion_retry(conversion=conversion, enforce_limits=True)


# action: (service, what it says when it worked, what it says when the job's state does not allow it)
ACTIONS = {
    "cancel": (conversion_cancel, _("Cancelled."), _("Only queued or running conversions can be cancelled.")),
    "retry": (_retry, _("Queued again."), _("Only failed or cancelled conversions can be retried.")),
}


@login_required
@require_POST
def conversion_action(request, conversion_id, action):
    conversion = _owned_or_404(request, conversion_id)
    back = request.POST.get("next") or reverse("pages:conversion", args=[conversion.id])
    if not back.startswith("/") or back.startswith("//"):
        back = reverse("pages:conversion", args=[conversion.id])
    try:
        if action == "delete":
            conversion_delete(conversion=conversion)
            messages.success(request, _("Deleted %(name)s.") % {"name": conversion.original_filename})
            return redirect("pages:conversion-list")
        if action == "share":
            return _detail(request, conversion, shared_link=conversion_link_create(conversion=conversion))
        if action == "revoke-links":
            conversion_links_revoke(conversion=conversion)
            messages.success(request, _("Every link made for this conversion so far has stopped working."))
            return redirect(back)
        if action not in ACTIONS:
            raise Http404(_("No such action."))
        service, done, refused = ACTIONS[action]
        if service(conversion=conversion):
            messages.success(request, done)
        else:
            messages.error(request, refused)
    except Exception as exc:
        if (error := as_service_error(exc)) is None:
            raise
        messages.error(request, error.message)
    return redirect(back)


@login_required
@require_POST
def conversion_zip_page(request):
    ids = request.POST.getlist("ids")
    if not ids:
        messages.error(request, _("Select the conversions to download first."))
        return redirect("pages:conversion-list")
    try:
        filename, archive = conversions_zip(user=request.user, conversion_ids=ids)
    except Exception as exc:
        if (error := as_service_error(exc)) is None:
            raise
        messages.error(request, error.message)
        return redirect("pages:conversion-list")
    return zip_download(filename, archive)
