"""factory-boy factories for the suite's rows."""

import factory
from django.core.files.base import ContentFile
from django.utils import timezone

from accounts.models import User

PASSWORD = "a-long-test-passphrase-42"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    # Most tests are about what a confirmed account can do; the verification tests make unconfirmed ones.
    email_verified = True
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def saved(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class ConversionFactory(factory.django.DjangoModelFactory):
    """A job row without files: enough for listings, the admin and notifications."""

    class Meta:
        model = "conversions.Conversion"

    owner = factory.SubFactory(UserFactory)
    original_filename = factory.Sequence(lambda n: f"clip{n}.mp4")
    source_size = 1024


class DoneConversionFactory(ConversionFactory):
    """A done job whose MP3 is really stored (`mp3/<id>-<attempt>.mp3`): `DoneConversionFactory(owner=user,
    mp3_data=media("mp3").read_bytes())`. The caller deletes `job.mp3.name` from storage afterwards."""

    class Meta:
        skip_postgeneration_save = True

    status = "done"
    finished_at = factory.LazyFunction(timezone.now)
    duration_seconds = 2.0

    @factory.post_generation
    def mp3_data(obj, create, extracted, **kwargs):
        data = b"ID3-not-really-an-mp3" if extracted is None else extracted
        obj.mp3.save("ignored.mp3", ContentFile(data), save=False)
        obj.mp3_size = len(data)
        if create:
            obj.save()


class DeliveryFactory(factory.django.DjangoModelFactory):
    """An email delivery about a job's current attempt, sent."""

    class Meta:
        model = "notifications.Delivery"

    conversion = factory.SubFactory(ConversionFactory, status="done")
    channel = "email"
    attempt = factory.SelfAttribute("conversion.attempt")
    state = "delivered"
    tries = 1
    delivered_at = factory.LazyFunction(timezone.now)
