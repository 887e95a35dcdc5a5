"""Redactor: secret values never survive text or data passed through it."""

from __future__ import annotations

import json

from hypothesis import assume, given
from hypothesis import strategies as st

from stagecraft.redact import MASK, Redactor


def test_masks_every_occurrence_longest_first() -> None:
    redactor = Redactor(["abc", "abcdef"])
    assert redactor.text("x abcdef y abc z") == f"x {MASK} y {MASK} z"


def test_masks_json_escaped_form() -> None:
    secret = 'pa"ss\\word\nline2'
    redactor = Redactor([secret])
    echoed = json.dumps({"msg": secret})  # how a module result shows it
    assert secret not in redactor.text(echoed)
    assert json.dumps(secret)[1:-1] not in redactor.text(echoed)


def test_data_masks_keys_and_nested_values_and_keeps_other_types() -> None:
    redactor = Redactor(["tok3n"])
    data = {"tok3n": [1, "a tok3n b", {"n": None, "t": True}], "x": ("tok3n",)}
    assert redactor.data(data) == {MASK: [1, f"a {MASK} b", {"n": None, "t": True}], "x": (MASK,)}


def test_in_place_keeps_the_same_dict_object() -> None:
    redactor = Redactor(["s3cret"])
    event = {"stdout": "value s3cret", "event_data": {"res": {"msg": "s3cret"}}}
    same = event
    redactor.data_in_place(event)
    assert same is event
    assert "s3cret" not in json.dumps(event)


def test_empty_redactor_is_falsy_and_changes_nothing() -> None:
    redactor = Redactor(["", None])  # type: ignore[list-item]
    assert not redactor
    assert redactor.text("anything") == "anything"
    assert redactor.contains("anything") is False


def test_repr_never_shows_values() -> None:
    redactor = Redactor(x for x in ["hunter22", "swordfish"])  # a generator is fine
    assert "hunter22" not in repr(redactor) and "2 values" in repr(redactor)
    assert redactor.contains("my swordfish")


@given(secret=st.text(min_size=1), before=st.text(), after=st.text())
def test_no_secret_survives(secret: str, before: str, after: str) -> None:
    # A secret made of "*" could be spelled by the mask and its neighbours.
    assume("*" not in secret)
    masked = Redactor([secret]).text(before + secret + after)
    assert MASK in masked
    assert secret not in masked
