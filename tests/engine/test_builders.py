"""Positional constructors for attrs events (engine/builders.py): refused for any class whose ``__init__`` does more than assign."""

from __future__ import annotations

import attrs
import pytest

from engine.builders import builder
from engine.messages import Fill, PlaceOrder


def test_a_class_whose_init_does_more_than_assign_gets_no_builder() -> None:
    @attrs.define(slots=True)
    class Checked:
        x: int = attrs.field(validator=attrs.validators.instance_of(int))

    with pytest.raises(TypeError, match=r"Checked\.x"):
        builder(Checked)
    with pytest.raises(TypeError, match="Fill does not open with the fields of PlaceOrder"):
        builder(Fill, PlaceOrder)
