"""``lseg demo``'s options (:mod:`lseg.cli.demo`): generated from ``DemoOptions`` (:mod:`lseg.app.options`)."""

from __future__ import annotations

import pytest

from lseg.app.options import DemoOptions
from lseg.cli import build_parser, main
from lseg.errors import ConfigError
from lseg.options import options_from_args


def test_demo_options_come_from_its_typed_config():
    parser = build_parser()
    assert options_from_args(DemoOptions, parser.parse_args(["demo"])) == DemoOptions()
    args = parser.parse_args(["demo", "--host", "0.0.0.0", "--port", "0", "--max-upload-mb", "2.5", "--max-labels", "8"])
    assert options_from_args(DemoOptions, args) == DemoOptions(host="0.0.0.0", port=0, max_upload_mb=2.5,
                                                               max_labels=8)
    text = " ".join(parser._subparsers._group_actions[0].choices["demo"].format_help().split())
    assert "--port PORT port (0: any free port) (default: 7860)" in text


@pytest.mark.parametrize(("extra", "message"), [
    (["--port", "70000"], "--port must be in [0, 65535], got 70000"),
    (["--port", "-1"], "--port must be in [0, 65535], got -1"),
    (["--max-upload-mb", "0"], "--max-upload-mb must be positive, got 0"),
    (["--max-labels", "0"], "--max-labels must be at least 1, got 0"),
])
def test_bad_demo_options_are_one_line_before_the_model_loads(extra, message, capsys, monkeypatch):
    monkeypatch.setattr("lseg.cli.common.load_source_model", lambda *a, **k: pytest.fail("model loaded"))
    assert main(["demo", "--random-weights", "lseg_tiny_test", *extra]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]


def test_the_python_api_checks_alike():
    with pytest.raises(ConfigError, match=r"port must be in \[0, 65535\], got 70000"):
        DemoOptions(port=70000)
    with pytest.raises(ConfigError, match="max_upload_mb must be positive"):
        DemoOptions(max_upload_mb=-1)
