"""EventBridge Scheduler ticks the watchdog: a `watchdog.tick` event on its queue, as the
local scheduler (emulation/scheduler.py) sends in the embedded world."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from queues.ticks import scheduler_tick_template


def rate(minutes: int) -> str:
    return f"rate({minutes} minute{'s' if minutes > 1 else ''})"


class WatchdogSchedule(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        every_minutes: int,
        queue_arn: pulumi.Input[str],
        role_arn: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("incident-fleet:schedule:WatchdogSchedule", name, None, opts)
        self.schedule = aws.scheduler.Schedule(
            "watchdog-tick",
            description="incident-fleet: the watchdog's tick",
            schedule_expression=rate(every_minutes),
            flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
            target=aws.scheduler.ScheduleTargetArgs(
                arn=queue_arn,
                role_arn=role_arn,
                input=scheduler_tick_template(every_minutes * 60.0),
                # A tick is worth sending only while it is current.
                retry_policy=aws.scheduler.ScheduleTargetRetryPolicyArgs(
                    maximum_event_age_in_seconds=every_minutes * 60,
                    maximum_retry_attempts=2,
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"schedule_arn": self.schedule.arn})
