"""One JSON error shape for the whole API: {"error": {"code", "message", "fields"?}}."""
from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.validators import RegexValidator
from drf_spectacular.utils import OpenApiResponse
from rest_framework import mixins, pagination, serializers, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from moecollab_site.errors import FORBIDDEN, DomainError

# Django's refusals of a request body, which it would answer with its HTML 400 page.
BODY_REFUSALS = (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)


def _body_refusal(exc: Exception) -> Response:
    """A body Django refused (too big, too many fields or files) in the one error shape."""
    # Django logs these to django.security.*; answering here must not lose that trail.
    logging.getLogger(f"django.security.{type(exc).__name__}").error(str(exc))
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = {"code": "too_large",
                "message": f"the request body is over the {limit / 2**20:.1f} MiB limit for "
                           "data that is not a file; send files as multipart uploads"}
        return Response({"error": body}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    body = {"code": "invalid", "message": str(exc) or "the request body was refused"}
    return Response({"error": body}, status=status.HTTP_400_BAD_REQUEST)


def _first_message(detail) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            msg = _first_message(value)
            return msg if key == "non_field_errors" else f"{key}: {msg}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        body = {"error": {"code": exc.code, "message": exc.message}}
        return Response(body, status=exc.status_code)
    if isinstance(exc, BODY_REFUSALS):
        return _body_refusal(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    error: dict = {
        "code": getattr(exc, "default_code", "error"),
        "message": _first_message(detail) if isinstance(exc, ValidationError) else str(
            detail.get("detail", detail) if isinstance(detail, dict) else detail
        ),
    }
    if isinstance(exc, ValidationError) and isinstance(detail, dict):
        error["fields"] = detail
    if isinstance(exc, PermissionDenied):
        error["code"] = FORBIDDEN  # the services' code for the same refusal, not DRF's own
    if response.status_code == status.HTTP_429_TOO_MANY_REQUESTS:
        error["code"] = "throttled"
    response.data = {"error": error}
    return response


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="machine-readable reason, e.g. invalid, not_found")
    message = serializers.CharField(help_text="one sentence for a person")
    fields = serializers.DictField(required=False,
                                   help_text="per-field messages when the input was invalid")


class ErrorSerializer(serializers.Serializer):
    error = ErrorBodySerializer()


ERROR_TEXT = {
    400: "invalid input; the message names what is wrong",
    401: "not logged in, or a wrong token",
    403: "logged in, but not allowed to do this",
    404: "no such object (or page of a list)",
    409: "conflicts with the current state",
    413: "request body or upload larger than the limit",
    415: "unsupported request body type",
    429: "too many requests; see Retry-After",
    503: "no production model: no gating model has been promoted yet",
}


def error_responses(*codes: int) -> dict:
    """OpenAPI responses in the one error shape, for extend_schema(responses={...})."""
    return {c: OpenApiResponse(ErrorSerializer, description=ERROR_TEXT[c]) for c in codes}


# What str.strip() (DRF, the services) removes, spelled out: `\s` does not mean quite the same
# in the ECMA regexes of the schema as in Python.
_WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
# Some text that is not whitespace.
NOT_BLANK = RegexValidator(f"[^{_WHITESPACE}]", "must contain a non-space character")
# Stored text: never NUL (DRF refuses it, PostgreSQL cannot store it); names also not blank.
# ("+": an empty string is the schema's other branch for fields that may be blank.)
NO_NUL = RegexValidator(r"^[^\x00]+$", "must not contain NUL characters")
NAME = RegexValidator(f"^[^\\x00]*[^{_WHITESPACE}\\x00][^\\x00]*$",
                      "must contain a non-space character and no NUL")
# Primary keys are 64-bit; a larger number must be refused, not sent to the database.
MAX_ID = 2**63 - 1


class StrictCharField(serializers.CharField):
    """A CharField that refuses JSON numbers and booleans, and documents its NUL refusal."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not any(isinstance(v, RegexValidator) for v in self.validators):
            self.validators.append(NO_NUL)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """An IntegerField that refuses "12", 12.0 and true: JSON bodies send real integers."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class UnknownParameter(ValidationError):
    """A query parameter or body field the endpoint does not read: refused, never ignored."""

    default_code = "unknown_parameter"


# Read by DRF itself on every view (URL_FORMAT_OVERRIDE): ?format=json picks the renderer.
ALWAYS_ACCEPTED = ("format",)


def _accepts(names) -> str:
    return ", ".join(sorted(names)) or "none"


class StrictQueryParams:
    """View mixin: a query parameter the view does not read is a 400 that names it and the
    accepted ones, instead of a filter silently dropped (?owner= where the view read
    ?contributor=). The one place this rule lives; every API view uses it.

    `query_params` are the parameters the view's GET reads, as OpenApiParameter objects, so the
    schema documents exactly these (pass the same tuple to extend_schema(parameters=...));
    the pager's parameters are accepted on paginated GETs and ?format= everywhere.
    `renamed_query_params` maps an old name to the one to send instead.
    """

    query_params: tuple = ()
    renamed_query_params: dict[str, str] = {}

    def accepted_query_params(self, method: str) -> set[str]:
        accepted = set(ALWAYS_ACCEPTED)
        if method in ("GET", "HEAD"):
            accepted |= {p.name for p in self.query_params}
            # Detail views inherit DEFAULT_PAGINATION_CLASS too; only lists read a page.
            pager = getattr(self, "pagination_class", None)
            if pager is not None and isinstance(self, mixins.ListModelMixin):
                accepted |= {name for name in (pager.page_query_param,
                                               pager.page_size_query_param) if name}
        return accepted

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if getattr(self, request.method.lower(), None) is None:
            return  # a method the view lacks is DRF's 405, whatever the query says
        accepted = self.accepted_query_params(request.method)
        unknown = sorted(set(request.query_params) - accepted)
        if unknown:
            raise UnknownParameter({name: [self._unknown_message(name, accepted)]
                                    for name in unknown})

    def _unknown_message(self, name: str, accepted: set[str]) -> str:
        if (new := self.renamed_query_params.get(name)) in accepted:
            return f"this parameter is called {new} now; send ?{new}= instead"
        return (f"not a query parameter of this {self.request.method} endpoint; "
                f"it accepts: {_accepts(accepted)}")


def refuse_unknown_fields(data, serializer: serializers.Serializer | None) -> None:
    """A body field the serializer does not declare, or one it declares read-only (set by the
    platform, not by a request), is a 400 naming it; nested serializers are checked too.
    `serializer` None: the endpoint takes no body, so any field is unknown."""
    errors = _field_errors(data, serializer)
    if errors:
        raise UnknownParameter(errors)


def _field_errors(data, serializer) -> dict:
    if not hasattr(data, "keys"):
        return {}  # not an object: the serializer's own validation says so
    fields = {} if serializer is None else serializer.fields
    writable = {name for name, field in fields.items() if not field.read_only}
    errors: dict = {}
    for name in data.keys():
        if name in writable:
            nested = fields[name]
            if isinstance(nested, serializers.Serializer) and not getattr(nested, "many", False):
                if sub := _field_errors(data[name], nested):
                    errors[name] = sub
        elif name in fields:
            errors[name] = ["read-only: set by the platform, not by a request"]
        else:
            errors[name] = [f"not a field of this request; it accepts: {_accepts(writable)}"]
    return errors


def validated_body(serializer_class, request, **kwargs) -> dict:
    """The validated body of a request; unknown and read-only fields are refused by name."""
    serializer = serializer_class(data=request.data, **kwargs)
    refuse_unknown_fields(request.data, serializer)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class PageNumberPagination(pagination.PageNumberPagination):
    """DRF's pages, but `?page=` and `?page=last` are invalid (404): the schema says integer."""

    last_page_strings = ()

    def get_page_number(self, request, paginator):
        number = request.query_params.get(self.page_query_param)
        return 1 if number is None else number

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
        return parameters


# A query string value without NUL characters: the only strings every endpoint accepts.
NO_NUL_PATTERN = "^[^\\x00]*$"


def document_bad_query_strings(result, generator, request, public):
    """drf-spectacular hook: any operation can be sent a malformed URL, so each documents 400.

    RejectNulMiddleware answers 400 to a NUL character anywhere in the path or query string,
    whatever the endpoint; the schema says so instead of pretending only bodies can be bad.
    Likewise any operation that takes a body can be sent one over DATA_UPLOAD_MAX_MEMORY_SIZE,
    which the exception handler answers with 413.
    """
    def error(code: int) -> dict:
        return {"description": ERROR_TEXT[code], "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}

    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                operation.setdefault("responses", {}).setdefault("400", error(400))
            if "requestBody" in operation:
                operation["responses"].setdefault("413", error(413))
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if (parameter.get("in") == "query" and schema.get("type") == "string"
                        and "enum" not in schema and "pattern" not in schema):
                    schema["pattern"] = NO_NUL_PATTERN  # what RejectNulMiddleware enforces
    return result


def document_unknown_body_fields(result, generator, request, public):
    """drf-spectacular hook: request bodies are closed objects (additionalProperties: false),
    as refuse_unknown_fields enforces, so clients and fuzzers know an extra field is a 400."""
    components = result.get("components", {}).get("schemas", {})
    seen: set[str] = set()

    def close(schema: dict) -> None:
        if not isinstance(schema, dict):
            return
        ref = schema.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in seen and name in components:
                seen.add(name)
                close(components[name])
            return
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for sub in schema.get("properties", {}).values():
            close(sub)
        for key in ("allOf", "oneOf", "anyOf"):
            for sub in schema.get(key, []):
                close(sub)

    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for media in operation.get("requestBody", {}).get("content", {}).values():
                close(media.get("schema", {}))
    return result
