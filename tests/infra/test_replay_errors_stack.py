"""``tradelake replay-errors`` reads what the packaged stack writes, where it writes it."""

from __future__ import annotations

from tradelake.replay_cli import delivery_stream
from tradelake.replay_errors import ERRORS_PREFIX, REPLAYED_PREFIX

# The documented values of !{firehose:error-output-type} (Firehose developer guide, custom S3
# prefixes) and decompression-failed (the decompression FAQ): "replayed" is none of them.
ERROR_OUTPUT_TYPES = {
    "processing-failed",
    "elasticsearch-failed",
    "splunk-failed",
    "format-conversion-failed",
    "decompression-failed",
}


def _stream(template):
    _, stream = template.one("AWS::KinesisFirehose::DeliveryStream")
    return stream["Properties"]


def test_replay_resolves_the_stage_s_stream(template):
    # The bucket is RollupConfig.for_stage's, as for backfill (test_template.py checks that).
    assert _stream(template)["DeliveryStreamName"] == delivery_stream("ci")


def test_replay_reads_the_error_output_prefix_and_sets_aside_outside_its_types(template):
    prefix = _stream(template)["ExtendedS3DestinationConfiguration"]["ErrorOutputPrefix"]
    assert prefix.startswith(ERRORS_PREFIX + "!{firehose:error-output-type}/")
    assert REPLAYED_PREFIX.startswith(ERRORS_PREFIX)
    assert REPLAYED_PREFIX[len(ERRORS_PREFIX) :].rstrip("/") not in ERROR_OUTPUT_TYPES
