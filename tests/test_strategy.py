import pytest

from autodp.strategy import NO_PROCESSING_LABEL, Strategy, StrategyError, Team, strategy_space


def test_space_has_64_orderings_plus_no_processing():
    space = strategy_space()
    assert len(space) == 65
    assert len(set(space)) == 65
    assert space[0].is_none and sum(s.is_none for s in space) == 1
    assert sorted(len(s.teams) for s in space).count(4) == 24


@pytest.mark.parametrize("s", strategy_space())
def test_key_and_label_round_trip(s):
    assert Strategy.parse(s.key) == s
    assert Strategy.parse(s.label) == s
    assert Strategy.parse(str(s)) == s


def test_parse_forms():
    want = Strategy((Team.CLEANING, Team.SELECTION))
    assert Strategy.parse("Data Cleaning Team, Data Selection Team") == want
    assert Strategy.parse("cleaning>selection") == want
    assert Strategy.parse("Cleaning → Selection") == want
    assert Strategy.parse(NO_PROCESSING_LABEL).is_none
    assert want.key == "cleaning>selection"


@pytest.mark.parametrize("bad", ["cleaning>cleaning", "Data Washing Team", "cleaning>selection>generation>optimization>cleaning"])
def test_invalid_strategies_rejected(bad):
    with pytest.raises(StrategyError):
        Strategy.parse(bad)


def test_strategy_is_immutable_and_hashable():
    s = Strategy((Team.GENERATION,))
    with pytest.raises(AttributeError):
        s.teams = ()
    assert {s: 1}[Strategy.parse("generation")] == 1


def test_prefixes_longest_first():
    s = Strategy.parse("cleaning>optimization>selection")
    assert [p.key for p in s.prefixes()] == ["cleaning>optimization", "cleaning"]
