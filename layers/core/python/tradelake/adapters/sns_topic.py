"""The alarm topic on AWS: the supervisor's messages (``supervise.Alert``) published to SNS.

The topic is the one the CloudWatch alarms notify; its subscribers (the ``alarmEmail`` param)
get the subject and the plain-text body. boto3 is never imported here: the client is passed in.
"""

from __future__ import annotations

from typing import Any

from tradelake.supervise import Alert


class SnsTopic:
    """Publish ``Alert`` messages to one SNS topic."""

    def __init__(self, sns: Any, topic_arn: str) -> None:
        self.sns = sns
        self.topic_arn = topic_arn

    def publish(self, alert: Alert) -> None:
        self.sns.publish(TopicArn=self.topic_arn, Subject=alert.subject, Message=alert.message)
