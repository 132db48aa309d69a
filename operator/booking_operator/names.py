"""API constants, labels and every child name, derived in one place from the CR name and environment.

The seed's names are kept exactly (`<cr>--app--<env>`, ...). Their length limits are written here once:
the spec model checks them and the CRD's CEL rules are generated from the same table.
"""

from __future__ import annotations

from dataclasses import dataclass

from booking_core.topology import CONSUMERS, WORKERS

GROUP = "platform.pat-booking.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "BookingPlatform"
PLURAL = "bookingplatforms"
SINGULAR = "bookingplatform"
SHORT_NAMES = ("bp",)
CRD_NAME = f"{PLURAL}.{GROUP}"

MANAGED_BY = "booking-operator"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_NAME = "app.kubernetes.io/name"
APP_NAME = "pat-booking-be"

# Like kubectl's `kubectl.kubernetes.io/restartedAt`, but ours, so the two never fight over one field.
ANNOTATION_RESTARTED_AT = f"{GROUP}/restartedAt"
ANNOTATION_CONFIG_CHECKSUM = f"{GROUP}/config-checksum"

CONSUMER_NAMES = tuple(CONSUMERS)
WORKER_NAMES = tuple(WORKERS)

API_COMPONENT = "api"
CRON_COMPONENT = "cron"
COLLECTOR_COMPONENT = "otel-collector"
SERVICE_ACCOUNT_COMPONENT = "service-account"


def consumer_component(name: str) -> str:
    """The component id (and `app.kubernetes.io/component` value) of a consumer."""
    return f"consumer-{name}"


def worker_component(name: str) -> str:
    """The component id of a worker."""
    return f"worker-{name}"


def api_name(cr: str, env: str) -> str:
    """The API Deployment and Service: `<cr>--app--<env>`."""
    return f"{cr}--app--{env}"


def api_hpa_name(cr: str, env: str) -> str:
    """The API's HPA, named as in the seed."""
    return f"{api_name(cr, env)}-hpa"


def consumer_name(cr: str, env: str, consumer: str) -> str:
    """A consumer Deployment: `<cr>--consumer-<name>--<env>`."""
    return f"{cr}--consumer-{consumer}--{env}"


def worker_name(cr: str, env: str, worker: str) -> str:
    """A worker Deployment: `<cr>--wrk--<name>--<env>`."""
    return f"{cr}--wrk--{worker}--{env}"


def cron_name(cr: str, env: str) -> str:
    """The CronJob: `<cr>--cron--<env>`."""
    return f"{cr}--cron--{env}"


def collector_name(cr: str) -> str:
    """The collector's Deployment, Service and ConfigMap: `<cr>-otel-collector` (no env, as in the seed)."""
    return f"{cr}-otel-collector"


def scaledobject_name(cr: str, env: str, consumer: str) -> str:
    """A consumer's ScaledObject: `kafka-<deployment>`."""
    return f"kafka-{consumer_name(cr, env, consumer)}"


def keda_hpa_name(cr: str, env: str, consumer: str) -> str:
    """The HPA KEDA creates for a ScaledObject; it must fit in 63 characters."""
    return f"keda-hpa-{scaledobject_name(cr, env, consumer)}"


def hpa_name_for(deployment: str) -> str:
    """A CPU HPA for any Deployment (the API's seed name, and KEDA fallbacks)."""
    return f"{deployment}-hpa"


def service_account_name(cr: str, env: str) -> str:
    """The ServiceAccount every pod runs as."""
    return f"{cr}--sa--{env}"


def trigger_auth_name(cr: str, env: str) -> str:
    """The KEDA TriggerAuthentication holding the Kafka SASL credentials."""
    return f"{cr}--kafka-auth--{env}"


def collector_endpoint(cr: str, namespace: str) -> str:
    """OTLP/HTTP endpoint of the collector Service, for OTEL_EXPORTER_OTLP_ENDPOINT."""
    return f"http://{collector_name(cr)}.{namespace}.svc:4318"


@dataclass(frozen=True)
class NameLimit:
    """A derived name is `len(cr) + (len(env) if with_env) + fixed` characters and must stay <= limit."""

    what: str
    fixed: int
    with_env: bool
    limit: int

    def budget(self) -> int:
        """The most characters the CR name (plus env, when used) may take."""
        return self.limit - self.fixed

    def fits(self, cr: str, env: str) -> bool:
        """Whether the derived name fits."""
        return len(cr) + (len(env) if self.with_env else 0) + self.fixed <= self.limit


# The binding limits only; longer-limit names (Deployments, HPAs, 253) are implied by these.
BASE_LIMITS = (
    # A CronJob name is capped at 52 because the Jobs it creates append an 11-character suffix.
    NameLimit("CronJob <cr>--cron--<env>", len("--cron--"), True, 52),
    # Services are DNS-1035 labels (63).
    NameLimit("Service <cr>--app--<env>", len("--app--"), True, 63),
    NameLimit("Service <cr>-otel-collector", len("-otel-collector"), False, 63),
    # part-of/instance labels carry the CR name; label values are at most 63.
    NameLimit("label value <cr>", 0, False, 63),
)


def keda_limit(consumer: str) -> NameLimit:
    """KEDA names its HPA `keda-hpa-<scaledobject>`, and that must be a 63-character label value."""
    fixed = len(keda_hpa_name("", "", consumer))
    return NameLimit(f"KEDA HPA keda-hpa-kafka-<cr>--consumer-{consumer}--<env>", fixed, True, 63)
