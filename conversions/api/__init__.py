"""The HTTP APIs for conversions.

- `native`: the REST API under /api/conversions/ (JSON; errors through mp3converter.api.exception_handler);
- `classic`: the classic API (/login, /upload, /download; plain text, with a handler of its own);
- `serializers`: the native API's input and output serializers (the classic API reads the options with them too);
- `downloads`: what both serve files with (ranged, conditional, streamed);
- `urls`: both APIs' routes.
"""
