from __future__ import annotations

import pytest

from trials.errors import UserError
from trials.groups import ChannelGroup
from trials.spec import ChannelSpec, round_channels

GROUPS = [
    ChannelGroup("a", 16, ("a",), (), 0),
    ChannelGroup("b", 64, ("b",), (), 1),
    ChannelGroup("c", 10, ("c",), (), 1),
]


def test_json_round_trip():
    spec = ChannelSpec({"a": 3, "layer1.0.conv1": 7}, arch="resnet20")
    back = ChannelSpec.from_json(spec.to_json())
    assert back == spec and back.channels is not spec.channels


def test_from_ratios_rounds_to_multiples_and_stays_in_range():
    spec = ChannelSpec.from_ratios(GROUPS, {"a": 0.5, "b": 0.3, "c": 0.5}, round_to=8)
    assert spec.channels == {"a": 8, "b": 16, "c": 8}
    assert ChannelSpec.from_ratios(GROUPS, 0.01, round_to=8).channels == {"a": 8, "b": 8, "c": 8}
    assert ChannelSpec.from_ratios(GROUPS, 1.0, round_to=8).channels == {"a": 16, "b": 64, "c": 10}
    assert ChannelSpec.from_ratios(GROUPS, 0.01).channels == {"a": 1, "b": 1, "c": 1}
    assert round_channels(9.6, 10, 8) == 10  # a group not a multiple of 8 may keep all


@pytest.mark.parametrize(
    "channels,message",
    [({"zz": 3}, "unknown group 'zz'"), ({"a": 0}, "group 'a' must keep at least 1"), ({"b": 65}, "group 'b' has 64")],
)
def test_bad_specs_name_the_group(channels, message):
    with pytest.raises(UserError, match=message):
        ChannelSpec(channels).validate(GROUPS)


def test_bad_json_and_bad_counts_are_user_errors():
    with pytest.raises(UserError, match="not valid JSON"):
        ChannelSpec.from_json("{")
    with pytest.raises(UserError, match="group 'a' must keep an integer"):
        ChannelSpec.from_dict({"channels": {"a": "3"}})
    with pytest.raises(UserError, match="keep ratio of group 'a'"):
        ChannelSpec.from_ratios(GROUPS, {"a": 1.5})
