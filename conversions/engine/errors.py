"""What can go wrong with the input: deterministic failures that retrying cannot help."""

from __future__ import annotations

from mp3converter.errors import ErrorCode, ServiceError

UNDECODABLE_MESSAGE = "The audio in this file uses a codec this service cannot decode."


class MediaError(ServiceError):
    """The input cannot become an MP3 (as it is, or with these options). Fails a job at once, without retries."""

    code = ErrorCode.UNSUPPORTED_MEDIA
    message = "This file is not a video or audio file we can read. It may be damaged or in an unknown format."


class UnsupportedMedia(MediaError):
    pass


class NoAudioStream(MediaError):
    code = ErrorCode.NO_AUDIO_STREAM
    message = "This file has no audio track, so there is nothing to convert to MP3."


class CorruptMedia(MediaError):
    code = ErrorCode.CORRUPT_MEDIA
    message = "The file is damaged: decoding its audio failed part-way through."


class TrimOutOfRange(MediaError):
    code = ErrorCode.TRIM_OUT_OF_RANGE
    message = "The trim range is outside the file's duration."


class NoChapters(MediaError):
    code = ErrorCode.NO_CHAPTERS
    message = (
        "This file has no chapters, so it cannot be split into one MP3 per chapter. Convert it without "
        "split=chapters to get one MP3 of the whole file."
    )


class TooManyChapters(MediaError):
    code = ErrorCode.TOO_MANY_CHAPTERS
    message = "This file has more chapters than this service splits a file into."

    def __init__(self, count: int, limit: int, **kwargs):
        kwargs.setdefault(
            "message",
            f"This file has {count} chapters; at most {limit} can become separate MP3s. Convert it without "
            "split=chapters to get one MP3 of the whole file.",
        )
        super().__init__(**kwargs)


def _minutes(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.0f}" if minutes == round(minutes) else f"{minutes:.1f}"


class TooLong(MediaError):
    """The audio lasts longer than the service allows: said by the headers, measured at upload, or found while
    converting (headers can lie)."""

    code = ErrorCode.TOO_LONG
    message = "The audio in this file is longer than this service allows."

    def __init__(self, limit_seconds: float | None = None, **kwargs):
        if limit_seconds is not None:
            minutes = _minutes(limit_seconds)
            kwargs.setdefault("message", f"The audio in this file is longer than the {minutes}-minute limit.")
        super().__init__(**kwargs)
        self.limit_seconds = limit_seconds


class OutputTooLarge(MediaError):
    code = ErrorCode.OUTPUT_TOO_LARGE
    message = "The MP3 would be larger than this service allows, so the conversion was stopped."

    def __init__(self, limit_bytes: int | None = None, **kwargs):
        if limit_bytes is not None:
            megabytes = limit_bytes // (1024 * 1024)
            kwargs.setdefault(
                "message", f"The MP3 would be larger than the {megabytes} MB limit, so the conversion was stopped."
            )
        super().__init__(**kwargs)
        self.limit_bytes = limit_bytes


class ConversionTimeout(MediaError):
    code = ErrorCode.TIMEOUT
    message = "The conversion took longer than this service allows and was stopped."


class ConversionCancelled(MediaError):
    code = ErrorCode.CANCELLED
    message = "The conversion was cancelled."


class InvalidOption(MediaError):
    """Options that are not valid, or do not fit this particular file (an audio track it does not have).

    `problems` holds the sentences for each option at fault; `field` and `message` are the first of them.
    """

    code = ErrorCode.INVALID_OPTION
    message = "One of the options is not valid."

    def __init__(self, problems: dict[str, list[str]]):
        field, messages = next(iter(problems.items()))
        super().__init__(messages[0], field=field)
        self.problems = problems

    def field_errors(self) -> dict[str, list[str]]:
        return self.problems
