"""Output serializers whose fields are built once per class, for answers made on every poll.

DRF deep-copies and binds every declared field each time a serializer is made. For the job-status GET that copying
was more time than reading the job (`make bench`, P6). An output serializer's fields only read: `get_attribute` and
`to_representation` change nothing. So one bound set, made the first time, serves every instance and every thread,
and this instance supplies what depends on the request:
- a SerializerMethodField calls this instance's method, which sees this instance's context;
- a nested serializer is made again, cheaply, with this instance's context.

The answer is the one DRF's own `to_representation` gives (tests/test_serializers.py holds them equal). The fields
still describe it to the OpenAPI schema and the browsable API, as any serializer's do.
"""

from django.db.models import Manager
from rest_framework import serializers
from rest_framework.fields import SkipField
from rest_framework.relations import PKOnlyObject


class FieldsBuiltOnce:
    """A mixin for read-only output serializers (`serializers.Serializer` subclasses)."""

    @classmethod
    def _readable_once(cls) -> list[serializers.Field]:
        if "_readable_fields_once" not in cls.__dict__:
            cls._readable_fields_once = list(cls()._readable_fields)
        return cls._readable_fields_once

    def to_representation(self, instance) -> dict:
        answer = {}
        for field in self._readable_once():
            if isinstance(field, serializers.SerializerMethodField):
                answer[field.field_name] = getattr(self, field.method_name)(instance)
                continue
            try:
                attribute = field.get_attribute(instance)
            except SkipField:
                continue
            if (attribute.pk if isinstance(attribute, PKOnlyObject) else attribute) is None:
                answer[field.field_name] = None
            elif isinstance(field, serializers.ListSerializer):
                nested = type(field.child)(context=self.context)
                items = attribute.all() if isinstance(attribute, Manager) else attribute
                answer[field.field_name] = [nested.to_representation(item) for item in items]
            elif isinstance(field, serializers.BaseSerializer):
                answer[field.field_name] = type(field)(context=self.context).to_representation(attribute)
            else:
                answer[field.field_name] = field.to_representation(attribute)
        return answer
