"""``lseg demo``'s options (:mod:`lseg.cli.demo`): generated from ``DemoOptions``."""

from __future__ import annotations

from lseg.cli import build_parser
from lseg.cli.demo import DEMO_FLAGS, DemoOptions
from lseg.options import config_from_args


def test_demo_options_come_from_its_typed_config():
    parser = build_parser()
    assert config_from_args(DemoOptions, parser.parse_args(["demo"]), DEMO_FLAGS) == DemoOptions()
    args = parser.parse_args(["demo", "--host", "0.0.0.0", "--port", "0", "--max-upload-mb", "2.5", "--max-labels", "8"])
    assert config_from_args(DemoOptions, args, DEMO_FLAGS) == DemoOptions(host="0.0.0.0", port=0, max_upload_mb=2.5,
                                                                          max_labels=8)
