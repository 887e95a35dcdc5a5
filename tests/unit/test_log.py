"""stagecraft.log (spec/core/logging.md): human lines or JSON lines, levels, and
secrets masked in every record."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from stagecraft import log
from stagecraft.redact import MASK


@pytest.fixture(autouse=True)
def isolated_logging(monkeypatch: pytest.MonkeyPatch):
    """Each test configures the stagecraft logger and secrets from scratch."""
    monkeypatch.setattr(log, "_known_secrets", [])
    monkeypatch.setattr(log, "_redactor", log.Redactor())
    logger = logging.getLogger(log.LOGGER_NAME)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def configured(**kwargs) -> io.StringIO:
    stream = io.StringIO()
    log.setup(stream=stream, **kwargs)
    return stream


def test_human_lines_have_level_prefixes() -> None:
    stream = configured(verbosity=1)
    logger = log.get_logger("test")
    logger.debug("looking")
    logger.info("did a thing")
    logger.warning("careful")
    logger.error("broke")
    logger.critical("really broke")
    assert stream.getvalue() == (
        "debug: looking\ndid a thing\nwarning: careful\nerror: broke\nerror: really broke\n")


def test_human_lines_show_fields() -> None:
    stream = configured()
    log.get_logger().info("deployed", extra={"fields": {"host": "app-1", "took": 2}})
    assert stream.getvalue() == "deployed host=app-1 took=2\n"


@pytest.mark.parametrize(("kwargs", "shown"), [
    ({}, ["info", "warning"]),
    ({"quiet": True}, ["warning"]),
    ({"verbosity": 1}, ["debug", "info", "warning"]),
    ({"verbosity": 3, "quiet": True}, ["warning"]),  # quiet wins
])
def test_levels(kwargs: dict, shown: list[str]) -> None:
    stream = configured(output="json", **kwargs)
    logger = log.get_logger("levels")
    logger.debug("d")
    logger.info("i")
    logger.warning("w")
    assert [json.loads(line)["level"] for line in stream.getvalue().splitlines()] == shown


def test_json_lines_are_parseable_objects() -> None:
    stream = configured(output="json")
    logger = log.get_logger("exec")
    logger.info("started %s", "docker", extra={"fields": {"host": "app-1", "attempt": 2}})
    logger.warning("slow")
    lines = stream.getvalue().splitlines()
    first, second = (json.loads(line) for line in lines)
    assert set(first) == {"ts", "level", "logger", "message", "host", "attempt"}
    assert (first["level"], first["logger"], first["message"]) == ("info", "stagecraft.exec", "started docker")
    assert (first["host"], first["attempt"]) == ("app-1", 2)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert (second["level"], second["message"]) == ("warning", "slow")


def test_json_errors_carry_the_exception() -> None:
    stream = configured(output="json")
    try:
        raise ValueError("bad value")
    except ValueError:
        log.get_logger().exception("failed")
    record = json.loads(stream.getvalue())
    assert record["level"] == "error"
    assert "ValueError: bad value" in record["exception"]


def test_setup_twice_keeps_one_handler() -> None:
    configured()
    stream = configured()
    log.get_logger().info("once")
    assert stream.getvalue() == "once\n"
    assert len(logging.getLogger(log.LOGGER_NAME).handlers) == 1


def test_secrets_are_masked_in_human_lines() -> None:
    stream = configured()
    log.add_secrets("hunter2", "")  # an empty value must not mask every gap
    log.get_logger().warning("password hunter2 rejected", extra={"fields": {"pw": "xhunter2x"}})
    assert stream.getvalue() == f"warning: password {MASK} rejected pw=x{MASK}x\n"


def test_secrets_are_masked_in_json_lines() -> None:
    stream = configured(output="json")
    log.add_secrets("hunter2", 'quote"and\\slash')
    logger = log.get_logger()
    logger.info("token hunter2", extra={"fields": {"secret": "hunter2", "nested": ['quote"and\\slash']}})
    try:
        raise RuntimeError("leaked hunter2")
    except RuntimeError:
        logger.exception("oops")
    text = stream.getvalue()
    assert "hunter2" not in text and "quote" not in text
    first, second = (json.loads(line) for line in text.splitlines())
    assert (first["message"], first["secret"], first["nested"]) == (f"token {MASK}", MASK, [MASK])
    assert f"leaked {MASK}" in second["exception"]


def test_secrets_added_after_setup_are_masked() -> None:
    stream = configured()
    logger = log.get_logger()
    logger.info("value late-secret")
    log.add_secrets("late-secret")
    logger.info("value late-secret")
    assert stream.getvalue() == f"value late-secret\nvalue {MASK}\n"
    assert log.redactor().text("late-secret") == MASK
