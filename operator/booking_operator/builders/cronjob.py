"""The CronJob running `booking cron` every minute, one run at a time."""

from __future__ import annotations

from typing import Any

from booking_operator import names
from booking_operator.builders.common import (
    Manifest,
    booking_env,
    container_security,
    metadata,
    pod_template,
    quantities,
    tmp_mount,
)
from booking_operator.spec import Platform


def build_cronjob(platform: Platform) -> Manifest:
    """`<cr>--cron--<env>` with concurrencyPolicy Forbid and bounded history."""
    cron, image = platform.spec.cron, platform.spec.image
    container: dict[str, Any] = {
        "name": "cron",
        "image": image.reference,
        "imagePullPolicy": image.pull_policy,
        "command": ["booking"],
        "args": ["cron"],
        "env": booking_env(platform, cron),
        "resources": quantities(cron.resources),
        "securityContext": container_security(),
        "volumeMounts": [tmp_mount()],
    }
    template = pod_template(platform, names.CRON_COMPONENT, cron, [container])
    template["spec"]["restartPolicy"] = "Never"
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(
            platform, names.cron_name(platform.name, platform.spec.environment), names.CRON_COMPONENT
        ),
        "spec": {
            "schedule": cron.schedule,
            "concurrencyPolicy": cron.concurrency_policy,
            "suspend": cron.suspend,
            "startingDeadlineSeconds": cron.starting_deadline_seconds,
            "successfulJobsHistoryLimit": cron.successful_jobs_history_limit,
            "failedJobsHistoryLimit": cron.failed_jobs_history_limit,
            "jobTemplate": {
                "metadata": {"labels": template["metadata"]["labels"]},
                "spec": {
                    "backoffLimit": cron.backoff_limit,
                    # A hung run would otherwise block every later minute under Forbid.
                    "activeDeadlineSeconds": cron.active_deadline_seconds,
                    "template": template,
                },
            },
        },
    }
